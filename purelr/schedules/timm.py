"""Twins of timm 1.0.31's learning-rate schedulers (``timm.scheduler``) as pure schedules.

Each function takes the scheduler's keyword names and defaults, with the base lr first, and
returns ``f(t)``: the lr that ``scheduler.step(t)`` (``t_in_epochs=True``) or
``scheduler.step_update(t)`` (``t_in_epochs=False``) sets, noise included. ``t_in_epochs`` is
accepted for that reason only: a schedule is indexed by whatever ``t`` counts.
:func:`create_scheduler_v2` goes one level up and gives the lr in force at each optimizer update
of timm's ``train.py``.

Steps are compared in integers (exact for ``t`` in ``[0, 2**31 - 1]``), including timm's float
step arithmetic (``t // 2.4``, the ``math.log`` cycle index), which is reproduced as timm computes
it. The lr noise has timm's range, truncation and seeding but its own random numbers: see
:func:`purelr.schedules.timm_noise.lr_noise`.

This module imports jax and numpy only.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import jax.numpy as jnp

from purelr.schedules import core, validate
from purelr.schedules.timm_noise import warmup, with_noise
from purelr.schedules.timm_steps import cycle_position, floor_division, timm_cycle_index

SCHEDULERS = ("cosine", "tanh", "step", "multistep", "poly", "wsd", "rsqrt", "constant", "none")
"""The ``sched`` names :func:`create_scheduler_v2` knows ('plateau' needs a metric, so no schedule)."""

STABLE_FNS = ("constant", "rsqrt", "power")
DECAY_FNS = ("linear", "1-sqrt", "cosine", "power", "exp")


def _finish(after, base_lr, warmup_t, warmup_lr_init, warmup_prefix, noise, target=None):
    """Warmup towards ``target`` (default ``base_lr``), then ``after``; timm's noise on top."""
    warmup_t = validate.nonnegative_int("warmup_t", warmup_t)
    warmup_lr_init = validate.nonnegative("warmup_lr_init", warmup_lr_init)
    target = base_lr if target is None else target
    return with_noise(warmup(after, warmup_t, warmup_lr_init, target, bool(warmup_prefix)), *noise)


def _base(base_lr) -> float:
    return validate.nonnegative("base_lr", base_lr)


def step(
    base_lr: float,
    decay_t: float,
    decay_rate: float = 1.0,
    warmup_t: int = 0,
    warmup_lr_init: float = 0.0,
    warmup_prefix: bool = True,
    t_in_epochs: bool = True,
    noise_range_t=None,
    noise_pct: float = 0.67,
    noise_std: float = 1.0,
    noise_seed: int = 42,
) -> core.Schedule:
    """``timm.scheduler.StepLRScheduler``: ``f(t) = base_lr * decay_rate ** (t // decay_t)`` after warmup.

    ``decay_t`` may be a float (``2.4``); ``t // decay_t`` is then Python's exact float floor division.
    """
    base_lr = _base(base_lr)
    divide = floor_division("decay_t", validate.positive("decay_t", decay_t))
    decay_rate = validate.nonnegative("decay_rate", decay_rate)

    def after(t):
        return base_lr * core.integer_power(decay_rate, divide(core.as_steps(t)))

    noise = (noise_range_t, noise_pct, noise_std, noise_seed)
    return _finish(after, base_lr, warmup_t, warmup_lr_init, warmup_prefix, noise)


