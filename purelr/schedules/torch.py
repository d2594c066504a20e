"""Twins of ``torch.optim.lr_scheduler`` (torch 2.13) and ``torch.optim.swa_utils.SWALR``.

``f(t)`` is ``optimizer.param_groups[g]['lr']`` after ``t`` calls of ``scheduler.step()``, where
``t = 0`` is the value set when the scheduler is constructed. Each twin takes torch's keyword
names and defaults, with the group's base value (``initial_lr``) first.

torch computes most schedulers recursively ("chainable" form: each step reads the lr the group
holds and rescales it). Standalone, the recursion equals the closed form used here up to
rounding (a few ulps per step). Where it does not (several schedulers on one optimizer),
``chained_scheduler`` and ``sequential_lr`` reproduce torch's recursion from the per-step maps
each twin carries (``schedule.chain_maps``, a `ChainMaps`).

This module imports jax and numpy only (the name ``torch`` is the family, not the library).
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from purelr.schedules import validate
from purelr.schedules.core import (
    MAX_STEP,
    Schedule,
    as_steps,
    as_values,
    cosine_anneal,
    count_reached,
    fraction,
    integer_power,
    linear_anneal,
    offset,
    remaining,
)


class ChainMaps(NamedTuple):
    """What ``sequential_lr`` and ``chained_scheduler`` need of a twin besides its values.

    Every twin is a plain schedule function carrying one of these as ``schedule.chain_maps``.

    Attributes:
      update: ``(k, lr) -> lr``, torch's ``get_lr()`` at ``last_epoch == k`` given the lr the
        group holds before it (``k == 0`` is the constructor's initial step).
      restart: ``(k, lr) -> lr``, the lr ``k`` steps after ``SequentialLR`` restarts this
        scheduler at a milestone (``_update_lr(0)``), given the lr in force just before it.
      kind: how ``update`` uses the lr before: ``"scale"`` (multiplies it), ``"affine"``
        (``a * lr + b``) or ``"absolute"`` (ignores it); ``"sequential"`` for ``sequential_lr`` and
        ``"composite"`` for ``chained_scheduler`` (``"composite_affine"`` when an affine twin's map
        applies last), which nest only as a ``sequential_lr``'s first (not ``"composite_affine"``).
      base: the group's ``initial_lr`` the schedule starts from.
      swa_lr: ``swa_lr``'s target, which torch keeps in the param group (``group['swa_lr']``),
        shared by every SWALR on the optimizer; None for the other twins.
    """

    update: Callable
    restart: Callable
    kind: str
    base: float
    swa_lr: float | None = None


def _twin(value, update, kind, base, restart=None, swa_target=None):
    def schedule(step):
        return value(as_steps(step))

    def step_map(step, lr):
        return update(as_steps(step), as_values(lr))

    if restart is None:

        def restarted(step, lr):
            return value(jnp.maximum(as_steps(step), 0))

    else:

        def restarted(step, lr):
            return restart(jnp.maximum(as_steps(step), 0), as_values(lr))

    setattr(schedule, "chain_maps", ChainMaps(step_map, restarted, kind, float(base), swa_target))
    return schedule


def _base(base_lr, name="base_lr") -> float:
    return validate.nonnegative(name, base_lr)


def _product_loop(factor: Callable, first: int, count, start):
    """``start * factor(first) * ... * factor(first + count - 1)``, one multiply per step."""

    def one(n, lr):
        return jax.lax.fori_loop(0, n, lambda i, x: x * as_values(factor(i + first)), lr)

    return jnp.vectorize(one)(count, start)


def step_lr(base_lr: float, step_size: int, gamma: float = 0.1) -> Schedule:
    """``torch.optim.lr_scheduler.StepLR``: ``base_lr * gamma ** (t // step_size)``."""
    base = _base(base_lr)
    step_size = validate.positive_int("step_size", step_size)
    gamma = validate.nonnegative("gamma", gamma)

    def value(t):
        return base * integer_power(gamma, t // step_size)

    def update(k, lr):
        return jnp.where((k == 0) | (k % step_size != 0), lr, lr * gamma)

    return _twin(value, update, "scale", base)


def multistep_lr(base_lr: float, milestones: Sequence[int], gamma: float = 0.1) -> Schedule:
    """``torch.optim.lr_scheduler.MultiStepLR``: ``base_lr * gamma ** #{m in milestones: m <= t}``.

    A milestone listed twice decays twice, as torch's ``Counter`` does.
    """
    base = _base(base_lr)
    milestones = validate.step_list("milestones", milestones, allow_duplicates=True)
    gamma = validate.nonnegative("gamma", gamma)

    def value(t):
        return base * integer_power(gamma, count_reached(t, milestones))

    def update(k, lr):
        hits = sum((k == m).astype(k.dtype) for m in milestones) if milestones else jnp.zeros_like(k)
        return lr * integer_power(gamma, hits)

    return _twin(value, update, "scale", base)


def constant_lr(base_lr: float, factor: float = 1.0 / 3, total_iters: int = 5) -> Schedule:
    """``torch.optim.lr_scheduler.ConstantLR``: ``base_lr * factor`` for ``t < total_iters``, then ``base_lr``.

    As in torch's recursion, ``total_iters == 0`` keeps ``base_lr * factor`` for ever.
    """
    base = _base(base_lr)
    factor = validate.in_range("factor", factor, 0.0, 1.0)
    total_iters = validate.nonnegative_int("total_iters", total_iters)
    if factor == 0 and total_iters > 0:
        raise ValueError(
            f"factor must be > 0 when total_iters > 0 (torch divides by it at step total_iters), got factor={factor!r}"
        )
    restored = factor * (1.0 / factor) if factor else 1.0

    def value(t):
        return base * jnp.where((t >= total_iters) & (total_iters > 0), restored, factor)

    def update(k, lr):
        lr = jnp.where(k == 0, lr * factor, lr)
        return jnp.where((k == total_iters) & (k > 0), lr * (1.0 / factor if factor else 1.0), lr)

    def restart(k, lr):
        # SequentialLR's _update_lr(0) uses torch's closed form, whose total_iters == 0 gives base.
        return base * jnp.where(k >= total_iters, factor + (1 - factor), factor)

    return _twin(value, update, "scale", base, restart)


def linear_lr(base_lr: float, start_factor: float = 1.0 / 3, end_factor: float = 1.0, total_iters: int = 5) -> Schedule:
    """``torch.optim.lr_scheduler.LinearLR``: ``base_lr * (s + (e - s) * min(t, T) / T)``."""
    base = _base(base_lr)
    start = validate.in_range("start_factor", start_factor, 0.0, 1.0, low_open=True)
    end = validate.in_range("end_factor", end_factor, 0.0, 1.0)
    total = validate.positive_int("total_iters", total_iters)

    def value(t):
        return base * linear_anneal(start, end, jnp.minimum(t, total), total)

    def update(k, lr):
        denominator = total * start + as_values(k - 1) * (end - start)
        safe = jnp.where(denominator == 0, 1.0, denominator)
        ramp = lr * (1.0 + (end - start) / safe)
        return jnp.where(k == 0, lr * start, jnp.where(k > total, lr, ramp))

    return _twin(value, update, "scale", base)


def exponential_lr(base_lr: float, gamma: float) -> Schedule:
    """``torch.optim.lr_scheduler.ExponentialLR``: ``base_lr * gamma ** t``."""
    base = _base(base_lr)
    gamma = validate.nonnegative("gamma", gamma)

    def value(t):
        return base * integer_power(gamma, t)

    def update(k, lr):
        return jnp.where(k == 0, lr, lr * gamma)

    return _twin(value, update, "scale", base)


def polynomial_lr(base_lr: float, total_iters: int = 5, power: float = 1.0) -> Schedule:
    """``torch.optim.lr_scheduler.PolynomialLR``: ``base_lr * (1 - min(t, T) / T) ** power``."""
    base = _base(base_lr)
    total = validate.positive_int("total_iters", total_iters)
    power = validate.nonnegative("power", power)

    def value(t):
        return base * remaining(jnp.minimum(t, total), total) ** power

    def update(k, lr):
        previous = remaining(k - 1, total)
        safe = jnp.where(previous == 0, 1.0, previous)
        decayed = lr * (remaining(k, total) / safe) ** power
        return jnp.where((k == 0) | (k > total), lr, decayed)

    return _twin(value, update, "scale", base)


def _half_turns(k, T):
    """``(k mod 2T, T)``: the cosine's argument ``pi * k / T`` reduced modulo ``2 pi`` in integers,
    as the counts ``cosine_anneal`` takes."""
    return k % (2 * T), T


def cosine_annealing_lr(base_lr: float, T_max: int, eta_min: float = 0.0) -> Schedule:
    """``torch.optim.lr_scheduler.CosineAnnealingLR``:
    ``eta_min + (base_lr - eta_min) * (1 + cos(pi * t / T_max)) / 2``.

    Past ``T_max`` it keeps oscillating with period ``2 * T_max``, as torch's recursion does.
    """
    base = _base(base_lr)
    T = validate.positive_int("T_max", T_max)
    eta_min = validate.nonnegative("eta_min", eta_min)
    rise = (base - eta_min) * (1 - math.cos(math.pi / T)) / 2

    def value(t):
        return cosine_anneal(base, eta_min, *_half_turns(t, T))

    def update(k, lr):
        now = cosine_anneal(1.0, 0.0, *_half_turns(k, T))
        before = cosine_anneal(1.0, 0.0, *_half_turns(k - 1, T))
        at_bottom = (k - 1 - T) % (2 * T) == 0
        ratio = now / jnp.where(at_bottom, 1.0, before)
        recursed = jnp.where(at_bottom, lr + rise, ratio * (lr - eta_min) + eta_min)
        return jnp.where(k == 0, lr, recursed)

    return _twin(value, update, "affine", base)


def _restart_cycles(T_0, T_mult):
    """Validated ``T_0``, ``T_mult`` and the cycles of ``CosineAnnealingWarmRestarts`` up to
    ``2**31 - 1``: ``(starts, lengths)``, cycle ``i`` lasting ``T_0 * T_mult ** i`` steps."""
    T_0 = validate.positive_int("T_0", T_0)
    T_mult = validate.positive_int("T_mult", T_mult)
    starts, lengths = [0], [T_0]
    while T_mult > 1 and starts[-1] + lengths[-1] <= MAX_STEP:
        starts.append(starts[-1] + lengths[-1])
        lengths.append(lengths[-1] * T_mult)
    return T_0, T_mult, starts, np.asarray(lengths, dtype=np.float64)


def cosine_annealing_warm_restarts(base_lr: float, T_0: int, T_mult: int = 1, eta_min: float = 0.0) -> Schedule:
    """``torch.optim.lr_scheduler.CosineAnnealingWarmRestarts``:
    ``eta_min + (base_lr - eta_min) * (1 + cos(pi * T_cur / T_i)) / 2``.

    Cycle ``i`` lasts ``T_i = T_0 * T_mult ** i`` steps; ``T_cur`` counts steps since its start.
    Cycle starts are found by integer comparison, exact for every step.
    """
    base = _base(base_lr)
    T_0, T_mult, starts, lengths_table = _restart_cycles(T_0, T_mult)
    eta_min = validate.nonnegative("eta_min", eta_min)

    def value(t):
        length: jax.Array | int
        if T_mult == 1:
            position, length = t % T_0, T_0
        else:
            cycle = count_reached(t, starts[1:])
            position = t - jnp.asarray(np.asarray(starts), t.dtype)[cycle]
            length = as_values(lengths_table)[cycle]
        return cosine_anneal(base, eta_min, position, length)

    return _twin(value, lambda k, lr: value(k), "absolute", base)


def cosine_annealing_warm_restarts_at_epoch(
    base_lr: float, T_0: int, T_mult: int = 1, eta_min: float = 0.0
) -> Schedule:
    """``CosineAnnealingWarmRestarts`` stepped at fractional epochs, ``scheduler.step(epoch)`` (as
    its docstring shows: ``scheduler.step(epoch + i / iters)``): a schedule of a float epoch.

    ``f(e)`` is the lr after ``scheduler.step(e)``, for any float ``e >= 0`` and in any order:
    ``eta_min + (base_lr - eta_min) * (1 + cos(pi * (e - s_i) / T_i)) / 2`` in the cycle
    ``s_i <= e < s_i + T_i`` (``s_i = T_0 * (T_mult ** i - 1) / (T_mult - 1)``, integers compared
    with ``e`` exactly; torch finds ``i`` with a float ``log``, the same cycle for these epochs).
    Not chainable: ``sequential_lr`` / ``chained_scheduler`` step torch's integer form.
    """
    base = _base(base_lr)
    T_0, T_mult, starts, lengths_table = _restart_cycles(T_0, T_mult)
    eta_min = validate.nonnegative("eta_min", eta_min)

    def schedule(epoch):
        epoch = as_values(epoch)
        length: jax.Array | int
        if T_mult == 1:
            position, length = jnp.mod(epoch, T_0), T_0
        else:
            cycle = jnp.sum(epoch[..., None] >= as_values(np.asarray(starts[1:], np.float64)), axis=-1)
            position = epoch - as_values(np.asarray(starts, np.float64))[cycle]
            length = as_values(lengths_table)[cycle]
        return cosine_anneal(base, eta_min, position, length)

    return schedule


def _cyclic_position(step_size_up, step_size_down, mode, gamma, scale_fn, scale_mode):
    """``t -> (rise, scale)`` of ``torch.optim.lr_scheduler.CyclicLR``: the triangle's height in
    [0, 1] and the amplitude factor of ``mode`` / ``scale_fn``."""
    up = validate.positive_int("step_size_up", step_size_up)
    down = up if step_size_down is None else validate.positive_int("step_size_down", step_size_down)
    gamma = validate.nonnegative("gamma", gamma)
    if scale_fn is None:
        validate.one_of("mode", mode, ("triangular", "triangular2", "exp_range"))
        scale_mode = "iterations" if mode == "exp_range" else "cycle"
        scale_fn = {
            "triangular": lambda x: jnp.ones_like(as_values(x)),
            "triangular2": lambda x: jnp.ldexp(as_values(1.0), 1 - x),
            "exp_range": lambda x: integer_power(gamma, x),
        }[mode]
    else:
        validate.function("scale_fn", scale_fn)
        validate.one_of("scale_mode", scale_mode, ("cycle", "iterations"))
    total = up + down

    def position(t):
        within = t % total
        rise = jnp.where(within <= up, fraction(within, up), fraction(total - within, down))
        argument = t // total + 1 if scale_mode == "cycle" else t
        return rise, as_values(scale_fn(argument))

    return position


def cyclic_lr(
    base_lr: float,
    max_lr: float,
    step_size_up: int = 2000,
    step_size_down: int | None = None,
    mode: str = "triangular",
    gamma: float = 1.0,
    scale_fn: Callable | None = None,
    scale_mode: str = "cycle",
) -> Schedule:
    """``torch.optim.lr_scheduler.CyclicLR``: ``base_lr + (max_lr - base_lr) * rise(t) * scale``.

    ``rise`` climbs from 0 to 1 over ``step_size_up`` steps and back over ``step_size_down``;
    ``scale`` is 1 (triangular), ``1 / 2 ** (cycle - 1)`` (triangular2), ``gamma ** t``
    (exp_range) or ``scale_fn(cycle or t)`` (jnp-traceable), ``cycle = t // (up + down) + 1``.
    """
    base = _base(base_lr)
    peak = _base(max_lr, "max_lr")
    position = _cyclic_position(step_size_up, step_size_down, mode, gamma, scale_fn, scale_mode)

    def value(t):
        rise, scale = position(t)
        return base + (peak - base) * rise * scale

    return _twin(value, lambda k, lr: value(k), "absolute", base)


def cyclic_momentum(
    base_momentum: float = 0.8,
    max_momentum: float = 0.9,
    step_size_up: int = 2000,
    step_size_down: int | None = None,
    mode: str = "triangular",
    gamma: float = 1.0,
    scale_fn: Callable | None = None,
    scale_mode: str = "cycle",
):
    """The momentum (or Adam's beta1) ``torch.optim.lr_scheduler.CyclicLR`` sets with
    ``cycle_momentum=True``: ``max_momentum - (max_momentum - base_momentum) * rise(t) * scale``."""
    low = validate.nonnegative("base_momentum", base_momentum)
    high = validate.nonnegative("max_momentum", max_momentum)
    position = _cyclic_position(step_size_up, step_size_down, mode, gamma, scale_fn, scale_mode)

    def schedule(step):
        rise, scale = position(as_steps(step))
        return high - (high - low) * rise * scale

    return schedule


def _one_cycle_phases(total_steps, epochs, steps_per_epoch, pct_start, three_phase):
    """The phases of ``torch.optim.lr_scheduler.OneCycleLR`` as ``(last_step, end_step, start, end)``
    with float ends computed as torch computes them, ``last_step = floor(end_step)`` for integer
    comparison, and ``start``/``end`` naming the values at the phase's ends."""
    if total_steps is not None:
        total = validate.positive_int("total_steps", total_steps)
    elif epochs is not None and steps_per_epoch is not None:
        total = validate.positive_int("epochs", epochs) * validate.positive_int("steps_per_epoch", steps_per_epoch)
    else:
        raise ValueError("one_cycle needs total_steps, or epochs and steps_per_epoch, got none")
    pct = validate.in_range("pct_start", pct_start, 0.0, 1.0, low_open=True, high_open=True)
    if three_phase:
        ends = [float(pct * total) - 1, float(2 * pct * total) - 2, total - 1]
        names = [("initial", "max"), ("max", "initial"), ("initial", "min")]
    else:
        ends = [float(pct * total) - 1, total - 1]
        names = [("initial", "max"), ("max", "min")]
    starts = [0.0] + ends[:-1]
    for i, (start, end) in enumerate(zip(starts, ends)):
        if end == start:
            raise ValueError(
                f"pct_start={pct!r} with total_steps={total} gives phase {i} zero length (torch divides by zero there)"
            )
    phases = [(math.floor(end), start, end, a, b) for start, end, (a, b) in zip(starts, ends, names)]
    return total, phases


def _one_cycle(total, phases, anneal_strategy, values):
    validate.one_of("anneal_strategy", anneal_strategy, ("cos", "linear"))
    anneal = cosine_anneal if anneal_strategy == "cos" else linear_anneal
    # torch takes the first phase whose end the step has not passed; the last one runs to ``total``.
    lasts = [last for last, *_ in phases[:-1]] + [total]

    def schedule(step):
        t = as_steps(step)
        result = jnp.full(t.shape, jnp.nan, as_values(0.0).dtype)
        for last, (_, start, end, a, b) in reversed(list(zip(lasts, phases))):
            here = anneal(values[a], values[b], offset(t, start), end - start, -offset(t, end))
            result = jnp.where(t <= last, here, result)
        return result

    return schedule


def one_cycle_lr(
    max_lr: float,
    total_steps: int | None = None,
    epochs: int | None = None,
    steps_per_epoch: int | None = None,
    pct_start: float = 0.3,
    anneal_strategy: str = "cos",
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    three_phase: bool = False,
) -> Schedule:
    """``torch.optim.lr_scheduler.OneCycleLR``: from ``max_lr / div_factor`` up to ``max_lr`` and
    down to ``max_lr / div_factor / final_div_factor`` (cos or linear phases).

    Phases end at ``pct_start * T - 1``, (three_phase: ``2 * pct_start * T - 2``) and ``T - 1``;
    step ``T`` extrapolates the last phase as torch does. Past ``T`` torch raises ``ValueError``;
    a pure function cannot, so the value there is NaN.
    """
    peak = _base(max_lr, "max_lr")
    div_factor = validate.positive("div_factor", div_factor)
    final_div_factor = validate.positive("final_div_factor", final_div_factor)
    total, phases = _one_cycle_phases(total_steps, epochs, steps_per_epoch, pct_start, three_phase)
    initial = peak / div_factor
    values = {"initial": initial, "max": peak, "min": initial / final_div_factor}
    value = _one_cycle(total, phases, anneal_strategy, values)
    return _twin(value, lambda k, lr: value(k), "absolute", initial)


def one_cycle_momentum(
    base_momentum: float = 0.85,
    max_momentum: float = 0.95,
    total_steps: int | None = None,
    epochs: int | None = None,
    steps_per_epoch: int | None = None,
    pct_start: float = 0.3,
    anneal_strategy: str = "cos",
    three_phase: bool = False,
):
    """The momentum (or Adam's beta1) ``torch.optim.lr_scheduler.OneCycleLR`` sets with
    ``cycle_momentum=True``: from ``max_momentum`` down to ``base_momentum`` while the lr rises, and
    back while it falls (NaN past ``total_steps``)."""
    low = validate.nonnegative("base_momentum", base_momentum)
    high = validate.nonnegative("max_momentum", max_momentum)
    total, phases = _one_cycle_phases(total_steps, epochs, steps_per_epoch, pct_start, three_phase)
    # The momentum mirrors the lr: 'initial'/'min' ends sit at max_momentum, 'max' at base_momentum.
    return _one_cycle(total, phases, anneal_strategy, {"initial": high, "max": low, "min": high})


def lambda_lr(base_lr: float, lr_lambda: Callable) -> Schedule:
    """``torch.optim.lr_scheduler.LambdaLR``: ``base_lr * lr_lambda(t)`` (``lr_lambda`` jnp-traceable)."""
    base = _base(base_lr)
    lr_lambda = validate.function("lr_lambda", lr_lambda)

    def value(t):
        return base * as_values(lr_lambda(t))

    return _twin(value, lambda k, lr: value(k), "absolute", base)


def multiplicative_lr(base_lr: float, lr_lambda: Callable) -> Schedule:
    """``torch.optim.lr_scheduler.MultiplicativeLR``: ``base_lr * lr_lambda(1) * ... * lr_lambda(t)``.

    ``lr_lambda`` is jnp-traceable and may depend on the step, so the product is a loop: the cost
    of ``f(t)`` grows with ``t``. Restarted by ``sequential_lr``, torch also multiplies by
    ``lr_lambda(0)`` at the milestone.
    """
    base = _base(base_lr)
    lr_lambda = validate.function("lr_lambda", lr_lambda)

    def value(t):
        return _product_loop(lr_lambda, 1, t, as_values(base))

    def update(k, lr):
        return jnp.where(k == 0, lr, lr * as_values(lr_lambda(k)))

    def restart(k, lr):
        return _product_loop(lr_lambda, 0, k + 1, lr)

    return _twin(value, update, "scale", base, restart)


def _swa_alpha(anneal_epochs, anneal_strategy):
    """``k -> (alpha, 1 - alpha)`` of ``torch.optim.swa_utils.SWALR``: the weight of ``swa_lr`` at
    its step ``k`` (negative ``k`` gives 0) and of the lr annealed from, each formed from its own
    step count (``1 - alpha`` by subtraction would lose float32's relative precision as ``alpha``
    nears 1); ``anneal_epochs == 0`` counts step 0 as step 1, as torch does."""
    validate.one_of("anneal_strategy", anneal_strategy, ("cos", "linear"))
    epochs = validate.nonnegative_int("anneal_epochs", anneal_epochs)
    length = max(1, epochs)

    def shape(x):
        return x if anneal_strategy == "linear" else jnp.sin((math.pi / 2) * x) ** 2

    def alpha(k):
        done = jnp.clip(k, 0, length)
        return shape(fraction(done, length)), shape(fraction(length - done, length))

    def effective_step(k):
        return jnp.maximum(k, 1) if epochs == 0 else k

    return alpha, effective_step


def swa_lr(initial_lr: float, swa_lr: float, anneal_epochs: int = 10, anneal_strategy: str = "cos") -> Schedule:
    """``torch.optim.swa_utils.SWALR``: ``swa_lr * alpha(t) + initial_lr * (1 - alpha(t))``.

    ``initial_lr`` is the lr in force when annealing starts; ``alpha`` goes from 0 to 1 over
    ``anneal_epochs`` steps, as ``(1 - cos(pi * t / anneal_epochs)) / 2`` or linearly.
    """
    start = _base(initial_lr, "initial_lr")
    target = _base(swa_lr, "swa_lr")
    alpha, effective_step = _swa_alpha(anneal_epochs, anneal_strategy)

    def annealed(k, lr):
        weight, rest = alpha(effective_step(k))
        return target * weight + lr * rest

    def update(k, lr):
        # torch recovers the lr annealing started from out of the lr the group holds now.
        before, rest = alpha(effective_step(k) - 1)
        recovered = jnp.where(rest == 0, target, (lr - before * target) / jnp.where(rest == 0, 1.0, rest))
        return annealed(k, recovered)

    return _twin(lambda t: annealed(t, as_values(start)), update, "affine", start, annealed, target)


_COMPOSITES = ("composite", "composite_affine", "sequential")


def _not_nestable(step, lr):
    raise TypeError("sequential_lr and chained_scheduler cannot be nested in one another")


def _check_components(name: str, schedules, composite_first: bool = False) -> tuple:
    """The twins' ``ChainMaps``; a composite (``sequential_lr`` / ``chained_scheduler``) only as
    ``schedules[0]`` where ``composite_first``."""
    if len(schedules) < 1:
        raise ValueError(f"{name} needs at least one schedule, got {list(schedules)!r}")
    for i, schedule in enumerate(schedules):
        maps = getattr(schedule, "chain_maps", None)
        if not isinstance(maps, ChainMaps):
            raise TypeError(f"{name}: schedules[{i}] must be a purelr.schedules.torch twin, got {schedule!r}")
        if maps.kind == "composite_affine" and composite_first and i == 0:
            raise TypeError(
                f"{name}: schedules[0] is a chained_scheduler stepping an affine twin (cosine_annealing_lr, "
                f"swa_lr) at step 0, got {schedule!r}: inside a SequentialLR torch steps it at last_epoch 0 "
                "without its initial-step rule, which purelr does not reproduce"
            )
        if maps.kind in _COMPOSITES and not (composite_first and i == 0):
            where = "after the first" if composite_first else "in chained_scheduler"
            raise TypeError(
                f"{name}: schedules[{i}] is a composite, got {schedule!r}; nesting sequential_lr/chained_scheduler "
                f"is not supported {where} (torch's _update_lr(0) on one raises NotImplementedError)"
            )
    maps = tuple(s.chain_maps for s in schedules)
    targets = sorted({m.swa_lr for m in maps if m.swa_lr is not None})
    if len(targets) > 1:
        raise ValueError(
            f"{name}: swa_lr twins with different swa_lr values {targets} on one optimizer: torch "
            "keeps one group['swa_lr'], so every SWALR would use the last one's; give them the same"
        )
    return tuple(schedules), maps


def sequential_lr(schedules: Sequence[Schedule], milestones: Sequence[int]) -> Schedule:
    """``torch.optim.lr_scheduler.SequentialLR``: ``schedules[i]`` runs from ``milestones[i-1]``.

    At each milestone torch restarts the next scheduler with ``step(0)`` (its closed form at 0),
    so ``f(t) = schedules[i](t - milestones[i-1])`` for all but ``multiplicative_lr`` and
    ``swa_lr``, which continue from the lr in force before the milestone. ``schedules[0]`` may be a
    ``chained_scheduler`` or ``sequential_lr``, as torch allows (it steps the first one from the
    start; a later one it cannot restart). An inner ``sequential_lr`` runs one step ahead, as in
    torch, whose outer ``SequentialLR`` steps it once more at construction without undoing it.
    """
    schedules, maps = _check_components("sequential_lr", schedules, composite_first=True)
    if len(milestones) != len(schedules) - 1:
        raise ValueError(
            f"sequential_lr needs len(milestones) == len(schedules) - 1, got "
            f"{len(milestones)} milestones for {len(schedules)} schedules"
        )
    milestones = validate.step_list("milestones", milestones, allow_duplicates=True)
    starts = (0,) + milestones

    ahead = 1 if maps[0].kind == "sequential" else 0

    def segment(i, t, entries):
        if i == 0:
            return schedules[0](t + ahead)
        if starts[i] == 0:
            return schedules[i](t)
        return maps[i].restart(t - starts[i], entries[i])

    def value(t):
        entries = [None]
        for i in range(1, len(schedules)):
            before = starts[i] - 1
            owner = max(j for j in range(i) if starts[j] <= max(before, 0))
            entries.append(segment(owner, jnp.asarray(max(before, 0), t.dtype), entries))
        result = segment(0, t, entries)
        for i in range(1, len(schedules)):
            result = jnp.where(t >= starts[i], segment(i, t, entries), result)
        return result

    return _twin(value, _not_nestable, "sequential", maps[0].base)


def chained_scheduler(schedules: Sequence[Schedule]) -> Schedule:
    """``torch.optim.lr_scheduler.ChainedScheduler``: every schedule steps, in order, on one lr.

    Each step applies every twin's ``update`` to the lr in turn. When all twins rescale the lr
    (``kind == "scale"``) the result is the product of their schedules over the base; after a
    twin that sets the lr outright (``"absolute"``), only the later twins' maps of that step apply.
    Otherwise (an ``"affine"`` twin such as ``cosine_annealing_lr`` and no absolute one) the steps
    are replayed in a loop, whose cost grows with ``t``.
    """
    schedules, maps = _check_components("chained_scheduler", schedules)
    bases = {m.base for m in maps if m.kind != "absolute"}
    if len(bases) > 1:
        raise ValueError(
            f"chained_scheduler needs every schedule built on the same base value (the optimizer's "
            f"lr), got {sorted(bases)}"
        )
    base = bases.pop() if bases else maps[0].base
    absolutes = [i for i, m in enumerate(maps) if m.kind == "absolute"]
    applied = maps[absolutes[-1] + 1 :] if absolutes else maps
    kind = "composite_affine" if any(m.kind == "affine" for m in applied) else "composite"

    def apply_step(k, lr, components):
        for component in components:
            lr = component.update(k, lr)
        return lr

    if absolutes:
        last = absolutes[-1]

        def value(t):
            return apply_step(t, schedules[last](t), maps[last + 1 :])

    elif all(m.kind == "scale" for m in maps):

        def value(t):
            product = as_values(base)
            for schedule in schedules:
                product = product * (schedule(t) / base if base else 0.0)
            return product

    else:

        def value(t):
            def one(n):
                return jax.lax.fori_loop(0, n + 1, lambda k, lr: apply_step(k, lr, maps), as_values(base))

            return jnp.vectorize(one)(t)

    return _twin(value, _not_nestable, kind, base)
