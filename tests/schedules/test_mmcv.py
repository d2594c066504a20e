"""purelr.schedules.mmcv against MMCV 1.7.2's own LrUpdaterHook / MomentumUpdaterHook.

The hooks are driven by `tests/mmcv_runner.py` exactly as EpochBasedRunner / IterBasedRunner call
them; every iteration's lr and momentum is compared with purelr's curve, evaluated in one call.
"""

import copy
import functools
import subprocess
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purelr.schedules.mmcv import lr_config, momentum_config
from tests.parity import FLOOR, SCHEDULE_RTOL, assert_schedule_matches, jitted, rounding_floor

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # mmcv's "MMCV will release v2.0.0" notice
    from tests import mmcv_runner

MAX_STEP = 2**31 - 1
PAD = 1024  # every random run is shorter: one padded length keeps JAX's op cache warm
LR_POLICIES = [
    "Fixed",
    "Step",
    "Exp",
    "Poly",
    "Inv",
    "CosineAnnealing",
    "FlatCosineAnnealing",
    "CosineRestart",
    "Cyclic",
    "OneCycle",
    "LinearAnnealing",
]
MOMENTUM_POLICIES = ["Step", "CosineAnnealing", "LinearAnnealing", "Cyclic", "OneCycle"]
LR_CONFIGS_PER_POLICY = 10
MOMENTUM_CONFIGS_PER_POLICY = 6


# ---------------------------------------------------------------- random configurations