def multistep(
    base_lr: float,
    decay_t: Sequence[int],
    decay_rate: float = 1.0,
    warmup_t: int = 0,
    warmup_lr_init: float = 0.0,
    warmup_prefix: bool = True,
    t_in_epochs: bool = True,
    noise_range_t=None,
    noise_pct: float = 0.67,
    noise_std: float = 1.0,
    noise_seed: int = 42,
) -> core.Schedule:
    """``timm.scheduler.MultiStepLRScheduler``: ``f(t) = base_lr * decay_rate ** bisect_right(decay_t, t + 1)``.

    timm counts the milestones reached by ``t + 1``, so milestone ``m`` takes effect at ``t = m - 1``
    (one step before ``torch.optim.lr_scheduler.MultiStepLR``).
    """
    base_lr = _base(base_lr)
    milestones = validate.step_list("decay_t", decay_t, strictly=False)
    decay_rate = validate.nonnegative("decay_rate", decay_rate)
    reached_by_next = [m - 1 for m in milestones]

    def after(t):
        return base_lr * core.integer_power(decay_rate, core.count_reached(core.as_steps(t), reached_by_next))

    noise = (noise_range_t, noise_pct, noise_std, noise_seed)
    return _finish(after, base_lr, warmup_t, warmup_lr_init, warmup_prefix, noise)


def _cycles(t_initial, lr_min, cycle_mul, cycle_decay, cycle_limit):
    """Validated cycle arguments and the ``step -> Position`` of timm's cycle arithmetic."""
    t_initial = validate.positive_int("t_initial", t_initial)
    lr_min = validate.nonnegative("lr_min", lr_min)
    cycle_mul = validate.positive("cycle_mul", cycle_mul)
    cycle_decay = validate.nonnegative("cycle_decay", cycle_decay)
    cycle_limit = validate.nonnegative_int("cycle_limit", cycle_limit)
    return lr_min, cycle_position(t_initial, cycle_mul, cycle_decay, cycle_limit)


def _k_power(x, k_decay: float):
    return x if k_decay == 1 else jnp.power(x, k_decay)


def cosine(
    base_lr: float,
    t_initial: int,
    lr_min: float = 0.0,
    cycle_mul: float = 1.0,
    cycle_decay: float = 1.0,
    cycle_limit: int = 1,
    warmup_t: int = 0,
    warmup_lr_init: float = 0.0,
    warmup_prefix: bool = False,
    t_in_epochs: bool = True,
    noise_range_t=None,
    noise_pct: float = 0.67,
    noise_std: float = 1.0,
    noise_seed: int = 42,
    k_decay: float = 1.0,
) -> core.Schedule:
    """``timm.scheduler.CosineLRScheduler``: cosine decay with restarts and k-decay.

    In cycle ``i < cycle_limit`` (length ``t_i = t_initial * cycle_mul ** i``, ``t_curr`` steps in),
    ``f(t) = lr_min + 0.5 * (base_lr * cycle_decay ** i - lr_min) * (1 + cos(pi * t_curr ** k / t_i ** k))``;
    ``lr_min`` from cycle ``cycle_limit`` on.
    """
    base_lr = _base(base_lr)
    lr_min, position = _cycles(t_initial, lr_min, cycle_mul, cycle_decay, cycle_limit)
    k_decay = validate.positive("k_decay", k_decay)

    def after(t):
        at = position(core.as_steps(t))
        value = core.cosine_anneal(base_lr * at.gamma, lr_min, _k_power(at.t_curr, k_decay), _k_power(at.t_i, k_decay))
        return jnp.where(at.active, value, lr_min)

    noise = (noise_range_t, noise_pct, noise_std, noise_seed)
    return _finish(after, base_lr, warmup_t, warmup_lr_init, warmup_prefix, noise)


def _tanh_curve(xp, base_lr, lr_min, lb, ub, t_curr, t_i, gamma):
    """``lr_min + 0.5 * (base_lr * gamma - lr_min) * (1 - tanh(y))``, ``y = lb * (1 - tr) + ub * tr``,
    ``tr = t_curr / t_i``; ``1 - tanh(y)`` as ``2 / (1 + exp(2 y))``, which does not cancel where
    ``tanh(y)`` nears 1 (float32 kept 1e-7 of 0.005 there: 2.7e-5 relative)."""
    y = lb * ((t_i - t_curr) / t_i) + ub * (t_curr / t_i)
    return lr_min + (base_lr * gamma - lr_min) / (1 + xp.exp(2 * y))


