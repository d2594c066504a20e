import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from purelr.optim.adagrad import adagrad
from purelr.params.groups import param_groups
from tests.optim import torch_reference as ref
from tests.parity import relative_error


def draw(rng):
    return dict(
        lr=ref.loguniform(rng, 1e-3, 1e-1),
        lr_decay=float(rng.choice([0.0, ref.loguniform(rng, 1e-4, 1e-1)])),
        initial_accumulator_value=float(rng.choice([0.0, rng.uniform(0.0, 1.0)])),
        eps=ref.loguniform(rng, 1e-10, 1e-4),
        weight_decay=float(rng.choice([0.0, ref.loguniform(rng, 1e-4, 1e-1)])),
    )


CONFIGS = ref.configurations(dict(maximize=[False, True]), draw, per_combination=12, seed=8)


def test_matches_torch(precision):
    ref.check_family(adagrad, torch.optim.Adagrad, CONFIGS)


def test_defaults_match_torch(precision):
    ref.check_defaults(adagrad, torch.optim.Adagrad)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("lr", dict(lr=-1.0)),
        ("lr_decay", dict(lr_decay=-0.1)),
        ("eps", dict(eps=-1e-10)),
        ("weight_decay", dict(weight_decay=-1e-2)),
        ("initial_accumulator_value", dict(initial_accumulator_value=-1.0)),
    ],
)
def test_rejects_what_torch_rejects(name, kwargs):
    ref.check_rejects(adagrad, torch.optim.Adagrad, name, **kwargs)


def test_group_initial_accumulator_value_is_ignored_as_torch_ignores_it():
    """torch fills ``state['sum']`` from the constructor's ``initial_accumulator_value``, whatever
    a group says: ``param_groups(adagrad, ...)`` does the same (jitted updates, x64)."""
    rng = np.random.default_rng(5)
    start = {"a": rng.normal(size=3), "b": rng.normal(size=(2, 2))}
    grads = [{k: rng.normal(size=v.shape) for k, v in start.items()} for _ in range(4)]
    groups = [{"params": "a", "initial_accumulator_value": 0.5, "lr": 0.1}, {"params": "b"}]
    with jax.enable_x64(True):
        optimizer = param_groups(adagrad, start, groups, initial_accumulator_value=0.2, lr=0.05)
        params = jax.tree.map(jnp.asarray, start)
        state = optimizer.init(params)
        update = jax.jit(optimizer.update)
        for g in grads:
            updates, state = update(jax.tree.map(jnp.asarray, g), state, params)
            params = optax.apply_updates(params, updates)
    tensors = {k: torch.tensor(v) for k, v in start.items()}
    torch_optimizer = torch.optim.Adagrad(
        [{"params": [tensors["a"]], "initial_accumulator_value": 0.5, "lr": 0.1}, {"params": [tensors["b"]]}],
        initial_accumulator_value=0.2,
        lr=0.05,
    )
    for g in grads:
        for k, t in tensors.items():
            t.grad = torch.tensor(g[k])
        torch_optimizer.step()
    for k, t in tensors.items():
        assert relative_error(params[k], t.numpy()) <= 1e-10, k
