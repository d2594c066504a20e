"""Prodigy's ``s`` and ``p0`` (every ``slice_p``-th entry of each param flattened in torch's
layout) on a model with a conv kernel, both ways with prodigyopt 1.1.2's Prodigy.

The twin built with ``torch_layout=kernel_layouts`` slices the entries torch slices; without it a
slice of the flax kernel ``(kh, kw, in, out)`` holds other entries, and ``d`` differs from the
original's (``test_slices_follow_torch``). Both ways: k updates on one side, the state converted,
m more on the other, against k + m torch updates (x64, 1e-10), random k, m, configurations and
``slice_p`` in {1, 2, 3}; round trip ``from_torch(to_torch(state)) == state`` exactly, float32 and
float64. The gradient is elementwise in the params, so each side computes it in its own layout.
"""

import copy

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from prodigyopt import Prodigy

from purelr.optim.prodigy import kernel_layouts, prodigy
from purelr.training.from_torch import from_torch, kernel_layout, model_from_torch
from purelr.training.to_torch import to_torch
from tests.parity import OPTIMIZER_RTOL, relative_error
from tests.training.test_to_torch import assert_same


class TorchNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 3, (3, 2))
        self.fc = torch.nn.Linear(5, 4)


def targets(steps):
    rng = np.random.default_rng(7)
    return [{n: rng.normal(size=s) for n, s in SHAPES.items()} for _ in range(steps)]


SHAPES = {"conv.weight": (3, 2, 3, 2), "conv.bias": (3,), "fc.weight": (4, 5), "fc.bias": (4,)}
TARGETS = targets(12)


def flax_name(name):
    module, leaf = name.split(".")
    return module, "kernel" if leaf == "weight" else leaf


def gradient(p, t, abs_):
    return (p - t) * (1 + abs_(p))  # elementwise: the same numbers in either layout


def torch_steps(model, optimizer, first, last):
    for k in range(first, last):
        for name, p in model.named_parameters():
            p.grad = gradient(p.detach(), torch.tensor(TARGETS[k][name], dtype=p.dtype), torch.abs)
        optimizer.step()


def jax_steps(optimizer, params, state, first, last):
    @jax.jit
    def step(params, state, target):
        grads = jax.tree.map(lambda p, t: gradient(p, t, jnp.abs), params, target)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    for k in range(first, last):
        target = {}
        for name, t in TARGETS[k].items():
            module, leaf = flax_name(name)
            target.setdefault(module, {})[leaf] = kernel_layout(t) if leaf == "kernel" else t
        params, state = step(params, state, target)
    return params, state


def template(dtype):
    out = {}
    for name, shape in SHAPES.items():
        module, leaf = flax_name(name)
        out.setdefault(module, {})[leaf] = jnp.zeros(
            np.shape(kernel_layout(np.zeros(shape))) if leaf == "kernel" else shape, dtype
        )
    return out


def error(params, model):
    worst = 0.0
    for name, p in model.state_dict().items():
        module, leaf = flax_name(name)
        expected = kernel_layout(p.numpy()) if leaf == "kernel" else p.numpy()
        worst = max(worst, relative_error(params[module][leaf], expected))
    return worst


def draw(rng, slice_p):
    return dict(
        lr=float(rng.uniform(0.5, 2.0)),
        d0=float(10 ** rng.uniform(-6, -3)),
        weight_decay=float(rng.choice([0.0, 0.01])),
        decouple=bool(rng.random() < 0.7),
        use_bias_correction=bool(rng.random() < 0.5),
        safeguard_warmup=bool(rng.random() < 0.5),
        slice_p=slice_p,
    )


def setup(seed, kwargs):
    torch.manual_seed(seed)
    model = TorchNet()
    optimizer = Prodigy(model.parameters(), **kwargs)
    return model, optimizer


