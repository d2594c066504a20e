"""Torch-style param groups, per-group schedules and unfreezing against torch.optim, step by step."""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from purelr.params.groups import hyperparams_in_force, param_groups
from purelr.optim import adam, sgd
from purelr.schedules.torch import cosine_annealing_lr
from tests.parity import OPTIMIZER_RTOL, relative_error
from tests.optim.torch_reference import torch_dtype

STEPS, UNFREEZE, T_MAX, ETA_MIN = 30, 12, 20, 1e-3
RNG = np.random.default_rng(0)
PARAMS = {"body": {"dense": {"kernel": RNG.normal(0, 0.7, (3, 5)), "bias": RNG.normal(0, 0.1, 5)}},
          "norm": {"scale": RNG.normal(1, 0.1, 5)},
          "head": {"kernel": RNG.normal(0, 0.5, (5, 2)), "bias": RNG.normal(0, 0.1, 2)}}
NAMES = ("body.dense.kernel", "body.dense.bias", "norm.scale", "head.kernel", "head.bias")
X, Y = RNG.normal(size=(STEPS, 8, 3)), RNG.normal(size=(STEPS, 8, 2))


def loss(p, x, y, tanh):
    hidden = tanh(x @ p["body"]["dense"]["kernel"] + p["body"]["dense"]["bias"]) * p["norm"]["scale"]
    return ((hidden @ p["head"]["kernel"] + p["head"]["bias"] - y) ** 2).mean()


def leaf(tree, name):
    for key in name.split("."):
        tree = tree[key]
    return tree


def run_purelr(optimizer):
    params = jax.tree.map(jnp.asarray, PARAMS)
    state = optimizer.init(params)
    for k in range(STEPS):
        grads = jax.grad(loss)(params, X[k], Y[k], jnp.tanh)
        updates, state = optimizer.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    return params, state


def run_torch(make, groups, *, late=None, scheduler=None):
    """``groups``: [(names, options)], ``late``: (names, options) added after ``UNFREEZE`` steps."""
    with torch_dtype(True):
        tensors = jax.tree.map(lambda a: torch.tensor(a, requires_grad=True), PARAMS)
        optimizer = make([dict(options, params=[leaf(tensors, n) for n in names])
                          for names, options in groups])
        schedule = scheduler(optimizer) if scheduler else None
        for k in range(STEPS):
            if late and k == UNFREEZE:
                optimizer.add_param_group(dict(late[1], params=[leaf(tensors, n) for n in late[0]]))
            for name in NAMES:
                leaf(tensors, name).grad = None
            loss(tensors, torch.tensor(X[k]), torch.tensor(Y[k]), torch.tanh).backward()
            optimizer.step()
            if schedule:
                schedule.step()
    return tensors


def assert_close(params, tensors):
    error = max(relative_error(leaf(params, n), leaf(tensors, n).detach()) for n in NAMES)
    assert error <= OPTIMIZER_RTOL["x64"], error
    return error


def test_groups_with_per_group_schedules_match_torch():
    with jax.enable_x64(True):
        optimizer = param_groups(
            sgd, PARAMS, [{"params": "body"}, {"params": re.compile(r"^head\."), "lr": 0.02,
                                               "weight_decay": 1e-2},
                          {"params": lambda name, x: x.ndim == 1 and name.startswith("norm"),
                           "momentum": 0.5, "name": "norm"}],
            lr=0.1, momentum=0.9, schedules=dict(lr=functools.partial(
                cosine_annealing_lr, T_max=T_MAX, eta_min=ETA_MIN)))
        params, state = run_purelr(optimizer)
        tensors = run_torch(
            lambda g: torch.optim.SGD(g, lr=0.1, momentum=0.9, foreach=False),
            [(NAMES[:2], {}), (NAMES[3:], dict(lr=0.02, weight_decay=1e-2)), (NAMES[2:3], dict(momentum=0.5))],
            scheduler=lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=T_MAX, eta_min=ETA_MIN))
        assert_close(params, tensors)
        in_force = hyperparams_in_force(state)
        assert set(in_force) == {"group0", "group1", "norm"}
        last = STEPS - 1
        for label, base in (("group0", 0.1), ("group1", 0.02), ("norm", 0.1)):
            expected = ETA_MIN + (base - ETA_MIN) * (1 + np.cos(np.pi * last / T_MAX)) / 2
            assert abs(float(in_force[label]["lr"]) - expected) <= 1e-15
        assert float(in_force["norm"]["momentum"]) == 0.5


def test_unfreezing_matches_add_param_group():
    """Head frozen for ``UNFREEZE`` updates, then Adam from a fresh state; norm frozen for good."""
    with jax.enable_x64(True):
        optimizer = param_groups(adam, PARAMS, [
            {"params": "body", "lr": 0.05},
            {"params": "head", "frozen_until": UNFREEZE, "name": "head"},
            {"params": "norm", "frozen": True, "name": "norm"}], lr=0.01, weight_decay=1e-3)
        params, state = run_purelr(optimizer)
        tensors = run_torch(lambda g: torch.optim.Adam(g, lr=0.01, weight_decay=1e-3, foreach=False),
                            [(NAMES[:2], dict(lr=0.05))], late=(NAMES[3:], {}))
        assert_close(params, tensors)
        assert np.array_equal(params["norm"]["scale"], PARAMS["norm"]["scale"])
        assert set(hyperparams_in_force(state)) == {"group0", "head"}
        assert int(state.inner_states["head"].inner_state.count) == STEPS


@pytest.mark.parametrize("groups, message", [
    ([{"params": "body"}, {"params": ["body.dense", "head"]}, {"params": "norm"}],
     "parameter 'body.dense.bias' is in more than one group: 'group0' and 'group1'"),
    ([{"params": "body"}, {"params": "head"}], "parameters in no group: ['norm.scale']"),
    ([{"params": "body"}, {"params": "heads"}, {"params": "norm"}], "groups[1]['params'] = 'heads' matches no parameter"),
    ([{"params": "body"}, {"lr": 0.1}], "groups[1] must be a dict with a 'params' selector"),
    ([{"params": "body"}, {"params": 3}], "a selector must be"),
])
def test_bad_groups(groups, message):
    with pytest.raises((ValueError, TypeError)) as error:
        param_groups(sgd, PARAMS, groups, lr=0.1)
    assert message in str(error.value)
