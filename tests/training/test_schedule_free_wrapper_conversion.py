"""schedulefree 1.4.1's ``ScheduleFreeWrapper`` / ``ScheduleFreeWrapperReference`` state both ways
with ``purelr.training.from_torch`` / ``to_torch``, around torch's SGD, Adam and AdamW.

A torch checkpoint of a wrapper is taken in eval mode (``optimizer.eval()`` before saving, as
schedulefree asks; a fresh wrapper is in eval mode): its model holds ``x``, the twin's params are
``y``. Both ways: k updates in torch, ``eval()``, state dicts, ``train()``, m more updates is the
reference; ``from_torch`` of the state dicts at k and m purelr updates, and k purelr updates,
``to_torch``, a fresh torch model and wrapper loaded, ``train()``, m torch updates, each agree
with it (x64, 1e-10), with random k, m, base and wrapper configurations. The round trip
``from_torch(to_torch(state))`` gives the optimizer state back bit for bit and the params to the
rounding of the ``y -> x -> y`` swap.
"""

import collections
import copy

import jax
import numpy as np
import optax
import pytest
import schedulefree
import torch

from purelr import optim
from purelr.training.from_torch import from_torch, model_from_torch
from purelr.training.to_torch import to_torch
from tests.optim.test_schedule_free_wrapper import BaseState
from tests.optim.torch_reference import torch_dtype
from tests.parity import OPTIMIZER_RTOL, relative_error
from tests.training.test_from_torch import TorchMLP, kernel_layout, template
from tests.training.test_to_torch import assert_same, flax_loss, jax_steps, torch_steps

WRAPPERS = {
    "wrapper": (schedulefree.ScheduleFreeWrapper, optim.schedule_free_wrapper),
    "reference": (schedulefree.ScheduleFreeWrapperReference, optim.schedule_free_wrapper_reference),
}


def _sgd(rng):
    kw = dict(lr=float(rng.uniform(0.01, 0.2)), momentum=float(rng.choice([0.0, 0.5, 0.9])))
    kw.update(weight_decay=float(rng.choice([0.0, 0.01])), nesterov=bool(kw["momentum"] and rng.random() < 0.5))
    return torch.optim.SGD, optim.sgd, kw


def _adam(rng, torch_type=torch.optim.Adam, twin=optim.adam):
    betas = (float(rng.uniform(0.0, 0.95)), float(rng.uniform(0.9, 0.999)))
    kw = dict(lr=float(rng.uniform(1e-3, 3e-2)), betas=betas, weight_decay=float(rng.choice([0.0, 0.01, 0.1])))
    return torch_type, twin, dict(kw, amsgrad=bool(rng.random() < 0.3))


BASES = {"sgd": _sgd, "adam": _adam, "adamw": lambda rng: _adam(rng, torch.optim.AdamW, optim.adamw)}


def _wrapper_kwargs(rng):
    return dict(
        momentum=float(rng.choice([0.9, rng.uniform(0.3, 0.98)])),
        weight_decay_at_y=float(rng.choice([0.0, rng.uniform(0.0, 0.2)])),
        r=float(rng.choice([0.0, rng.uniform(0.0, 2.0)])),
        weight_lr_power=float(rng.choice([2.0, rng.uniform(0.0, 3.0)])),
    )


def _torch_wrapper(wrapper, make_base, base_kw, wrapper_kw, model):
    """The original around a fresh base whose ``state[p]`` leaves the wrapper's keys out of its
    length (torch 2.13's Adam(W) would not create its buffers beside ``z``: ``BaseState``); a
    loaded state holds the base's buffers already."""
    base = make_base(model.parameters(), **base_kw)
    base.state = collections.defaultdict(BaseState)
    return WRAPPERS[wrapper][0](base, **wrapper_kw)


def _error(params, torch_sd) -> float:
    errors = [relative_error(params[layer]["bias"], torch_sd[f"{layer}.bias"]) for layer in ("hidden", "out")]
    errors += [
        relative_error(params[layer]["kernel"], kernel_layout(torch_sd[f"{layer}.weight"]))
        for layer in ("hidden", "out")
    ]
    return max(errors)


def _numpy(model) -> dict:
    return {n: p.detach().numpy().copy() for n, p in model.state_dict().items()}


