"""Parity of `purelr.schedules.mmengine.param_scheduler` with MMEngine 0.10.7's real schedulers.

The reference builds the scheduler list the way ``Runner.build_param_scheduler`` does (default
``end`` from the train loop, ``PARAM_SCHEDULERS.build`` with ``epoch_length``, which routes
``convert_to_iter_based`` to ``build_iter_from_epoch``) on a torch SGD/Adam optimizer, and steps it
the way ``ParamSchedulerHook`` does under ``EpochBasedTrainLoop`` / ``IterBasedTrainLoop``,
recording the value the optimizer holds during each iteration.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purelr.references.mmengine import run as reference
from purelr.schedules import mmengine as pm
from tests.parity import SCHEDULE_RTOL, assert_schedule_matches, jitted, rounding_floor

FAMILIES = [
    "Constant",
    "CosineAnnealing",
    "Exponential",
    "Linear",
    "MultiStep",
    "Step",
    "Poly",
    "CosineRestart",
    "OneCycle",
]


@functools.lru_cache(maxsize=None)
def cached_reference(seed):
    cfgs, base, iters, kwargs, where = random_case(seed)
    return reference(cfgs, base, iters=iters, **kwargs, **where)


def curve(cfgs, base, iters, **kwargs):
    """purelr's values at ``0..iters-1``, evaluated (eagerly) on an array of 512 (or a power of two) so
    that JAX's per-shape caches serve every configuration."""
    size = max(512, 1 << max(iters - 1, 1).bit_length())
    return np.asarray(pm.param_scheduler(cfgs, base, **kwargs)(jnp.arange(size)))[:iters]


def assert_curves_match(cfgs, base, iters, expected, precision, context, floor=None, rtol=None, **kwargs):
    """purelr's curve, eager and ``jax.jit(jax.vmap(...))``, against MMEngine's; the worst error."""
    jit = jitted(pm.param_scheduler(cfgs, base, **kwargs), np.arange(iters))
    return max(
        assert_schedule_matches(values, expected, precision, context=f"{context} [{path}]", floor=floor, rtol=rtol)
        for path, values in (("eager", curve(cfgs, base, iters, **kwargs)), ("jit", jit))
    )


def check(
    cfgs, base, precision, *, epoch_len, iters, max_epochs=None, max_iters=None, momentum=False, adam=False, context=""
):
    expected = reference(
        cfgs,
        base,
        epoch_len=epoch_len,
        iters=iters,
        max_epochs=max_epochs,
        max_iters=max_iters,
        momentum=momentum,
        adam=adam,
    )
    return assert_curves_match(
        cfgs,
        base,
        iters,
        expected,
        precision,
        context or repr(cfgs),
        epoch_len=epoch_len,
        max_epochs=max_epochs,
        max_iters=max_iters,
    )


RETINANET = [
    dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type="MultiStepLR", begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1),
]


def test_retinanet_1x(precision):
    epoch_len = 733
    check(RETINANET, 0.01, precision, epoch_len=epoch_len, iters=12 * epoch_len, max_epochs=12)
    values = curve(RETINANET, 0.01, 12 * epoch_len, epoch_len=epoch_len, max_epochs=12)
    assert values[0] == pytest.approx(1e-5)
    assert values[499] == pytest.approx(0.01) and values[8 * epoch_len - 1] == pytest.approx(0.01)
    assert values[8 * epoch_len] == pytest.approx(1e-3) and values[11 * epoch_len] == pytest.approx(1e-4)


