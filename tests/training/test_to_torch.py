"""``purelr.training.to_torch`` and the table both directions read (``torch_state.LAYOUTS``).

Round trip: every optimizer of ``tests/training/resume_run.py`` (every exported twin), and the
wrappers around one, after a few jitted updates on random gradients: ``from_torch(to_torch(state))``
is the state, bit for bit (x64 and float32).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from purelr import optim
from purelr.training import accumulate, averaging, loss_scale
from purelr.training.from_torch import averaged_from_torch, from_torch
from purelr.training.to_torch import averaged_to_torch, to_torch
from purelr.training.torch_state import group_key
from tests.training import resume_run
from tests.training.test_from_torch import TorchMLP, template

UPDATES = 3
LBFGS = {"lbfgs"}  # a flat history, converted by its own test


def torch_model_state(x64: bool):
    torch.manual_seed(0)
    model = TorchMLP()
    return (model.double() if x64 else model.float()).state_dict()


def synthetic_groups(opt_state, labels=None):
    """One torch param group per twin, with an entry for each of its hyperparameters."""
    from purelr.training.torch_state import is_twin

    twins = [s for s in jax.tree.leaves(opt_state, is_leaf=is_twin) if is_twin(s)]
    names = ["hidden.weight", "hidden.bias", "out.weight", "out.bias"]
    flax = ["hidden.kernel", "hidden.bias", "out.kernel", "out.bias"]
    groups = []
    for i, twin in enumerate(twins):
        group = {"params": [k for k, n in enumerate(flax) if labels is None or labels[n] == sorted(set(labels.values()))[i]]}
        for name in twin.hyperparams:
            key, index = group_key(twin, name)
            if index is None:
                group[key] = 0.0
            else:
                group.setdefault(key, [0.0, 0.0, 0.0])
        group["param_names"] = [names[k] for k in group["params"]]
        groups.append(group)
    return {"state": {}, "param_groups": groups}


def run(optimizer, params, updates=UPDATES, seed=0):
    """``updates`` jitted updates on random gradients."""
    state = optimizer.init(params)
    rng = np.random.default_rng(seed)
    step = jax.jit(lambda p, s, g: optimizer.update(g, s, p))
    for _ in range(updates):
        grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), p.dtype), params)
        updates_, state = step(params, state, grads)
        params = optax.apply_updates(params, updates_)
    return params, state


def assert_same(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert jnp.result_type(x) == jnp.result_type(y) and np.shape(x) == np.shape(y)
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def labels_of(name, params):
    if name == "muon":
        flat = {"hidden.kernel": "muon", "hidden.bias": "other", "out.kernel": "muon", "out.bias": "other"}
        return flat, jax.tree.map(lambda p: "muon" if p.ndim == 2 else "other", params)
    return None, None


@pytest.mark.parametrize("name", [n for n in resume_run.OPTIMIZERS if n not in LBFGS])
def test_round_trip_every_twin(name, precision):
    optimizer = resume_run.OPTIMIZERS[name]()
    params, state = run(optimizer, template())
    flat_labels, labels = labels_of(name, params)
    model_sd = torch_model_state(precision == "x64")
    exported = to_torch(state, params, model_sd, synthetic_groups(state, flat_labels), labels=labels)
    back = from_torch(
        optimizer, template(), exported.model_state_dict, exported.optimizer_state_dict, count=UPDATES, labels=labels
    )
    assert_same(back.params, params)
    assert_same(back.opt_state, state)
