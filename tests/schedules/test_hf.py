"""Parity of purelr.schedules.hf with transformers 5.24.0's schedules, side by side.

Each case builds ``transformers.get_scheduler(name, optimizer, ...)`` on a torch SGD optimizer and
records the lr after ``t`` calls of ``scheduler.step()`` (what the Trainer's update ``t`` uses),
against ``purelr.schedules.hf.get_scheduler(name, base_lr, ...)`` jitted (all cases of a type in
one compiled function): 1e-12 relative under x64, 1e-6 in float32.

Floor: transformers forms ``0.5 * (1 + cos(x))`` (and ``factor * (1 - m) + m``) by cancellation
near the cosine's minimum, and its argument ``x = 2 pi num_cycles p`` carries a rounding of
``x u``, so its values are known to about ``x / 2`` units of the peak; purelr evaluates the cosine
from the nearer end (``core.cosine_anneal``). The draws keep ``x <= 4 pi * 3`` (steps up to
``T + min(BEYOND, T - W)``, ``p <= 2``, ``num_cycles <= 3``; the restarts' ``num_cycles * p % 1``
loses ``num_cycles`` units, 49 in the draws). Stated: 32 units of the peak (x64); in float32 16
units for the cosines (float32 rounds ``num_cycles`` itself, and ``x`` inherits that) and 2 for
the others. Measured (``-s`` prints them): x64 20 units (cosine), 87 (restarts, 49 cycles: still
within 1.4e-13 of the values themselves); float32 14 units (cosine), 2.6 (the others).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from transformers import optimization as hf_optimization

from purelr.schedules import hf
from tests.bad_inputs import assert_purelr_rejects
from tests.parity import SCHEDULE_RTOL, UNIT_ROUNDOFF, assert_schedule_matches, rounding_floor

CASES = {"x64": 30, "f32": 12}  # random configurations per type
BEYOND = 25  # steps run past num_training_steps


def hf_curve(name, base_lr, steps, **kwargs):
    """The lr after ``t`` calls of ``step()``, ``t`` in ``range(steps)``."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base_lr)
    scheduler = transformers.get_scheduler(name, optimizer, **kwargs)
    values = []
    for _ in range(steps):
        values.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return np.asarray(values)


def floor(precision, name=""):
    units = 32 if precision == "x64" else 16 if "cos" in name or "stable" in name else 2
    return rounding_floor(SCHEDULE_RTOL[precision], units, reference=precision)


def random_case(name, rng):
    """``(base_lr, get_scheduler kwargs)`` drawn for ``name``; edges (no warmup, warmup = total) included."""
    total = int(rng.integers(1, 120))
    warmup = int(rng.choice([0, total, int(rng.integers(0, total + 1)), int(rng.integers(0, 12))]))
    base_lr = float(10 ** rng.uniform(-5, 0))
    kwargs = dict(num_warmup_steps=warmup, num_training_steps=total)
    extra = {}
    if name in ("cosine", "cosine_with_min_lr", "cosine_warmup_with_min_lr"):
        extra["num_cycles"] = float(rng.choice([0.5, 0.5, rng.uniform(0.1, 3.0), int(rng.integers(1, 4))]))
    if name == "cosine_with_restarts":
        extra["num_cycles"] = int(rng.choice([1, int(rng.integers(0, 8)), 49]))
    if name == "polynomial":  # W = T divides by T - W = 0 at t = T (ZeroDivisionError)
        kwargs["num_warmup_steps"] = min(warmup, total - 1)
        extra = dict(
            lr_end=base_lr * float(rng.choice([0.0, rng.uniform(0, 0.9)])),
            power=float(rng.choice([1.0, 2.0, rng.uniform(0.2, 4.0)])),
        )
    if name == "inverse_sqrt":
        del kwargs["num_training_steps"]
        if rng.random() < 0.5:
            extra["timescale"] = int(rng.integers(1, 500))
    if name in ("cosine_with_min_lr", "cosine_warmup_with_min_lr"):
        extra["min_lr" if rng.random() < 0.5 else "min_lr_rate"] = (
            base_lr * rng.uniform(0, 0.5) if rng.random() < 0.5 else float(rng.uniform(0, 0.5))
        )
        if "min_lr" in extra:
            extra["min_lr"] = float(extra["min_lr"])
    if name == "cosine_warmup_with_min_lr" and rng.random() < 0.5:
        extra["warmup_lr_rate"] = float(rng.uniform(0, 1))
    if name == "warmup_stable_decay":
        decay = int(rng.integers(0, total + 1))
        extra = dict(
            num_decay_steps=decay,
            warmup_type=str(rng.choice(hf.WSD_TYPES)),
            decay_type=str(rng.choice(hf.WSD_TYPES)),
            min_lr_ratio=float(rng.choice([0.0, rng.uniform(0, 0.5)])),
            num_cycles=float(rng.choice([0.5, rng.uniform(0.1, 2.0)])),
        )
        kwargs["num_warmup_steps"] = min(warmup, total - decay)
        if rng.random() < 0.3:
            extra["num_stable_steps"] = int(rng.integers(0, 40))
            del kwargs["num_training_steps"]
    if name == "constant_with_warmup":
        del kwargs["num_training_steps"]
    if name == "constant":
        kwargs = {}
    return base_lr, dict(kwargs, scheduler_specific_kwargs=extra or None)


