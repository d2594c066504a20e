"""Twins of fvcore 0.1.5's ``fvcore.common.param_scheduler`` and of detectron2's
``WarmupParamScheduler`` / ``LRMultiplier`` (``detectron2/solver/lr_scheduler.py``).

fvcore's schedulers are functions of the progress ``where``, a float in ``[0, 1)``; so are the
twins here (``ParamScheduler``: ``where -> value``, elementwise over a float array, jit-safe).
``lr_multiplier(base_lr, multiplier, max_iter)`` turns one into a purelr schedule of integer steps,
as detectron2 drives it: the lr of update ``t`` is ``base_lr * multiplier(t / max_iter)``.

``where`` and the arithmetic on it (``where + WHERE_EPSILON``, a composite's running totals and
rescaling) are float operations done in the order fvcore does them, in float64 under
``jax_enable_x64`` (the same numbers as fvcore's) and in float32 otherwise. Through
``lr_multiplier`` (integer steps) every boundary is placed where fvcore's float64 arithmetic puts
it, whatever the precision (``Progress``). Beyond the range fvcore accepts (it raises, or indexes
past its list, for ``where >= 1``) the twins keep their formulas and clamp indices to the last value.

Names are fvcore's class names in snake_case with fvcore's keyword names. Only jax and numpy.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp

from purelr.schedules import validate
from purelr.schedules.core import (
    MAX_STEP,
    Schedule,
    as_steps,
    as_values,
    cosine_anneal,
    count_reached,
    divided,
    float_dtype,
    int_dtype,
)

ParamScheduler = Callable[[jax.Array], jax.Array]
"""A pure function of the progress ``where`` (a float, a float array or a ``Progress``) to the value there."""

WHERE_EPSILON = 1e-6  # fvcore's ParamScheduler.WHERE_EPSILON
INTERVAL_SCALINGS = ("rescaled", "fixed")
WARMUP_METHODS = ("linear", "constant")


class Progress(NamedTuple):
    """The progress of an integer step, as ``lr_multiplier`` hands it to the twins: ``value``, the
    float ``where`` (value dtype) the formulas use, and ``exact(t)``, fvcore's float64 number at
    integer step ``t`` (a Python function). Every comparison with a boundary (milestones, the
    stretches of a composite) becomes, at trace time, the first step at which fvcore's float64
    comparison holds, and is then made in integers: exact in float32 too, for every step."""

    step: jax.Array
    value: jax.Array
    exact: Callable[[int], float]


def _twin(scheduler: ParamScheduler) -> ParamScheduler:
    """Marks a twin of this module: it takes a ``Progress`` (any other function gets the float)."""
    setattr(scheduler, "takes_progress", True)
    return scheduler


def _call(scheduler: ParamScheduler, where) -> jax.Array:
    return scheduler(where if getattr(scheduler, "takes_progress", False) else _values(where))


def _values(where) -> jax.Array:
    return where.value if isinstance(where, Progress) else as_values(where)


def _first_step(holds: Callable[[int], bool]) -> int | None:
    """The least step in ``[0, MAX_STEP]`` where the monotone ``holds`` is true, or None."""
    if not holds(MAX_STEP):
        return None
    low, high = 0, MAX_STEP
    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if holds(middle) else (middle + 1, high)
    return low


def _count(where, holds: Callable, levels: Sequence[float]) -> jax.Array:
    """How many ``levels`` satisfy ``holds(where, level)`` (non-decreasing in ``where``): on a
    float ``where`` elementwise; on a ``Progress`` through the first step of each, in integers."""
    if not isinstance(where, Progress):
        if not levels:
            return jnp.zeros(jnp.shape(where), int_dtype())
        return jnp.sum(holds(as_values(where)[..., None], _table(levels)), axis=-1)
    firsts = [_first_step(_reached(where, holds, level)) for level in levels]
    return count_reached(as_steps(where.step), [first for first in firsts if first is not None])


def _reached(where: Progress, holds: Callable, level: float) -> Callable[[int], bool]:
    return lambda t: holds(where.exact(t), level)


def _crossed(where, count: int, levels: Sequence[int]) -> jax.Array:
    """How many ``levels`` ``int((where + WHERE_EPSILON) * count)`` has reached."""
    return _count(where, lambda w, level: (w + WHERE_EPSILON) * count >= level, levels)


def _at(where, point: float):
    """``where`` replaced by the constant ``point`` (same shape; a ``Progress`` stays one)."""
    value = jnp.full_like(_values(where), point)
    return Progress(where.step, value, lambda t: point) if isinstance(where, Progress) else value


def _table(values) -> jax.Array:
    return jnp.asarray(values, dtype=float_dtype())


def constant_param_scheduler(value) -> ParamScheduler:
    """Twin of ``fvcore.common.param_scheduler.ConstantParamScheduler``: ``value`` everywhere."""
    value = validate.real("value", value)
    return _twin(lambda where: jnp.full(jnp.shape(_values(where)), value, dtype=float_dtype()))


def cosine_param_scheduler(start_value, end_value) -> ParamScheduler:
    """Twin of ``CosineParamScheduler``: ``end + (start - end) * (1 + cos(pi * where)) / 2``.

    Evaluated from the nearer end (``purelr.schedules.core.cosine_anneal``, ``1 - where`` exact
    for ``where >= 1/2``): fvcore's ``1 + cos`` cancels next to ``where = 1``, where its values
    are known to a few rounding units of ``start`` only."""
    start_value = validate.real("start_value", start_value)
    end_value = validate.real("end_value", end_value)
    return _twin(lambda where: cosine_anneal(start_value, end_value, _values(where), 1, 1 - _values(where)))


def exponential_param_scheduler(start_value, decay) -> ParamScheduler:
    """Twin of ``ExponentialParamScheduler``: ``start_value * decay ** where``."""
    start_value = validate.real("start_value", start_value)
    decay = validate.nonnegative("decay", decay)
    return _twin(lambda where: start_value * jnp.power(as_values(decay), _values(where)))


def linear_param_scheduler(start_value, end_value) -> ParamScheduler:
    """Twin of ``LinearParamScheduler``: ``end_value * where + start_value * (1 - where)``."""
    start_value = validate.real("start_value", start_value)
    end_value = validate.real("end_value", end_value)
    return _linear(start_value, lambda where: end_value)


def _linear(start_value, end_value: Callable) -> ParamScheduler:
    """``LinearParamScheduler`` whose ends may be values of other twins (``end_value(where)``:
    the end as a function evaluated alongside, so nothing is computed at construction)."""

    def scheduler(where):
        start = start_value(where) if callable(start_value) else start_value
        end, where = end_value(where), _values(where)
        return end * where + start * (1 - where)

    return _twin(scheduler)


def multi_step_param_scheduler(
    values: Sequence[float], num_updates=None, milestones: Sequence[int] | None = None
) -> ParamScheduler:
    """Twin of ``MultiStepParamScheduler``: ``values[bisect_right(milestones, n)]`` with
    ``n = int((where + 1e-6) * num_updates)``.

    Without ``milestones`` the ``num_updates`` are split in ``len(values)`` ranges of
    ``ceil(num_updates / len(values))``; without ``num_updates`` it is the last milestone (then
    dropped from the list). Milestones increase, start above 0 and stay below ``num_updates``,
    which must be at least ``len(values)``: fvcore's checks.
    """
    values = tuple(validate.real(f"values[{i}]", v) for i, v in enumerate(_sequence("values", values)))
    if not values:
        raise ValueError("values must hold at least one value, got []")
    if num_updates is None and milestones is None:
        raise ValueError("multi_step_param_scheduler needs num_updates or milestones (both are None)")
    if milestones is None:
        num_updates = validate.positive_int("num_updates", num_updates)
        width = math.ceil(num_updates / float(len(values)))
        milestones = [width * (i + 1) for i in range(len(values) - 1)]
    else:
        milestones = list(validate.step_list("milestones", milestones))
        needed = len(values) - (num_updates is not None)
        if len(milestones) != needed:
            raise ValueError(
                f"milestones must hold {needed} values (len(values) = {len(values)}"
                f"{', num_updates given' if num_updates is not None else ''}), got {milestones!r}"
            )
    if num_updates is None:
        num_updates, milestones = milestones[-1], milestones[:-1]
    num_updates = validate.positive_int("num_updates", num_updates)
    if num_updates < len(values):
        raise ValueError(f"num_updates must be at least len(values) = {len(values)}, got {num_updates}")
    if milestones and (milestones[0] <= 0 or milestones[-1] >= num_updates):
        raise ValueError(f"milestones must lie in (0, num_updates = {num_updates}), got {milestones!r}")
    table = _table(values)
    return _twin(lambda where: table[_crossed(where, num_updates, milestones)])


def polynomial_decay_param_scheduler(base_value, power) -> ParamScheduler:
    """Twin of ``PolynomialDecayParamScheduler``: ``base_value * (1 - where) ** power``."""
    base_value = validate.real("base_value", base_value)
    power = validate.real("power", power)
    return _twin(lambda where: base_value * jnp.power(1 - _values(where), power))


def step_param_scheduler(num_updates, values: Sequence[float]) -> ParamScheduler:
    """Twin of ``StepParamScheduler``: ``values[int((where + 1e-6) * len(values))]``
    (``num_updates`` is checked, > 0, and otherwise unused, as in fvcore)."""
    validate.positive("num_updates", num_updates)
    values = tuple(validate.real(f"values[{i}]", v) for i, v in enumerate(_sequence("values", values)))
    if not values:
        raise ValueError("values must hold at least one value, got []")
    table = _table(values)
    return _twin(lambda where: table[_crossed(where, len(values), range(1, len(values)))])


def step_with_fixed_gamma_param_scheduler(base_value, num_decays, gamma, num_updates) -> ParamScheduler:
    """Twin of ``StepWithFixedGammaParamScheduler``: ``step_param_scheduler`` over
    ``[base_value, base_value * gamma, ...]`` (``num_decays`` products, formed one after another)."""
    base_value = validate.positive("base_value", base_value)
    gamma = validate.positive("gamma", gamma)
    num_decays = validate.positive_int("num_decays", num_decays)
    num_updates = validate.positive_int("num_updates", num_updates)
    values = [base_value]
    for _ in range(num_decays):
        values.append(values[-1] * gamma)
    return step_param_scheduler(num_updates, values)


def composite_param_scheduler(
    schedulers: Sequence[ParamScheduler], lengths: Sequence[float], interval_scaling: Sequence[str]
) -> ParamScheduler:
    """Twin of ``CompositeParamScheduler``: ``schedulers[i]`` on the ``i``-th stretch of ``lengths``.

    ``i`` is the first stretch whose running total (the lengths summed in order) is
    ``>= where + 1e-6``, the last one past the end. ``"rescaled"`` hands it
    ``(where - start_i) / lengths[i]`` (``start_i`` = its running total minus its length);
    ``"fixed"`` hands it ``where``. Lengths sum to 1 within 1e-3; the last one is replaced by
    ``1 - sum(others)`` when the sum is not exactly 1, as fvcore does.
    """
    schedulers = _sequence("schedulers", schedulers)
    for i, given in enumerate(schedulers):
        validate.function(f"schedulers[{i}]", given)
    lengths = [validate.nonnegative(f"lengths[{i}]", v) for i, v in enumerate(_sequence("lengths", lengths))]
    interval_scaling = validate.strings("interval_scaling", interval_scaling)
    if not schedulers:
        raise ValueError("schedulers must hold at least one scheduler, got []")
    if not len(schedulers) == len(lengths) == len(interval_scaling):
        raise ValueError(
            f"schedulers, lengths and interval_scaling must have one entry each, got "
            f"{len(schedulers)}, {len(lengths)} and {len(interval_scaling)}"
        )
    for i, scaling in enumerate(interval_scaling):
        validate.one_of(f"interval_scaling[{i}]", scaling, INTERVAL_SCALINGS)
    if abs(sum(lengths) - 1.0) >= 1e-3:
        raise ValueError(f"lengths must sum to 1 (within 1e-3), got {lengths!r} (sum {sum(lengths)!r})")
    if sum(lengths) != 1.0:
        lengths[-1] = 1.0 - sum(lengths[:-1])
    totals, total = [], 0.0
    for length in lengths:
        total += length
        totals.append(total)
    starts = [t - length for t, length in zip(totals, lengths)]

    def scheduler(where):
        index = _count(where, lambda w, total: w + WHERE_EPSILON > total, totals[:-1])
        value = jnp.zeros(jnp.shape(_values(where)), float_dtype())
        for i, (inner, scaling) in enumerate(zip(schedulers, interval_scaling)):
            inner_where = _rescaled(where, starts[i], lengths[i]) if scaling == "rescaled" else where
            value = jnp.where(index == i, as_values(_call(inner, inner_where)), value)
        return value

    return _twin(scheduler)


def _rescaled(where, start: float, length: float):
    """``(where - start) / length``, on a ``Progress`` both its value and its exact numbers (a
    stretch of length 0, which fvcore would divide by, gets the float quotient only)."""
    value = divided(_values(where) - start, length)
    if not isinstance(where, Progress) or length == 0:
        return value
    return Progress(where.step, value, lambda t: (where.exact(t) - start) / length)


def warmup_param_scheduler(
    scheduler: ParamScheduler,
    warmup_factor,
    warmup_length,
    warmup_method: str = "linear",
    rescale_interval: bool = False,
) -> ParamScheduler:
    """Twin of detectron2's ``WarmupParamScheduler`` (``detectron2/solver/lr_scheduler.py``).

    A composite of a warmup over ``[0, warmup_length)`` (``"rescaled"``) and ``scheduler``
    after it (``"fixed"``: ``scheduler(where)``; ``"rescaled"`` with ``rescale_interval``). The
    warmup starts at ``warmup_factor * scheduler(0)`` and is constant there (``"constant"``) or
    linear up to ``scheduler(warmup_length)`` (``scheduler(0)`` with ``rescale_interval``).
    """
    validate.function("scheduler", scheduler)
    warmup_factor = validate.real("warmup_factor", warmup_factor)
    warmup_length = validate.in_range("warmup_length", warmup_length, 0.0, 1.0)
    validate.one_of("warmup_method", warmup_method, WARMUP_METHODS)
    rescale_interval = validate.flag("rescale_interval", rescale_interval)
    start = _twin(lambda where: warmup_factor * _call(scheduler, _at(where, 0.0)))
    if warmup_method == "constant":
        warmup = start
    else:
        end_where = 0.0 if rescale_interval else warmup_length
        warmup = _linear(start, lambda where: _call(scheduler, _at(where, end_where)))
    return composite_param_scheduler(
        [warmup, scheduler],
        [warmup_length, 1 - warmup_length],
        ["rescaled", "rescaled" if rescale_interval else "fixed"],
    )


def lr_multiplier(base_lr, multiplier: ParamScheduler, max_iter) -> Schedule:
    """Twin of detectron2's ``LRMultiplier`` (``detectron2/solver/lr_scheduler.py``) as a schedule
    of updates: ``f(t) = base_lr * multiplier(t / max_iter)``, the lr of the update ``t`` that
    detectron2's trainer makes (the scheduler steps after each iteration; ``t / max_iter`` is a
    float division of the two integers). The multiplier gets it as a ``Progress``: its boundaries
    fall at the steps fvcore's float64 arithmetic puts them, in float32 too."""
    base_lr = validate.real("base_lr", base_lr)
    validate.function("multiplier", multiplier)
    max_iter = validate.positive_int("max_iter", max_iter)

    def schedule(step):
        step = as_steps(step)
        where = Progress(step, divided(as_values(step), max_iter), lambda t: t / max_iter)
        return base_lr * as_values(_call(multiplier, where))

    return schedule


def _sequence(name: str, value) -> list:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a list, got {value!r}")
    return list(value)
