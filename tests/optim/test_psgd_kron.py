"""Parity of purelr.optim.psgd_kron with heavyball 3.2.1's ``heavyball.PSGDKron`` (its CPU path,
``heavyball.utils.compile_mode = None``), side by side: 100 updates of two param groups (different
numbers each) on a quadratic with a moving target. heavyball's normals (``torch.randn_like`` in
``dampen_grad``) are patched to the same draws purelr is given (``update(..., draws=)``); params,
``exp_avg``, the factors ``Q`` and the running lower bounds are compared after the last update.

Measured (nightly: 56 configurations under x64, 40 in float32): x64 2.2e-12; float32 3.3e-6. The
default test runs 11 per precision (10 random).
"""

import warnings

import heavyball
import heavyball.utils
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from purelr.optim.psgd_kron import precond_update_prob_schedule, psgd_kron
from tests.bad_inputs import assert_purelr_rejects
from tests.optim import torch_reference as ref
from tests.parity import OPTIMIZER_RTOL, relative_error, rounding_floor

heavyball.utils.compile_mode = None  # heavyball's eager path: no torch.compile on the CPU

STEPS = 100
NAN = float("nan")
SHAPES = dict(a=(4, 3), b=(5,), c=(2, 1, 3, 2), d=(3, 5))  # c: heavyball drops its dim of size 1
GROUPS = (("a", "b"), ("c", "d"))
ROUNDING_UNITS = 64  # of each leaf's peak: the gradient c * (param - target) cancels
NUMBERS = ("lr", "beta", "weight_decay", "precond_lr", "lower_bound_beta", "dampening")


def problem(seed=2):
    rng = np.random.default_rng(seed)
    params = {k: rng.normal(0, 1, s) for k, s in SHAPES.items()}
    targets = {k: rng.normal(0, 0.3, (STEPS,) + s) + rng.normal(0, 1, s) for k, s in SHAPES.items()}
    curvature = {k: rng.uniform(0.2, 2.0, s) for k, s in SHAPES.items()}
    normals = {k: rng.normal(0, 1, (STEPS,) + s) for k, s in SHAPES.items()}
    return params, targets, curvature, normals


PARAMS, TARGETS, CURVATURE, NORMALS = problem()


def draw(rng):
    """One group's numbers, float32-exact."""
    numbers = dict(
        lr=ref.loguniform(rng, 1e-3, 3e-2),
        beta=rng.uniform(0.5, 0.99),
        weight_decay=float(rng.choice([0.0, ref.loguniform(rng, 1e-4, 0.1)])),
        precond_lr=ref.loguniform(rng, 0.01, 0.5),
        lower_bound_beta=rng.uniform(0.5, 0.99),
        dampening=float(rng.choice([1e-9, ref.loguniform(rng, 1e-8, 1e-3)])),
    )
    return {k: ref._float32_exact(v) for k, v in numbers.items()}


def configurations(flags: dict, count: int, seed: int):
    rng = np.random.default_rng(seed)
    return [
        dict(flags=flags, groups=[draw(rng) for _ in GROUPS], schedule=bool(rng.random() < 0.5)) for _ in range(count)
    ]


# flags per run: preconditioner_update_probability is the optimizer's; the rest each group's (here alike)
FLAGS = [
    dict(),
    dict(caution=True, cautious_weight_decay=True, warmup_steps=10, precond_init_scale=0.5),
    dict(memory_save_mode="one_diag", momentum_into_precond_update=False, preconditioner_update_probability=0.5),
    dict(max_size_triangular=3, min_ndim_triangular=3, precond_update_power_iterations=4, precond_init_scale_scale=2.0),
    dict(memory_save_mode="smart_one_diag", preconditioner_update_probability=0.25, precond_init_scale_power=0.25),
]
# a probability schedule, as heavyball takes it (its step, 1-based) and as purelr does (count)
PROBABILITY = (lambda n: 0.5 if n <= 40 else 0.2, lambda count: jnp.where(count + 1 <= 40, 0.5, 0.2))
X64_FLAGS = [  # float64 running sums of 0.3 and 0.2
    dict(memory_save_mode="all_diag", preconditioner_update_probability=0.3),
    dict(preconditioner_update_probability=PROBABILITY, caution=True),
]
DEFAULT_FLAGS = [  # the default test's two compiled runs, most options in the second
    dict(),
    dict(
        caution=True,
        cautious_weight_decay=True,
        warmup_steps=10,
        memory_save_mode="one_diag",
        momentum_into_precond_update=False,
        preconditioner_update_probability=0.5,
        precond_init_scale_scale=2.0,
        precond_update_power_iterations=4,
    ),
]
OPTIMIZER_FLAGS = ("preconditioner_update_probability",)


def _split(flags, side: int):
    """The optimizer's flags (a pair: heavyball's and purelr's forms) and the groups'."""
    flags = dict(flags)
    optimizer = {name: flags.pop(name) for name in OPTIMIZER_FLAGS if name in flags}
    optimizer = {name: value[side] if isinstance(value, tuple) else value for name, value in optimizer.items()}
    return optimizer, flags


