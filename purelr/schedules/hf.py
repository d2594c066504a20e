"""Twins of Hugging Face transformers 5.24.0's learning-rate schedules (``transformers.optimization``).

Each function takes the original's keyword names and defaults with the base lr first (where
transformers takes the optimizer) and returns ``f(t) = base_lr * lr_lambda(t)``: the lr that
``torch.optim.lr_scheduler.LambdaLR`` holds after ``t`` calls of ``scheduler.step()``, i.e. the lr
of the Trainer's optimizer update number ``t`` (from 0). :func:`get_scheduler` dispatches on the
``transformers.SchedulerType`` names as ``transformers.get_scheduler`` does.

Every schedule warms up linearly, ``t / max(1, num_warmup_steps)`` for ``t < num_warmup_steps``
(``cosine_warmup_with_min_lr`` and ``warmup_stable_decay`` have their own warmups). Step
arithmetic is in integers; the cosines are evaluated with ``purelr.schedules.core.cosine_anneal``
(from the nearer end, where transformers' ``0.5 * (1 + cos)`` cancels near its minimum).
``reduce_lr_on_plateau`` and ``greedy`` follow a metric, not the step: no schedule here (see
``purelr.training.plateau``).

This module imports jax and numpy only.
"""

from __future__ import annotations

import inspect
import math
from typing import Callable

import jax.numpy as jnp
import numpy as np

from purelr.schedules import core, validate

SCHEDULER_TYPES = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
    "reduce_lr_on_plateau",
    "cosine_with_min_lr",
    "cosine_warmup_with_min_lr",
    "warmup_stable_decay",
    "greedy",
)
"""``transformers.SchedulerType`` values of transformers 5.24.0."""
METRIC_DRIVEN = {
    "reduce_lr_on_plateau": "torch's ReduceLROnPlateau follows an evaluation metric: use "
    "purelr.training.plateau with the Trainer's lr_scheduler_kwargs",
    "greedy": "transformers' GreedyLR follows the training loss: its lr is not a function of the step",
}
WSD_TYPES = ("linear", "cosine", "1-sqrt")


def _warmup_steps(num_warmup_steps) -> int:
    return validate.nonnegative_int("num_warmup_steps", num_warmup_steps)


def _with_warmup(base_lr, num_warmup_steps: int, after) -> core.Schedule:
    """``base_lr * t / max(1, num_warmup_steps)`` before ``num_warmup_steps``, ``base_lr * after(t)`` from it."""
    base_lr = validate.real("base_lr", base_lr)

    def schedule(step):
        t = core.as_steps(step)
        warm = core.fraction(t, max(1, num_warmup_steps))
        return base_lr * jnp.where(t < num_warmup_steps, warm, core.as_values(after(t)))

    return core.with_phases(schedule, [(num_warmup_steps, "warmup ends")] if num_warmup_steps else [])


def get_constant_schedule(base_lr: float) -> core.Schedule:
    """``transformers.get_constant_schedule``: ``f(t) = base_lr``."""
    return core.constant_schedule(validate.real("base_lr", base_lr))


def get_constant_schedule_with_warmup(base_lr: float, num_warmup_steps: int) -> core.Schedule:
    """``transformers.get_constant_schedule_with_warmup``: linear warmup from 0, then ``base_lr``."""
    return _with_warmup(base_lr, _warmup_steps(num_warmup_steps), lambda t: jnp.ones(jnp.shape(t)))


def get_linear_schedule_with_warmup(base_lr: float, num_warmup_steps: int, num_training_steps: int) -> core.Schedule:
    """``transformers.get_linear_schedule_with_warmup``: after the warmup
    ``f(t) = base_lr * max(0, (T - t) / max(1, T - W))``, ``T = num_training_steps``, ``W = num_warmup_steps``."""
    warmup = _warmup_steps(num_warmup_steps)
    total = validate.nonnegative_int("num_training_steps", num_training_steps)
    return _with_warmup(base_lr, warmup, lambda t: jnp.maximum(0.0, core.fraction(total - t, max(1, total - warmup))))


