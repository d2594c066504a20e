"""Twins of DeepSpeed 0.19.8's learning-rate schedulers (``deepspeed.runtime.lr_schedules``).

``f(t)`` is the lr (or momentum) in force at optimizer update ``t`` of a DeepSpeed engine, which
builds the scheduler with the optimizer and calls ``scheduler.step()`` once after each optimizer
step: the value the scheduler holds after ``t`` calls of ``step()``, ``t = 0`` being what its
constructor sets. The scheduler then stands at ``last_batch_iteration = t - 1``. Each twin takes
DeepSpeed's keyword names and defaults (the ``scheduler.params`` of a DeepSpeed config), with the
optimizer's lr first (``base_lr``: read by ``WarmupLR`` when ``warmup_max_lr`` is None and by
``WarmupCosineLR``, whose values are ratios of it; the others set absolute lrs and ignore it).
A DeepSpeed scheduler sets one lr for every parameter group (a scalar is broadcast over them).

Step counts are compared and divided in integers, so every ``t`` in ``[0, 2**31 - 1]`` is exact.
This module imports jax and numpy only.
"""

from __future__ import annotations

import inspect
import math
from typing import Callable

import jax.numpy as jnp

from purelr.schedules import validate
from purelr.schedules.core import Schedule, as_steps, as_values, cosine_anneal, fraction

SCHEDULERS = ("WarmupLR", "WarmupDecayLR", "WarmupCosineLR", "OneCycle", "LRRangeTest")
"""The ``scheduler.type`` names of a DeepSpeed config (``lr_schedules.VALID_LR_SCHEDULES``)."""
WARMUP_TYPES = ("log", "linear")
ONE_CYCLE_BETA2 = 0.99
"""``OneCycle`` with ``cycle_momentum`` sets each group's ``betas`` to ``(momentum, 0.99)``: Adam's
beta2 is 0.99 from the scheduler's construction on, whatever the optimizer was given."""


def _warmup(warmup_num_steps, warmup_type):
    """``(length, i -> fraction)``: DeepSpeed's warmup ``gamma`` at ``last_batch_iteration = i``
    (``i >= 0``, ``i < length``), ``log(i + 1) / log(length)`` (``'log'``) or ``i / length``
    (``'linear'``), ``length = max(2, warmup_num_steps)``."""
    length = max(2, validate.positive_int("warmup_num_steps", warmup_num_steps))
    kind = validate.one_of("warmup_type", warmup_type, WARMUP_TYPES)
    inverse_log = 1.0 / math.log(length)

    def gamma(i):
        if kind == "log":
            return inverse_log * jnp.log(as_values(jnp.maximum(i, 0) + 1))
        return fraction(i, length)

    return length, gamma


def _warmup_then(base_lr, warmup_min_lr, warmup_max_lr, warmup_num_steps, warmup_type, after):
    """``min + (max - min) * gamma(i)``, ``gamma`` the warmup fraction for ``i < length`` and
    ``after(i, length)`` from there; ``warmup_min_lr`` at ``t = 0``."""
    low = validate.nonnegative("warmup_min_lr", warmup_min_lr)
    high = validate.nonnegative(
        "base_lr" if warmup_max_lr is None else "warmup_max_lr", base_lr if warmup_max_lr is None else warmup_max_lr
    )
    delta = high - low
    length, gamma = _warmup(warmup_num_steps, warmup_type)

    def schedule(step):
        t = as_steps(step)
        i = t - 1
        fraction_done = jnp.where(i < length, gamma(i), after(i, length))
        return jnp.where(t == 0, as_values(low), low + delta * fraction_done)

    return schedule


def warmup_lr(
    base_lr: float,
    warmup_min_lr: float = 0.0,
    warmup_max_lr: float | None = None,
    warmup_num_steps: int = 1000,
    warmup_type: str = "log",
) -> Schedule:
    """``deepspeed.runtime.lr_schedules.WarmupLR``: from ``warmup_min_lr`` to ``warmup_max_lr``
    (None: ``base_lr``, the optimizer's lr) over ``W = max(2, warmup_num_steps)`` steps, then flat::

        f(0) = warmup_min_lr
        f(t) = warmup_min_lr + (warmup_max_lr - warmup_min_lr) * gamma(t - 1)
        gamma(i) = log(i + 1) / log(W) ('log') or i / W ('linear') for i < W, else 1

    (the linear warmup reaches the peak at ``t = W + 1``, the log one at ``t = W``).
    """
    return _warmup_then(
        base_lr,
        warmup_min_lr,
        warmup_max_lr,
        warmup_num_steps,
        warmup_type,
        lambda i, length: jnp.ones(jnp.shape(i), as_values(0).dtype),
    )


