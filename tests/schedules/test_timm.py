"""Parity of purelr.schedules.timm with timm 1.0.31's schedulers and its train loop, side by side.

Every scheduler is built on a torch SGD optimizer and stepped as timm's train.py steps it; the lr
in force is recorded and compared with purelr (1e-12 relative under x64, 1e-6 in float32).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from scipy import stats
from timm.scheduler import (
    CosineLRScheduler,
    MultiStepLRScheduler,
    PolyLRScheduler,
    StepLRScheduler,
    TanhLRScheduler,
    WSDLRScheduler,
)
from timm.scheduler.scheduler_factory import create_scheduler_v2

from purelr.references.timm import train_loop as timm_train_loop
from purelr.schedules import timm as ptimm
from purelr.schedules.timm_noise import lr_noise
from purelr.schedules.timm_steps import floor_division
from tests.parity import SCHEDULE_RTOL, assert_schedule_matches, jitted, rounding_floor

CLASSES = {
    "step": (StepLRScheduler, ptimm.step),
    "multistep": (MultiStepLRScheduler, ptimm.multistep),
    "cosine": (CosineLRScheduler, ptimm.cosine),
    "tanh": (TanhLRScheduler, ptimm.tanh),
    "poly": (PolyLRScheduler, ptimm.poly),
    "wsd": (WSDLRScheduler, ptimm.wsd),
}
RANDOM_CASES = {"x64": (70, 35), "f32": (20, 10)}  # (classes, create_scheduler_v2 loops) per run
HUGE = 2**31 - 2
# Cycles and milestones of the random draws end by step ~200 unless cycle_mul grows them: run past them.
STEPS = 400


def _optimizer(base_lr):
    return torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base_lr)


def timm_curve(name, base_lr, steps, **kwargs):
    """``lr`` after ``scheduler.step(t)`` for t in ``range(steps)``, cut where timm's math.log fails."""
    optimizer = _optimizer(base_lr)
    scheduler = CLASSES[name][0](optimizer, **kwargs)
    values = []
    for t in range(steps):
        try:
            scheduler.step(t)
        except ValueError:  # cycle_mul < 1 past the sum of all cycles: math domain error
            break
        values.append(optimizer.param_groups[0]["lr"])
    return np.asarray(values)


def _purelr(schedule, steps):
    return np.asarray(jax.jit(schedule)(jnp.arange(steps)))


def timm_floor(precision):
    """8 float64 units of the peak (timm forms ``1 - t / T`` and ``1 - tanh`` by cancellation:
    measured 0.001 units at 2**31 - 1 steps); in float32, 2 float32 units of the peak (12% of it):
    float32 twins raise counts to ``k_decay`` and add warmup slopes at the peak's scale (measured
    0.4 units, a WSD decay at step 23)."""
    return rounding_floor(SCHEDULE_RTOL[precision], 8 if precision == "x64" else 2, reference=precision)


def assert_paths_match(schedule, expected, precision, context=""):
    """``jax.jit(schedule)`` on the step array and ``jax.jit(jax.vmap(schedule))`` against timm."""
    steps = len(expected)
    return max(
        assert_schedule_matches(values, expected, precision, context=f"{context} [{path}]", floor=timm_floor(precision))
        for path, values in (("jit", _purelr(schedule, steps)), ("jit(vmap)", jitted(schedule, np.arange(steps))))
    )


# --- random configurations -------------------------------------------------------------------


def _warmup(rng, prefix=True):
    args = {"warmup_t": int(rng.choice([0, rng.integers(1, 15)])), "warmup_lr_init": float(rng.uniform(0, 1e-3))}
    if prefix:
        args["warmup_prefix"] = bool(rng.integers(2))
    return args


def _cycle_args(rng):
    return {
        "t_initial": int(rng.integers(1, 60)),
        "lr_min": float(rng.choice([0.0, rng.uniform(0, 1e-4)])),
        "cycle_mul": float(rng.choice([1.0, 2.0, 0.5, rng.uniform(0.3, 3.0)])),
        "cycle_decay": float(rng.uniform(0.1, 1.0)),
        "cycle_limit": int(rng.integers(0, 6)),
    }


