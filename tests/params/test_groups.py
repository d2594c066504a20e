"""Torch-style param groups, per-group schedules and unfreezing against torch.optim, step by step."""

import contextlib
import functools
import io
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from purelr.optim import adam, clip_grad_norm, clip_grad_value, sgd, skip_nonfinite
from purelr.params.groups import hyperparams_in_force, param_groups
from purelr.schedules.torch import cosine_annealing_lr
from purelr.training.accumulate import accumulate
from tests.optim.torch_reference import torch_dtype
from tests.parity import OPTIMIZER_RTOL, relative_error

STEPS, UNFREEZE, T_MAX, ETA_MIN = 30, 12, 20, 1e-3
RNG = np.random.default_rng(0)
PARAMS = {
    "body": {"dense": {"kernel": RNG.normal(0, 0.7, (3, 5)), "bias": RNG.normal(0, 0.1, 5)}},
    "norm": {"scale": RNG.normal(1, 0.1, 5)},
    "head": {"kernel": RNG.normal(0, 0.5, (5, 2)), "bias": RNG.normal(0, 0.1, 2)},
}
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
        optimizer = make([dict(options, params=[leaf(tensors, n) for n in names]) for names, options in groups])
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
            sgd,
            PARAMS,
            [
                {"params": "body"},
                {"params": re.compile(r"^head\."), "lr": 0.02, "weight_decay": 1e-2},
                {"params": lambda name, x: x.ndim == 1 and name.startswith("norm"), "momentum": 0.5, "name": "norm"},
            ],
            lr=0.1,
            momentum=0.9,
            schedules=dict(lr=functools.partial(cosine_annealing_lr, T_max=T_MAX, eta_min=ETA_MIN)),
        )
        params, state = run_purelr(optimizer)
        tensors = run_torch(
            lambda g: torch.optim.SGD(g, lr=0.1, momentum=0.9, foreach=False),
            [(NAMES[:2], {}), (NAMES[3:], dict(lr=0.02, weight_decay=1e-2)), (NAMES[2:3], dict(momentum=0.5))],
            scheduler=lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=T_MAX, eta_min=ETA_MIN),
        )
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
        optimizer = param_groups(
            adam,
            PARAMS,
            [
                {"params": "body", "lr": 0.05},
                {"params": "head", "frozen_until": UNFREEZE, "name": "head"},
                {"params": "norm", "frozen": True, "name": "norm"},
            ],
            lr=0.01,
            weight_decay=1e-3,
        )
        params, state = run_purelr(optimizer)
        tensors = run_torch(
            lambda g: torch.optim.Adam(g, lr=0.01, weight_decay=1e-3, foreach=False),
            [(NAMES[:2], dict(lr=0.05))],
            late=(NAMES[3:], {}),
        )
        assert_close(params, tensors)
        assert np.array_equal(params["norm"]["scale"], PARAMS["norm"]["scale"])
        assert set(hyperparams_in_force(state)) == {"group0", "head"}
        assert int(state.inner_states["head"].inner_state.count) == STEPS


@pytest.mark.parametrize(
    "groups, message",
    [
        (
            [{"params": "body"}, {"params": ["body.dense", "head"]}, {"params": "norm"}],
            "parameter 'body.dense.bias' is in more than one group: 'group0' and 'group1'",
        ),
        ([{"params": "body"}, {"params": "head"}], "parameters in no group: ['norm.scale']"),
        (
            [{"params": "body"}, {"params": "heads"}, {"params": "norm"}],
            "groups[1]['params'] = 'heads' matches no parameter",
        ),
        ([{"params": "body"}, {"lr": 0.1}], "groups[1] must be a dict with a 'params' selector"),
        ([{"params": "body"}, {"params": 3}], "a selector must be"),
    ],
)
def test_bad_groups(groups, message):
    with pytest.raises((ValueError, TypeError)) as error:
        param_groups(sgd, PARAMS, groups, lr=0.1)
    assert message in str(error.value)


def decaying(base):
    """An lr schedule whose value tells which update read it: ``base / (1 + count)``."""
    return lambda count: base / (1 + count)


def two_groups(inner_a, inner_b):
    return optax.multi_transform({"body": inner_a, "head": inner_b}, {"w": "body", "b": {"x": "head", "y": "body"}})