def _tanh_at(t, base_lr, lr_min, lb, ub, t_initial, cycle_mul, cycle_decay, cycle_limit) -> float:
    """timm's ``TanhLRScheduler._get_lr(t)`` after warmup, in Python floats (the warmup target)."""
    if cycle_mul == 1:
        i = t // t_initial
        t_i, t_curr = t_initial, t - t_initial * i
    else:
        i = timm_cycle_index(t, t_initial, cycle_mul)
        t_i = cycle_mul**i * t_initial
        t_curr = t - (1 - cycle_mul**i) / (1 - cycle_mul) * t_initial
    if i >= cycle_limit:
        return lr_min
    return _tanh_curve(math, base_lr, lr_min, lb, ub, t_curr, t_i, cycle_decay**i)


def tanh(
    base_lr: float,
    t_initial: int,
    lb: float = -7.0,
    ub: float = 3.0,
    lr_min: float = 0.0,
    cycle_mul: float = 1.0,
    cycle_decay: float = 1.0,
    cycle_limit: int = 1,
    warmup_t: int = 0,
    warmup_lr_init: float = 0.0,
    warmup_prefix: bool = False,
    t_in_epochs: bool = True,
    noise_range_t=None,
    noise_pct: float = 0.67,
    noise_std: float = 1.0,
    noise_seed: int = 42,
) -> core.Schedule:
    """``timm.scheduler.TanhLRScheduler``: hyperbolic-tangent decay with restarts.

    In cycle ``i < cycle_limit``, ``tr = t_curr / t_i``,
    ``f(t) = lr_min + 0.5 * (base_lr * cycle_decay ** i - lr_min) * (1 - tanh(lb * (1 - tr) + ub * tr))``.
    With ``warmup_prefix=False`` the warmup heads for the value at ``t = warmup_t``, not ``base_lr``.
    """
    base_lr = _base(base_lr)
    lr_min, position = _cycles(t_initial, lr_min, cycle_mul, cycle_decay, cycle_limit)
    lb, ub = validate.real("lb", lb), validate.real("ub", ub)
    if not lb < ub:
        raise ValueError(f"lb must be < ub, got lb={lb!r}, ub={ub!r}")

    def after(t):
        at = position(core.as_steps(t))
        value = _tanh_curve(jnp, base_lr, lr_min, lb, ub, at.t_curr, at.t_i, at.gamma)
        return jnp.where(at.active, value, lr_min)

    target = base_lr
    if warmup_t and not warmup_prefix:
        cycle_args = (t_initial, float(cycle_mul), cycle_decay, cycle_limit)
        target = _tanh_at(validate.nonnegative_int("warmup_t", warmup_t), base_lr, lr_min, lb, ub, *cycle_args)
    noise = (noise_range_t, noise_pct, noise_std, noise_seed)
    return _finish(after, base_lr, warmup_t, warmup_lr_init, warmup_prefix, noise, target)


def poly(
    base_lr: float,
    t_initial: int,
    power: float = 0.5,
    lr_min: float = 0.0,
    cycle_mul: float = 1.0,
    cycle_decay: float = 1.0,
    cycle_limit: int = 1,
    warmup_t: int = 0,
    warmup_lr_init: float = 0.0,
    warmup_prefix: bool = False,
    t_in_epochs: bool = True,
    noise_range_t=None,
    noise_pct: float = 0.67,
    noise_std: float = 1.0,
    noise_seed: int = 42,
    k_decay: float = 1.0,
) -> core.Schedule:
    """``timm.scheduler.PolyLRScheduler``: polynomial decay with restarts and k-decay.

    In cycle ``i < cycle_limit``,
    ``f(t) = lr_min + (base_lr * cycle_decay ** i - lr_min) * (1 - t_curr ** k / t_i ** k) ** power``.
    """
    base_lr = _base(base_lr)
    lr_min, position = _cycles(t_initial, lr_min, cycle_mul, cycle_decay, cycle_limit)
    power = validate.nonnegative("power", power)
    k_decay = validate.positive("k_decay", k_decay)

    def after(t):
        at = position(core.as_steps(t))
        t_i_k = _k_power(at.t_i, k_decay)
        remaining = (t_i_k - _k_power(at.t_curr, k_decay)) / t_i_k
        value = lr_min + (base_lr * at.gamma - lr_min) * jnp.power(remaining, power)
        return jnp.where(at.active, value, lr_min)

    noise = (noise_range_t, noise_pct, noise_std, noise_seed)
    return _finish(after, base_lr, warmup_t, warmup_lr_init, warmup_prefix, noise)