def random_class_config(rng):
    name = str(rng.choice(list(CLASSES)))
    if name == "step":
        decay_t = rng.choice(
            [int(rng.integers(1, 30)), 2.4, round(float(rng.uniform(0.3, 20)), int(rng.integers(1, 4)))]
        )
        args = {"decay_t": decay_t, "decay_rate": float(rng.uniform(0.1, 1.0)), **_warmup(rng)}
    elif name == "multistep":
        milestones = sorted(int(m) for m in rng.integers(0, 120, size=int(rng.integers(0, 5))))
        args = {"decay_t": milestones, "decay_rate": float(rng.uniform(0.1, 1.0)), **_warmup(rng)}
    elif name == "wsd":
        t_initial = int(rng.integers(1, 150))
        stable_fn = str(rng.choice(["constant", "rsqrt", "power"]))
        args = {
            "t_initial": t_initial,
            "decay_t": int(rng.integers(1, t_initial + 1)),
            "lr_min": float(rng.choice([0.0, rng.uniform(0, 1e-3)])),
            "stable_fn": stable_fn,
            "stable_timescale": float(rng.uniform(1, 40)) if stable_fn != "constant" else None,
            "stable_power": float(rng.uniform(0.2, 2)),
            "decay_fn": str(rng.choice(["linear", "1-sqrt", "cosine", "power", "exp"])),
            "decay_power": float(rng.uniform(0.2, 3)),
            "decay_ratio": float(rng.uniform(0.01, 0.9)),
            **_warmup(rng, prefix=False),
        }
    else:
        args = {**_cycle_args(rng), **_warmup(rng)}
        if name in ("cosine", "poly"):
            args["k_decay"] = float(rng.choice([1.0, rng.uniform(0.5, 2.0)]))
        if name == "poly":
            args["power"] = float(rng.uniform(0.1, 3.0))
        if name == "tanh":
            lb, ub = sorted(rng.uniform(-10, 6, size=2))
            args.update(lb=float(lb), ub=float(ub) + 0.1)
    return name, float(10 ** rng.uniform(-4, 0)), args


def random_factory_config(rng):
    sched = str(rng.choice(["cosine", "tanh", "step", "multistep", "poly", "wsd", "rsqrt", "constant", "none"]))
    num_epochs = int(rng.integers(2, 25))
    warmup_epochs = int(rng.choice([0, rng.integers(1, 4)]))
    args = {
        "sched": sched,
        "num_epochs": num_epochs,
        "decay_milestones": sorted(int(m) for m in rng.integers(0, 30, size=int(rng.integers(0, 4)))),
        "decay_rate": float(rng.uniform(0.1, 1.0)),
        "min_lr": float(rng.choice([0.0, rng.uniform(0, 1e-4)])),
        "warmup_lr": float(rng.uniform(0, 1e-3)),
        "warmup_epochs": warmup_epochs,
        "warmup_prefix": bool(rng.integers(2)),
        "cycle_mul": float(rng.choice([1.0, rng.uniform(0.5, 2.5)])),
        "cycle_decay": float(rng.choice([0.1, rng.uniform(0.1, 1.0)])),
        "cycle_limit": int(rng.integers(1, 4)),
        "k_decay": float(rng.choice([1.0, rng.uniform(0.5, 2.0)])),
        "step_on_epochs": bool(rng.integers(2)),
    }
    if sched == "step":
        args["decay_epochs"] = float(rng.choice([2.4, rng.integers(1, 10)]))
    if sched in ("wsd", "rsqrt"):
        room = num_epochs if args["warmup_prefix"] else num_epochs - warmup_epochs
        if room < 1:
            args["warmup_epochs"] = warmup_epochs = 0
            room = num_epochs
        args["decay_epochs"] = float(rng.choice([0.2, rng.uniform(0.05, 0.95), rng.integers(1, room + 1)]))
        args["decay_fn"] = rng.choice([None, "linear", "cosine", "exp"])
        if sched == "rsqrt" and warmup_epochs == 0:
            args["stable_timescale"] = float(rng.uniform(0.5, 5))
    return float(10 ** rng.uniform(-4, 0)), int(rng.integers(1, 8)), args