@pytest.mark.parametrize("slice_p", [2, 3])
def test_slices_follow_torch(slice_p):
    """Twelve updates from the same start: with ``torch_layout`` the twin is the original to 1e-10;
    without it the slice of the conv kernel is other entries, and ``d`` parts from the original's."""
    kwargs = dict(lr=1.0, d0=1e-4, slice_p=slice_p)
    with jax.enable_x64(True):
        previous = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)
        try:
            model, optimizer = setup(0, kwargs)
            start = model_from_torch(copy.deepcopy(model.state_dict()), template(jnp.float64))[0]
            torch_steps(model, optimizer, 0, len(TARGETS))
            d = optimizer.param_groups[0]["d"]
            errors = {}
            for layout in (kernel_layouts, None):
                twin = prodigy(**kwargs, torch_layout=layout)
                params, state = jax_steps(twin, start, twin.init(start), 0, len(TARGETS))
                errors[layout is None] = (error(params, model), abs(float(state.d) - d) / d)
        finally:
            torch.set_default_dtype(previous)
    assert max(errors[False]) <= OPTIMIZER_RTOL["x64"], errors
    assert errors[True][1] > 1e-6, errors  # the flax slice: another d


def both_ways(seed, slice_p, dtype=torch.float64):
    """``(config, k, m, torch -> purelr error, purelr -> torch error)``; asserts the round trip."""
    rng = np.random.default_rng(seed)
    kwargs, k, m = draw(rng, slice_p), int(rng.integers(1, 6)), int(rng.integers(1, 6))
    twin = prodigy(**kwargs, torch_layout=kernel_layouts)
    jax_dtype = jnp.float64 if dtype == torch.float64 else jnp.float32
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        model, optimizer = setup(seed, kwargs)
        fresh = copy.deepcopy((model.state_dict(), optimizer.state_dict()))
        torch_steps(model, optimizer, 0, k)
        at_k = copy.deepcopy((model.state_dict(), optimizer.state_dict()))
        torch_steps(model, optimizer, k, k + m)

        run = from_torch(twin, template(jax_dtype), *at_k)
        params, _ = jax_steps(twin, run.params, run.opt_state, k, k + m)
        error_in = error(params, model)

        start = model_from_torch(fresh[0], template(jax_dtype))[0]
        params, state = jax_steps(twin, start, twin.init(start), 0, k)
        exported = to_torch(state, params, *fresh)
        back = from_torch(twin, template(jax_dtype), exported.model_state_dict, exported.optimizer_state_dict)
        assert_same(back.opt_state, state)
        other, other_optimizer = setup(seed, kwargs)
        other.load_state_dict(exported.model_state_dict)
        other_optimizer.load_state_dict(exported.optimizer_state_dict)
        torch_steps(other, other_optimizer, k, k + m)
        error_out = error(model_from_torch(copy.deepcopy(other.state_dict()), template(jax_dtype))[0], model)
    finally:
        torch.set_default_dtype(previous)
    return kwargs, k, m, error_in, error_out


def check_both_ways(seed):
    with jax.enable_x64(True):
        kwargs, k, m, error_in, error_out = both_ways(seed, slice_p=1 + seed % 3)
    assert error_in <= OPTIMIZER_RTOL["x64"], f"{kwargs}, k={k}, m={m}: torch -> purelr off by {error_in:.3g}"
    assert error_out <= OPTIMIZER_RTOL["x64"], f"{kwargs}, k={k}, m={m}: purelr -> torch off by {error_out:.3g}"


@pytest.mark.parametrize("seed", range(6))
def test_both_ways_with_a_conv_kernel(seed):
    """Measured over 12 seeds: 2e-15 either way."""
    check_both_ways(seed)


@pytest.mark.nightly
@pytest.mark.parametrize("seed", range(6, 36))
def test_both_ways_with_a_conv_kernel_nightly(seed):
    check_both_ways(seed)


def test_float32_round_trip(slice_p=3):
    """float32: ``d`` and the sums as double-float pairs go to torch's Python floats and back
    exactly (the trajectories are ``tests/optim/test_prodigy.py``'s)."""
    both_ways(seed=slice_p, slice_p=slice_p, dtype=torch.float32)