def warmup_decay_lr(
    base_lr: float,
    total_num_steps: int,
    warmup_min_lr: float = 0.0,
    warmup_max_lr: float | None = 0.001,
    warmup_num_steps: int = 1000,
    warmup_type: str = "log",
) -> Schedule:
    """``deepspeed.runtime.lr_schedules.WarmupDecayLR``: ``warmup_lr``, then linear decay to
    ``warmup_min_lr`` at ``t = total_num_steps + 1``; for ``i = t - 1 >= W``,
    ``gamma(i) = max(0, (total_num_steps - i) / max(1, total_num_steps - W))``.
    ``warmup_max_lr`` defaults to 0.001 (not the optimizer's lr) as in DeepSpeed.
    """
    total = validate.nonnegative_int("total_num_steps", total_num_steps)

    def after(i, length):
        return jnp.maximum(fraction(total - i, max(1, total - length)), 0.0)

    return _warmup_then(base_lr, warmup_min_lr, warmup_max_lr, warmup_num_steps, warmup_type, after)


def warmup_cosine_lr(
    base_lr: float,
    total_num_steps: int,
    warmup_min_ratio: float = 0.0,
    warmup_num_steps: int = 1000,
    cos_min_ratio: float = 0.0001,
    warmup_type: str = "log",
) -> Schedule:
    """``deepspeed.runtime.lr_schedules.WarmupCosineLR``: ``base_lr`` (the optimizer's lr) times a
    ratio; ``f(0) = 0``; for ``i = t - 1``, ``W = max(2, warmup_num_steps)``::

        ratio = warmup_min_ratio + (1 - warmup_min_ratio) * gamma(i)                 (i < W)
        ratio = max(0, cos_min_ratio + (1 - cos_min_ratio) * (1 + cos(pi * p)) / 2)  (i >= W)
        p = min(1, (i - W + 1) / max(1, total_num_steps - W))
    """
    base = validate.nonnegative("base_lr", base_lr)
    low = validate.finite("warmup_min_ratio", warmup_min_ratio)
    end = validate.finite("cos_min_ratio", cos_min_ratio)
    total = validate.nonnegative_int("total_num_steps", total_num_steps)
    length, gamma = _warmup(warmup_num_steps, warmup_type)
    decay_steps = max(1, total - length)

    def schedule(step):
        t = as_steps(step)
        i = t - 1
        warming = low + (1.0 - low) * gamma(i)
        done = jnp.clip(i - length + 1, 0, decay_steps)
        cooling = jnp.maximum(cosine_anneal(1.0, end, done, decay_steps, left=decay_steps - done), 0.0)
        ratio = jnp.where(i < length, warming, cooling)
        return jnp.where(t == 0, as_values(0.0), base * ratio)

    return schedule