def _clean_wsd_decay(base_lr, updates_per_epoch, args):
    """Skips (returns False) a wsd draw whose rounded decay length timm rejects."""
    try:
        create_scheduler_v2(_optimizer(base_lr), updates_per_epoch=updates_per_epoch, **args)
    except ValueError:
        return False
    return True


def test_random_classes(precision):
    rng = np.random.default_rng({"x64": 20240531, "f32": 5}[precision])
    worst = 0.0
    for case in range(RANDOM_CASES[precision][0]):
        name, base_lr, args = random_class_config(rng)
        expected = timm_curve(name, base_lr, STEPS, **args)
        error = assert_paths_match(
            CLASSES[name][1](base_lr, **args), expected, precision, f"case {case}: {name} {args}"
        )
        worst = max(worst, error)
    print(f"timm classes {precision}: max relative error {worst:.3g}")


def test_random_factory_train_loop(precision):
    rng = np.random.default_rng({"x64": 7, "f32": 8}[precision])
    worst, checked = 0.0, 0
    while checked < RANDOM_CASES[precision][1]:
        base_lr, updates_per_epoch, args = random_factory_config(rng)
        if not _clean_wsd_decay(base_lr, updates_per_epoch, args):
            continue
        epochs = args["num_epochs"] + 3
        expected = timm_train_loop(base_lr, epochs, updates_per_epoch, **args)
        schedule = ptimm.create_scheduler_v2(base_lr, **args, updates_per_epoch=updates_per_epoch)
        context = f"factory case {checked}: {args} updates_per_epoch={updates_per_epoch}"
        worst = max(worst, assert_paths_match(schedule, expected, precision, context))
        checked += 1
    print(f"timm create_scheduler_v2 {precision}: max relative error {worst:.3g}")


# --- hand-picked edges -----------------------------------------------------------------------

EDGES = [
    ("multistep", {"decay_t": [1, 5, 5, 9], "decay_rate": 0.5}),  # milestone m applies at t = m - 1
    ("multistep", {"decay_t": [0, 3], "decay_rate": 0.5, "warmup_t": 4, "warmup_prefix": True}),
    ("multistep", {"decay_t": [2, 6], "decay_rate": 0.5, "warmup_t": 4, "warmup_prefix": False}),
    ("step", {"decay_t": 2.4, "decay_rate": 0.97, "warmup_t": 3, "warmup_lr_init": 1e-6}),
    ("step", {"decay_t": 1, "decay_rate": 0.5}),
    ("cosine", {"t_initial": 10, "warmup_t": 10, "warmup_lr_init": 1e-4}),
    ("cosine", {"t_initial": 10, "cycle_limit": 4, "cycle_decay": 0.5, "warmup_t": 3, "warmup_prefix": True}),
    ("cosine", {"t_initial": 7, "cycle_mul": 2.0, "cycle_limit": 5, "cycle_decay": 0.8, "lr_min": 1e-5}),
    ("cosine", {"t_initial": 3, "cycle_mul": 1.5, "cycle_limit": 30, "k_decay": 2.0}),
    ("cosine", {"t_initial": 100, "cycle_mul": 0.9, "cycle_limit": 1000}),
    ("cosine", {"t_initial": 1, "cycle_limit": 0}),
    ("tanh", {"t_initial": 20, "warmup_t": 5, "warmup_lr_init": 1e-3}),  # warms towards _get_lr(5)
    ("tanh", {"t_initial": 20, "warmup_t": 25, "warmup_lr_init": 1e-3}),  # target past the cycle: lr_min
    ("tanh", {"t_initial": 10, "cycle_mul": 3.0, "cycle_limit": 3, "warmup_t": 4}),
    ("poly", {"t_initial": 12, "power": 2.0, "cycle_limit": 3, "cycle_decay": 0.5, "k_decay": 0.7}),
    ("wsd", {"t_initial": 20, "decay_t": 20, "warmup_t": 4}),
    ("wsd", {"t_initial": 20, "decay_t": 1, "stable_fn": "rsqrt", "warmup_t": 4, "lr_min": 0.05}),
]