def both_ways(wrapper, base, seed):
    """``(k, m, config, torch -> purelr error, purelr -> torch error, round-trip params error)``."""
    rng = np.random.default_rng(seed)
    torch_base, twin_base, base_kw = BASES[base](rng)
    wrapper_kw = _wrapper_kwargs(rng)
    k, m = int(rng.integers(1, 6)), int(rng.integers(1, 5))
    twin = WRAPPERS[wrapper][1](twin_base(**base_kw), **wrapper_kw)
    with torch_dtype(True):
        torch.manual_seed(seed)
        model = TorchMLP()
        fresh_model_sd = copy.deepcopy(model.state_dict())
        optimizer = _torch_wrapper(wrapper, torch_base, base_kw, wrapper_kw, model)
        fresh_optimizer_sd = copy.deepcopy(optimizer.state_dict())
        optimizer.train()
        torch_steps(model, optimizer, 0, k)
        optimizer.eval()  # schedulefree's checkpoint: eval mode
        at_k = copy.deepcopy((model.state_dict(), optimizer.state_dict()))
        optimizer.train()
        torch_steps(model, optimizer, k, k + m)
        final = _numpy(model)

        @jax.jit
        def step(params, state, x, y):
            updates, state = twin.update(jax.grad(flax_loss)(params, x, y), state, params)
            return optax.apply_updates(params, updates), state

        run = from_torch(twin, template(), *at_k)
        assert int(run.opt_state.count) == k and int(run.opt_state.inner_state.count) == k
        params, _ = jax_steps(step, run.params, run.opt_state, k, k + m)
        error_in = _error(params, final)

        start = model_from_torch(fresh_model_sd, template())[0]
        params, state = jax_steps(step, start, twin.init(start), 0, k)
        exported = to_torch(state, params, fresh_model_sd, fresh_optimizer_sd)
        back = from_torch(twin, template(), exported.model_state_dict, exported.optimizer_state_dict)
        assert_same(back.opt_state, state)
        error_back = max(relative_error(a, b) for a, b in zip(jax.tree.leaves(back.params), jax.tree.leaves(params)))
        model = TorchMLP()
        optimizer = _torch_wrapper(wrapper, torch_base, base_kw, wrapper_kw, model)
        model.load_state_dict(exported.model_state_dict)
        optimizer.load_state_dict(exported.optimizer_state_dict)
        optimizer.train()
        torch_steps(model, optimizer, k, k + m)
        error_out = max(relative_error(p, final[n]) for n, p in _numpy(model).items())
    return k, m, (base_kw, wrapper_kw), error_in, error_out, error_back


CASES = [(w, b) for w in WRAPPERS for b in BASES]


@pytest.mark.parametrize(
    "wrapper, base, seed",
    [(w, b, 0) for w, b in CASES]
    + [pytest.param(w, b, s, marks=pytest.mark.nightly) for w, b in CASES for s in range(1, 9)],
)
def test_both_ways_against_schedulefree(wrapper, base, seed):
    with jax.enable_x64(True):
        k, m, config, error_in, error_out, error_back = both_ways(wrapper, base, seed)
    tolerance = OPTIMIZER_RTOL["x64"]
    what = f"{wrapper} around {base}, k={k}, m={m}, {config}"
    assert error_in <= tolerance, f"{what}: torch -> purelr off by {error_in:.3g}"
    assert error_out <= tolerance, f"{what}: purelr -> torch off by {error_out:.3g}"
    assert error_back <= 1e-14, f"{what}: the params' round trip off by {error_back:.3g}"


def _torch_state(wrapper, steps=2, base=torch.optim.Adam, **base_kw):
    """``(model, optimizer)`` state dicts of a torch ``base`` (Adam at lr 1e-2), plain
    (``wrapper=None``) or wrapped, after ``steps`` updates."""
    base_kw = base_kw or dict(lr=1e-2)
    with torch_dtype(True):
        torch.manual_seed(0)
        model = TorchMLP()
        if wrapper is None:
            optimizer = base(model.parameters(), **base_kw)
        else:
            optimizer = _torch_wrapper(wrapper, base, base_kw, {}, model)
            optimizer.train()
        torch_steps(model, optimizer, 0, steps)
        if wrapper is not None:
            optimizer.eval()
        return model.state_dict(), optimizer.state_dict()


@pytest.mark.parametrize("wrapper", list(WRAPPERS))
def test_wrapper_state_for_a_plain_twin(wrapper):
    with jax.enable_x64(True):
        with pytest.raises(ValueError, match=r"'lr_max', 'weight_sum' \(and 'k': 2\).*schedule_free_wrapper\(base\)"):
            from_torch(optim.adam(1e-2), template(), *_torch_state(wrapper))


@pytest.mark.parametrize("wrapper", list(WRAPPERS))
def test_plain_state_for_a_wrapper_twin(wrapper):
    twin = WRAPPERS[wrapper][1](optim.adam(1e-2))
    with jax.enable_x64(True):
        with pytest.raises(ValueError, match=r"param groups no 'k', 'lr_max', 'weight_sum': the state of a plain"):
            from_torch(twin, template(), *_torch_state(None))