STEP_TYPES = [name for name in hf.SCHEDULER_TYPES if name not in hf.METRIC_DRIVEN]


def test_every_scheduler_type_is_covered():
    """The twin knows every ``SchedulerType`` of the installed transformers, and no other."""
    assert set(hf.SCHEDULER_TYPES) == {member.value for member in transformers.SchedulerType}
    assert set(hf.TYPE_TO_SCHEDULER_FUNCTION) | set(hf.METRIC_DRIVEN) == set(hf.SCHEDULER_TYPES)
    for name, function in hf.TYPE_TO_SCHEDULER_FUNCTION.items():
        original = hf_optimization.TYPE_TO_SCHEDULER_FUNCTION[transformers.SchedulerType(name)]
        assert function.__name__ == original.__name__, (name, function.__name__, original.__name__)


@pytest.mark.parametrize("name", STEP_TYPES)
def test_random_configurations(name, precision):
    """``CASES`` seeded draws of each type, every step up to ``num_training_steps + BEYOND``."""
    rng = np.random.default_rng(sum(map(ord, name)) + (precision == "f32"))
    cases = [random_case(name, rng) for _ in range(CASES[precision])]
    steps = 120 + BEYOND + 60
    schedules = [hf.get_scheduler(name, base_lr, **kwargs) for base_lr, kwargs in cases]
    values = np.asarray(jax.jit(lambda t: jnp.stack([s(t) for s in schedules]))(jnp.arange(steps)))
    worst = units = 0.0
    for (base_lr, kwargs), actual in zip(cases, values):
        total, warmup = kwargs.get("num_training_steps") or 120, kwargs.get("num_warmup_steps") or 0
        length = total + 1 + min(BEYOND, max(1, total - warmup))
        expected = hf_curve(name, base_lr, length, **kwargs)
        worst = max(
            worst,
            assert_schedule_matches(
                actual[:length], expected, precision, floor=floor(precision, name), context=f"{name} {base_lr} {kwargs}"
            ),
        )
        units = max(
            units, np.max(np.abs(actual[:length] - expected)) / np.max(np.abs(expected)) / UNIT_ROUNDOFF[precision]
        )
    print(f"{name} {precision}: worst {worst:.3g}, {units:.2g} units of the peak")


@pytest.mark.parametrize(
    "name, base_lr, kwargs",
    [
        # 49 restarts over 49 * k steps: transformers' 49 * (1 / 49) is 0.9999999999999999, a step at the end of a cycle
        (
            "cosine_with_restarts",
            0.1,
            dict(num_warmup_steps=3, num_training_steps=3 + 49 * 3, scheduler_specific_kwargs=dict(num_cycles=49)),
        ),
        ("cosine", 1e-3, dict(num_warmup_steps=0, num_training_steps=1)),
        ("linear", 1e-3, dict(num_warmup_steps=5, num_training_steps=5)),
        ("inverse_sqrt", 1e-3, dict(num_warmup_steps=0)),  # timescale 10000
        (
            "polynomial",
            2e-5,
            dict(num_warmup_steps=10, num_training_steps=1000, scheduler_specific_kwargs=dict(lr_end=1e-7, power=1.0)),
        ),
        (
            "warmup_stable_decay",
            3e-4,
            dict(
                num_warmup_steps=0,
                num_training_steps=100,
                scheduler_specific_kwargs=dict(num_decay_steps=100, decay_type="1-sqrt"),
            ),
        ),
    ],
)
def test_edges(name, base_lr, kwargs, precision):
    steps = (kwargs.get("num_training_steps") or 300) + BEYOND
    expected = hf_curve(name, base_lr, steps, **kwargs)
    actual = np.asarray(jax.jit(jax.vmap(hf.get_scheduler(name, base_lr, **kwargs)))(jnp.arange(steps)))
    assert_schedule_matches(actual, expected, precision, context=name, floor=floor(precision, name))