def _stable_fn(stable_fn, stable_timescale, stable_power, warmup_t) -> Callable:
    """The stable-phase factor of ``t_s`` steps after warmup: 1, or ``(1 + t_s / timescale) ** -power``."""
    validate.one_of("stable_fn", stable_fn, STABLE_FNS)
    stable_power = validate.positive("stable_power", stable_power)
    if stable_fn == "constant":
        return lambda t_s: jnp.ones(jnp.shape(t_s), core.float_dtype())
    timescale = warmup_t if stable_timescale is None else validate.real("stable_timescale", stable_timescale)
    if timescale <= 0:
        raise ValueError(
            f"stable_fn={stable_fn!r} needs stable_timescale > 0 (it defaults to warmup_t), got {timescale!r}"
        )
    exponent = -0.5 if stable_fn == "rsqrt" else -stable_power
    return lambda t_s: jnp.power(1.0 + core.as_values(t_s) / timescale, exponent)


def _decay_fn(decay_fn, decay_power, decay_ratio) -> Callable:
    """The decay-phase factor of progress ``frac`` in [0, 1], from 1 to 0 (or a user callable)."""
    decay_power = validate.positive("decay_power", decay_power)
    ratio = validate.in_range("decay_ratio", decay_ratio, 0.0, 1.0, low_open=True, high_open=True)
    if callable(decay_fn):
        return decay_fn
    shapes = {
        "linear": lambda frac: 1.0 - frac,
        "1-sqrt": lambda frac: 1.0 - jnp.sqrt(frac),
        "cosine": lambda frac: 0.5 * (1.0 + jnp.cos(math.pi * frac)),
        "power": lambda frac: 1.0 - jnp.power(frac, decay_power),
        "exp": lambda frac: (jnp.power(core.as_values(ratio), frac) - ratio) / (1.0 - ratio),
    }
    return shapes[validate.one_of("decay_fn", decay_fn, DECAY_FNS)]


def wsd(
    base_lr: float,
    t_initial: int,
    decay_t: int,
    lr_min: float = 0.0,
    stable_fn: str = "constant",
    stable_timescale: float | None = None,
    stable_power: float = 0.5,
    decay_fn: str | Callable = "1-sqrt",
    decay_power: float = 0.5,
    decay_ratio: float = 0.1,
    warmup_t: int = 0,
    warmup_lr_init: float = 0.0,
    t_in_epochs: bool = True,
    noise_range_t=None,
    noise_pct: float = 0.67,
    noise_std: float = 1.0,
    noise_seed: int = 42,
) -> core.Schedule:
    """``timm.scheduler.WSDLRScheduler``: warmup, stable phase, decay to ``lr_min`` over the last ``decay_t`` steps.

    With ``t_s = t - warmup_t``, ``stable = max(base_lr * stable_fn(t_s), lr_min)`` and
    ``frac = min((t_s - (t_initial - decay_t)) / decay_t, 1)``:
    ``f(t) = stable`` while ``frac <= 0``, else ``lr_min + (stable - lr_min) * decay_fn(frac)``.
    A callable ``decay_fn`` must be jax-traceable. The warmup is always a prefix.
    """
    base_lr = _base(base_lr)
    t_initial = validate.positive_int("t_initial", t_initial)
    decay_t = validate.positive_int("decay_t", decay_t)
    if decay_t > t_initial:
        raise ValueError(f"decay_t must be in (0, t_initial={t_initial}], got {decay_t!r}")
    lr_min = validate.nonnegative("lr_min", lr_min)
    warmup_t = validate.nonnegative_int("warmup_t", warmup_t)
    stable = _stable_fn(stable_fn, stable_timescale, stable_power, warmup_t)
    decay = _decay_fn(decay_fn, decay_power, decay_ratio)
    decay_start = t_initial - decay_t

    def after(t_s):
        t_s = core.as_steps(t_s)
        stable_lr = jnp.maximum(base_lr * stable(t_s), lr_min)
        # 1 from the end of the decay on, exactly (jitted, the quotient at t_initial can miss it)
        frac = jnp.where(t_s >= t_initial, 1.0, core.fraction(t_s - decay_start, decay_t))
        decayed = lr_min + (stable_lr - lr_min) * decay(jnp.maximum(frac, 0.0))
        return jnp.where(t_s <= decay_start, stable_lr, decayed)

    noise = (noise_range_t, noise_pct, noise_std, noise_seed)
    return _finish(after, base_lr, warmup_t, warmup_lr_init, True, noise)