def _run_shape(rng, by_epoch, warmup_by_epoch):
    """(epoch_len, max_epochs, max_iters, runner): an EpochBasedRunner run, or an IterBasedRunner
    one (max_epochs None) where the config allows it."""
    if not by_epoch and not warmup_by_epoch and rng.random() < 0.3:
        return int(rng.integers(1, 50)), None, int(rng.integers(1, 900)), "iter"
    epoch_len = int(rng.integers(1, 60))
    max_epochs = int(rng.integers(1, max(2, 900 // epoch_len)))
    return epoch_len, max_epochs, epoch_len * max_epochs, "epoch"


def _warmup(rng, cfg, total_iters, max_epochs, ratio_low, by_epoch_key=True):
    kind = rng.choice([None, "constant", "linear", "exp"])
    if kind is None:
        return
    cfg["warmup"] = str(kind)
    cfg["warmup_ratio"] = 1.0 if rng.random() < 0.1 else float(rng.uniform(ratio_low, 1.0))
    if by_epoch_key and max_epochs is not None and rng.random() < 0.3:
        cfg["warmup_by_epoch"] = True
        cfg["warmup_iters"] = int(rng.integers(1, max_epochs + 2))
    else:
        cfg["warmup_iters"] = int(rng.integers(1, total_iters + 10))


def _target(rng, cfg, base, key):
    if rng.random() < 0.5:
        cfg[f"min_{key}"] = float(base * rng.uniform(0, 0.5))
    else:
        cfg[f"min_{key}_ratio"] = float(rng.uniform(0, 0.5))


def _step_cfg(rng, cfg, base, total, floor_key):
    if rng.random() < 0.4:
        cfg["step"] = int(rng.integers(1, total + 2))
    else:
        cfg["step"] = sorted(int(s) for s in rng.integers(1, total + 2, size=int(rng.integers(0, 5))))
    cfg["gamma"] = float(rng.uniform(0.05, 0.95))
    if rng.random() < 0.4:
        cfg[floor_key] = float(base * rng.uniform(0.001, 0.5))


def _one_cycle_pct(rng, total):
    pct = float(rng.uniform(0.0, 1.0))
    return 0.3 if float(pct * total) - 1 == 0 else pct


def _policy_params(rng, policy, cfg, base, total, max_iters):
    """Fills in the policy's own keys; ``total`` is the run in the policy's unit."""
    if policy == "Step":
        _step_cfg(rng, cfg, base, total, "min_lr")
    elif policy == "Exp":
        cfg["gamma"] = float(rng.uniform(0.8, 1.0))
    elif policy == "Poly":
        cfg["power"] = 1.0 if rng.random() < 0.3 else float(rng.uniform(0.3, 3.0))
        cfg["min_lr"] = float(base * rng.uniform(0, 0.3))
    elif policy == "Inv":
        cfg["gamma"] = float(rng.uniform(0.001, 0.5))
        cfg["power"] = float(rng.uniform(0.25, 2.0))
    elif policy in ("CosineAnnealing", "LinearAnnealing"):
        _target(rng, cfg, base, "lr")
    elif policy == "FlatCosineAnnealing":
        cfg["start_percent"] = float(rng.choice([0.0, 0.75, 1.0, rng.uniform(0, 1)]))
        _target(rng, cfg, base, "lr")
    elif policy == "CosineRestart":
        count = int(rng.integers(1, 5))
        periods = [int(p) for p in rng.integers(1, total + 2, size=count)]
        periods[-1] += max(0, total - sum(periods))
        cfg["periods"] = periods
        cfg["restart_weights"] = [float(w) for w in rng.uniform(0.1, 1.0, size=count)]
        _target(rng, cfg, base, "lr")
    elif policy == "Cyclic":
        cfg["target_ratio"] = (float(rng.uniform(1, 20)), float(rng.uniform(1e-5, 0.5)))
        if rng.random() < 0.2:
            cfg["target_ratio"] = float(rng.uniform(1, 20))
        cfg["cyclic_times"] = int(rng.integers(1, min(6, max_iters) + 1))
        cfg["step_ratio_up"] = float(rng.choice([0.0, 0.4, rng.uniform(0, 0.99)]))
        cfg["anneal_strategy"] = str(rng.choice(["cos", "linear"]))
        cfg["gamma"] = float(rng.choice([1.0, rng.uniform(0.1, 1.0)]))
    elif policy == "OneCycle":
        cfg["max_lr"] = float(base * rng.uniform(1, 30))
        if rng.random() < 0.5:
            cfg["total_steps"] = max_iters + int(rng.integers(0, 100))
        cfg["pct_start"] = _one_cycle_pct(rng, cfg.get("total_steps", max_iters))
        cfg["anneal_strategy"] = str(rng.choice(["cos", "linear"]))
        cfg["div_factor"] = float(rng.uniform(2, 50))
        cfg["final_div_factor"] = float(rng.uniform(10, 1e4))
        cfg["three_phase"] = bool(rng.random() < 0.5)


def random_lr_config(rng, policy, *, by_epoch=None):
    """(cfg, base_lr, epoch_len, max_epochs, max_iters, runner) for a random ``policy`` config."""
    if by_epoch is None:
        by_epoch = policy not in ("Cyclic", "OneCycle") and bool(rng.random() < 0.6)
    cfg = {"policy": policy.lower() if policy in ("Step", "Exp", "Fixed") and rng.random() < 0.5 else policy}
    if policy not in ("Cyclic", "OneCycle") or rng.random() < 0.5:
        cfg["by_epoch"] = by_epoch
    base = float(10 ** rng.uniform(-4, 0))
    _warmup(rng, cfg, 900, 20, 0.001)
    epoch_len, max_epochs, max_iters, runner = _run_shape(rng, by_epoch, cfg.get("warmup_by_epoch", False))
    if cfg.get("warmup_by_epoch") and max_epochs is not None:
        cfg["warmup_iters"] = int(rng.integers(1, max_epochs + 2))
    _policy_params(rng, policy, cfg, base, max_epochs if by_epoch else max_iters, max_iters)
    return cfg, base, epoch_len, max_epochs, max_iters, runner


def random_momentum_config(rng, policy):
    """(cfg, base_momentum, adam) for a random ``policy`` momentum config (by_epoch as the lr's)."""
    cfg = {"policy": policy}
    base = float(rng.uniform(0.5, 0.99))
    if policy == "Step":
        cfg["gamma"] = float(rng.uniform(0.3, 0.95))
    elif policy in ("CosineAnnealing", "LinearAnnealing"):
        _target(rng, cfg, base, "momentum")
    elif policy == "Cyclic":
        cfg["target_ratio"] = (float(rng.uniform(0.8, 1.0)), float(rng.uniform(0.9, 1.1)))
        cfg["step_ratio_up"] = float(rng.uniform(0, 0.99))
        cfg["anneal_strategy"] = str(rng.choice(["cos", "linear"]))
        cfg["gamma"] = float(rng.choice([1.0, rng.uniform(0.1, 1.0)]))
    elif policy == "OneCycle":
        cfg["base_momentum"] = float(rng.uniform(0.7, 0.9))
        cfg["max_momentum"] = float(rng.uniform(0.9, 0.99))
        cfg["anneal_strategy"] = str(rng.choice(["cos", "linear"]))
        cfg["three_phase"] = bool(rng.random() < 0.5)
    _warmup(rng, cfg, 900, None, 0.5, by_epoch_key=False)
    return cfg, base, bool(rng.random() < 0.5)


def _reference(optimizer, run, *, lr_cfg=None, momentum_cfg=None):
    epoch_len, max_epochs, max_iters, runner = run
    if runner == "iter":
        return mmcv_runner.run_iter_based(
            optimizer, epoch_len=epoch_len, max_iters=max_iters, lr_cfg=lr_cfg, momentum_cfg=momentum_cfg
        )
    return mmcv_runner.run_epoch_based(
        optimizer, epoch_len=epoch_len, max_epochs=max_epochs, lr_cfg=lr_cfg, momentum_cfg=momentum_cfg
    )


def _lengths(run):
    epoch_len, max_epochs, max_iters, runner = run
    if runner == "iter":
        return {"epoch_len": epoch_len, "max_iters": max_iters}
    return {"epoch_len": epoch_len, "max_epochs": max_epochs}


def _curve(schedule, n):
    """The schedule over steps 0..n-1, from one call on a padded step array."""
    return np.asarray(schedule(jnp.arange(max(n, PAD))))[:n]


def assert_curve_matches(schedule, expected, precision, context="", floor=None):
    """purelr's curve, eager and ``jax.jit(jax.vmap(schedule))``, against MMCV's; the worst error."""
    n = len(expected)
    return max(
        assert_schedule_matches(values, expected, precision, context=f"{context} [{path}]", floor=floor)
        for path, values in (("eager", _curve(schedule, n)), ("jit", jitted(schedule, np.arange(n))))
    )


@functools.lru_cache(maxsize=None)
def lr_case(policy, index):
    rng = np.random.default_rng([11, LR_POLICIES.index(policy), index])
    cfg, base, *run = random_lr_config(rng, policy)
    lr, _ = _reference(mmcv_runner.make_optimizer(base), run, lr_cfg=cfg)
    return cfg, base, tuple(run), lr


@functools.lru_cache(maxsize=None)
def momentum_case(policy, index):
    rng = np.random.default_rng([12, MOMENTUM_POLICIES.index(policy), index])
    lr_policy = "OneCycle" if policy in ("Cyclic", "OneCycle") else str(rng.choice(LR_POLICIES))
    by_epoch = False if policy in ("Cyclic", "OneCycle") else bool(rng.random() < 0.6)
    if lr_policy in ("Cyclic", "OneCycle"):
        by_epoch = False
    lr_cfg, base_lr, *run = random_lr_config(rng, lr_policy, by_epoch=by_epoch)
    cfg, base, adam = random_momentum_config(rng, policy)
    cfg["by_epoch"] = by_epoch
    if policy == "Step":
        _step_cfg(rng, cfg, base, run[1] if by_epoch else run[2], "min_momentum")
    if policy == "Cyclic":
        cfg["cyclic_times"] = int(rng.integers(1, min(6, run[2]) + 1))
    if policy == "OneCycle":
        cfg["pct_start"] = _one_cycle_pct(rng, run[2])
    optimizer = mmcv_runner.make_optimizer(base_lr, base, adam)
    lr, momentum = _reference(optimizer, run, lr_cfg=lr_cfg, momentum_cfg=cfg)
    return cfg, base, lr_cfg, base_lr, tuple(run), lr, momentum


# ---------------------------------------------------------------- parity over random configs


@pytest.mark.parametrize("policy", LR_POLICIES)
def test_lr_config_matches_mmcv_random(policy, precision):
    """Floor: 8 float64 rounding units of the peak. MMCV's ``annealing_cos`` computes
    ``end + 0.5 * (start - end) * (cos + 1)``, by cancellation near the minimum (measured: 0.05
    units: a OneCycle run, step 776 of 777, 9.2632879208e-08 of a peak 0.0179)."""
    for index in range(LR_CONFIGS_PER_POLICY):
        cfg, base, run, expected = lr_case(policy, index)
        assert_curve_matches(
            lr_config(cfg, base, **_lengths(run)),
            expected,
            precision,
            f"{cfg} base={base} run={run}",
            floor=rounding_floor(SCHEDULE_RTOL[precision], 8),
        )


@pytest.mark.parametrize("policy", MOMENTUM_POLICIES)
def test_momentum_config_matches_mmcv_random(policy, precision):
    """Floor: 8 float64 rounding units of the peak, as ``test_lr_config_matches_mmcv_random``
    (measured: 0.1 units, MMCV's linear anneal ``(end - start) * f + start`` at a OneCycle's end)."""
    floor = rounding_floor(SCHEDULE_RTOL[precision], 8)
    for index in range(MOMENTUM_CONFIGS_PER_POLICY):
        cfg, base, lr_cfg, base_lr, run, lr, momentum = momentum_case(policy, index)
        context = f"{cfg} base={base} with {lr_cfg} run={run}"
        assert_curve_matches(momentum_config(cfg, base, **_lengths(run)), momentum, precision, context, floor)
        assert_curve_matches(lr_config(lr_cfg, base_lr, **_lengths(run)), lr, precision, context, floor)


def test_random_configs_cover_every_branch():
    """The random draw reaches each runner, by_epoch, warmup kind and warmup_by_epoch."""
    cases = [lr_case(policy, index)[:3] for policy in LR_POLICIES for index in range(LR_CONFIGS_PER_POLICY)]
    assert len(cases) + len(MOMENTUM_POLICIES) * MOMENTUM_CONFIGS_PER_POLICY >= 100
    assert {run[3] for _, _, run in cases} == {"epoch", "iter"}
    assert {cfg.get("warmup") for cfg, _, _ in cases} == {None, "constant", "linear", "exp"}
    assert any(cfg.get("warmup_by_epoch") for cfg, _, _ in cases)
    assert {cfg.get("by_epoch", "default") for cfg, _, _ in cases} == {True, False, "default"}


# ---------------------------------------------------------------- hand-picked edges

RETINANET_1X = dict(policy="step", warmup="linear", warmup_iters=500, warmup_ratio=0.001, step=[8, 11])


@functools.lru_cache(maxsize=None)
def retinanet_reference(epoch_len):
    optimizer = mmcv_runner.make_optimizer(0.01, 0.9)
    return mmcv_runner.run_epoch_based(optimizer, epoch_len=epoch_len, max_epochs=12, lr_cfg=RETINANET_1X)[0]


def test_retinanet_1x_recipe(precision):
    """MMDetection's RetinaNet 1x: SGD lr 0.01, linear warmup 500 iters from 0.001, steps 8 and 11."""
    epoch_len = 7330
    expected = retinanet_reference(epoch_len)
    schedule = lr_config(RETINANET_1X, 0.01, epoch_len=epoch_len, max_epochs=12)
    ours = np.asarray(schedule(jnp.arange(12 * epoch_len)))
    assert_schedule_matches(ours, expected, precision)
    assert_schedule_matches(jitted(schedule, np.arange(12 * epoch_len)), expected, precision, context="jitted")
    rtol = 1e-12 if precision == "x64" else 1e-6
    milestones = {
        0: 0.01 * 0.001,
        250: 0.01 * (1 - 0.5 * 0.999),
        499: 0.01 * (1 - 0.999 / 500),
        500: 0.01,
        8 * epoch_len - 1: 0.01,
        8 * epoch_len: 0.001,
        11 * epoch_len: 0.0001,
    }
    for step, value in milestones.items():
        np.testing.assert_allclose(ours[step], value, rtol=rtol, err_msg=f"step {step}")


EDGES = {
    # milestones on epoch boundaries, step 0, a warmup that outlasts two epochs
    "step_warmup_longer_than_epoch": (
        dict(policy="Step", step=[1, 2, 4], warmup="linear", warmup_iters=23, warmup_ratio=0.01),
        0.1,
        7,
        6,
    ),
    "step_int_by_iter_milestones": (dict(policy="step", step=5, by_epoch=False, min_lr=0.003), 0.1, 7, 4),
    "step_duplicate_milestones": (dict(policy="Step", step=[2, 2, 3]), 0.1, 3, 5),
    "warmup_by_epoch_exp": (
        dict(policy="Exp", gamma=0.8, warmup="exp", warmup_iters=2, warmup_by_epoch=True, warmup_ratio=0.05),
        0.1,
        9,
        5,
    ),
    "warmup_by_epoch_iteration_policy": (
        dict(policy="Poly", by_epoch=False, power=2.0, warmup="constant", warmup_iters=3, warmup_by_epoch=True),
        0.1,
        4,
        5,
    ),
    "warmup_iters_equal_run": (dict(policy="CosineAnnealing", min_lr=0.0, warmup="linear", warmup_iters=30), 0.1, 6, 5),
    "restarts_by_epoch": (
        dict(policy="CosineRestart", periods=[2, 3, 5], restart_weights=[1.0, 0.6, 0.3], min_lr_ratio=0.05),
        0.1,
        4,
        10,
    ),
    "restarts_by_iter_longer_than_run": (
        dict(policy="CosineRestart", by_epoch=False, periods=[5, 9, 40], restart_weights=[1.0, 0.6, 0.3], min_lr=1e-4),
        0.1,
        4,
        10,
    ),
    "flat_cosine_rounding": (
        dict(policy="FlatCosineAnnealing", start_percent=0.5, by_epoch=False, min_lr=0.0),
        0.1,
        5,
        5,
    ),  # round(12.5) == 12: banker's rounding
    "cyclic_step_ratio_up_zero": (dict(policy="cyclic", step_ratio_up=0.0, cyclic_times=3, gamma=0.5), 0.1, 7, 5),
    "cyclic_run_not_divisible": (dict(policy="cyclic", cyclic_times=4, target_ratio=5.0), 0.1, 5, 3),
    "one_cycle_pct_start_zero": (dict(policy="OneCycle", max_lr=0.5, pct_start=0.0, three_phase=True), 0.1, 5, 4),
    "one_cycle_pct_start_one": (dict(policy="OneCycle", max_lr=0.5, pct_start=1.0), 0.1, 5, 4),
    "one_cycle_fractional_end": (dict(policy="OneCycle", max_lr=0.5, pct_start=0.33, total_steps=31), 0.1, 6, 5),
    "one_epoch_of_one_iteration": (dict(policy="Poly", power=0.5, warmup="exp", warmup_iters=1), 0.1, 1, 3),
}


@pytest.mark.parametrize("name", sorted(EDGES))
def test_lr_config_edges(name, precision):
    cfg, base, epoch_len, max_epochs = EDGES[name]
    expected, _ = mmcv_runner.run_epoch_based(
        mmcv_runner.make_optimizer(base), epoch_len=epoch_len, max_epochs=max_epochs, lr_cfg=cfg
    )
    assert_curve_matches(lr_config(cfg, base, epoch_len=epoch_len, max_epochs=max_epochs), expected, precision, name)


MOMENTUM_EDGES = {
    "by_epoch_warmup_divides": (
        dict(policy="Step", step=[2, 3], warmup="linear", warmup_iters=11, warmup_ratio=0.8, min_momentum=0.5),
        0.9,
        4,
        5,
    ),
    "constant_warmup": (
        dict(policy="CosineAnnealing", by_epoch=False, min_momentum_ratio=0.9, warmup="constant", warmup_iters=4),
        0.9,
        4,
        5,
    ),
    "one_cycle_three_phase": (
        dict(policy="OneCycle", three_phase=True, pct_start=0.25, warmup="exp", warmup_iters=6),
        0.9,
        4,
        5,
    ),
}


@pytest.mark.parametrize("name", sorted(MOMENTUM_EDGES))
@pytest.mark.parametrize("adam", [False, True], ids=["sgd", "adam"])
def test_momentum_config_edges(name, adam, precision):
    cfg, base, epoch_len, max_epochs = MOMENTUM_EDGES[name]
    optimizer = mmcv_runner.make_optimizer(0.1, base, adam)
    _, expected = mmcv_runner.run_epoch_based(optimizer, epoch_len=epoch_len, max_epochs=max_epochs, momentum_cfg=cfg)
    schedule = momentum_config(cfg, base, epoch_len=epoch_len, max_epochs=max_epochs)
    assert_curve_matches(schedule, expected, precision, name)


HUGE = MAX_STEP - 1  # the last iteration of a run of 2**31 - 1 iterations
HUGE_STEPS = [
    0,
    1,
    2**24 + 1,
    2**30 - 2,
    2**30 - 1,
    2**30,
    HUGE - 300,
    HUGE - 257,
    HUGE - 256,
    HUGE - 255,
    HUGE - 3,
    HUGE - 2,
    HUGE - 1,
    HUGE,
]
HUGE_CASES = {
    # (cfg, epoch_len, max_epochs): milestones and warmup ends one iteration apart near 2**31,
    # where float32 cannot tell the steps apart
    "milestone_by_iter": (
        dict(
            policy="Step",
            by_epoch=False,
            step=[HUGE - 256, HUGE - 1],
            warmup="linear",
            warmup_iters=HUGE - 2,
            warmup_ratio=0.5,
        ),
        1,
        MAX_STEP,
    ),
    "milestone_by_epoch": (dict(policy="Step", step=[2**29, 2**30 - 1], gamma=0.5), 2, 2**30 - 1),
    "epoch_division": (dict(policy="Exp", gamma=0.5, warmup="exp", warmup_iters=HUGE - 3), 2**30 - 1, 2),
    "cyclic_boundaries": (dict(policy="Cyclic", cyclic_times=7, gamma=0.5), 1, MAX_STEP),  # 7 * 306783378 == HUGE
    "restart_boundaries": (
        dict(
            policy="CosineRestart", by_epoch=False, periods=[2**30, 2**30 - 1], restart_weights=[1.0, 0.5], min_lr=0.0
        ),
        1,
        MAX_STEP,
    ),
    "one_cycle_end": (dict(policy="OneCycle", max_lr=1.0, pct_start=0.5, anneal_strategy="linear"), 1, MAX_STEP),
}


@pytest.mark.parametrize("name", sorted(HUGE_CASES))
def test_huge_steps_are_exact(name, precision):
    """Near 2**31 - 2 against MMCV's hooks, which compute in exact Python integers.

    Floor: 8 float64 rounding units of the peak. MMCV's ``annealing_cos`` (``cos + 1``) loses a
    unit of the peak next to a cosine's minimum: at step 2**31 - 258 of restart_boundaries it gives
    7.066569551739122e-15 where the exact value (50 digits) is 7.0676700418997e-15 and purelr
    7.06767004184845e-15 (0.1 units of the peak 0.1)."""
    cfg, epoch_len, max_epochs = HUGE_CASES[name]
    expected, _ = mmcv_runner.sample_epoch_based(
        mmcv_runner.make_optimizer(0.1), HUGE_STEPS, epoch_len=epoch_len, max_epochs=max_epochs, lr_cfg=cfg
    )
    schedule = lr_config(cfg, 0.1, epoch_len=epoch_len, max_epochs=max_epochs)
    ours = np.asarray(schedule(jnp.asarray(HUGE_STEPS + [0] * (PAD - len(HUGE_STEPS)))))[: len(HUGE_STEPS)]
    floor = rounding_floor(SCHEDULE_RTOL[precision], 8)
    assert_schedule_matches(ours, expected, precision, context=name, floor=floor)
    assert_schedule_matches(jitted(schedule, HUGE_STEPS), expected, precision, context=f"{name} jitted", floor=floor)


def test_huge_step_switches_on_the_exact_iteration(precision):
    cfg = dict(policy="Step", by_epoch=False, step=[HUGE - 1], gamma=0.5)
    values = np.asarray(lr_config(cfg, 1.0, max_iters=MAX_STEP)(jnp.asarray([HUGE - 2, HUGE - 1, HUGE])))
    np.testing.assert_array_equal(values, [1.0, 0.5, 0.5])


def test_sample_driver_agrees_with_full_run():
    """The sparse driver used for huge steps reproduces a full EpochBasedRunner run."""
    cfg = dict(policy="Step", step=[2, 3], warmup="exp", warmup_iters=2, warmup_by_epoch=True)
    full, _ = mmcv_runner.run_epoch_based(mmcv_runner.make_optimizer(0.1), epoch_len=5, max_epochs=4, lr_cfg=cfg)
    sampled, _ = mmcv_runner.sample_epoch_based(
        mmcv_runner.make_optimizer(0.1), range(20), epoch_len=5, max_epochs=4, lr_cfg=cfg
    )
    np.testing.assert_array_equal(sampled, full)


# ---------------------------------------------------------------- transforms and purity


def test_jit_vmap_equals_per_step_values(precision):
    """``jax.jit(jax.vmap(f))`` of one random config per policy, compiled together, against the
    eager curve and against ``f`` called on single steps."""
    cases = [lr_case(policy, 0) for policy in LR_POLICIES]
    schedules = [lr_config(cfg, base, **_lengths(run)) for cfg, base, run, _ in cases]
    batched = jax.jit(lambda steps: [jax.vmap(f)(steps) for f in schedules])(jnp.arange(PAD))
    rtol = 1e-12 if precision == "x64" else 1e-6
    for schedule, values, (cfg, _, _, expected) in zip(schedules, batched, cases):
        n, scale = len(expected), rtol * FLOOR[precision] * np.max(np.abs(expected))
        values = np.asarray(values)[:n]
        np.testing.assert_allclose(values, _curve(schedule, n), rtol=rtol, atol=scale, err_msg=str(cfg))
        picked = sorted({0, n // 3, n // 2, n - 1})
        per_step = np.asarray([schedule(k) for k in picked])
        np.testing.assert_allclose(values[picked], per_step, rtol=rtol, atol=scale, err_msg=str(cfg))
        assert schedule(jnp.asarray(0)).shape == ()
        assert schedule(jnp.zeros((2, 3), jnp.int32)).shape == (2, 3)


def test_config_is_not_mutated_and_none_is_constant(precision):
    cfg = dict(RETINANET_1X)
    lr_config(cfg, 0.01, epoch_len=10, max_epochs=12)
    assert cfg == RETINANET_1X
    constant = np.asarray(momentum_config(None, 0.9)(jnp.arange(3)))
    np.testing.assert_array_equal(constant, np.full(3, 0.9, constant.dtype))


def test_imports_jax_and_numpy_only():
    code = (
        "import sys, purelr.schedules.mmcv; print([m for m in ('torch', 'optax', 'flax', 'mmcv') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ---------------------------------------------------------------- bad input

BAD = [
    (
        dict(policy="Cosine"),
        {},
        ValueError,
        r"lr_config.policy must be one of \['Fixed', 'Step', .*'YOLOX', 'CosineAnnealingCooldown'\], got 'Cosine'",
    ),
    (dict(policy="cosineannealing", min_lr=0.0), {}, ValueError, r"lr_config.policy .* got 'cosineannealing'"),
    (dict(step=[8, 11]), {}, ValueError, r"lr_config.policy must be one of .* got None"),
    (
        dict(policy="CosineAnnealing", min_lr=0.0, min_lr_ratio=0.1),
        {},
        ValueError,
        r"exactly one of min_lr and min_lr_ratio, got min_lr=0.0, min_lr_ratio=0.1",
    ),
    (dict(policy="LinearAnnealing"), {}, ValueError, r"exactly one of min_lr and min_lr_ratio, got min_lr=None"),
    (
        dict(policy="Step", step=[8, 11], warmup="cosine", warmup_iters=5),
        {},
        ValueError,
        r"lr_config.warmup must be one of \['constant', 'linear', 'exp'\], got 'cosine'",
    ),
    (
        dict(policy="Step", step=[8, 11], warmup="linear", warmup_iters=5, warmup_ratio=0.0),
        {},
        ValueError,
        r"lr_config.warmup_ratio must be in \(0, 1\], got 0.0",
    ),
    (
        dict(policy="Step", step=[8, 11], warmup="linear", warmup_iters=5, warmup_ratio=1.5),
        {},
        ValueError,
        r"lr_config.warmup_ratio must be in \(0, 1\], got 1.5",
    ),
    (
        dict(policy="Step", step=[8, 11], warmup="linear", warmup_iters=0),
        {},
        ValueError,
        r"lr_config.warmup_iters must be positive, got 0",
    ),
    (dict(policy="Step", step=[11, 8]), {}, ValueError, r"lr_config.step must be increasing, got \[11, 8\]"),
    (dict(policy="Step", step=[0, 8]), {}, ValueError, r"lr_config.step must be positive, got \[0, 8\]"),
    (dict(policy="Step", step="8"), {}, TypeError, r"lr_config.step must be an integer, got '8'"),
    (dict(policy="Step"), {}, TypeError, r"lr_config.step is required by policy 'Step'"),
    (dict(policy="Step", step=3, gama=0.5), {}, TypeError, r"lr_config got unexpected keys \['gama'\]"),
    (
        dict(policy="Cyclic", by_epoch=True),
        {},
        ValueError,
        r"lr_config.by_epoch must be False for policy 'Cyclic' .*, got True",
    ),
    (
        dict(policy="OneCycle", max_lr=0.1, by_epoch=True),
        {},
        ValueError,
        r"lr_config.by_epoch must be False for policy 'OneCycle'",
    ),
    (
        dict(policy="OneCycle", max_lr=0.1, total_steps=100),
        {},
        ValueError,
        r"lr_config.total_steps must be >= max_iters=120, got 100",
    ),
    (
        dict(policy="OneCycle", max_lr=0.1, pct_start=1 / 128, total_steps=128, by_epoch=False),
        {},
        ValueError,
        r"lr_config.pct_start \* total_steps must not be 1",
    ),
    (dict(policy="OneCycle", max_lr=[0.1, 0.2]), {}, TypeError, r"lr_config.max_lr must be a number"),
    (
        dict(policy="CosineRestart", periods=[4, 5], restart_weights=[1, 1], min_lr=0.0),
        {},
        ValueError,
        r"lr_config.periods must cover max_epochs=12, got \[4, 5\] \(sum 9\)",
    ),
    (
        dict(policy="CosineRestart", by_epoch=False, periods=[40, 50], restart_weights=[1, 1], min_lr=0.0),
        {},
        ValueError,
        r"lr_config.periods must cover max_iters=120, got \[40, 50\] \(sum 90\)",
    ),
    (
        dict(policy="CosineRestart", periods=[4, 8], min_lr=0.0),
        {},
        ValueError,
        r"lr_config.restart_weights must have one weight per period \(2\), got \[1.0\]",
    ),
    (
        dict(policy="Step", step=[8, 11]),
        {"epoch_len": None},
        ValueError,
        r"lr_config.by_epoch=True \(policy 'Step'\) needs epoch_len, got None",
    ),
    (
        dict(policy="Step", by_epoch=False, step=5, warmup="linear", warmup_iters=1, warmup_by_epoch=True),
        {"epoch_len": None, "max_epochs": None, "max_iters": 100},
        ValueError,
        r"lr_config.warmup_by_epoch=True needs epoch_len, got None",
    ),
    (
        dict(policy="Poly"),
        {"max_epochs": None},
        ValueError,
        r"lr_config policy 'Poly' with by_epoch=True needs max_epochs, got None",
    ),
    (
        dict(policy="Poly", by_epoch=False),
        {"max_epochs": None},
        ValueError,
        r"lr_config policy 'Poly' with by_epoch=False needs max_iters, got None",
    ),
    (
        dict(policy="Fixed"),
        {"max_iters": 121},
        ValueError,
        r"lr_config max_iters must be max_epochs \* epoch_len = 120, got 121",
    ),
    (dict(policy="Fixed"), {"epoch_len": 0}, ValueError, r"lr_config epoch_len must be positive, got 0"),
    (
        dict(policy="Cyclic", cyclic_times=200),
        {},
        ValueError,
        r"lr_config.cyclic_times must be at most max_iters=120, got 200",
    ),
    (dict(policy="Cyclic", step_ratio_up=1.0), {}, ValueError, r"lr_config.step_ratio_up must be in \[0, 1\), got 1.0"),
    (
        dict(policy="Cyclic", anneal_strategy="cosine"),
        {},
        ValueError,
        r"lr_config.anneal_strategy must be one of \['cos', 'linear'\], got 'cosine'",
    ),
    (dict(policy="Step", step=5, by_epoch="yes"), {}, TypeError, r"lr_config.by_epoch must be True or False"),
    ("step", {}, TypeError, r"lr_config must be a dict, got 'step'"),
]


@pytest.mark.parametrize("cfg, lengths, error, message", BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_lr_config_rejects_bad_input(cfg, lengths, error, message):
    lengths = {"epoch_len": 10, "max_epochs": 12, **lengths}
    with pytest.raises(error, match=message):
        lr_config(copy.deepcopy(cfg), 0.1, **lengths)


BAD_MOMENTUM = [
    (
        dict(policy="Exp", gamma=0.9),
        ValueError,
        r"momentum_config.policy must be one of \['Step', 'CosineAnnealing', 'LinearAnnealing', 'Cyclic', "
        r"'OneCycle'\], got 'Exp'",
    ),
    (
        dict(policy="Step", step=3, warmup="linear", warmup_iters=5, warmup_by_epoch=True),
        TypeError,
        r"momentum_config got unexpected keys \['warmup_by_epoch'\]",
    ),
    (
        dict(policy="CosineAnnealing", min_momentum=0.8, min_momentum_ratio=0.9),
        ValueError,
        r"exactly one of min_momentum and min_momentum_ratio",
    ),
    (dict(policy="OneCycle", base_momentum=[0.85]), TypeError, r"momentum_config.base_momentum must be a number"),
    (dict(policy="Cyclic", by_epoch=True), ValueError, r"momentum_config.by_epoch must be False"),
    (
        dict(policy="Step", step=3, warmup="exp", warmup_iters=5, warmup_ratio=-0.5),
        ValueError,
        r"momentum_config.warmup_ratio must be in \(0, 1\], got -0.5",
    ),
]


@pytest.mark.parametrize("cfg, error, message", BAD_MOMENTUM, ids=[f"bad{i}" for i in range(len(BAD_MOMENTUM))])
def test_momentum_config_rejects_bad_input(cfg, error, message):
    with pytest.raises(error, match=message):
        momentum_config(cfg, 0.9, epoch_len=10, max_epochs=12)