def test_huge_steps():
    """Steps near 2**31 - 1 against transformers' lambdas in Python floats (x64)."""
    with jax.enable_x64(True):
        steps = np.asarray([2**24 - 1, 2**24, 2**31 - 2, 2**31 - 1])
        total = 2**31 - 10
        for name, kwargs in [
            ("linear", {}),
            ("cosine", dict(num_cycles=0.5)),
            ("cosine_with_restarts", dict(num_cycles=3)),
        ]:
            optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.5)
            reference = transformers.get_scheduler(
                name,
                optimizer,
                num_warmup_steps=1000,
                num_training_steps=total,
                scheduler_specific_kwargs=kwargs or None,
            )
            expected = np.asarray([0.5 * reference.lr_lambdas[0](int(t)) for t in steps])
            schedule = hf.get_scheduler(name, 0.5, 1000, total, kwargs or None)
            assert_schedule_matches(
                np.asarray(jax.jit(schedule)(steps)), expected, "x64", context=name, floor=floor("x64")
            )


BAD = {
    "unknown-type": (
        lambda: hf.get_scheduler("cosine_with_restart", 1e-3, 0, 10),
        ValueError,
        "'cosine_with_restart'",
        "cosine_with_restarts",
    ),
    "plateau": (lambda: hf.get_scheduler("reduce_lr_on_plateau", 1e-3), ValueError, "'reduce_lr_on_plateau'", "metric"),
    "greedy": (lambda: hf.get_scheduler("greedy", 1e-3), ValueError, "'greedy'", "training loss"),
    "no-training-steps": (lambda: hf.get_scheduler("linear", 1e-3, 0), ValueError, "num_training_steps=None"),
    "no-warmup-steps": (lambda: hf.get_scheduler("linear", 1e-3), ValueError, "num_warmup_steps=None"),
    "negative-warmup": (lambda: hf.get_scheduler("linear", 1e-3, -1, 9), ValueError, "num_warmup_steps", "-1"),
    "base-lr-str": (lambda: hf.get_scheduler("linear", "1e-3", 0, 9), TypeError, "base_lr", "'1e-3'"),
    "lr-end-above": (
        lambda: hf.get_scheduler("polynomial", 1e-3, 0, 10, dict(lr_end=1e-3)),
        ValueError,
        "lr_end=0.001",
        "base_lr=0.001",
    ),
    "min-lr-missing": (
        lambda: hf.get_scheduler("cosine_with_min_lr", 1e-3, 0, 10),
        ValueError,
        "min_lr",
        "min_lr_rate",
    ),
    "min-lr-both": (
        lambda: hf.get_scheduler("cosine_with_min_lr", 1e-3, 0, 10, dict(min_lr=0, min_lr_rate=0)),
        ValueError,
        "min_lr=0",
        "min_lr_rate=0",
    ),
    "wsd-no-length": (
        lambda: hf.get_scheduler("warmup_stable_decay", 1e-3, 0, None, dict(num_decay_steps=3)),
        ValueError,
        "num_training_steps",
        "num_stable_steps",
    ),
    "wsd-decay-type": (
        lambda: hf.get_scheduler("warmup_stable_decay", 1e-3, 0, 9, dict(num_decay_steps=3, decay_type="exp")),
        ValueError,
        "decay_type",
        "'exp'",
    ),
    "restarts-fraction": (
        lambda: hf.get_scheduler("cosine_with_restarts", 1e-3, 0, 9, dict(num_cycles=1.5)),
        ValueError,
        "num_cycles",
        "1.5",
    ),
    "unknown-kwarg": (
        lambda: hf.get_scheduler("cosine", 1e-3, 0, 9, dict(num_cycle=2)),
        ValueError,
        "'num_cycle'",
        "num_cycles",
    ),
    "timescale-zero": (
        lambda: hf.get_scheduler("inverse_sqrt", 1e-3, 0, None, dict(timescale=0)),
        ValueError,
        "timescale",
        "0",
    ),
}


@pytest.mark.parametrize("name", BAD)
def test_bad_input(name):
    """Refused before tracing, by purelr's own check, naming the argument and the value."""
    call, exception, *needles = BAD[name]
    assert_purelr_rejects(call, exception, *needles)


def test_restart_table_finds_transformers_float_misses():
    """The edge above is one: ``49 * (1 / 49) % 1`` is not 0 in floats."""
    assert (49.0 * (1.0 / 49.0)) % 1.0 != 0.0
    assert math.isclose(
        hf_optimization._get_cosine_with_hard_restarts_schedule_with_warmup_lr_lambda(
            3 + 3, num_warmup_steps=3, num_training_steps=3 + 49 * 3, num_cycles=49
        ),
        0.0,
        abs_tol=1e-20,
    )