def run_heavyball(config, x64: bool):
    dtype = torch.float64 if x64 else torch.float32
    optimizer_flags, flags = _split(config["flags"], 0)
    tensors = {k: torch.tensor(v, dtype=dtype) for k, v in PARAMS.items()}
    groups = [
        dict(numbers, params=[tensors[n] for n in names], **flags) for names, numbers in zip(GROUPS, config["groups"])
    ]
    storage = "float64" if x64 else "float32"
    optimizer = heavyball.PSGDKron(groups, storage_dtype=storage, q_dtype=storage, **optimizer_flags)
    factor = np.asarray(ref.LR_FACTOR(np.arange(STEPS + 1)), np.float64)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: float(factor[k]) if config["schedule"] else 1.0)
    targets = {k: torch.tensor(v, dtype=dtype) for k, v in TARGETS.items()}
    curvature = {k: torch.tensor(v, dtype=dtype) for k, v in CURVATURE.items()}
    pending: list = []
    with ref.given_normals(pending, NORMALS), warnings.catch_warnings(), ref.torch_dtype(x64):
        warnings.simplefilter("ignore")  # heavyball warns once that the lr changed between steps
        for k in range(STEPS):
            pending[:] = [(name, k) for names in GROUPS for name in names]
            for name, p in tensors.items():
                p.grad = curvature[name] * (p - targets[name][k])
            optimizer.step()
            scheduler.step()
            assert not pending or optimizer.param_groups[0]["is_preconditioning"] is False, pending
    state = {}
    for name, p in tensors.items():
        (inner,) = [v for v in optimizer.state[p].values() if isinstance(v, dict)]
        found = {}
        for key, value in inner.items():
            for short in ("exp_avg", "Q", "running_lower_bound"):
                if key.removeprefix("exp_avg_").removeprefix("scale_by_psgd_").rsplit("_", 1)[0] == short:
                    found[short] = value
        state[name] = found
    return {k: p.numpy() for k, p in tensors.items()}, state


def _make(flags):
    optimizer_flags, flags = _split(flags, 1)

    def make(numbers, scheduled):
        transforms = {}
        for i, group in enumerate(numbers):
            kwargs = {name: (lambda v: lambda count: v)(group[name]) for name in NUMBERS if name != "lr"}
            kwargs["lr"] = (lambda v: lambda count: v * jnp.where(scheduled, ref.LR_FACTOR(count), 1.0))(group["lr"])
            storage = "float64" if jax.config.jax_enable_x64 else "float32"
            transforms[i] = psgd_kron(**kwargs, **flags, **optimizer_flags, storage_dtype=storage, q_dtype=storage)
        labels = {name: i for i, names in enumerate(GROUPS) for name in names}
        return optax.multi_transform(transforms, labels)

    return make


_COMPILED = {}


def run_purelr(configs):
    """Final params and per-group states of configurations sharing flags (one vmapped run)."""
    flags = configs[0]["flags"]
    key = (tuple(sorted(flags.items())), jax.config.jax_enable_x64)
    if key not in _COMPILED:
        make = _make(flags)

        def run(numbers, scheduled, params, targets, curvature, normals):
            optimizer = make(numbers, scheduled)

            def step(carry, inputs):
                params, state = carry
                target, normal = inputs
                grads = jax.tree.map(lambda p, t, c: c * (p - t), params, target, curvature)
                updates, state = optimizer.update(grads, state, params, draws=normal)
                return (optax.apply_updates(params, updates), state), None

            (params, state), _ = jax.lax.scan(step, (params, optimizer.init(params)), (targets, normals))
            return params, state

        _COMPILED[key] = jax.jit(jax.vmap(run, in_axes=(0, 0, None, None, None, None)))
    numbers = [{name: jnp.asarray([c["groups"][i][name] for c in configs]) for name in NUMBERS} for i in range(2)]
    scheduled = jnp.asarray([c["schedule"] for c in configs])
    inputs = jax.tree.map(jnp.asarray, (PARAMS, TARGETS, CURVATURE, NORMALS))
    params, state = _COMPILED[key](numbers, scheduled, *inputs)
    return [jax.tree.map(lambda x: np.asarray(x[i]), (params, state)) for i in range(len(configs))]


def _factor(stored):
    """heavyball's stored factor (``(shape, upper triangle as a line)`` or a diagonal) as a matrix."""
    shape, values = stored
    values = values.numpy()[0]
    if shape is None:
        return values
    full = np.zeros(shape[1:])
    full[np.triu_indices(shape[-1])] = values
    return full


def compare(params, state, torch_params, torch_state):
    """Largest relative error (floor: ``ROUNDING_UNITS`` of each leaf's peak) and where."""
    precision = "x64" if jax.config.jax_enable_x64 else "f32"
    floor = rounding_floor(OPTIMIZER_RTOL[precision], ROUNDING_UNITS, precision)
    errors = {}
    for i, names in enumerate(GROUPS):
        inner = state.inner_states[i].inner_state
        for name in names:
            expected = torch_state[name]
            errors[f"param {name}"] = relative_error(params[name], torch_params[name], floor=floor)
            errors[f"exp_avg {name}"] = relative_error(inner.exp_avg[name], expected["exp_avg"].numpy(), floor=floor)
            for j, (q, tq) in enumerate(zip(inner.Q[name], expected["Q"], strict=True)):
                errors[f"Q {name}[{j}]"] = relative_error(q, _factor(tq), floor=floor)
            for j, (b, tb) in enumerate(zip(inner.running_lower_bound[name], expected["running_lower_bound"])):
                errors[f"running_lower_bound {name}[{j}]"] = relative_error(b, tb.numpy()[0], floor=floor)
    worst = max(errors, key=errors.get)
    return errors[worst], worst


