"""The arithmetic of each MMEngine 0.10.7 parameter scheduler, in its own ``last_step`` ``t``.

MMEngine's schedulers are chainable: an event reads the value in the optimizer and writes a new
one. Each scheduler here is a `Rule`:

- ``step(t, v)``: the value after the scheduler's event at ``last_step = t``, given the value ``v``
  before it (the recursive form MMEngine evaluates).
- ``span``: the closed form of a run of its own events, exact when no other scheduler acts in
  between. For a ``"mult"`` rule (every event multiplies ``v``) ``span(ta, tb)`` is the product of
  the factors of the events ``ta < t <= tb``; for an ``"affine"`` rule ``span(v, ta, tb)`` is the
  value after those events, starting from ``v`` after the event ``ta``. A ``"sparse"`` rule
  changes the value only at the ``marks`` (and has no ``span``).
- ``marks``: values of ``t`` whose events must be evaluated on their own (sparse events, restarts).
- ``length``: events with ``t >= length`` leave the value alone (``None``: no such limit).

This module imports jax and numpy only.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional

import jax.numpy as jnp
import numpy as np

from purelr.schedules import core
from purelr.schedules.core import MAX_STEP, as_steps, as_values


class Rule(NamedTuple):
    """One scheduler's events; see the module docstring."""

    kind: str
    step: Callable
    span: Optional[Callable] = None
    marks: tuple = ()
    length: Optional[int] = None


def _unchanged_at(ta, tb, value):
    """``value``, or 1 / nothing changed where the run of events ``(ta, tb]`` is empty."""
    return jnp.where(as_steps(tb) > as_steps(ta), value, jnp.ones_like(value))