@pytest.mark.parametrize("name,args", EDGES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(EDGES)])
def test_edges(precision, name, args):
    expected = timm_curve(name, 0.1, 150, **args)
    assert_paths_match(CLASSES[name][1](0.1, **args), expected, precision, f"{name} {args}")


def test_cycle_mul_below_one_past_timm_domain_holds_lr_min(precision):
    args = {"t_initial": 10, "cycle_mul": 0.5, "cycle_limit": 100, "lr_min": 1e-4}
    values = _purelr(ptimm.cosine(0.1, **args), 40)
    assert len(timm_curve("cosine", 0.1, 40, **args)) == 20  # timm's math.log fails at t = 20
    np.testing.assert_allclose(values[20:], 1e-4, rtol=1e-6)


def _timm_lr(name, t, **kwargs):
    return CLASSES[name][0](_optimizer(0.1), **kwargs)._get_lr(t)[0]


HUGE_CASES = [
    ("multistep", {"decay_t": [HUGE - 5, HUGE, HUGE + 1], "decay_rate": 0.5}),
    ("step", {"decay_t": 2**30, "decay_rate": 0.5, "warmup_t": 7}),
    ("cosine", {"t_initial": 2**31 - 1, "lr_min": 1e-3}),
    ("cosine", {"t_initial": 1000, "cycle_limit": 10**9, "cycle_decay": 1.0}),
    ("cosine", {"t_initial": 5, "cycle_mul": 1.5, "cycle_limit": 10**6}),
    ("tanh", {"t_initial": 3**19, "cycle_limit": 5}),
    ("poly", {"t_initial": 2**31 - 1, "power": 1.0}),
    ("wsd", {"t_initial": 2**31 - 1, "decay_t": 2**30, "decay_fn": "linear"}),
]


@pytest.mark.parametrize("name,args", HUGE_CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(HUGE_CASES)])
def test_huge_steps_against_python_arithmetic(precision, name, args):
    steps = [0, 1, 2**24 + 1, 2**30 + 3, HUGE - 6, HUGE - 5, HUGE - 1, HUGE, HUGE + 1]
    expected = [_timm_lr(name, t, **args) for t in steps]
    schedule = CLASSES[name][1](0.1, **args)
    floor = timm_floor(precision)
    assert_schedule_matches(
        np.asarray(schedule(jnp.asarray(steps))), expected, precision, context=f"{name} {args}", floor=floor
    )
    assert_schedule_matches(jitted(schedule, steps), expected, precision, context=f"{name} {args} jitted", floor=floor)