class _Cycle:
    """``OneCycle``'s position in its cycle: ``scale(t)`` (0 at the cycle's ends, 1 at its peak)
    for ``t <= total``, and ``decay(t, rate)``, the factor ``1 + rate * (t - total) / decay_step_size``
    after it (None where DeepSpeed skips the decay)."""

    def __init__(self, first, second, first_stairs, second_stairs, decay_step_size):
        self.first = validate.positive_int("cycle_first_step_size", first)
        self.second = self.first if second is None else validate.nonnegative_int("cycle_second_step_size", second)
        self.total = validate.positive_int("cycle_first_step_size + cycle_second_step_size", self.first + self.second)
        self.first_stairs = validate.nonnegative_int("cycle_first_stair_count", first_stairs)
        self.second_stairs = (
            self.first_stairs
            if second_stairs is None
            else validate.nonnegative_int("cycle_second_stair_count", second_stairs)
        )
        for name, stairs in (
            ("cycle_first_stair_count", self.first_stairs),
            ("cycle_second_stair_count", self.second_stairs),
        ):
            validate.integer(f"{name} * (cycle_first_step_size + cycle_second_step_size)", stairs * self.total)
        self.decay_step_size = validate.nonnegative_int("decay_step_size", decay_step_size)

    def scale(self, t):
        """``t / first`` rising, ``(total - t) / second`` falling, of ``c = t mod total``; with
        stairs, ``floor(position * stairs) / stairs`` (the falling half's stairs when ``c > first``)."""
        c = t % self.total
        rising = c <= self.first
        smooth = jnp.where(rising, fraction(c, self.first), fraction(self.total - c, max(self.second, 1)))
        numerator = jnp.where(rising, c, self.total - c)
        denominator = jnp.where(rising, self.first, max(self.second, 1))
        stairs = jnp.where(rising, self.first_stairs, self.second_stairs)
        stepped = fraction(numerator * stairs // denominator, jnp.maximum(stairs, 1))
        return jnp.where(stairs > 0, stepped, smooth)

    def decay(self, t, rate):
        if self.decay_step_size == 0 or rate == 0:
            return None
        return 1.0 + rate * fraction(t - self.total, self.decay_step_size)


def _along_cycle(start, peak, rate, cycle: _Cycle, decayed) -> Schedule:
    """``start + (peak - start) * cycle.scale(t)`` for ``t <= cycle.total``, then
    ``decayed(start, cycle.decay(t, rate))`` (``start`` where DeepSpeed skips the decay)."""

    def schedule(step):
        t = as_steps(step)
        inside = start + (peak - start) * cycle.scale(t)
        factor = cycle.decay(t, rate)
        after = jnp.full(jnp.shape(t), start, as_values(0).dtype) if factor is None else decayed(start, factor)
        return jnp.where(t <= cycle.total, inside, after)

    return schedule


def one_cycle(
    base_lr: float,
    cycle_min_lr: float,
    cycle_max_lr: float,
    decay_lr_rate: float = 0.0,
    cycle_first_step_size: int = 2000,
    cycle_second_step_size: int | None = None,
    cycle_first_stair_count: int = 0,
    cycle_second_stair_count: int | None = None,
    decay_step_size: int = 0,
    cycle_momentum: bool = True,
    cycle_min_mom: float = 0.8,
    cycle_max_mom: float = 0.9,
    decay_mom_rate: float = 0.0,
) -> Schedule:
    """``deepspeed.runtime.lr_schedules.OneCycle``'s lr: ``cycle_min_lr + (cycle_max_lr -
    cycle_min_lr) * s`` for ``t <= total = first + second`` step sizes, ``s`` rising as
    ``t / first`` over the first half and falling as ``(total - t) / second`` (stairs:
    ``floor(s * stair_count) / stair_count``); then ``cycle_min_lr / (1 + decay_lr_rate * (t -
    total) / decay_step_size)``, or ``cycle_min_lr`` when either is 0. The momentum arguments
    are accepted for the config's sake: :func:`one_cycle_momentum` gives that curve.
    """
    cycle = _Cycle(
        cycle_first_step_size,
        cycle_second_step_size,
        cycle_first_stair_count,
        cycle_second_stair_count,
        decay_step_size,
    )
    return _along_cycle(
        validate.nonnegative("cycle_min_lr", cycle_min_lr),
        validate.nonnegative("cycle_max_lr", cycle_max_lr),
        validate.finite("decay_lr_rate", decay_lr_rate),
        cycle,
        lambda value, factor: value / factor,
    )


def one_cycle_momentum(
    cycle_min_lr: float = 0.0,
    cycle_max_lr: float = 0.0,
    decay_lr_rate: float = 0.0,
    cycle_first_step_size: int = 2000,
    cycle_second_step_size: int | None = None,
    cycle_first_stair_count: int = 0,
    cycle_second_stair_count: int | None = None,
    decay_step_size: int = 0,
    cycle_momentum: bool = True,
    cycle_min_mom: float = 0.8,
    cycle_max_mom: float = 0.9,
    decay_mom_rate: float = 0.0,
) -> Schedule:
    """The momentum (Adam's beta1) ``OneCycle`` sets with ``cycle_momentum``, beta2 being
    ``ONE_CYCLE_BETA2``: ``cycle_min_mom`` at ``t = 0`` (the constructor's), then
    ``cycle_max_mom - (cycle_max_mom - cycle_min_mom) * s`` with ``one_cycle``'s ``s`` while
    ``t <= total``, and ``cycle_max_mom * (1 + decay_mom_rate * (t - total) / decay_step_size)``
    after it (``cycle_max_mom`` when either is 0: DeepSpeed's decay multiplies the momentum up).
    Takes ``one_cycle``'s keywords (the lr ones unused); a caller checks ``cycle_momentum``.
    """
    cycle = _Cycle(
        cycle_first_step_size,
        cycle_second_step_size,
        cycle_first_stair_count,
        cycle_second_stair_count,
        decay_step_size,
    )
    low = validate.nonnegative("cycle_min_mom", cycle_min_mom)
    curve = _along_cycle(
        validate.nonnegative("cycle_max_mom", cycle_max_mom),
        low,
        validate.finite("decay_mom_rate", decay_mom_rate),
        cycle,
        lambda value, factor: value * factor,
    )

    def schedule(step):
        return jnp.where(as_steps(step) == 0, as_values(low), curve(step))

    return schedule


def lr_range_test(
    base_lr: float,
    lr_range_test_min_lr: float = 1e-3,
    lr_range_test_step_size: int = 2000,
    lr_range_test_step_rate: float = 1.0,
    lr_range_test_staircase: bool = False,
) -> Schedule:
    """``deepspeed.runtime.lr_schedules.LRRangeTest``: ``lr_range_test_min_lr * (1 + step_rate * x)``,
    ``x = t / step_size`` (staircase: ``t // step_size``); ``base_lr`` unused."""
    low = validate.nonnegative("lr_range_test_min_lr", lr_range_test_min_lr)
    size = validate.positive_int("lr_range_test_step_size", lr_range_test_step_size)
    rate = validate.finite("lr_range_test_step_rate", lr_range_test_step_rate)
    staircase = validate.flag("lr_range_test_staircase", lr_range_test_staircase)

    def schedule(step):
        t = as_steps(step)
        interval = as_values(t // size) if staircase else fraction(t, size)
        return low * (1.0 + rate * interval)

    return schedule


FUNCTIONS: dict[str, Callable[..., Schedule]] = {
    "WarmupLR": warmup_lr,
    "WarmupDecayLR": warmup_decay_lr,
    "WarmupCosineLR": warmup_cosine_lr,
    "OneCycle": one_cycle,
    "LRRangeTest": lr_range_test,
}


def scheduler(cfg, base_lr: float) -> Schedule:
    """The lr curve of a DeepSpeed config's ``scheduler`` entry (``{"type": ..., "params": {...}}``)
    for an optimizer with lr ``base_lr``; unknown types and parameters raise, naming them
    (``last_batch_iteration`` only at its default, -1: a fresh start)."""
    cfg = validate.known_keys("scheduler", cfg, ("type", "params"))
    kind = validate.one_of("scheduler.type", cfg.get("type"), SCHEDULERS)
    params = dict(validate.mapping("scheduler.params", cfg.get("params", {})))
    resume = params.pop("last_batch_iteration", -1)
    if resume != -1:
        raise ValueError(
            f"scheduler.params.last_batch_iteration = {resume!r}: a resumed scheduler; give the steps "
            f"from the start instead (f(t) counts updates from the first)"
        )
    _check_params(kind, params)
    return FUNCTIONS[kind](base_lr, **params)


def _check_params(kind, params):
    known = [name for name in inspect.signature(FUNCTIONS[kind]).parameters if name != "base_lr"]
    validate.known_keys(f"scheduler.params ({kind})", params, known)
    missing = [
        name
        for name, p in inspect.signature(FUNCTIONS[kind]).parameters.items()
        if name != "base_lr" and p.default is inspect.Parameter.empty and name not in params
    ]
    if missing:
        raise ValueError(f"scheduler.params ({kind}) needs {missing}, got {sorted(params)}")