def _cosine(start, length, num_cycles, low=0.0):
    """``low + (1 - low) * (1 + cos(2 pi num_cycles p)) / 2``, ``p = (t - start) / length``; the
    cosine's period is taken off ``2 num_cycles (t - start)`` first (``fmod`` by ``2 length``, exact)."""
    cycles = validate.real("num_cycles", num_cycles)
    return lambda t: core.cosine_anneal(1.0, low, _periodic(core.as_values(t - start) * (2 * cycles), length), length)


def _periodic(done, length):
    """``done mod 2 length``: the same cosine, its argument kept under ``2 pi``."""
    return jnp.fmod(done, 2 * length)


def get_cosine_schedule_with_warmup(
    base_lr: float, num_warmup_steps: int, num_training_steps: int, num_cycles: float = 0.5
) -> core.Schedule:
    """``transformers.get_cosine_schedule_with_warmup``: after the warmup
    ``f(t) = base_lr * max(0, (1 + cos(2 pi num_cycles p)) / 2)``, ``p = (t - W) / max(1, T - W)``
    (past ``T`` the cosine goes on: it rises again, as transformers' does)."""
    warmup = _warmup_steps(num_warmup_steps)
    total = validate.nonnegative_int("num_training_steps", num_training_steps)
    cosine = _cosine(warmup, max(1, total - warmup), num_cycles)
    return _with_warmup(base_lr, warmup, lambda t: jnp.maximum(0.0, cosine(t)))


