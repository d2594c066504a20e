"""Parity of purelr.schedules.deepspeed with DeepSpeed 0.19.8's schedulers, side by side.

Each DeepSpeed scheduler is built on a torch Adam as the engine builds it and read at every update
``t`` (after ``t`` calls of ``step()``; far steps through ``step(t - 1)``); purelr's twin runs under
``jax.jit(jax.vmap(...))`` on the same steps: 1e-12 relative under x64, 1e-6 in float32, on
seeded random arguments and the edges (step 0, the warmup's end, ``total_num_steps``, the cycle's
halves and end, past the end, 2**31 - 2).
"""

import math

import numpy as np
import pytest

from purelr.references import deepspeed as reference
from purelr.schedules import deepspeed as ds
from tests.parity import SCHEDULE_RTOL, assert_schedule_matches, jitted, rounding_floor

HUGE = 2**31 - 2
CASES = {"x64": 30, "f32": 5}


def floor(precision):
    """8 float64 units of the peak: DeepSpeed forms ``(1 + cos(pi p)) / 2`` (WarmupCosineLR) by
    cancellation near its end, and OneCycle's cycle position as ``1 + t / total - cycle``, whose
    rounding (a unit of 1) its division by ``first / total`` magnifies (measured 2.3 units of the
    peak for the random cycles below, first halves down to 1/25 of the cycle)."""
    return rounding_floor(SCHEDULE_RTOL[precision], 8 if precision == "x64" else 1, reference=precision)


def _steps(*edges, span=60):
    points = {t + d for t in edges for d in (-1, 0, 1)} | set(range(span)) | {HUGE}
    return np.asarray(sorted(p for p in points if 0 <= p <= HUGE))


def _warmup_args(rng, kind):
    args = dict(
        warmup_num_steps=int(rng.choice([1, 2, 3, int(rng.integers(4, 40)), int(rng.integers(40, 4000))])),
        warmup_type=str(rng.choice(["log", "linear"])),
    )
    if kind == "WarmupCosineLR":
        args.update(
            warmup_min_ratio=float(rng.choice([0.0, rng.uniform(0, 0.5)])),
            cos_min_ratio=float(rng.choice([0.0, 1e-4, rng.uniform(0, 0.5)])),
        )
    else:
        args.update(
            warmup_min_lr=float(rng.choice([0.0, rng.uniform(0, 1e-4)])),
            warmup_max_lr=float(rng.choice([1e-3, rng.uniform(1e-4, 1e-2)])),
        )
    if kind != "WarmupLR":
        args["total_num_steps"] = int(
            rng.choice(
                [
                    args["warmup_num_steps"] + int(rng.integers(0, 50)),
                    int(rng.integers(1, 10_000)),
                    max(1, args["warmup_num_steps"] - 1),
                ]
            )
        )
    return args


def _one_cycle_args(rng):
    first = int(rng.choice([1, int(rng.integers(2, 30)), int(rng.integers(30, 3000))]))
    second = rng.choice([None, 0, int(rng.integers(1, 30)), int(rng.integers(30, 3000))])
    stairs = [0, 0, int(rng.integers(1, 6))]
    return dict(
        cycle_min_lr=float(rng.uniform(0, 1e-3)),
        cycle_max_lr=float(rng.uniform(1e-3, 1e-1)),
        decay_lr_rate=float(rng.choice([0.0, rng.uniform(0, 2)])),
        cycle_first_step_size=first,
        cycle_second_step_size=None if second is None else int(second),
        cycle_first_stair_count=int(rng.choice(stairs)),
        cycle_second_stair_count=rng.choice([None, int(rng.choice(stairs))]),
        decay_step_size=int(rng.choice([0, int(rng.integers(1, 100))])),
        cycle_min_mom=float(rng.uniform(0.7, 0.85)),
        cycle_max_mom=float(rng.uniform(0.85, 0.99)),
        decay_mom_rate=float(rng.choice([0.0, rng.uniform(0, 0.1)])),
    )


def _range_test_args(rng):
    return dict(
        lr_range_test_min_lr=float(rng.uniform(1e-5, 1e-2)),
        lr_range_test_step_size=int(rng.integers(1, 3000)),
        lr_range_test_step_rate=float(rng.uniform(0, 10)),
        lr_range_test_staircase=bool(rng.integers(2)),
    )


def _draw(kind, rng):
    if kind == "OneCycle":
        args = _one_cycle_args(rng)
        total = args["cycle_first_step_size"] + (
            args["cycle_second_step_size"] is None
            and args["cycle_first_step_size"]
            or args["cycle_second_step_size"]
            or 0
        )
        return args, (args["cycle_first_step_size"], total, total + args["decay_step_size"])
    if kind == "LRRangeTest":
        args = _range_test_args(rng)
        return args, (args["lr_range_test_step_size"],)
    args = _warmup_args(rng, kind)
    return args, (args["warmup_num_steps"], args.get("total_num_steps", 0))


def _twin(kind, args, base_lr):
    clean = {k: (int(v) if isinstance(v, np.integer) else v) for k, v in args.items()}
    return ds.FUNCTIONS[kind](base_lr, **clean), clean