def _noise_range(noise, t_initial):
    """The factory's ``noise`` (fractions of the schedule length) as ``noise_range_t``."""
    if noise is None:
        return None
    if isinstance(noise, (list, tuple)):
        if len(noise) not in (1, 2):
            raise ValueError(f"noise must be a fraction or a list of one or two fractions, got {noise!r}")
        scaled = [validate.real(f"noise[{i}]", n) * t_initial for i, n in enumerate(noise)]
        return scaled[0] if len(scaled) == 1 else scaled
    return validate.real("noise", noise) * t_initial


def _wsd_lengths(sched, t_initial, warmup_t, decay_t, decay_epochs, warmup_prefix):
    """The stable + decay length and the decay length the factory gives ``WSDLRScheduler``."""
    t_sched = t_initial if warmup_prefix else t_initial - warmup_t
    if 0 < decay_epochs < 1:
        decay_t = decay_epochs * t_sched
    decay_t = int(round(decay_t))
    if not 0 < decay_t <= t_sched:
        raise ValueError(
            f"sched={sched!r} needs 0 < decay_epochs <= num_epochs{'' if warmup_prefix else ' - warmup_epochs'}, "
            f"got a decay of {decay_t} steps in a stable + decay length of {t_sched}"
        )
    return t_sched, decay_t