def get_cosine_with_hard_restarts_schedule_with_warmup(
    base_lr: float, num_warmup_steps: int, num_training_steps: int, num_cycles: int = 1
) -> core.Schedule:
    """``transformers.get_cosine_with_hard_restarts_schedule_with_warmup``: after the warmup, with
    ``p = (t - W) / max(1, T - W)``, ``f(t) = base_lr * (1 + cos(pi * ((num_cycles * p) % 1))) / 2``
    while ``p < 1``, then 0.

    ``num_cycles`` must be a whole number here (transformers types it ``int``): the position in
    the cycle is ``num_cycles * (t - W) mod (T - W)`` in integers. Where that is 0 transformers'
    float ``num_cycles * p`` can fall one rounding short of the whole number (``49 * (1 / 49)``),
    which puts the step at the end of the previous cycle (lr ~ 0) instead of its start: those
    steps are found at build time with transformers' float expression and kept as it has them.
    """
    warmup = _warmup_steps(num_warmup_steps)
    total = validate.nonnegative_int("num_training_steps", num_training_steps)
    cycles = validate.real("num_cycles", num_cycles)
    if not cycles.is_integer() or cycles < 0:
        raise ValueError(f"num_cycles must be a whole number >= 0 (transformers types it int), got {num_cycles!r}")
    cycles, length = int(cycles), max(1, total - warmup)
    # cycle j starts at d_j = ceil(j L / c) steps after the warmup, r_j = c d_j - j L (< c) into it:
    # the position c d mod L is c (d - d_j) + r_j, with no product as large as c L
    starts = [-(-j * length // cycles) for j in range(1, cycles)]
    offsets = np.asarray([0] + [cycles * start - j * length for j, start in enumerate(starts, 1)], np.int64)
    firsts = np.asarray([0] + starts, np.int64)
    late = {}  # steps after the warmup where transformers' float cycle position misses a restart
    for done in starts:
        position = (float(cycles) * (float(done) / float(length))) % 1.0
        if position != 0.0 and (cycles * done) % length == 0:
            late[done] = max(0.0, 0.5 * (1.0 + math.cos(math.pi * position)))
    late_steps, late_values = np.asarray(list(late), np.int64), np.asarray(list(late.values()))

    def after(t):
        done = jnp.clip(t - warmup, 0, length)
        cycle = core.count_reached(done, starts)
        first, offset = (jnp.asarray(table, core.int_dtype())[cycle] for table in (firsts, offsets))
        value = core.cosine_anneal(1.0, 0.0, cycles * (done - first) + offset, length)
        if late:
            hit = done[..., None] == jnp.asarray(late_steps, core.int_dtype())
            value = jnp.where(hit.any(-1), jnp.sum(jnp.where(hit, core.as_values(late_values), 0.0), -1), value)
        return jnp.where(done >= length, 0.0, value)

    return _with_warmup(base_lr, warmup, after)


def get_polynomial_decay_schedule_with_warmup(
    base_lr: float, num_warmup_steps: int, num_training_steps: int, lr_end: float = 1e-7, power: float = 1.0
) -> core.Schedule:
    """``transformers.get_polynomial_decay_schedule_with_warmup``: after the warmup
    ``f(t) = (base_lr - lr_end) * (1 - (t - W) / (T - W)) ** power + lr_end`` up to ``T``, then
    ``lr_end``. transformers refuses ``lr_end >= base_lr``; so does this."""
    warmup = _warmup_steps(num_warmup_steps)
    total = validate.nonnegative_int("num_training_steps", num_training_steps)
    base_lr, lr_end = validate.real("base_lr", base_lr), validate.real("lr_end", lr_end)
    power = validate.real("power", power)
    if not base_lr > lr_end:
        raise ValueError(f"lr_end={lr_end!r} must be smaller than the initial lr, base_lr={base_lr!r}")

    def after(t):
        left = core.remaining(jnp.minimum(t, total) - warmup, total - warmup)
        decay = (base_lr - lr_end) * jnp.power(left, power) + lr_end
        return jnp.where(t > total, lr_end, decay) / base_lr

    return _with_warmup(base_lr, warmup, after)


def get_inverse_sqrt_schedule(base_lr: float, num_warmup_steps: int, timescale: int | None = None) -> core.Schedule:
    """``transformers.get_inverse_sqrt_schedule``: after the warmup
    ``f(t) = base_lr / sqrt((t - W + timescale) / timescale)``; ``timescale`` defaults to ``W``, or
    10000 when ``W`` is 0."""
    warmup = _warmup_steps(num_warmup_steps)
    scale = validate.positive("timescale", warmup or 10_000 if timescale is None else timescale)
    return _with_warmup(base_lr, warmup, lambda t: 1.0 / jnp.sqrt(core.offset(t, warmup - scale) / scale))


def _min_lr_rate(base_lr, min_lr, min_lr_rate) -> float:
    if min_lr is not None and min_lr_rate is not None:
        raise ValueError(f"give one of min_lr and min_lr_rate, got min_lr={min_lr!r} and min_lr_rate={min_lr_rate!r}")
    if min_lr is not None:
        return validate.real("min_lr", min_lr) / validate.real("base_lr", base_lr)
    if min_lr_rate is None:
        raise ValueError("one of min_lr or min_lr_rate must be set (the Trainer's lr_scheduler_kwargs)")
    return validate.real("min_lr_rate", min_lr_rate)


def get_cosine_with_min_lr_schedule_with_warmup(
    base_lr: float,
    num_warmup_steps: int,
    num_training_steps: int,
    num_cycles: float = 0.5,
    min_lr: float | None = None,
    min_lr_rate: float | None = None,
) -> core.Schedule:
    """``transformers.get_cosine_with_min_lr_schedule_with_warmup``: the cosine of
    :func:`get_cosine_schedule_with_warmup` from 1 down to ``m = min_lr_rate`` (or ``min_lr / base_lr``):
    ``f(t) = base_lr * max(0, m + (1 - m) * (1 + cos(2 pi num_cycles p)) / 2)``."""
    rate = _min_lr_rate(base_lr, min_lr, min_lr_rate)
    warmup = _warmup_steps(num_warmup_steps)
    total = validate.nonnegative_int("num_training_steps", num_training_steps)
    cosine = _cosine(warmup, max(1, total - warmup), num_cycles, rate)
    return _with_warmup(base_lr, warmup, lambda t: jnp.maximum(0.0, cosine(t)))


def get_cosine_with_min_lr_schedule_with_warmup_lr_rate(
    base_lr: float,
    num_warmup_steps: int,
    num_training_steps: int,
    num_cycles: float = 0.5,
    min_lr: float | None = None,
    min_lr_rate: float | None = None,
    warmup_lr_rate: float | None = None,
) -> core.Schedule:
    """``transformers.get_cosine_with_min_lr_schedule_with_warmup_lr_rate`` (``cosine_warmup_with_min_lr``):
    the warmup is ``(t + 1) / max(1, W)``, or with ``warmup_lr_rate = w``
    ``w + (1 - w) * t / max(1, W - 1)``; then the cosine to ``m`` one step ahead,
    ``p = (t - W + 1) / max(1, T - W)``: ``f(t) = base_lr * max(0, m + (1 - m) * (1 + cos(2 pi num_cycles p)) / 2)``."""
    rate = _min_lr_rate(base_lr, min_lr, min_lr_rate)
    warmup = _warmup_steps(num_warmup_steps)
    total = validate.nonnegative_int("num_training_steps", num_training_steps)
    cosine = _cosine(warmup - 1, max(1, total - warmup), num_cycles, rate)
    start = None if warmup_lr_rate is None else validate.real("warmup_lr_rate", warmup_lr_rate)
    base_lr = validate.real("base_lr", base_lr)

    def schedule(step):
        t = core.as_steps(step)
        if start is None:
            warm = core.fraction(t + 1, max(1, warmup))
        else:
            warm = core.linear_anneal(start, 1.0, t, max(1, warmup - 1))
        return base_lr * jnp.where(t < warmup, warm, jnp.maximum(0.0, cosine(t)))

    return schedule


def get_wsd_schedule(
    base_lr: float,
    num_warmup_steps: int,
    num_decay_steps: int,
    num_training_steps: int | None = None,
    num_stable_steps: int | None = None,
    warmup_type: str = "linear",
    decay_type: str = "cosine",
    min_lr_ratio: float = 0,
    num_cycles: float = 0.5,
) -> core.Schedule:
    """``transformers.get_wsd_schedule`` (``warmup_stable_decay``), ``m = min_lr_ratio``:

    - warmup, ``t < W``, ``p = t / max(1, W)``: ``m + (1 - m) * g(p)``, ``g`` = ``p`` (linear),
      ``(1 - cos(pi p)) / 2`` (cosine) or ``1 - sqrt(1 - p)`` (1-sqrt);
    - stable, ``S = num_stable_steps`` (default ``T - W - D``) steps: 1;
    - decay, ``D = num_decay_steps`` steps, ``p = (t - W - S) / max(1, D)``: ``m + (1 - m) * h(p)``,
      ``h`` = ``1 - p``, ``(1 + cos(2 pi num_cycles p)) / 2`` or ``1 - sqrt(p)``;
    - then ``m``; every phase's factor clipped at 0, times ``base_lr``.
    """
    warmup = _warmup_steps(num_warmup_steps)
    decay = validate.nonnegative_int("num_decay_steps", num_decay_steps)
    if num_stable_steps is None:
        if num_training_steps is None:
            raise ValueError("warmup_stable_decay needs num_training_steps or num_stable_steps, got neither")
        num_stable_steps = validate.nonnegative_int("num_training_steps", num_training_steps) - warmup - decay
    stable = validate.integer("num_stable_steps", num_stable_steps)
    warmup_type = validate.one_of("warmup_type", warmup_type, WSD_TYPES)
    decay_type = validate.one_of("decay_type", decay_type, WSD_TYPES)
    low = validate.real("min_lr_ratio", min_lr_ratio)
    cycles = validate.real("num_cycles", num_cycles)
    base_lr = validate.real("base_lr", base_lr)
    warm_length, decay_length = max(1, warmup), max(1, decay)

    def warm(t):
        if warmup_type == "linear":
            return core.linear_anneal(low, 1.0, t, warm_length)
        if warmup_type == "cosine":
            return core.cosine_anneal(low, 1.0, t, warm_length)
        return low + (1.0 - low) * (1.0 - jnp.sqrt(core.remaining(t, warm_length)))

    def fall(done):
        if decay_type == "linear":
            return core.linear_anneal(1.0, low, done, decay_length)
        if decay_type == "cosine":
            return core.cosine_anneal(
                1.0, low, _periodic(core.as_values(done) * (2 * cycles), decay_length), decay_length
            )
        return low + (1.0 - low) * (1.0 - jnp.sqrt(core.fraction(done, decay_length)))

    def schedule(step):
        t = core.as_steps(step)
        done = t - warmup - stable
        factor = jnp.where(
            t < warmup,
            jnp.maximum(0.0, warm(jnp.minimum(t, warmup))),
            jnp.where(done < 0, 1.0, jnp.where(done < decay, jnp.maximum(0.0, fall(jnp.clip(done, 0, decay))), low)),
        )
        return base_lr * factor

    return schedule


TYPE_TO_SCHEDULER_FUNCTION: dict[str, Callable[..., core.Schedule]] = {
    "linear": get_linear_schedule_with_warmup,
    "cosine": get_cosine_schedule_with_warmup,
    "cosine_with_restarts": get_cosine_with_hard_restarts_schedule_with_warmup,
    "polynomial": get_polynomial_decay_schedule_with_warmup,
    "constant": get_constant_schedule,
    "constant_with_warmup": get_constant_schedule_with_warmup,
    "inverse_sqrt": get_inverse_sqrt_schedule,
    "cosine_with_min_lr": get_cosine_with_min_lr_schedule_with_warmup,
    "cosine_warmup_with_min_lr": get_cosine_with_min_lr_schedule_with_warmup_lr_rate,
    "warmup_stable_decay": get_wsd_schedule,
}


def get_scheduler(
    name: str,
    base_lr: float,
    num_warmup_steps: int | None = None,
    num_training_steps: int | None = None,
    scheduler_specific_kwargs: dict | None = None,
) -> core.Schedule:
    """``transformers.get_scheduler(name, optimizer, ...)``: the schedule of a ``SchedulerType`` name
    with the arguments transformers passes it (``constant`` takes none; ``constant_with_warmup``
    only ``num_warmup_steps``; ``inverse_sqrt`` and ``warmup_stable_decay`` no ``num_training_steps``
    requirement; the others both). Unknown names raise with the closest known ones; the
    metric-driven types (``METRIC_DRIVEN``) raise saying why."""
    name = getattr(name, "value", name)
    if name not in SCHEDULER_TYPES:
        raise ValueError(
            f"lr_scheduler_type {name!r} is not a transformers SchedulerType "
            f"{list(SCHEDULER_TYPES)}{validate.close_to(name, SCHEDULER_TYPES)}"
        )
    if name in METRIC_DRIVEN:
        raise ValueError(f"lr_scheduler_type {name!r} has no step schedule: {METRIC_DRIVEN[name]}")
    function = TYPE_TO_SCHEDULER_FUNCTION[name]
    if name == "constant":
        return function(base_lr)
    kwargs = dict(validate.mapping("scheduler_specific_kwargs", scheduler_specific_kwargs or {}))
    known = [
        arg
        for arg in inspect.signature(function).parameters
        if arg not in ("base_lr", "num_warmup_steps", "num_training_steps")
    ]
    for key in kwargs:
        if key not in known:
            raise ValueError(
                f"scheduler_specific_kwargs: {name} takes no argument {key!r} (it takes {known})"
                f"{validate.close_to(key, known)}"
            )
    if num_warmup_steps is None:
        raise ValueError(f"{name} requires num_warmup_steps, got num_warmup_steps=None")
    if name == "constant_with_warmup":
        return function(base_lr, num_warmup_steps)
    if name == "inverse_sqrt":
        return function(base_lr, num_warmup_steps, **kwargs)
    if name != "warmup_stable_decay" and num_training_steps is None:
        raise ValueError(f"{name} requires num_training_steps, got num_training_steps=None")
    return function(base_lr, num_warmup_steps=num_warmup_steps, num_training_steps=num_training_steps, **kwargs)