def check(configs):
    x64 = jax.config.jax_enable_x64
    rtol = OPTIMIZER_RTOL["x64" if x64 else "f32"]
    by_flags = {}
    for config in configs:
        by_flags.setdefault(tuple(sorted(config["flags"].items())), []).append(config)
    worst = 0.0
    for group in by_flags.values():
        for config, (params, state) in zip(group, run_purelr(group)):
            error, where = compare(params, state, *run_heavyball(config, x64))
            assert error <= rtol, f"PSGDKron {config}: {where} off by {error:.3g}"
            worst = max(worst, error)
    return worst


DEFAULTS = dict(lr=1e-3, beta=0.9, weight_decay=0.0, precond_lr=0.1, lower_bound_beta=0.9, dampening=1e-9)


def _configs(flags, per: int, seed: int):
    return [c for i, f in enumerate(flags) for c in configurations(f, per, seed + i)]


def test_matches_heavyball(precision):
    """Five random configurations per set of default flags, and heavyball's defaults in both groups."""
    check(_configs(DEFAULT_FLAGS, 5, seed=400) + [dict(flags={}, groups=[DEFAULTS, DEFAULTS], schedule=False)])


@pytest.mark.nightly
def test_more_configurations_match_heavyball(precision):
    check(_configs(FLAGS + (X64_FLAGS if jax.config.jax_enable_x64 else []), 8, seed=410))


def test_default_probability_schedule_is_heavyballs():
    """heavyball's ``precond_update_prob_schedule()`` (Python floats) at steps 1..5000, jitted."""
    steps = np.arange(1, 5001)
    expected = [heavyball.utils.precond_update_prob_schedule()(int(n)) for n in steps]
    with jax.enable_x64(True):
        actual = jax.jit(jax.vmap(precond_update_prob_schedule))(steps)
    np.testing.assert_allclose(np.asarray(actual), expected, rtol=1e-12, atol=0)


def test_draws_from_its_key_without_draws():
    """Without ``draws`` the normals come from ``state.key``: the run is reproducible and moves."""
    params = {k: jnp.asarray(PARAMS[k]) for k in ("a", "b")}
    optimizer = psgd_kron(1e-2)
    state = optimizer.init(params)
    update = jax.jit(optimizer.update)
    updates, new_state = update(params, state, params)
    again, _ = update(params, state, params)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(updates), jax.tree.leaves(again)))
    assert not np.array_equal(new_state.key, state.key)
    assert all(np.all(np.isfinite(u)) and np.any(u != 0) for u in jax.tree.leaves(updates))


@pytest.mark.parametrize(
    "kwargs, needles",
    [
        (dict(split=True), ("split", "True")),
        (dict(merge_dims=True), ("merge_dims", "True")),
        (dict(mars=True), ("mars", "True")),
        (dict(precond_grad_accum=True), ("precond_grad_accum", "True")),
        (dict(delayed=True), ("delayed", "True")),
        (dict(cached=True), ("cached", "True")),
        (dict(hessian_approx=True), ("hessian_approx", "True")),
        (dict(exp_avg_input=False), ("exp_avg_input", "False")),
        (dict(memory_save_mode="one_triu"), ("memory_save_mode", "one_triu")),
        (dict(max_size_triangular=-1), ("max_size_triangular", "-1")),
        (dict(precond_update_power_iterations=1.5), ("precond_update_power_iterations", "1.5")),
        (dict(warmup_steps=-1), ("warmup_steps", "-1")),
        (dict(q_dtype="int8"), ("q_dtype", "int8")),
        (dict(lr=-1.0), ("lr", "-1.0")),
        (dict(betas=(1.0, 0.95)), ("betas[0]", "1.0")),
        (dict(beta=1.0), ("beta", "1.0")),
        (dict(precond_lr=NAN), ("precond_lr", "nan")),
        (dict(lower_bound_beta=1.5), ("lower_bound_beta", "1.5")),
        (dict(precond_init_scale=-1.0), ("precond_init_scale", "-1.0")),
        (dict(preconditioner_update_probability=-0.5), ("preconditioner_update_probability", "-0.5")),
    ],
)
def test_rejects(kwargs, needles):
    assert_purelr_rejects(lambda: psgd_kron(**kwargs), ValueError, *needles)


@pytest.mark.parametrize("shape", [(), (1,), (1, 1)])
def test_rejects_params_of_one_element(shape):
    assert_purelr_rejects(lambda: psgd_kron().init({"w": jnp.ones(shape)}), ValueError, "one element", "psgd_kron")