SHAPES = {  # name: (transformation, {label: (lr base, updates the optimizer made after 4 iterations)})
    "alone": (lambda: sgd(decaying(0.1), momentum=0.9), {"default": (0.1, 4)}),
    "readme chain": (lambda: optax.chain(clip_grad_norm(35), sgd(decaying(0.1), momentum=0.9)), {"default": (0.1, 4)}),
    "skip_nonfinite chain": (
        lambda: skip_nonfinite(optax.chain(clip_grad_value(1.0), adam(decaying(0.2)))),
        {"default": (0.2, 4)},
    ),
    "accumulate": (lambda: accumulate(optax.chain(clip_grad_norm(1.0), sgd(decaying(0.1))), 2), {"default": (0.1, 2)}),
    "masked": (
        lambda: optax.masked(sgd(decaying(0.3)), {"w": True, "b": {"x": False, "y": True}}),
        {"default": (0.3, 4)},
    ),
    "MultiSteps": (lambda: optax.MultiSteps(sgd(decaying(0.1)), 4), {"default": (0.1, 1)}),
    "inject_hyperparams": (
        lambda: optax.inject_hyperparams(
            lambda max_norm: optax.chain(optax.clip_by_global_norm(max_norm), adam(decaying(0.1)))
        )(max_norm=1.0),
        {"default": (0.1, 4)},
    ),
    "multi_transform": (
        lambda: two_groups(sgd(decaying(0.1)), adam(decaying(0.01))),
        {"body": (0.1, 4), "head": (0.01, 4)},
    ),
    "multi_transform, frozen group": (lambda: two_groups(optax.set_to_zero(), sgd(decaying(0.1))), {"head": (0.1, 4)}),
    "chain of multi_transform": (
        lambda: optax.chain(
            clip_grad_norm(1.0),
            two_groups(
                accumulate(sgd(decaying(0.1)), 2),
                optax.masked(adam(decaying(0.01)), lambda p: jax.tree.map(lambda _: True, p)),
            ),
        ),
        {"body": (0.1, 2), "head": (0.01, 4)},
    ),
    "nested multi_transform": (
        lambda: optax.multi_transform(
            {
                "body": sgd(decaying(0.1)),
                "head": optax.multi_transform(
                    {"x": adam(decaying(0.01)), "rest": sgd(decaying(0.5))}, {"w": "rest", "b": {"x": "x", "y": "rest"}}
                ),
            },
            {"w": "body", "b": {"x": "head", "y": "head"}},
        ),
        {"body": (0.1, 4), "head/x": (0.01, 4), "head/rest": (0.5, 4)},
    ),
}


@pytest.mark.parametrize("shape", SHAPES)
def test_hyperparams_in_force_finds_every_optimizer(shape):
    """The lr each group's optimizer read at its last update, inside every wrapper, in a dict too."""
    make, expected = SHAPES[shape]
    transform = make()
    params = {"w": jnp.ones((2, 3)), "b": {"x": jnp.ones(3), "y": jnp.ones(2)}}
    state = transform.init(params)
    update = jax.jit(transform.update)
    for k in range(4):
        grads = jax.tree.map(lambda p: jnp.full_like(p, 0.1 * (k + 1)), params)
        _, state = update(grads, state, params)
    for tree in (state, {"opt_state": state, "step": 4}):
        in_force = hyperparams_in_force(tree)
        assert set(in_force) == set(expected)
        for label, (base, updates) in expected.items():
            assert float(in_force[label]["lr"]) == pytest.approx(base / updates, rel=1e-6), label


@pytest.mark.parametrize(
    "transform, message",
    [
        (
            optax.sgd(0.1),
            "no purelr optimizer state (a NamedTuple with count and hyperparams from purelr.optim) in this tuple",
        ),
        (optax.set_to_zero(), "no purelr optimizer state"),
        (optax.chain(sgd(0.1), adam(0.1)), "two purelr optimizer states under the label 'default'"),
    ],
)
def test_hyperparams_in_force_without_one_optimizer_per_group(transform, message):
    with pytest.raises(ValueError) as error:
        hyperparams_in_force(transform.init({"w": jnp.ones(2)}))
    assert message in str(error.value)


def test_readme_training_loop_runs():
    """The README's training loop, extracted and run as written (its prints checked)."""
    readme = (pathlib.Path(__file__).parents[2] / "README.md").read_text()
    section = readme[readme.index("### In a training loop") :]
    code = section[section.index("```python\n") + len("```python\n") : section.index("\n```\n")]
    assert "hyperparams_in_force(opt_state)" in code and "donate_argnums" in code
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        exec(compile(code, "README.md", "exec"), {})
    lines = output.getvalue().splitlines()
    assert [line.split(":")[0] for line in lines] == [f"iteration {k}" for k in (0, 300, 600, 900, 1199)]
    assert "'default': '2.00e-02', 'lr_mult=0.1': '2.00e-03', 'lr_mult=2.0,decay_mult=0.0': '4.00e-02'" in lines[2]
    assert "'default': '2.00e-04'" in lines[-1]
    losses = [float(line.split("loss ")[1].split(",")[0]) for line in lines]
    assert losses[-1] < losses[0] / 4