@pytest.mark.parametrize("divisor", [2.4, 1.8, 0.3, 1.5, 7.25, 1e-3, 123.456, 3.0, 2.2, 3e9])
def test_float_decay_t_is_python_floor_division(divisor):
    rng = np.random.default_rng(3)
    steps = np.concatenate([np.arange(200), rng.integers(0, 2**31, size=2000), [2**31 - 1, 2**31 - 2]])
    with jax.enable_x64(True):
        actual = np.asarray(floor_division("decay_t", divisor)(jnp.asarray(steps)))
    np.testing.assert_array_equal(actual, [int(t) // divisor for t in steps])


def test_jit_vmap_equals_per_step(precision):
    rng = np.random.default_rng(11)
    schedules = [
        CLASSES[name][1](base_lr, **args) for name, base_lr, args in (random_class_config(rng) for _ in range(6))
    ]
    schedules.append(ptimm.cosine(0.1, 30, noise_range_t=10, cycle_mul=1.7, cycle_limit=4))
    schedules.append(
        ptimm.create_scheduler_v2(
            0.1,
            sched="step",
            decay_epochs=2.4,
            noise=[0.2, 0.8],
            warmup_epochs=2,
            step_on_epochs=False,
            updates_per_epoch=3,
        )
    )
    for schedule in schedules:
        batched = np.asarray(jax.jit(jax.vmap(schedule))(jnp.arange(90)))
        per_step = jax.jit(schedule)
        single = np.asarray([per_step(t) for t in range(90)])
        assert single.dtype == (np.float64 if precision == "x64" else np.float32)
        assert_schedule_matches(batched, single, precision)


# --- noise -----------------------------------------------------------------------------------


@pytest.mark.parametrize("noise_range_t", [12, 12.5, (5, 40), (5.5, 40.2), [0, 3], -1.0])
def test_noise_is_applied_where_timm_applies_it(precision, noise_range_t):
    args = {"t_initial": 30, "cycle_limit": 3, "noise_range_t": noise_range_t, "noise_std": 0.4, "noise_pct": 0.3}
    clean_args = {k: v for k, v in args.items() if not k.startswith("noise")}
    timm_noisy = timm_curve("cosine", 0.1, 100, **args) != timm_curve("cosine", 0.1, 100, **clean_args)
    noisy = _purelr(ptimm.cosine(0.1, **args), 100)
    clean = _purelr(ptimm.cosine(0.1, **clean_args), 100)
    np.testing.assert_array_equal(noisy != clean, timm_noisy)
    relative = noisy[timm_noisy] / clean[timm_noisy] - 1
    assert np.all(np.abs(relative) < 0.3 + 1e-6)


@pytest.mark.parametrize("noise_pct,noise_std", [(0.67, 1.0), (0.3, 0.2), (0.1, 2.0)])
def test_noise_support_and_distribution_match_timm(noise_pct, noise_std):
    steps = np.arange(3000)
    scheduler = CosineLRScheduler(_optimizer(0.1), t_initial=10, noise_pct=noise_pct, noise_std=noise_std, noise_seed=5)
    theirs = np.asarray([scheduler._calculate_noise(int(t)) for t in steps])
    with jax.enable_x64(True):
        ours = np.asarray(lr_noise(jnp.asarray(steps), noise_pct, noise_std, 5))
    assert np.all(np.abs(ours) < noise_pct) and np.all(np.abs(theirs) < noise_pct)
    assert stats.ks_2samp(ours, theirs).pvalue > 1e-3
    assert abs(np.std(ours) - np.std(theirs)) < 0.05 * noise_pct


def test_noise_is_seeded_by_seed_plus_step_like_timm(precision):
    steps = jnp.arange(1, 50)
    np.testing.assert_array_equal(lr_noise(steps, 0.67, 1.0, 42), lr_noise(steps - 1, 0.67, 1.0, 43))
    assert not np.array_equal(lr_noise(steps, 0.67, 1.0, 42), lr_noise(steps, 0.67, 1.0, 43))
    with jax.enable_x64(True):
        key = jax.random.PRNGKey(42 + 7)
        expected = jax.random.truncated_normal(key, -0.67, 0.67, dtype=jnp.float64)
        assert float(lr_noise(7, 0.67, 1.0, 42)) == float(expected)


def test_noise_zero_std_is_no_noise(precision):
    args = {"t_initial": 30, "noise_range_t": 0, "noise_std": 0.0}
    assert_paths_match(ptimm.cosine(0.1, **args), timm_curve("cosine", 0.1, 40, **args), precision)


# --- bad input -------------------------------------------------------------------------------

BAD = [
    (
        ptimm.create_scheduler_v2,
        {"sched": "plateau", "updates_per_epoch": 1},
        r"sched must be one of .*'cosine'.*'plateau'",
    ),
    (ptimm.create_scheduler_v2, {"sched": "cosine"}, r"updates_per_epoch"),
    (ptimm.create_scheduler_v2, {"updates_per_epoch": 0}, r"updates_per_epoch must be positive, got 0"),
    (ptimm.create_scheduler_v2, {"sched": "wsd", "decay_epochs": 400, "updates_per_epoch": 1}, r"decay_epochs"),
    (ptimm.create_scheduler_v2, {"noise": [0.1, 0.2, 0.3], "updates_per_epoch": 1}, r"noise must be"),
    (ptimm.cosine, {"t_initial": 0}, r"t_initial must be positive, got 0"),
    (ptimm.cosine, {"t_initial": 10, "cycle_mul": 0.0}, r"cycle_mul must be > 0, got 0.0"),
    (ptimm.cosine, {"t_initial": 10, "cycle_mul": -1.0}, r"cycle_mul must be > 0, got -1.0"),
    (ptimm.cosine, {"t_initial": 10, "lr_min": -1e-3}, r"lr_min must be >= 0, got -0.001"),
    (ptimm.cosine, {"t_initial": 10, "k_decay": 0.0}, r"k_decay must be > 0"),
    (ptimm.cosine, {"t_initial": 10, "warmup_t": -1}, r"warmup_t must be >= 0, got -1"),
    (ptimm.cosine, {"t_initial": 10, "noise_range_t": 1, "noise_pct": 0.0}, r"noise_pct must be > 0, got 0.0"),
    (ptimm.cosine, {"t_initial": 10, "noise_range_t": (1, 2, 3)}, r"noise_range_t must be"),
    (ptimm.cosine, {"t_initial": 10, "noise_seed": 1.5}, r"noise_seed must be an integer, got 1.5"),
    (ptimm.cosine, {"t_initial": 10, "cycle_limit": -1}, r"cycle_limit must be >= 0, got -1"),
    (ptimm.tanh, {"t_initial": 10, "lb": 3.0, "ub": 3.0}, r"lb must be < ub, got lb=3.0, ub=3.0"),
    (ptimm.step, {"decay_t": 0}, r"decay_t must be > 0, got 0"),
    (ptimm.step, {"decay_t": math.pi}, r"decay_t=3.14159"),
    (ptimm.multistep, {"decay_t": [5, 3]}, r"decay_t must be increasing, got \[5, 3\]"),
    (ptimm.multistep, {"decay_t": [1.5]}, r"decay_t\[0\] must be an integer, got 1.5"),
    (ptimm.poly, {"t_initial": 10, "power": -1.0}, r"power must be >= 0, got -1.0"),
    (ptimm.wsd, {"t_initial": 10, "decay_t": 11}, r"decay_t must be in \(0, t_initial=10\], got 11"),
    (ptimm.wsd, {"t_initial": 10, "decay_t": 2, "stable_fn": "rsqrt"}, r"stable_timescale > 0 .* got 0"),
    (ptimm.wsd, {"t_initial": 10, "decay_t": 2, "stable_fn": "exp"}, r"stable_fn must be one of"),
    (ptimm.wsd, {"t_initial": 10, "decay_t": 2, "decay_fn": "sqrt"}, r"decay_fn must be one of"),
    (ptimm.wsd, {"t_initial": 10, "decay_t": 2, "decay_ratio": 1.0}, r"decay_ratio must be in \(0.0, 1.0\), got 1.0"),
]


@pytest.mark.parametrize("build,kwargs,message", BAD, ids=[f"{b.__name__}-{i}" for i, (b, _, _) in enumerate(BAD)])
def test_bad_input_is_named_at_build_time(build, kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        build(0.1, **kwargs)


def test_negative_base_lr_is_rejected():
    for build, kwargs in [
        (ptimm.step, {"decay_t": 1}),
        (ptimm.cosine, {"t_initial": 3}),
        (ptimm.create_scheduler_v2, {"updates_per_epoch": 1}),
    ]:
        with pytest.raises(ValueError, match=r"base_lr must be >= 0, got -0.1"):
            build(-0.1, **kwargs)


def test_first_update_uses_the_constructor_value_not_get_lr_zero(precision):
    # multistep with a milestone at 1 decays at t = 0, but timm's loop never calls step(0)
    args = {"sched": "multistep", "decay_milestones": [1, 3], "decay_rate": 0.5, "num_epochs": 5}
    expected = timm_train_loop(0.1, 5, 2, **args)
    assert expected[0] == expected[1] == 0.1 and expected[2] == 0.05 and expected[4] == 0.05 * 0.5
    assert_paths_match(ptimm.create_scheduler_v2(0.1, **args, updates_per_epoch=2), expected[:10], precision)
    assert math.isclose(float(ptimm.multistep(0.1, [1, 3], 0.5)(0)), 0.05, rel_tol=1e-6)