def random_scheduler(rng, family, suffix, horizon_epochs, epoch_len, loop):
    """One random scheduler config; begin/end in its own unit (epochs when by_epoch)."""
    by_epoch = bool(rng.random() < 0.5)
    convert = by_epoch and bool(rng.random() < 0.4)
    horizon = horizon_epochs if by_epoch else horizon_epochs * epoch_len
    cfg = dict(type=family + suffix, by_epoch=by_epoch)
    if convert:
        cfg["convert_to_iter_based"] = True
    begin = int(rng.integers(0, max(1, horizon // 2))) if rng.random() < 0.6 else 0
    if rng.random() < 0.8 or loop is None:
        cfg["end"] = int(rng.integers(begin + 1, horizon + 2))
    elif loop == "iter" and by_epoch:
        begin = 0  # IterBasedTrainLoop's default end for an epoch-based scheduler is 1
    if begin or rng.random() < 0.5:
        cfg["begin"] = begin
    length = cfg.get("end", horizon if loop == "epoch" or not by_epoch else 1) - begin
    length = max(length, 1)
    if family == "Constant":
        cfg["factor"] = float(rng.uniform(0.05, 1.0))
    elif family == "CosineAnnealing":
        if rng.random() < 0.4:
            cfg["T_max"] = int(rng.integers(1, length + 2))
        pick = rng.random()
        if pick < 0.35:
            cfg["eta_min"] = float(rng.uniform(0, 0.05))
        elif pick < 0.6:
            cfg["eta_min_ratio"] = float(rng.uniform(0, 0.5))
    elif family == "Exponential":
        cfg["gamma"] = float(rng.uniform(0.9, 1.0))
    elif family == "Linear":
        cfg["start_factor"] = float(rng.uniform(0.01, 1.0))
        cfg["end_factor"] = float(rng.uniform(0.0, 1.0)) if rng.random() < 0.5 else 1.0
    elif family == "MultiStep":
        count = int(rng.integers(1, 4))
        cfg["milestones"] = sorted(int(m) for m in rng.integers(0, length + 1, count))
        cfg["gamma"] = float(rng.uniform(0.1, 0.9))
    elif family == "Step":
        cfg["step_size"] = int(rng.integers(1, max(2, length // 2 + 1)))
        cfg["gamma"] = float(rng.uniform(0.1, 0.9))
    elif family == "Poly":
        cfg["power"] = float(rng.uniform(0.5, 2.0))
        cfg["eta_min"] = float(rng.uniform(0, 0.01)) if rng.random() < 0.5 else 0.0
    elif family == "CosineRestart":
        count = int(rng.integers(1, 4))
        cfg["periods"] = [int(p) for p in rng.integers(1, max(2, length // count + 2), count)]
        cfg["restart_weights"] = [float(w) for w in rng.uniform(0.3, 1.0, count)]
        if rng.random() < 0.5:
            cfg["eta_min"] = float(rng.uniform(0, 0.01))
        else:
            cfg["eta_min_ratio"] = float(rng.uniform(0, 0.3))
    elif family == "OneCycle":
        cfg["eta_max"] = float(rng.uniform(0.05, 0.5))
        cfg["end"] = cfg.get("end", horizon + 1)
        length = cfg["end"] - begin
        cfg["pct_start"] = float(rng.uniform(0.1, 0.9))
        cfg["anneal_strategy"] = "cos" if rng.random() < 0.5 else "linear"
        cfg["three_phase"] = bool(rng.random() < 0.3)
        if rng.random() < 0.3:
            cfg["total_steps"] = length + int(rng.integers(0, 3))
    return cfg


def random_case(seed):
    rng = np.random.default_rng(seed)
    epoch_len = int(rng.integers(1, 40))
    epochs = int(rng.integers(1, 10))
    loop = rng.choice(["epoch", "epoch", "epoch", "iter", None])
    kind = rng.choice(["lr", "lr", "momentum", "adam", "generic"])
    families = [f for f in FAMILIES if not (f == "OneCycle" and kind in ("momentum", "adam"))]
    suffix = {"lr": "LR", "momentum": "Momentum", "adam": "Momentum", "generic": "ParamScheduler"}[kind]
    cfgs = []
    for _ in range(int(rng.integers(1, 5))):
        cfg = random_scheduler(rng, str(rng.choice(families)), suffix, epochs, epoch_len, loop)
        if kind == "generic":
            cfg["param_name"] = "lr"
        cfgs.append(cfg)
    kwargs = dict(epoch_len=epoch_len)
    if loop == "epoch":
        kwargs["max_epochs"] = epochs
    elif loop == "iter":
        kwargs["max_iters"] = epochs * epoch_len
    iters = epochs * epoch_len + int(rng.integers(0, 2 * epoch_len))
    base = float(rng.uniform(0.5, 0.99)) if kind in ("momentum", "adam") else float(rng.uniform(0.001, 0.5))
    return cfgs, base, iters, kwargs, dict(momentum=kind == "momentum", adam=kind == "adam")


@pytest.mark.parametrize("block", [0, *(pytest.param(b, marks=pytest.mark.nightly) for b in (1, 2, 3))])
def test_random_lists(precision, block):
    """100 random scheduler lists a run (25 per block; 25 by default, the other three blocks
    nightly): overlaps, by_epoch mixes, conversions.

    Floor: 8 float64 rounding units of the peak. MMEngine's schedulers step by chained recursion
    (CosineAnnealing: ``(1 + cos t) / (1 + cos(t - 1)) * (lr - eta_min) + eta_min``), which
    subtracts and adds back numbers of the peak's size every step (measured: 0.32 units, seed 82
    step 141, 7.9943424598e-06 of a peak 46.1). The float32 twin replays that recursion where
    schedulers overlap, in float32: there the floor is four float32 units of the peak (24% of it;
    measured 2.5 units, seed 36 step 16, a CosineRestart converted to iterations after a OneCycle;
    0.5 units, seed 68 step 13, a Poly under a CosineAnnealing), and its bound 3e-6 instead of
    1e-6 (measured 1.2e-6 at two thirds of the peak, seed 82 step 201, after 200 replayed steps).
    The float32 value is replayed as in ``test_torch``'s replayed twins."""
    floor = rounding_floor(SCHEDULE_RTOL[precision], 8 if precision == "x64" else 4, reference=precision)
    rtol = 3e-6 if precision == "f32" else None
    worst = 0.0
    for seed in range(block * 25, block * 25 + 25):
        cfgs, base, iters, kwargs, where = random_case(seed)
        context = f"seed {seed}: {cfgs} {kwargs} base={base}"
        worst = max(
            worst,
            assert_curves_match(
                cfgs, base, iters, cached_reference(seed), precision, context, floor=floor, rtol=rtol, **kwargs
            ),
        )
    print(f"max relative error ({precision}): {worst:.3g}")


EDGES = {
    "cosine past T_max, eta_min, under an iteration warmup": dict(
        cfgs=[
            dict(type="LinearLR", start_factor=0.1, by_epoch=False, begin=0, end=45),
            dict(type="CosineAnnealingLR", T_max=3, eta_min=0.01, by_epoch=True, begin=0, end=9),
        ],
        base=0.2,
        epoch_len=10,
        max_epochs=10,
    ),
    "cosine restarts converted to iterations, eta_min_ratio, after a Poly": dict(
        cfgs=[
            dict(type="PolyLR", power=2.0, eta_min=0.001, by_epoch=False, begin=0, end=30),
            dict(
                type="CosineRestartLR",
                periods=[2, 3, 1],
                restart_weights=[1.0, 0.5, 0.25],
                eta_min_ratio=0.1,
                by_epoch=True,
                convert_to_iter_based=True,
                begin=3,
            ),
        ],
        base=0.1,
        epoch_len=12,
        max_epochs=10,
    ),
    "epoch-based schedulers in an IterBasedTrainLoop act once": dict(
        cfgs=[
            dict(type="LinearLR", start_factor=0.25, by_epoch=True),
            dict(type="ConstantLR", factor=0.5, by_epoch=True, begin=0, end=3),
            dict(type="ExponentialLR", gamma=0.99, by_epoch=False, begin=10),
        ],
        base=0.1,
        epoch_len=7,
        max_iters=60,
    ),
    "one-step schedulers, milestones at 0 and repeated, boundaries touching": dict(
        cfgs=[
            dict(type="ConstantLR", factor=0.5, by_epoch=False, begin=4, end=5),
            dict(type="LinearLR", start_factor=0.5, by_epoch=False, begin=5, end=6),
            dict(type="MultiStepLR", milestones=[0, 2, 2, 5], gamma=0.5, by_epoch=True, begin=1, end=6),
            dict(type="StepLR", step_size=1, gamma=0.9, by_epoch=False, begin=6, end=20),
        ],
        base=0.3,
        epoch_len=4,
        max_epochs=8,
    ),
    "OneCycle stepped to total_steps, a second OneCycle rewrites the first's values": dict(
        cfgs=[
            dict(type="OneCycleLR", eta_max=0.4, total_steps=19, three_phase=True, by_epoch=False, begin=0, end=20),
            dict(
                type="OneCycleLR",
                eta_max=0.2,
                pct_start=0.5,
                anneal_strategy="linear",
                by_epoch=False,
                begin=30,
                end=50,
            ),
            dict(type="ExponentialLR", gamma=0.95, by_epoch=False, begin=10, end=40),
        ],
        base=0.1,
        epoch_len=10,
        max_epochs=6,
    ),
    "momentum of Adam (betas[0]) from a mixed list": dict(
        cfgs=[
            dict(type="CosineAnnealingLR", T_max=5, by_epoch=True),
            dict(type="LinearMomentum", start_factor=0.9, by_epoch=False, begin=0, end=25),
            dict(type="CosineAnnealingMomentum", eta_min=0.85, by_epoch=True, begin=1),
        ],
        base=0.95,
        epoch_len=9,
        max_epochs=6,
        adam=True,
        param_name="momentum",
    ),
}


@pytest.mark.parametrize("name", list(EDGES))
def test_edges(precision, name):
    case = dict(EDGES[name])
    cfgs, base, adam, param = case.pop("cfgs"), case.pop("base"), case.pop("adam", False), case.pop("param_name", None)
    iters = case.get("max_iters") or case["max_epochs"] * case["epoch_len"] + 5
    ref_cfgs = [c for c in cfgs if param is None or ("Momentum" in c["type"]) == (param == "momentum")]
    expected = reference(ref_cfgs, base, iters=iters, adam=adam, **case)
    # floor: 8 float64 units of the peak, as test_random_lists (measured 0.4: MMEngine's OneCycle
    # forms its last value by a linear anneal's cancellation)
    assert_curves_match(
        cfgs,
        base,
        iters,
        expected,
        precision,
        name,
        param_name=param,
        floor=rounding_floor(SCHEDULE_RTOL[precision], 8),
        **case,
    )


@pytest.mark.parametrize(
    "name",
    [
        "retinanet",
        "cosine past T_max, eta_min, under an iteration warmup",
        "OneCycle stepped to total_steps, a second OneCycle rewrites the first's values",
        "cosine restarts converted to iterations, eta_min_ratio, after a Poly",
    ],
)
def test_jit_vmap(precision, name):
    case = dict(cfgs=RETINANET, base=0.01, epoch_len=50, max_epochs=12) if name == "retinanet" else dict(EDGES[name])
    f = pm.param_scheduler(case.pop("cfgs"), case.pop("base"), **case)
    steps = jnp.arange(case["epoch_len"] * case["max_epochs"] + 3)
    scalar = jax.jit(f)
    per_step = np.array([scalar(k) for k in steps])
    assert_schedule_matches(np.asarray(jax.jit(jax.vmap(f))(steps)), per_step, precision)


def _cosine(base, eta_min, t, period):
    return eta_min + (base - eta_min) * (1 + math.cos(math.pi * (t % (2 * period)) / period)) / 2


HUGE = [2**31 - 2, 2**31 - 3, 10**9 + 7, 10**9 - 1, 10**9 - 2, 123456789]


@pytest.mark.parametrize(
    "cfg, epoch_len, exact",
    [
        (
            dict(type="CosineAnnealingLR", T_max=1000, eta_min=0.001, by_epoch=False),
            None,
            lambda k: _cosine(0.1, 0.001, min(k, 10**9 - 1), 1000),
        ),
        (
            dict(type="LinearLR", start_factor=0.5, by_epoch=False),
            None,
            lambda k: 0.1 * (0.5 + 0.5 * min(k, 10**9 - 1) / (10**9 - 1)),
        ),
        (
            dict(type="MultiStepLR", milestones=[10**8, 2 * 10**8, 3 * 10**8]),
            7,
            lambda k: 0.1 * 0.1 ** sum(k // 7 >= m for m in [10**8, 2 * 10**8, 3 * 10**8]),
        ),
        (dict(type="StepLR", step_size=10**7, gamma=0.5), 3, lambda k: 0.1 * 0.5 ** (k // 3 // 10**7)),
        (
            dict(type="CosineRestartLR", periods=[1000, 2**30], restart_weights=[1, 0.5], eta_min=0.0, by_epoch=False),
            None,
            lambda k: _cosine(0.05, 0.0, min(k, 10**9 - 1) - 1000, 2**30) if k >= 1000 else _cosine(0.1, 0.0, k, 1000),
        ),
    ],
)
def test_huge_steps(precision, cfg, epoch_len, exact):
    """Steps up to 2**31 - 2 against exact integer arithmetic in Python (MMEngine's INF end = 10**9)."""
    f = pm.param_scheduler([cfg], 0.1, epoch_len=epoch_len)
    expected = np.array([exact(k) for k in HUGE])
    assert_schedule_matches(np.asarray(f(jnp.asarray(HUGE))), expected, precision)
    assert_schedule_matches(jitted(f, HUGE), expected, precision, context="jitted")


BAD = [
    ([dict(type="FooLR")], {}, ValueError, r"param_scheduler\[0\]\.type must be one of .*'ConstantLR'.*got 'FooLR'"),
    ([dict(type="ReduceOnPlateauLR")], {}, ValueError, r"ReduceOnPlateau"),
    ([dict(type="OneCycleMomentum")], {}, ValueError, r"type must be one of"),
    (
        [dict(type="StepLR", step_size=2, begin=5, end=5)],
        dict(epoch_len=3),
        ValueError,
        r"param_scheduler\[0\]\.end must be larger than begin = 5, got 5",
    ),
    (
        [dict(type="StepLR", step_size=2)],
        {},
        ValueError,
        r"param_scheduler\[0\] \(StepLR, by_epoch=True\) needs epoch_len",
    ),
    (
        [dict(type="LinearLR", by_epoch=False), dict(type="MultiStepLR", milestones=[11, 8])],
        dict(epoch_len=3),
        ValueError,
        r"param_scheduler\[1\]\.milestones must be increasing, got \[11, 8\]",
    ),
    (
        [dict(type="ExponentialLR", gamma=-0.5, by_epoch=False)],
        {},
        ValueError,
        r"param_scheduler\[0\]\.gamma must be >= 0, got -0.5",
    ),
    ([dict(type="ExponentialLR", by_epoch=False)], {}, ValueError, r"param_scheduler\[0\]\.gamma is required"),
    (
        [dict(type="CosineAnnealingLR", eta_min=0.1, eta_min_ratio=0.1, by_epoch=False)],
        {},
        ValueError,
        r"eta_min or eta_min_ratio, not both",
    ),
    (
        [dict(type="CosineAnnealingLR", eta_min=-0.1, by_epoch=False)],
        {},
        ValueError,
        r"param_scheduler\[0\]\.eta_min must be >= 0",
    ),
    (
        [dict(type="CosineRestartLR", periods=[2, 3], by_epoch=False, eta_min=0.0)],
        {},
        ValueError,
        r"restart_weights must have one weight per period",
    ),
    ([dict(type="CosineRestartLR", periods=[2], by_epoch=False)], {}, ValueError, r"needs eta_min or eta_min_ratio"),
    (
        [dict(type="CosineRestartLR", periods=[2, 0], restart_weights=[1, 1], eta_min=0.0, by_epoch=False)],
        {},
        ValueError,
        r"periods\[1\] must be positive, got 0",
    ),
    (
        [dict(type="OneCycleLR", eta_max=0.1, total_steps=10, by_epoch=False, end=20)],
        {},
        ValueError,
        r"total_steps must be >= end - begin - 1 = 19 .*, got 10",
    ),
    (
        [dict(type="OneCycleLR", eta_max=0.1, pct_start=1.5, by_epoch=False, end=20)],
        {},
        ValueError,
        r"pct_start must be in \[0.0, 1.0\], got 1.5",
    ),
    ([dict(type="OneCycleLR", eta_max=0.1, pct_start=0.1, by_epoch=False, end=10)], {}, ValueError, r"empty phase"),
    (
        [dict(type="OneCycleParamScheduler", param_name="momentum", eta_max=0.1, by_epoch=False, end=9)],
        {},
        ValueError,
        r"only 'lr'",
    ),
    (
        [dict(type="StepParamScheduler", step_size=2, by_epoch=False)],
        {},
        TypeError,
        r"param_scheduler\[0\]\.param_name must name",
    ),
    (
        [dict(type="StepLR", step_size=2, by_epoch=False, convert_to_iter_based=True)],
        dict(epoch_len=3),
        ValueError,
        r"convert_to_iter_based needs by_epoch=True",
    ),
    (
        [dict(type="StepLR", step_size=2, by_epoch=False, T_max=3)],
        {},
        TypeError,
        r"param_scheduler\[0\]\.T_max is not an argument of StepLR",
    ),
    (
        [dict(type="StepLR", step_size=2, by_epoch=False), dict(type="StepMomentum", step_size=2, by_epoch=False)],
        {},
        ValueError,
        r"several parameters \['lr', 'momentum'\]",
    ),
    (
        [dict(type="ConstantLR", factor=0.0, by_epoch=False)],
        {},
        ValueError,
        r"param_scheduler\[0\]\.factor must be in \(0.0, 1.0\], got 0.0",
    ),
    ([dict(type="LinearLR", start_factor=1.5, by_epoch=False)], {}, ValueError, r"start_factor must be in"),
    (
        [dict(type="StepLR", step_size=2)],
        dict(epoch_len=3, max_epochs=4, max_iters=13),
        ValueError,
        r"max_iters must be max_epochs \* epoch_len",
    ),
    (
        [dict(type="StepLR", step_size=2, by_epoch="yes")],
        dict(epoch_len=3),
        TypeError,
        r"by_epoch must be True or False, got 'yes'",
    ),
    (
        [dict(type="StepLR", step_size=2, last_step=4)],
        dict(epoch_len=3),
        ValueError,
        r"last_step: resuming is not supported",
    ),
    ([dict(type="PolyLR", power=-1.0, by_epoch=False)], {}, ValueError, r"power must be >= 0"),
    (dict(step_size=2), {}, TypeError, r"param_scheduler\[0\] must be a dict with a 'type'"),
]


@pytest.mark.parametrize("cfgs, kwargs, error, match", BAD)
def test_bad_input(cfgs, kwargs, error, match):
    with pytest.raises(error, match=match):
        pm.param_scheduler(cfgs, 0.1, **kwargs)


def test_bad_base_value():
    with pytest.raises(ValueError, match=r"base_value must be >= 0, got -0.1"):
        pm.param_scheduler([], -0.1)


def test_empty_list_is_constant(precision):
    assert_schedule_matches(np.asarray(pm.param_scheduler([], 0.1)(jnp.arange(5))), np.full(5, 0.1), precision)


def test_can_fail(precision):
    """The comparison sees a one-ulp-scale change of a milestone's position."""
    cfgs = [dict(type="MultiStepLR", milestones=[3], by_epoch=True)]
    expected = reference(cfgs, 0.1, epoch_len=5, iters=30, max_epochs=6)
    shifted = curve(cfgs, 0.1, 30, epoch_len=5, max_epochs=6).copy()
    assert_schedule_matches(shifted, expected, precision)
    shifted[14] *= 1 + 1e-5
    with pytest.raises(AssertionError):
        assert_schedule_matches(shifted, expected, precision)
