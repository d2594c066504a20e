"""Step arithmetic of ``timm.scheduler`` reproduced exactly in integers.

timm computes two step quantities in Python floats: ``t // decay_t`` with a float ``decay_t``
(``StepLRScheduler``, e.g. EfficientNet's ``decay_epochs=2.4``), and the cycle index
``floor(log(1 - t / t_initial * (1 - cycle_mul), cycle_mul))`` of the cosine, tanh and poly
schedulers. Both are non-decreasing integer functions of ``t``; this module finds, at build time
and with timm's own float expressions, where they change, so that a schedule evaluates them with
integer comparisons only and agrees with timm at every step in ``[0, 2**31 - 1]``.

This module imports jax and numpy only.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from purelr.schedules import core

MAX_CYCLES = 2**16
"""The most restarts a cycle table holds (cycles that begin after step ``2**31 - 1`` are dropped)."""


def _farey_neighbours(value: Fraction, order: int) -> tuple[Fraction, Fraction]:
    """The closest fractions ``lo <= value < hi`` whose denominators are ``<= order``.

    Walks the continued fraction of ``value`` while the convergents' denominators stay within
    ``order``; the last convergent and the best semiconvergent short of it bracket ``value``.
    """
    if value.denominator <= order:
        _, above = _farey_neighbours(value + Fraction(1, 4 * order * order * value.denominator), order)
        return value, above
    num_prev, den_prev, num, den = 0, 1, 1, 0
    top, bottom = value.numerator, value.denominator
    while True:
        whole = top // bottom
        if den_prev + whole * den > order:
            break
        num_prev, den_prev, num, den = num, den, num_prev + whole * num, den_prev + whole * den
        top, bottom = bottom, top - whole * bottom
    extra = (order - den_prev) // den
    low, high = sorted((Fraction(num_prev + extra * num, den_prev + extra * den), Fraction(num, den)))
    return low, high


class FloorDivision(NamedTuple):
    """``t // divisor`` for a positive float divisor: ``floor((t * denominator - below) / numerator)``, at least 0.

    ``below = 1`` stands for a divisor just above ``numerator / denominator``: the quotient drops by one
    exactly where ``t * denominator`` is a multiple of ``numerator``.
    """

    numerator: int
    denominator: int
    below: int

    def __call__(self, step):
        """The quotient as a value (an exponent), computed without integer overflow."""
        whole, part = step // self.numerator, step % self.numerator
        rest = (part * self.denominator - self.below) // self.numerator
        return jnp.maximum(core.as_values(whole) * self.denominator + core.as_values(rest), 0)


def floor_division(name: str, divisor: float) -> FloorDivision:
    """Python's ``t // divisor`` (the exact floor of ``t`` over the double ``divisor``) for ``t <= 2**31 - 1``.

    Two divisors give the same quotients for every ``t <= T`` when no fraction ``t / k`` with
    ``t <= T`` lies between them. So the double may be replaced by its nearest such fraction above
    (``hi``, taken as it is) or below (``lo``, taken as ``lo`` plus an infinitesimal), whichever is
    simpler: ``12 / 5`` for ``2.4``, ``9 / 5`` plus an infinitesimal for ``1.8`` (a double just above ``9 / 5``).
    """
    exact = Fraction(divisor)
    below, above = _farey_neighbours(1 / exact, core.MAX_STEP)
    options = [(1 / above, 1)]
    if below > 0:
        options.append((1 / below, 0))
    fraction, offset = min(options, key=lambda option: option[0].numerator * option[0].denominator)
    if fraction.numerator * fraction.denominator > core.MAX_STEP:
        raise ValueError(
            f"{name}={divisor!r} has no exact integer form within 2**31 - 1 steps; use an integer or a short "
            f"decimal (e.g. 2.4)"
        )
    return FloorDivision(fraction.numerator, fraction.denominator, offset)


def timm_cycle_index(t: int, t_initial: int, cycle_mul: float) -> int:
    """The cycle ``timm.scheduler.CosineLRScheduler`` places step ``t`` in when ``cycle_mul != 1`` (floats, as timm)."""
    return math.floor(math.log(1 - t / t_initial * (1 - cycle_mul), cycle_mul))


def _domain_end(t_initial: int, cycle_mul: float) -> int:
    """The first step whose ``1 - t / t_initial * (1 - cycle_mul)`` is ``<= 0`` (timm's log fails there)."""
    if cycle_mul > 1:
        return core.MAX_STEP + 1
    lo, hi = 0, core.MAX_STEP + 1
    while lo < hi:
        mid = (lo + hi) // 2
        if 1 - mid / t_initial * (1 - cycle_mul) <= 0:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _first_step_of(cycle: int, lo: int, hi: int, t_initial: int, cycle_mul: float) -> int:
    """The least ``t`` in ``[lo, hi)`` that timm puts in cycle ``>= cycle``, or ``hi`` if none."""
    while lo < hi:
        mid = (lo + hi) // 2
        if timm_cycle_index(mid, t_initial, cycle_mul) >= cycle:
            hi = mid
        else:
            lo = mid + 1
    return lo


class Cycles(NamedTuple):
    """Where each cycle of a timm cycle schedule begins and its float constants, as timm computes them.

    Cycle ``j`` runs over steps ``[starts[j], starts[j + 1])`` (``starts[0] = 0``) and the schedule is
    held at ``lr_min`` from ``stop`` on (``cycle_limit`` reached, or the end of timm's domain). Step
    ``t`` of cycle ``j`` is ``t_curr = t - offset[j]`` with ``offset[j] = offset_int[j] + offset_frac[j]``
    of length ``t_i = length[j]``, scaled by ``gamma[j] = cycle_decay ** j``.
    """

    starts: np.ndarray
    stop: int
    offset_int: np.ndarray
    offset_frac: np.ndarray
    length: np.ndarray
    gamma: np.ndarray


def geometric_cycles(t_initial: int, cycle_mul: float, cycle_decay: float, cycle_limit: int) -> Cycles:
    """The cycle table of ``cycle_mul != 1``: boundaries found by bisection on timm's own expression."""
    end = _domain_end(t_initial, cycle_mul)
    starts = [0]
    stop = end
    while len(starts) <= cycle_limit:
        start = _first_step_of(len(starts), starts[-1], end, t_initial, cycle_mul)
        if start == end:
            break
        if len(starts) == cycle_limit:
            stop = start
            break
        if len(starts) == MAX_CYCLES:
            raise ValueError(
                f"cycle_mul={cycle_mul!r} with t_initial={t_initial!r} and cycle_limit={cycle_limit!r} "
                f"restarts more than {MAX_CYCLES} times within 2**31 - 1 steps"
            )
        starts.append(start)
    if cycle_limit == 0:
        stop = 0
    offsets = [(1 - cycle_mul**j) / (1 - cycle_mul) * t_initial for j in range(len(starts))]
    offset_int = [math.floor(offset) for offset in offsets]
    return Cycles(
        starts=np.asarray(starts, dtype=np.int64),
        stop=stop,
        offset_int=np.asarray(offset_int, dtype=np.int64),
        offset_frac=np.asarray([o - i for o, i in zip(offsets, offset_int)], dtype=np.float64),
        length=np.asarray([cycle_mul**j * t_initial for j in range(len(starts))], dtype=np.float64),
        gamma=np.asarray([cycle_decay**j for j in range(len(starts))], dtype=np.float64),
    )


class Position(NamedTuple):
    """Where a step is in a timm cycle schedule: ``active`` (else ``lr_min``), ``t_curr``, ``t_i``, ``gamma``."""

    active: jnp.ndarray
    t_curr: jnp.ndarray
    t_i: jnp.ndarray
    gamma: jnp.ndarray


def cycle_position(t_initial: int, cycle_mul: float, cycle_decay: float, cycle_limit: int):
    """``step -> Position``: timm's cycle index ``i``, ``t_curr``, ``t_i`` and ``cycle_decay ** i``.

    ``cycle_mul == 1``: ``i = t // t_initial``, ``t_curr = t - i * t_initial``, ``t_i = t_initial``, all
    in integers. Otherwise the cycle table of :func:`geometric_cycles`, so ``i`` is exactly the one
    timm's ``math.log`` gives, including at boundaries where it rounds.
    """
    if cycle_mul == 1:

        def uniform(step):
            index = step // t_initial
            return Position(
                active=index < cycle_limit,
                t_curr=core.as_values(step - index * t_initial),
                t_i=jnp.full(jnp.shape(step), t_initial, core.float_dtype()),
                gamma=core.integer_power(cycle_decay, index),
            )

        return uniform

    cycles = geometric_cycles(t_initial, cycle_mul, cycle_decay, cycle_limit)

    def geometric(step):
        starts = jnp.asarray(cycles.starts, core.int_dtype())
        method = "compare_all" if len(cycles.starts) <= 1024 else "scan"
        index = jnp.searchsorted(starts, step, side="right", method=method) - 1
        offset_int = jnp.asarray(cycles.offset_int, core.int_dtype())[index]
        return Position(
            active=step <= cycles.stop - 1,
            t_curr=core.as_values(step - offset_int) - core.as_values(cycles.offset_frac)[index],
            t_i=core.as_values(cycles.length)[index],
            gamma=core.as_values(cycles.gamma)[index],
        )

    return geometric
