"""The schedule core: the `Schedule` type, step and value coercion, composition, annealing.

A schedule is a pure function ``step -> value``. Steps are integers (int32, or int64 under
``jax_enable_x64``) and every comparison with a milestone or cycle boundary is made in integer
arithmetic, so a schedule is exact for every step in ``[0, 2**31 - 1]``. Values are float32, or
float64 under ``jax_enable_x64``. Every schedule works elementwise on an array of steps and under
``jit``, ``vmap`` and ``grad`` (with respect to its float hyperparameters).

This module imports jax and numpy only.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from purelr.schedules import validate

Array = jax.Array
Scalar = Union[float, int, Array]
Values = Union[Scalar, np.ndarray, Sequence]
"""What ``as_steps`` / ``as_values`` coerce: a number, an array, or a (nested) sequence of numbers."""
Schedule = Callable[[Scalar], Array]
"""A pure function from a step (an integer or an integer array) to a value of the same shape."""

MAX_STEP = 2**31 - 1


def int_dtype():
    """The integer dtype steps are computed in: int64 under ``jax_enable_x64``, else int32."""
    return jax.dtypes.canonicalize_dtype(jnp.int64)


def float_dtype():
    """The float dtype values are computed in: float64 under ``jax_enable_x64``, else float32."""
    return jax.dtypes.canonicalize_dtype(jnp.float64)


def as_steps(step: Values) -> Array:
    """Coerces a step or an array of steps to the integer step dtype (floats are floored)."""
    steps = jnp.asarray(step)
    if jnp.issubdtype(steps.dtype, jnp.floating):
        steps = jnp.floor(steps)
    return steps.astype(int_dtype())


def as_values(value: Values) -> Array:
    """Coerces a value to the float value dtype."""
    return jnp.asarray(value, dtype=float_dtype())


def constant_schedule(value: float) -> Schedule:
    """``f(t) = value``."""

    def schedule(step):
        return jnp.full(jnp.shape(step), value, dtype=float_dtype())

    return schedule


def resolve(value, step: Scalar) -> Array:
    """The value of a hyperparameter that is either a constant or a schedule, at ``step``."""
    return as_values(value(step) if callable(value) else value)


Phases = tuple[tuple[int, str], ...]
"""A schedule's phase boundaries: ``(step, what begins there)``, ascending."""


def with_phases(schedule: Schedule, phases) -> Schedule:
    """Marks ``schedule`` with the boundaries of its structure (a warmup's end, a milestone, the
    start of a joined schedule) as ``(step, what)`` pairs, for plots and tables: ``phases_of``."""
    setattr(schedule, "phases", tuple(sorted({(int(step), str(what)) for step, what in phases})))
    return schedule


def phases_of(schedule) -> Phases:
    """The phase boundaries ``with_phases`` marked on ``schedule`` (``()`` when it has none)."""
    return getattr(schedule, "phases", ())


def join_schedules(schedules: Sequence[Schedule], boundaries: Sequence[int]) -> Schedule:
    """Runs ``schedules[i]`` on ``[boundaries[i-1], boundaries[i])``, each restarted at zero.

    ``f(t) = schedules[i](t - boundaries[i-1])`` for ``boundaries[i-1] <= t < boundaries[i]``, the
    semantics of ``optax.join_schedules``.
    """
    if len(boundaries) != len(schedules) - 1:
        raise ValueError(
            f"join_schedules needs len(boundaries) == len(schedules) - 1, got "
            f"{len(boundaries)} boundaries for {len(schedules)} schedules"
        )
    boundaries = validate.step_list("boundaries", boundaries, strictly=False)

    def schedule(step):
        step = as_steps(step)
        value = as_values(schedules[0](step))
        for boundary, later in zip(boundaries, schedules[1:]):
            value = jnp.where(step >= boundary, as_values(later(step - boundary)), value)
        return value

    starts = [0, *boundaries]
    phases = [(start, f"schedule {i} begins") for i, start in enumerate(starts) if i]
    for i, (start, inner) in enumerate(zip(starts, schedules)):
        stop = starts[i + 1] if i + 1 < len(starts) else MAX_STEP + 1
        phases += [(start + step, what) for step, what in phases_of(inner) if start + step < stop]
    return with_phases(schedule, phases)