def create_scheduler_v2(
    base_lr: float,
    sched: str = "cosine",
    num_epochs: int = 300,
    decay_epochs: float | None = None,
    decay_milestones: Sequence[int] = (90, 180, 270),
    cooldown_epochs: int = 0,
    patience_epochs: int = 10,
    decay_rate: float = 0.1,
    min_lr: float = 0.0,
    warmup_lr: float = 1e-5,
    warmup_epochs: int = 0,
    warmup_prefix: bool = False,
    noise=None,
    noise_pct: float = 0.67,
    noise_std: float = 1.0,
    noise_seed: int = 42,
    cycle_mul: float = 1.0,
    cycle_decay: float = 0.1,
    cycle_limit: int = 1,
    k_decay: float = 1.0,
    decay_fn: str | None = None,
    stable_timescale: float | None = None,
    plateau_mode: str = "max",
    step_on_epochs: bool = True,
    *,
    updates_per_epoch: int,
) -> core.Schedule:
    """``timm.scheduler.create_scheduler_v2`` in timm's ``train.py``: ``f(k)`` is the lr of optimizer update ``k``.

    The loop calls ``step_update(k)`` after update ``k`` and ``step(e + 1)`` after epoch ``e``; one of
    them moves the lr (``step_on_epochs``). So with ``s`` the scheduler built as timm builds it (the
    factory's defaults, e.g. ``cycle_decay=0.1``, and lengths times ``updates_per_epoch`` when
    ``step_on_epochs=False``), ``f(k) = s(k // updates_per_epoch)`` or ``s(k)``, except that the
    scheduler's first value (``warmup_lr`` with a warmup, else ``base_lr``) holds while that index is 0.

    ``cooldown_epochs``, ``patience_epochs`` and ``plateau_mode`` only change timm's returned epoch
    count or the 'plateau' scheduler, which depends on validation metrics and so has no schedule.
    """
    validate.one_of("sched", sched, SCHEDULERS)
    base_lr = _base(base_lr)
    validate.nonnegative("min_lr", min_lr)
    validate.step_list("decay_milestones", decay_milestones, strictly=False)
    updates_per_epoch = validate.positive_int("updates_per_epoch", updates_per_epoch)
    scale = 1 if step_on_epochs else updates_per_epoch
    if decay_epochs is None:
        decay_epochs = 0.2 if sched in ("wsd", "rsqrt") else 90
    decay_epochs = validate.real("decay_epochs", decay_epochs)
    t_initial = validate.positive_int("num_epochs", num_epochs) * scale
    warmup_t = validate.nonnegative_int("warmup_epochs", warmup_epochs) * scale
    decay_t = decay_epochs * scale
    timescale = None if stable_timescale is None else validate.real("stable_timescale", stable_timescale) * scale
    warmup_args: dict[str, Any] = dict(warmup_t=warmup_t, warmup_lr_init=warmup_lr)
    noise_args: dict[str, Any] = dict(
        noise_range_t=_noise_range(noise, t_initial), noise_pct=noise_pct, noise_std=noise_std, noise_seed=noise_seed
    )
    cycle_args: dict[str, Any] = dict(cycle_mul=cycle_mul, cycle_decay=cycle_decay, cycle_limit=cycle_limit)
    if sched == "none":
        return core.constant_schedule(base_lr)
    if sched == "cosine":
        curve = cosine(
            base_lr,
            t_initial,
            min_lr,
            **cycle_args,
            **warmup_args,
            warmup_prefix=warmup_prefix,
            **noise_args,
            k_decay=k_decay,
        )
    elif sched == "tanh":
        curve = tanh(
            base_lr, t_initial, lr_min=min_lr, **cycle_args, **warmup_args, warmup_prefix=warmup_prefix, **noise_args
        )
    elif sched in ("step", "constant"):
        every, rate = (decay_t, decay_rate) if sched == "step" else (1, 1.0)
        curve = step(base_lr, every, rate, **warmup_args, warmup_prefix=warmup_prefix, **noise_args)
    elif sched == "multistep":
        milestones = [validate.integer(f"decay_milestones[{i}]", m) * scale for i, m in enumerate(decay_milestones)]
        curve = multistep(base_lr, milestones, decay_rate, **warmup_args, warmup_prefix=warmup_prefix, **noise_args)
    elif sched == "poly":
        curve = poly(
            base_lr,
            t_initial,
            decay_rate,
            min_lr,
            **cycle_args,
            **warmup_args,
            warmup_prefix=warmup_prefix,
            **noise_args,
            k_decay=k_decay,
        )
    else:
        t_sched, decay_steps = _wsd_lengths(sched, t_initial, warmup_t, decay_t, decay_epochs, warmup_prefix)
        curve = wsd(
            base_lr,
            t_sched,
            decay_steps,
            min_lr,
            stable_fn="rsqrt" if sched == "rsqrt" else "constant",
            stable_timescale=timescale,
            decay_fn=decay_fn or ("linear" if sched == "rsqrt" else "1-sqrt"),
            **warmup_args,
            **noise_args,
        )
    first = warmup_lr if warmup_t else base_lr

    def schedule(update):
        update = core.as_steps(update)
        t = update // updates_per_epoch if step_on_epochs else update
        return jnp.where(t == 0, core.as_values(first), curve(t))

    marks: list[tuple[float, str]] = [(warmup_t, "warmup ends")] if warmup_t else []
    if sched == "multistep":
        marks += [(m, f"decay by {decay_rate:g}") for m in milestones]
    elif sched == "step" and decay_t > 0:
        first_decay = warmup_t if warmup_prefix else 0
        decays = [first_decay + decay_t * i for i in range(1, 65)]
        marks += [(m, f"decay by {decay_rate:g}") for m in decays if m < t_initial]
    unit = updates_per_epoch if step_on_epochs else 1
    return core.with_phases(schedule, [(math.ceil(t) * unit, what) for t, what in marks])