def step_rule(step_size: int, gamma: float) -> Rule:
    """``mmengine.optim.scheduler.StepParamScheduler``: ``v *= gamma`` at ``t = j * step_size, j >= 1``."""

    def step(t, v):
        t = as_steps(t)
        return jnp.where((t > 0) & (t % step_size == 0), v * gamma, v)

    def span(ta, tb):
        return core.integer_power(gamma, as_steps(tb) // step_size - as_steps(ta) // step_size)

    return Rule("mult", step, span)


def multistep_rule(milestones: tuple, gamma: float) -> Rule:
    """``MultiStepParamScheduler``: ``v *= gamma ** (times t is listed in milestones)``."""
    counts = {m: milestones.count(m) for m in milestones}
    table = {m: gamma**c for m, c in counts.items()}

    def step(t, v):
        t = as_steps(t)
        for milestone, factor in table.items():
            v = jnp.where(t == milestone, v * factor, v)
        return v

    return Rule("sparse", step, marks=tuple(sorted(counts)))


def constant_rule(factor: float, total_iters: int) -> Rule:
    """``ConstantParamScheduler``: ``v *= factor`` at ``t = 0``, ``v *= 1 / factor`` at ``t = end - begin - 1``.

    (When ``end - begin == 1`` the factor is never taken back.)
    """
    inverse = 1.0 / factor

    def step(t, v):
        t = as_steps(t)
        restores = 0 < total_iters <= MAX_STEP
        restored = jnp.where(t == total_iters, v * inverse, v) if restores else v
        return jnp.where(t == 0, v * factor, restored)

    return Rule("sparse", step, marks=(0, total_iters) if total_iters > 0 else (0,))


def exponential_rule(gamma: float) -> Rule:
    """``ExponentialParamScheduler``: ``v *= gamma`` at every ``t >= 1``."""

    def step(t, v):
        return jnp.where(as_steps(t) == 0, v, v * gamma)

    def span(ta, tb):
        return core.integer_power(gamma, as_steps(tb) - as_steps(ta))

    return Rule("mult", step, span)


def linear_rule(start_factor: float, end_factor: float, total_iters: int) -> Rule:
    """``LinearParamScheduler``: ``v *= start_factor`` at ``t = 0``, then
    ``v *= 1 + (e - s) / (T s + (t - 1)(e - s))`` (``T = end - begin - 1``), which telescopes to
    ``v_t = v * (s + (e - s) t / T)``."""
    delta = end_factor - start_factor
    scale = total_iters * start_factor

    def step(t, v):
        t = as_steps(t)
        ratio = 1.0 + delta / (scale + as_values(t - 1) * delta)
        return jnp.where(t == 0, v * start_factor, v * ratio)

    def span(ta, tb):
        ratio = (scale + as_values(tb) * delta) / (scale + as_values(ta) * delta)
        return _unchanged_at(ta, tb, ratio)

    return Rule("mult", step, span)


def _reduced(t, period: int):
    """``t mod period`` (``t`` itself where ``period`` exceeds every step)."""
    return t if period > MAX_STEP else t % period


def _cos_squared(x, half_period):
    """``cos(pi x / (2 P)) ** 2 = (1 + cos(pi x / P)) / 2`` for integer ``x`` (``0 <= x < 2 P``
    unless ``P`` is a Python int, by which it is reduced), evaluated as
    ``sin(pi (P - x) / (2 P)) ** 2``: accurate to the last bits next to its zero at ``x = P``."""
    if isinstance(half_period, int):
        x = _reduced(as_steps(x), 2 * half_period)
    distance = as_values(half_period - x) / as_values(half_period)
    return jnp.sin((math.pi / 2) * distance) ** 2


def cosine_rule(t_max: int, eta_min: float, base: float, length: int) -> Rule:
    """``CosineAnnealingParamScheduler``, its recursive form, which keeps oscillating past ``T_max``:

    ``v_t - m = (1 + cos(pi t / T)) / (1 + cos(pi (t - 1) / T)) * (v_{t-1} - m)``, except at
    ``t = (2k + 1) T + 1``, where ``v_t = v_{t-1} + (base - m) (1 - cos(pi / T)) / 2``.
    Alone it is ``m + (base - m) (1 + cos(pi t / T)) / 2``. ``length`` (``end - begin``) decides
    whether a ``t = (2k + 1) T + 1`` event is ever reached.
    """
    lift = (base - eta_min) * math.sin(math.pi / (2 * t_max)) ** 2
    lift_at = (t_max + 1) % (2 * t_max) if 2 * t_max <= MAX_STEP else t_max + 1

    def is_lift(t):
        if lift_at > MAX_STEP:
            return jnp.zeros(jnp.shape(t), bool)
        return (t > 0) & (_reduced(t, 2 * t_max) == lift_at)

    def step(t, v):
        t = as_steps(t)
        ratio = _cos_squared(t, t_max) / _cos_squared(t - 1, t_max)
        regular = ratio * (v - eta_min) + eta_min
        return jnp.where(t == 0, v, jnp.where(is_lift(t), v + lift, regular))

    def decay(ta, tb):
        return _unchanged_at(ta, tb, _cos_squared(tb, t_max) / _cos_squared(ta, t_max))

    if eta_min == 0 and length <= t_max + 1:
        return Rule("mult", step, decay)

    def span(v, ta, tb):
        ta, tb = as_steps(ta), as_steps(tb)
        if lift_at > MAX_STEP:
            return eta_min + (v - eta_min) * decay(ta, tb)
        # the last lifting event s <= tb; the event before it multiplied v - m by exactly 0
        offset = tb - (t_max + 1)
        last = tb - _reduced(jnp.maximum(offset, 0), 2 * t_max)
        lifted = jnp.where(last - 1 > ta, 0.0, v - eta_min) + lift
        after_lift = lifted * _cos_squared(tb, t_max) / _cos_squared(last, t_max)
        plain = (v - eta_min) * decay(ta, tb)
        return eta_min + jnp.where((offset >= 0) & (last > ta), after_lift, plain)

    return Rule("affine", step, span)


def poly_rule(eta_min: float, power: float, total_iters: int) -> Rule:
    """``PolyParamScheduler``: ``v_t - m = (1 - 1 / (T - t + 1)) ** power * (v_{t-1} - m)`` for
    ``t >= 1`` (``T = end - begin - 1``); alone ``m + (v - m) (1 - t / T) ** power``."""

    def left(t):
        return float(total_iters) - as_values(t)

    def step(t, v):
        t = as_steps(t)
        factor = (1.0 - 1.0 / (left(t) + 1.0)) ** power
        return jnp.where(t == 0, v, (v - eta_min) * factor + eta_min)

    def decay(ta, tb):
        return _unchanged_at(ta, tb, (left(tb) / left(ta)) ** power)

    if eta_min == 0:
        return Rule("mult", step, decay)

    def span(v, ta, tb):
        return eta_min + (v - eta_min) * decay(ta, tb)

    return Rule("affine", step, span)


def cosine_restart_rule(periods: tuple, weights: tuple, eta_min: float, base: float) -> Rule:
    """``CosineRestartParamScheduler``: at the start of period ``i`` the value is set to
    ``base * restart_weights[i]``; inside it ``v_s - m = (1 + cos(pi s / P_i)) /
    (1 + cos(pi (s - 1) / P_i)) * (v_{s-1} - m)``; after the last period the value is left alone."""
    starts = tuple(int(s) for s in np.cumsum((0,) + periods)[:-1])
    total = sum(periods)

    def position(t):
        """``(restart weight, t - period start, period)`` of the period holding ``t``."""
        weight, start, period = weights[0], jnp.zeros_like(t), jnp.full_like(t, periods[0])
        for i in range(1, len(periods)):
            later = t >= starts[i]
            weight = jnp.where(later, weights[i], weight)
            start = jnp.where(later, starts[i], start)
            period = jnp.where(later, periods[i], period)
        return weight, t - start, period

    def step(t, v):
        t = as_steps(t)
        weight, s, period = position(t)
        ratio = _cos_squared(s, period) / _cos_squared(s - 1, period)
        inside = jnp.where(s == 0, base * as_values(weight), ratio * (v - eta_min) + eta_min)
        return jnp.where(t < total, inside, v)

    def decay(ta, tb):
        ta, tb = as_steps(ta), as_steps(tb)
        _, sb, period = position(tb)
        return _unchanged_at(ta, tb, _cos_squared(sb, period) / _cos_squared(sb - (tb - ta), period))

    if eta_min == 0:
        return Rule("mult", step, decay, starts, total)

    def span(v, ta, tb):
        return eta_min + (v - eta_min) * decay(ta, tb)

    return Rule("affine", step, span, starts, total)


def quadratic_warmup_rule(base: float, total: int) -> Rule:
    """``mmdet.engine.schedulers.QuadraticWarmupParamScheduler``: ``v = base / T ** 2`` at ``t = 0``
    (whatever ``v`` was), then ``v += base * (2 t + 1) / T ** 2`` (``T = end - begin``), which sums to
    ``base * ((t + 1) / T) ** 2`` alone."""
    scale = base / float(total) ** 2

    def step(t, v):
        t = as_steps(t)
        return jnp.where(t == 0, scale + jnp.zeros_like(v), v + scale * as_values(2 * t + 1))

    def span(v, ta, tb):
        ta, tb = as_steps(ta), as_steps(tb)
        # (tb + 1) ** 2 - (ta + 1) ** 2, as a product of counts (no square of a large step)
        return v + scale * (as_values(tb - ta) * as_values(tb + ta + 2))

    return Rule("affine", step, span)


def zero_rule() -> Rule:
    """``mmpretrain.engine.schedulers.CosineAnnealingWeightDecay`` of a group whose base value is 0:
    every event after ``t = 0`` sets the value to 0."""

    def step(t, v):
        return jnp.where(as_steps(t) == 0, v, jnp.zeros_like(v))

    def span(v, ta, tb):
        return jnp.where(as_steps(tb) > as_steps(ta), jnp.zeros_like(v), v)

    return Rule("affine", step, span)


def one_cycle_phases(total_steps: int, pct_start: float, three_phase: bool) -> tuple:
    """``(end_step, start_name, end_name)`` of each phase, with MMEngine's float end steps."""
    first = float(pct_start * total_steps) - 1
    if three_phase:
        return (
            (first, "initial", "max"),
            (float(2 * pct_start * total_steps) - 2, "max", "initial"),
            (total_steps - 1, "initial", "min"),
        )
    return ((first, "initial", "max"), (total_steps - 1, "max", "min"))


def one_cycle_rule(values: dict, phases: tuple, cosine: bool) -> Rule:
    """``OneCycleParamScheduler`` (not chainable): ``v_t`` is set to the phase containing ``t``
    annealed (``cos`` or ``linear``) from its start value to its end value, ``values`` holding
    ``initial = eta_max / div_factor``, ``max = eta_max``, ``min = initial / final_div_factor``."""
    anneal = core.cosine_anneal if cosine else core.linear_anneal

    def value(t):
        t = as_steps(t)
        result = None
        for i in reversed(range(len(phases))):
            end, first, last = phases[i]
            start = phases[i - 1][0] if i > 0 else 0.0
            phase_value = anneal(values[first], values[last], core.offset(t, start), end - start, -core.offset(t, end))
            result = phase_value if result is None else jnp.where(as_values(t) <= end, phase_value, result)
        return result

    def step(t, v):
        return value(as_steps(t)) + jnp.zeros_like(v)

    def span(v, ta, tb):
        return jnp.where(as_steps(tb) > as_steps(ta), value(as_steps(tb)), v)

    return Rule("affine", step, span)