def test_reference_state_for_the_wrapper_twin():
    with jax.enable_x64(True):
        with pytest.raises(ValueError, match=r"has 'x', which the ScheduleFreeWrapperState twin built here does not"):
            from_torch(optim.schedule_free_wrapper(optim.adam(1e-2)), template(), *_torch_state("reference"))


def test_fresh_state_and_attributes():
    """At 0 updates torch keeps no state and the groups no 'k': ``z`` starts as the loaded params
    and nothing is exported. The wrapper's ``momentum`` (an attribute of torch's wrapper) is the
    twin's; the group's ``momentum`` is SGD's."""
    twin = optim.schedule_free_wrapper(optim.sgd(0.1, momentum=0.3), momentum=0.8)
    with jax.enable_x64(True):
        model_sd, optimizer_sd = _torch_state("wrapper", 0, torch.optim.SGD, lr=0.1, momentum=0.3)
        run = from_torch(twin, jax.tree.map(np.zeros_like, template()), model_sd, optimizer_sd)
        assert int(run.opt_state.count) == 0
        assert_same(run.opt_state.z, run.params)
        exported = to_torch(run.opt_state, run.params, model_sd, optimizer_sd).optimizer_state_dict
        assert "k" not in exported["param_groups"][0] and not exported["state"]
        run = from_torch(twin, template(), *_torch_state("wrapper", 2, torch.optim.SGD, lr=0.1, momentum=0.3))
        assert int(run.opt_state.inner_state.count) == 2
        assert float(run.opt_state.hyperparams["momentum"]) == 0.8
        assert float(run.opt_state.inner_state.hyperparams["momentum"]) == 0.3
        exported = to_torch(run.opt_state, run.params, model_sd, optimizer_sd).optimizer_state_dict
        assert exported["param_groups"][0]["momentum"] == 0.3 and exported["param_groups"][0]["k"] == 2


def test_two_groups_both_ways():
    """torch's wrapper over Adam with two param groups (kernels, biases: their own lr, betas; each
    group its own ``k``, ``lr_max``, ``weight_sum``) is one twin wrapper per group inside
    ``optax.multi_transform``: both ways, k + m updates (x64)."""
    groups = {"kernel": dict(lr=0.02, betas=(0.8, 0.99)), "bias": dict(lr=0.005, betas=(0.5, 0.9))}
    names = ["hidden.weight", "out.weight", "hidden.bias", "out.bias"]
    wrapper_kw = dict(momentum=0.85, weight_decay_at_y=0.05, r=0.5)
    k, m = 3, 2
    labels = {layer: {"kernel": "kernel", "bias": "bias"} for layer in ("hidden", "out")}
    twin = optax.multi_transform(
        {g: optim.schedule_free_wrapper(optim.adam(**kw), **wrapper_kw) for g, kw in groups.items()}, labels
    )

    def torch_wrapper(model):
        tree = dict(model.named_parameters())
        base = torch.optim.Adam(
            [
                dict(params=[tree[n] for n in names if n.endswith(g)], **kw)
                for g, kw in [("weight", groups["kernel"]), ("bias", groups["bias"])]
            ]
        )
        base.state = collections.defaultdict(BaseState)
        return schedulefree.ScheduleFreeWrapper(base, **wrapper_kw)

    @jax.jit
    def step(params, state, x, y):
        updates, state = twin.update(jax.grad(flax_loss)(params, x, y), state, params)
        return optax.apply_updates(params, updates), state

    with jax.enable_x64(True), torch_dtype(True):
        torch.manual_seed(1)
        model = TorchMLP()
        fresh = copy.deepcopy((model.state_dict(), (optimizer := torch_wrapper(model)).state_dict()))
        optimizer.train()
        torch_steps(model, optimizer, 0, k)
        optimizer.eval()
        at_k = copy.deepcopy((model.state_dict(), optimizer.state_dict()))
        optimizer.train()
        torch_steps(model, optimizer, k, k + m)
        final = _numpy(model)
        assert [g["k"] for g in optimizer.param_groups] == [k + m] * 2

        run = from_torch(twin, template(), *at_k, labels=labels, param_names=names)
        error_in = _error(jax_steps(step, run.params, run.opt_state, k, k + m)[0], final)

        start = model_from_torch(fresh[0], template())[0]
        params, state = jax_steps(step, start, twin.init(start), 0, k)
        exported = to_torch(state, params, *fresh, labels=labels, param_names=names)
        model = TorchMLP()
        optimizer = torch_wrapper(model)
        model.load_state_dict(exported.model_state_dict)
        optimizer.load_state_dict(exported.optimizer_state_dict)
        optimizer.train()
        torch_steps(model, optimizer, k, k + m)
        error_out = max(relative_error(p, final[n]) for n, p in _numpy(model).items())
    assert error_in <= OPTIMIZER_RTOL["x64"] and error_out <= OPTIMIZER_RTOL["x64"], (error_in, error_out)