def by_epoch(epoch_schedule: Schedule, steps_per_epoch: int) -> Schedule:
    """An epoch-indexed schedule seen per update: ``f(k) = epoch_schedule(k // steps_per_epoch)``."""
    validate.function("epoch_schedule", epoch_schedule)
    steps_per_epoch = validate.positive_int("steps_per_epoch", steps_per_epoch)

    def schedule(step):
        return epoch_schedule(as_steps(step) // steps_per_epoch)

    return with_phases(schedule, [(step * steps_per_epoch, what) for step, what in phases_of(epoch_schedule)])


def _from_nearer_end(start, end, done, length, shape, left=None) -> Array:
    """``start + (end - start) * shape(done / length)``, evaluated from the nearer end:
    ``end + (start - end) * shape(rest)`` in the second half, ``rest = (length - done) / length``
    formed by one subtraction of counts. ``shape(0) = 0`` and ``shape(x) + shape(1 - x) = 1``, so both
    forms are the same number; each is accurate to the last bits of the value (not only of the
    larger end) near its own end, and exactly ``start`` at 0 and ``end`` at ``length``. ``left``
    is ``length - done`` where a caller forms it more exactly (in integers when both are counts)."""
    left = length - done if left is None else left
    done, length = as_values(done), as_values(length)
    covered, rest = done / length, as_values(left) / length
    return jnp.where(covered <= 0.5, start + (end - start) * shape(covered), end + (start - end) * shape(rest))


def _cosine_shape(x):
    """``(1 - cos(pi x)) / 2`` as ``sin(pi x / 2) ** 2``: no cancellation next to ``x = 0``."""
    return jnp.sin((math.pi / 2) * x) ** 2


def cosine_anneal(start, end, done, length=1, left=None) -> Array:
    """``end + (start - end) * (1 + cos(pi * f)) / 2`` with ``f = done / length``, from ``start`` at
    ``f = 0`` to ``end`` at 1; beyond [0, 1] it keeps oscillating.

    Evaluated from the nearer end with ``sin`` squared (``_from_nearer_end``): the references form
    ``1 + cos`` by cancellation near ``f = 1``; here a value 1e-4 of the peak keeps float32's full
    relative precision. Give ``done`` and ``length`` as step counts where they are (``f`` alone
    leaves the rounding of ``1 - f`` near the end; ``left``, ``length - done``, where the caller
    forms it more exactly than that subtraction).
    """
    return _from_nearer_end(start, end, done, length, _cosine_shape, left)


def linear_anneal(start, end, done, length=1, left=None) -> Array:
    """``(end - start) * f + start`` with ``f = done / length``, from ``start`` at 0 to ``end`` at 1,
    evaluated from the nearer end (see ``cosine_anneal``)."""
    return _from_nearer_end(start, end, done, length, lambda x: x, left)


def divided(numerator, denominator) -> Array:
    """``numerator / denominator`` correctly rounded, as Python and torch divide: XLA turns a
    division by a broadcast scalar (a constant or a traced one) into a multiplication by its
    reciprocal (one rounding more), which ``denominator + 0 * numerator`` keeps from happening."""
    return numerator / (denominator + 0 * numerator)


def fraction(numerator: Array, denominator) -> Array:
    """``numerator / denominator`` of integer step counts, as values."""
    return as_values(numerator) / as_values(denominator)


def remaining(numerator: Array, denominator) -> Array:
    """``1 - numerator / denominator`` of integer step counts, as ``(denominator - numerator) / denominator``.

    Exactly 0 at ``numerator == denominator``, jitted or not. Written as ``1 - fraction(t, T)`` it
    is not under ``jit``: XLA multiplies by the constant reciprocal ``1 / T`` and the compiler
    fuses ``1 - t * (1 / T)`` into one multiply-add, leaving the rounding error of ``1 / T``
    (``7e-17`` for ``T = 81``, and below 0 for ``T = 26``, where a fractional power is NaN).
    """
    return fraction(as_steps(denominator) - numerator, denominator)


def offset(step: Array, point: float) -> Array:
    """``step - point`` for integer ``step``s and a float ``point``, as values: an integer difference
    plus the rest of ``point``, so float32 keeps the full relative precision of a small offset at
    any step (``as_values(step) - point`` rounds both to the step's magnitude first)."""
    whole = min(max(math.floor(point), -MAX_STEP), MAX_STEP)
    return as_values(step - whole) - (point - whole)


def count_reached(step: Array, milestones: Sequence[int]) -> Array:
    """How many of the sorted integer ``milestones`` are ``<= step`` (``bisect_right``), exactly."""
    if len(milestones) == 0:
        return jnp.zeros(jnp.shape(step), int_dtype())
    table = jnp.asarray(np.asarray(milestones, dtype=np.int64), dtype=int_dtype())
    return jnp.sum(step[..., None] >= table, axis=-1).astype(int_dtype())


def integer_power(base: float, exponent: Array) -> Array:
    """``base ** exponent`` for a constant ``base >= 0`` and an integer array ``exponent >= 0``.

    Computed as ``exp(exponent * log(base))`` with ``log(base)`` taken in float64: in float32 this
    avoids the ``exponent``-fold growth of ``base``'s own rounding that ``jnp.power`` would show.
    """
    if base == 0:
        return jnp.where(exponent == 0, 1.0, 0.0).astype(float_dtype())
    return jnp.exp(as_values(exponent) * math.log(base))