@pytest.mark.parametrize("kind", ds.SCHEDULERS)
def test_random_arguments(kind, precision):
    """Seeded random arguments of each scheduler, every step up to 60, the edges, and 2**31 - 2."""
    rng = np.random.default_rng(ds.SCHEDULERS.index(kind))
    worst = 0.0
    for case in range(CASES[precision]):
        args, edges = _draw(kind, rng)
        base_lr = float(rng.uniform(1e-4, 1e-1))
        schedule, clean = _twin(kind, args, base_lr)
        steps = _steps(*edges)
        lr, beta1, beta2 = reference.curves(kind, clean, steps, base_lr)
        context = f"{kind} #{case} {clean} base_lr={base_lr}"
        worst = max(
            worst,
            assert_schedule_matches(jitted(schedule, steps), lr, precision, context=context, floor=floor(precision)),
        )
        if kind == "OneCycle":
            momentum = ds.one_cycle_momentum(**clean)
            worst = max(
                worst,
                assert_schedule_matches(
                    jitted(momentum, steps), beta1, precision, context=f"{context} momentum", floor=floor(precision)
                ),
            )
            assert np.all(beta2 == ds.ONE_CYCLE_BETA2), context
    print(f"{kind} {precision}: worst {worst:.3g}")


def test_edges(precision):
    """Hand-picked: WarmupLR's log warmup reaches the peak at W, the linear one at W + 1;
    WarmupDecayLR ends at total + 1; WarmupCosineLR starts at 0 and holds cos_min_ratio past the
    end; OneCycle's momentum starts at cycle_min_mom and its cycle wraps to cycle_min_lr at the end."""
    cases = [
        ("WarmupLR", dict(warmup_num_steps=10, warmup_type="log"), [0, 1, 9, 10, 11]),
        ("WarmupLR", dict(warmup_num_steps=10, warmup_type="linear", warmup_max_lr=None), [0, 1, 10, 11, 12]),
        ("WarmupLR", dict(warmup_num_steps=1), [0, 1, 2, 3]),
        ("WarmupDecayLR", dict(total_num_steps=20, warmup_num_steps=5, warmup_type="linear"), [0, 5, 6, 20, 21, 22]),
        ("WarmupCosineLR", dict(total_num_steps=20, warmup_num_steps=5), [0, 1, 5, 6, 20, 21, HUGE]),
        ("WarmupCosineLR", dict(total_num_steps=3, warmup_num_steps=5, cos_min_ratio=0.1), [0, 4, 5, 6, 7]),
        (
            "OneCycle",
            dict(cycle_min_lr=1e-3, cycle_max_lr=1e-2, cycle_first_step_size=4, cycle_second_step_size=0),
            [0, 1, 3, 4, 5, 6],
        ),
        (
            "OneCycle",
            dict(
                cycle_min_lr=1e-3,
                cycle_max_lr=1e-2,
                cycle_first_step_size=5,
                cycle_second_step_size=7,
                cycle_first_stair_count=2,
                cycle_second_stair_count=3,
                decay_step_size=3,
                decay_lr_rate=0.5,
                decay_mom_rate=0.2,
            ),
            list(range(20)) + [HUGE],
        ),
        ("LRRangeTest", dict(lr_range_test_step_size=7, lr_range_test_staircase=True), [0, 6, 7, 8, HUGE]),
    ]
    for kind, args, steps in cases:
        schedule, _ = _twin(kind, args, 3e-3)
        lr, beta1, _ = reference.curves(kind, args, steps, 3e-3)
        assert_schedule_matches(
            jitted(schedule, np.asarray(steps)), lr, precision, context=f"{kind} {args}", floor=floor(precision)
        )
        if kind == "OneCycle":
            assert_schedule_matches(
                jitted(ds.one_cycle_momentum(**args), np.asarray(steps)),
                beta1,
                precision,
                context=f"{kind} momentum {args}",
                floor=floor(precision),
            )
    assert math.isclose(float(ds.warmup_lr(1.0, warmup_num_steps=10)(10)), 1.0)
    assert float(ds.warmup_cosine_lr(1.0, 20, warmup_num_steps=5)(0)) == 0.0
    fresh = ds.scheduler(dict(type="WarmupLR", params=dict(last_batch_iteration=-1, warmup_num_steps=10)), 1.0)
    assert float(fresh(10)) == float(ds.warmup_lr(1.0, warmup_num_steps=10)(10))


@pytest.mark.parametrize(
    "cfg, match",
    [
        (dict(type="WarmupLRR", params={}), r"scheduler.type must be one of .*did you mean \['WarmupLR'"),
        (dict(type="WarmupDecayLR", params=dict(warmup_num_steps=10)), r"needs \['total_num_steps'\]"),
        (dict(type="WarmupLR", params=dict(warmup_steps=10)), r"unknown key 'warmup_steps'.*warmup_num_steps"),
        (dict(type="WarmupLR", params=dict(warmup_type="cosine")), r"warmup_type must be one of \['log', 'linear'\]"),
        (dict(type="WarmupLR", params=dict(warmup_num_steps=0)), r"warmup_num_steps must be positive, got 0"),
        (
            dict(type="OneCycle", params=dict(cycle_min_lr=0, cycle_max_lr=1, cycle_first_step_size=0)),
            r"cycle_first_step_size must be positive",
        ),
        (
            dict(type="LRRangeTest", params=dict(lr_range_test_step_size=2.5)),
            r"lr_range_test_step_size must be an integer",
        ),
        (
            dict(type="WarmupLR", params=dict(last_batch_iteration=10)),
            r"last_batch_iteration = 10: a resumed scheduler",
        ),
    ],
)
def test_bad_input(cfg, match):
    with pytest.raises((ValueError, TypeError), match=match):
        ds.scheduler(cfg, 1e-3)
