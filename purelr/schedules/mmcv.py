"""MMCV 1.x ``lr_config`` and ``momentum_config`` as schedules over training iterations.

Twins of ``mmcv.runner.hooks.lr_updater.*LrUpdaterHook`` and
``mmcv.runner.hooks.momentum_updater.*MomentumUpdaterHook`` (MMCV 1.7.2) as ``EpochBasedRunner``
and ``IterBasedRunner`` drive them: ``f(k)`` is the value the optimizer holds while it takes
training iteration ``k`` (``runner.iter == k``, counted from 0 over the whole run).

What the runner's calls make of the value at iteration ``k``:

- ``by_epoch=True`` (an ``EpochBasedRunner``; the default of every policy but Cyclic and OneCycle):
  the policy sees the epoch ``p = k // epoch_len`` and ``P = max_epochs``; its value is set before
  each epoch. (Under an ``IterBasedRunner`` MMCV never calls ``before_train_epoch``, so such a hook
  leaves the lr alone; that is not modelled.)
- ``by_epoch=False``: the policy sees ``p = k`` and ``P = max_iters`` (``max_epochs * epoch_len``
  under an ``EpochBasedRunner``).
- warmup, for ``k < W`` (``W = warmup_iters``, times ``epoch_len`` when ``warmup_by_epoch``): the
  policy's value is multiplied (lr) or divided (momentum) by ``ratio`` ('constant'),
  ``1 - (1 - k / W) * (1 - ratio)`` ('linear') or ``ratio ** (1 - k / W)`` ('exp').

Epoch division, milestones, warmup ends, cycle and phase positions are integer operations, exact
for every step up to ``2**31 - 1``; values are float32, or float64 under ``jax_enable_x64``.

Config keys are MMCV's, with its defaults; a policy name in lower case is title-cased as MMCV does
(``'step'`` is ``'Step'``). Past the run (``k >= max_iters``) each formula is continued as written;
where MMCV would raise (CosineRestart past its periods, OneCycle lr past ``total_steps``) the last
period or phase is continued. Per-group lists or dicts of ``max_lr`` / ``base_momentum`` are not
taken: build one schedule per parameter group.

This module imports jax and numpy only.
"""

from __future__ import annotations

import functools
import math
import numbers
from typing import Any, Callable, Mapping, NamedTuple, Optional

import jax.numpy as jnp

from purelr.schedules import validate
from purelr.schedules.core import (
    MAX_STEP,
    Schedule,
    as_steps,
    as_values,
    constant_schedule,
    cosine_anneal,
    count_reached,
    fraction,
    integer_power,
    linear_anneal,
    offset,
    phases_of,
    remaining,
    with_phases,
)

_REQUIRED = object()
_WARMUPS = ("constant", "linear", "exp")
_ITERATION_ONLY = ("Cyclic", "OneCycle")


class _Cfg(NamedTuple):
    """A config being read: its name for messages, its policy, and the keys not read yet."""

    name: str
    policy: str
    options: dict


class _Progress(NamedTuple):
    """What a policy counts (epochs or iterations) and how many the run has, if known; the
    iterations per epoch and the warmup's length in iterations (``W``), which YOLOX reads."""

    by_epoch: bool
    total: Optional[int]
    total_key: str
    epoch_len: Optional[int] = None
    warmup_iters: int = 0


def _take(cfg: _Cfg, key: str, default=_REQUIRED):
    """Pops ``key`` from the config, or gives ``default``; a missing required key is a TypeError."""
    if key in cfg.options:
        return cfg.options.pop(key)
    if default is _REQUIRED:
        raise TypeError(f"{cfg.name}.{key} is required by policy {cfg.policy!r}")
    return default


def _read(cfg: _Cfg, key: str, check: Callable, default=_REQUIRED, *args, **kwargs):
    """Pops ``key`` (or takes ``default``) and passes it through a ``validate`` check."""
    return check(f"{cfg.name}.{key}", _take(cfg, key, default), *args, **kwargs)


def _total(cfg: _Cfg, progress: _Progress) -> int:
    """The run's length in the policy's unit, which this policy cannot do without."""
    if progress.total is None:
        raise ValueError(
            f"{cfg.name} policy {cfg.policy!r} with by_epoch={progress.by_epoch} needs {progress.total_key}, got None"
        )
    return progress.total


def _target(cfg: _Cfg, base: float, key: str) -> float:
    """The annealing end: ``min_<key>``, or ``base * min_<key>_ratio``; exactly one is given."""
    value, ratio = _take(cfg, f"min_{key}", None), _take(cfg, f"min_{key}_ratio", None)
    if (value is None) == (ratio is None):
        raise ValueError(
            f"{cfg.name} needs exactly one of min_{key} and min_{key}_ratio, got "
            f"min_{key}={value!r}, min_{key}_ratio={ratio!r}"
        )
    if ratio is not None:
        return base * validate.real(f"{cfg.name}.min_{key}_ratio", ratio)
    return validate.finite(f"{cfg.name}.min_{key}", value)


def _anneal(cfg: _Cfg) -> Callable:
    """``anneal_strategy``: 'cos' (``cosine_anneal``) or 'linear' (``linear_anneal``)."""
    strategy = _read(cfg, "anneal_strategy", validate.one_of, "cos", ("cos", "linear"))
    return cosine_anneal if strategy == "cos" else linear_anneal


def _fixed(cfg: _Cfg, base: float, progress: _Progress):
    """``FixedLrUpdaterHook``: ``base``."""
    return constant_schedule(base)


def _step(cfg: _Cfg, base: float, progress: _Progress, *, gamma: float, floor_key: str):
    """``Step{Lr,Momentum}UpdaterHook``: ``max(base * gamma ** n, min)``.

    ``n = p // step`` for an int ``step``; for a list, the number of its milestones ``<= p``.
    """
    step = _take(cfg, "step")
    gamma = _read(cfg, "gamma", validate.positive, gamma)
    floor = _take(cfg, floor_key, None)
    floor = None if floor is None else validate.real(f"{cfg.name}.{floor_key}", floor)
    if isinstance(step, (list, tuple)):
        milestones = validate.step_list(f"{cfg.name}.step", step, strictly=False)
        if milestones and milestones[0] == 0:
            raise ValueError(f"{cfg.name}.step must be positive, got {step!r}")
        count: Callable[[Any], Any] = functools.partial(count_reached, milestones=milestones)
    else:
        size = validate.positive_int(f"{cfg.name}.step", step)
        count = lambda p: p // size  # noqa: E731

    def regular(p):
        value = base * integer_power(gamma, count(p))
        return value if floor is None else jnp.maximum(value, floor)

    unit = "epoch" if progress.by_epoch else "iteration"
    if isinstance(step, (list, tuple)):
        return with_phases(regular, [(m, f"step at {unit} {m}") for m in milestones])
    total = progress.total or 0
    return with_phases(regular, [(m, f"step at {unit} {m}") for m in range(size, total, size)][:64])


def _exp(cfg: _Cfg, base: float, progress: _Progress):
    """``ExpLrUpdaterHook``: ``base * gamma ** p``."""
    gamma = _read(cfg, "gamma", validate.positive)
    return lambda p: base * integer_power(gamma, p)


def _poly(cfg: _Cfg, base: float, progress: _Progress):
    """``PolyLrUpdaterHook``: ``(base - min_lr) * (1 - p / P) ** power + min_lr``."""
    power = _read(cfg, "power", validate.real, 1.0)
    floor = _read(cfg, "min_lr", validate.real, 0.0)
    total = _total(cfg, progress)
    return lambda p: (base - floor) * jnp.power(remaining(p, total), power) + floor


def _inv(cfg: _Cfg, base: float, progress: _Progress):
    """``InvLrUpdaterHook``: ``base * (1 + gamma * p) ** -power``."""
    gamma = _read(cfg, "gamma", validate.real)
    power = _read(cfg, "power", validate.real, 1.0)
    return lambda p: base * jnp.power(1 + gamma * as_values(p), -power)


def _cosine_annealing(cfg: _Cfg, base: float, progress: _Progress, *, key: str):
    """``CosineAnnealing{Lr,Momentum}UpdaterHook``: ``cosine_anneal(base, target, p / P)``."""
    target, total = _target(cfg, base, key), _total(cfg, progress)
    return lambda p: cosine_anneal(base, target, p, total)


def _linear_annealing(cfg: _Cfg, base: float, progress: _Progress, *, key: str):
    """``LinearAnnealing{Lr,Momentum}UpdaterHook``: ``linear_anneal(base, target, p / P)``."""
    target, total = _target(cfg, base, key), _total(cfg, progress)
    return lambda p: linear_anneal(base, target, p, total)


def _flat_cosine_annealing(cfg: _Cfg, base: float, progress: _Progress):
    """``FlatCosineAnnealingLrUpdaterHook``: ``base`` until ``s = round(P * start_percent)``, then
    ``cosine_anneal(base, target, (p - s) / (P - s))``."""
    start_percent = _read(cfg, "start_percent", validate.in_range, 0.75, 0, 1)
    target, total = _target(cfg, base, "lr"), _total(cfg, progress)
    start = round(total * start_percent)

    def regular(p):
        annealed = cosine_anneal(base, target, p - start, total - start)
        return jnp.where(p < start, as_values(base), annealed)

    return regular


def _cosine_restart(cfg: _Cfg, base: float, progress: _Progress):
    """``CosineRestartLrUpdaterHook``: in period ``i`` (``c[i-1] <= p < c[i]``, ``c`` the running
    sums of ``periods``), ``target + w[i] * (base - target) * (1 + cos(pi * a)) / 2`` with
    ``a = min((p - c[i-1]) / periods[i], 1)`` and ``w = restart_weights``."""
    periods = _take(cfg, "periods")
    periods = [validate.positive_int(f"{cfg.name}.periods[{i}]", v) for i, v in enumerate(periods)]
    weights = _take(cfg, "restart_weights", [1])
    weights = [validate.real(f"{cfg.name}.restart_weights[{i}]", w) for i, w in enumerate(weights)]
    if len(weights) != len(periods):
        raise ValueError(
            f"{cfg.name}.restart_weights must have one weight per period ({len(periods)}), got {weights!r}"
        )
    target = _target(cfg, base, "lr")
    ends = [sum(periods[: i + 1]) for i in range(len(periods))]
    validate.integer(f"sum({cfg.name}.periods)", ends[-1])
    if progress.total is not None and ends[-1] < progress.total:
        raise ValueError(
            f"{cfg.name}.periods must cover {progress.total_key}={progress.total}, got {periods!r} (sum {ends[-1]})"
        )
    restarts = [0] + ends[:-1]

    def regular(p):
        index = jnp.minimum(count_reached(p, ends), len(periods) - 1)
        period = as_steps(periods)[index]
        start = target + as_values(weights)[index] * (base - target)
        return cosine_anneal(start, target, jnp.minimum(p - as_steps(restarts)[index], period), period)

    return regular


def _target_ratio(cfg: _Cfg, default) -> tuple:
    """``target_ratio``: a pair, or one number ``r`` standing for ``(r, r / 1e5)``."""
    ratio = _take(cfg, "target_ratio", default)
    if isinstance(ratio, numbers.Real):
        ratio = (ratio,)
    if not isinstance(ratio, (list, tuple)) or len(ratio) not in (1, 2):
        raise ValueError(f"{cfg.name}.target_ratio must be a number or a pair of numbers, got {ratio!r}")
    high = validate.real(f"{cfg.name}.target_ratio[0]", ratio[0])
    low = high / 1e5 if len(ratio) == 1 else validate.real(f"{cfg.name}.target_ratio[1]", ratio[1])
    return high, low


def _cyclic(cfg: _Cfg, base: float, progress: _Progress, *, target_ratio: tuple):
    """``Cyclic{Lr,Momentum}UpdaterHook``: cycles of ``C = max_iters // cyclic_times`` iterations.

    With ``q = k % C``, ``n = k // C``, ``U = int(step_ratio_up * C)``, ``s = gamma ** n`` and
    ``peak = base * (1 - s + high * s)``: ``anneal(base, peak, q / U)`` while ``q < U``, then
    ``anneal(peak, base * low, (q - U) / (C - U))``, where ``(high, low) = target_ratio``. With
    ``U = 0`` MMCV decays the other end: ``anneal(base * high, base * (1 - s + low * s), q / C)``.
    """
    high, low = _target_ratio(cfg, target_ratio)
    times = _read(cfg, "cyclic_times", validate.positive_int, 1)
    up_ratio = _read(cfg, "step_ratio_up", validate.in_range, 0.4, 0, 1, high_open=True)
    gamma = _read(cfg, "gamma", validate.in_range, 1, 0, 1, low_open=True)
    anneal, total = _anneal(cfg), _total(cfg, progress)
    cycle = total // times
    if cycle < 1:
        raise ValueError(f"{cfg.name}.cyclic_times must be at most max_iters={total}, got {times}")
    up = int(up_ratio * cycle)

    def regular(k):
        position = k % cycle
        scale = integer_power(gamma, k // cycle)
        if up == 0:  # MMCV decays the end of the phase that starts the cycle, whichever it is
            return anneal(base * high, base * (1 - scale + low * scale), position, cycle)
        peak = base * (1 - scale + high * scale)
        rising = anneal(base, peak, position, up)
        falling = anneal(peak, base * low, position - up, cycle - up)
        return jnp.where(position < up, rising, falling)

    return regular


def _phases(phases: list, anneal: Callable):
    """Phase ``i`` of ``(end, start_value, end_value)`` runs over ``k <= end`` (the first phase
    whose ``end`` is not passed) from the previous ``end`` (0 for the first):
    ``anneal(start_value, end_value, (k - previous_end) / (end - previous_end))``. Ends are floats,
    compared exactly through their floors and subtracted as an integer and a fraction, so float32
    loses nothing to a large ``k``; past the last end the last phase continues."""
    starts = [0.0] + [end for end, _, _ in phases[:-1]]

    def regular(k):
        value = None
        for start, (end, first, last) in reversed(list(zip(starts, phases))):
            here = anneal(first, last, offset(k, start), end - start, -offset(k, end))
            inside = k <= min(math.floor(end), MAX_STEP)
            value = here if value is None else jnp.where(inside, here, value)
        return value

    ends = [end for end, _, _ in phases[:-1]]
    return with_phases(
        regular, [(math.floor(end) + 1, f"phase {i + 2} of {len(phases)}") for i, end in enumerate(ends)]
    )


def _one_cycle_shape(cfg: _Cfg, total_key: str, total: int) -> tuple:
    """``pct_start``, ``three_phase`` and the phase ends ``pct*T - 1, [2*pct*T - 2,] T - 1``."""
    pct = _read(cfg, "pct_start", validate.in_range, 0.3, 0, 1)
    three_phase = bool(_take(cfg, "three_phase", False))
    if float(pct * total) - 1 == 0:
        raise ValueError(
            f"{cfg.name}.pct_start * {total_key} must not be 1 (MMCV divides by zero at step 0), "
            f"got pct_start={pct!r}, {total_key}={total}"
        )
    ends = [float(pct * total) - 1] + ([float(2 * pct * total) - 2] if three_phase else [])
    return ends + [total - 1], three_phase


def _one_cycle_lr(cfg: _Cfg, base: float, progress: _Progress):
    """``OneCycleLrUpdaterHook`` (ignores the optimizer's lr): from ``low = max_lr / div_factor``
    up to ``max_lr`` by iteration ``pct_start * total_steps - 1``, then down to
    ``low / final_div_factor`` by ``total_steps - 1``; with ``three_phase``, back to ``low`` by
    ``2 * pct_start * total_steps - 2`` before the last phase. See ``_phases``."""
    max_lr = _take(cfg, "max_lr")
    if not isinstance(max_lr, numbers.Real):
        raise TypeError(f"{cfg.name}.max_lr must be a number (one schedule a group), got {max_lr!r}")
    validate.nonnegative(f"{cfg.name}.max_lr", max_lr)
    max_iters = _total(cfg, progress)
    total = _read(cfg, "total_steps", validate.positive_int, max_iters)
    if total < max_iters:
        raise ValueError(f"{cfg.name}.total_steps must be >= max_iters={max_iters}, got {total}")
    div = _read(cfg, "div_factor", validate.positive, 25)
    final = _read(cfg, "final_div_factor", validate.positive, 1e4)
    ends, three_phase = _one_cycle_shape(cfg, "total_steps", total)
    anneal = _anneal(cfg)
    low = max_lr / div
    peak, last = low * div, low * (1 / final)
    values = [(low, peak), (peak, low), (low, last)] if three_phase else [(low, peak), (peak, last)]
    return _phases([(end, a, b) for end, (a, b) in zip(ends, values)], anneal)


def _one_cycle_momentum(cfg: _Cfg, base: float, progress: _Progress):
    """``OneCycleMomentumUpdaterHook`` (ignores the optimizer's momentum): from ``max_momentum``
    down to ``base_momentum`` by iteration ``pct_start * max_iters - 1``, then back up by
    ``max_iters - 1``; with ``three_phase``, up by ``2 * pct_start * max_iters - 2`` and flat after.
    Past ``max_iters - 1`` the last phase continues, as in MMCV. See ``_phases``."""
    low, high = _take(cfg, "base_momentum", 0.85), _take(cfg, "max_momentum", 0.95)
    for key, value in (("base_momentum", low), ("max_momentum", high)):
        if not isinstance(value, numbers.Real):
            raise TypeError(f"{cfg.name}.{key} must be a number (one schedule a group), got {value!r}")
    ends, three_phase = _one_cycle_shape(cfg, "max_iters", _total(cfg, progress))
    anneal = _anneal(cfg)
    values = [(high, low), (low, high)] + ([(high, high)] if three_phase else [])
    return _phases([(end, a, b) for end, (a, b) in zip(ends, values)], anneal)


def _yolox(cfg: _Cfg, base: float, progress: _Progress):
    """MMDetection 2.28.2's ``YOLOXLrUpdaterHook`` (mmdet/core/hook/yolox_lrupdater_hook.py): with
    ``q = p + 1`` and ``L = epoch_len * num_last_epochs`` (iterations, whatever ``by_epoch``
    counts), ``target`` from ``q >= P - L`` on, else ``cosine_anneal(base, target, (q - W) /
    (P - W - L))``, ``W`` the warmup's length in iterations. Its warmup is ``_yolox_warmup``."""
    last_epochs = _read(cfg, "num_last_epochs", validate.nonnegative_int)
    target, total = _target(cfg, base, "lr"), _total(cfg, progress)
    if progress.epoch_len is None:
        raise ValueError(f"{cfg.name} policy 'YOLOX' needs epoch_len (num_last_epochs counts epochs), got None")
    last, warm = progress.epoch_len * last_epochs, progress.warmup_iters
    if total - warm - last == 0:
        raise ValueError(
            f"{cfg.name}: {progress.total_key} - warmup_iters - epoch_len * num_last_epochs is 0 "
            f"(MMDetection divides by it), got {total} - {warm} - {last}"
        )

    def regular(p):
        q = p + 1
        annealed = cosine_anneal(base, target, q - warm, total - warm - last, total - last - q)
        return jnp.where(q >= total - last, as_values(target), annealed)

    return regular


def _yolox_warmup(base: float, ratio: float, iters: int, k, regular_value):
    """``YOLOXLrUpdaterHook.get_warmup_lr``: ``base * ratio * ((k + 1) / W) ** 2``, whatever
    ``warmup`` names, from the base lr rather than the regular one."""
    return base * (ratio * fraction(k + 1, iters) ** 2) + jnp.zeros_like(regular_value)


def _cosine_annealing_cooldown(cfg: _Cfg, base: float, progress: _Progress):
    """MMClassification 0.25.0's ``CosineAnnealingCooldownLrUpdaterHook``
    (mmcls/core/hook/lr_updater.py): ``target * cool_down_ratio`` for ``p > P - C``
    (``C = cool_down_time``), else ``cosine_anneal(base, target, p / (P - C))``."""
    ratio = _read(cfg, "cool_down_ratio", validate.real, 0.1)
    cool = _read(cfg, "cool_down_time", validate.nonnegative_int, 10)
    target, total = _target(cfg, base, "lr"), _total(cfg, progress)
    if total == cool:
        raise ValueError(
            f"{cfg.name}.cool_down_time must differ from {progress.total_key}={total} "
            f"(MMClassification divides by their difference), got {cool}"
        )

    def regular(p):
        return jnp.where(p > total - cool, as_values(target * ratio), cosine_anneal(base, target, p, total - cool))

    return regular


_LR_POLICIES = {
    "Fixed": _fixed,
    "Step": functools.partial(_step, gamma=0.1, floor_key="min_lr"),
    "Exp": _exp,
    "Poly": _poly,
    "Inv": _inv,
    "CosineAnnealing": functools.partial(_cosine_annealing, key="lr"),
    "FlatCosineAnnealing": _flat_cosine_annealing,
    "CosineRestart": _cosine_restart,
    "Cyclic": functools.partial(_cyclic, target_ratio=(10, 1e-4)),
    "OneCycle": _one_cycle_lr,
    "LinearAnnealing": functools.partial(_linear_annealing, key="lr"),
    "YOLOX": _yolox,
    "CosineAnnealingCooldown": _cosine_annealing_cooldown,
}
_WARMUP_VALUES = {"YOLOX": _yolox_warmup}
"""Policies whose hook replaces ``get_warmup_lr``: ``f(base, ratio, W, k, regular value)``."""

_MOMENTUM_POLICIES = {
    "Step": functools.partial(_step, gamma=0.5, floor_key="min_momentum"),
    "CosineAnnealing": functools.partial(_cosine_annealing, key="momentum"),
    "LinearAnnealing": functools.partial(_linear_annealing, key="momentum"),
    "Cyclic": functools.partial(_cyclic, target_ratio=(0.85 / 0.95, 1.0)),
    "OneCycle": _one_cycle_momentum,
}


class _Warmup(NamedTuple):
    """``warmup`` (None, 'constant', 'linear' or 'exp'), its length ``W`` in iterations and ``ratio``."""

    kind: Optional[str]
    iters: int
    ratio: float

    def factor(self, k):
        """``ratio | 1 - (1 - k / W) * (1 - ratio) | ratio ** (1 - k / W)`` (``LrUpdaterHook.get_warmup_lr``);
        'linear' is evaluated as ``ratio + (1 - ratio) * k / W``, which keeps ``ratio`` exact at ``k = 0``."""
        if self.kind == "constant":
            return as_values(self.ratio)
        if self.kind == "linear":
            return linear_anneal(self.ratio, 1, k, self.iters)
        return jnp.power(as_values(self.ratio), remaining(k, self.iters))


def _warmup(cfg: _Cfg, epoch_len: Optional[int], *, ratio: float, by_epoch_key: bool) -> _Warmup:
    """The hook's warmup keys; ``warmup_iters`` is counted in iterations (times ``epoch_len`` when
    ``warmup_by_epoch``), checked only where a warmup is named."""
    kind = _take(cfg, "warmup", None)
    iters = _take(cfg, "warmup_iters", 0)
    ratio = _take(cfg, "warmup_ratio", ratio)
    in_epochs = bool(_take(cfg, "warmup_by_epoch", False)) if by_epoch_key else False
    if kind is None:
        iters = validate.nonnegative_int(f"{cfg.name}.warmup_iters", iters)
        return _Warmup(None, iters * epoch_len if in_epochs and epoch_len else iters, ratio)
    validate.one_of(f"{cfg.name}.warmup", kind, _WARMUPS)
    iters = validate.positive_int(f"{cfg.name}.warmup_iters", iters)
    ratio = validate.in_range(f"{cfg.name}.warmup_ratio", ratio, 0, 1, low_open=True)
    if in_epochs:
        if epoch_len is None:
            raise ValueError(f"{cfg.name}.warmup_by_epoch=True needs epoch_len, got None")
        iters = validate.positive_int(f"{cfg.name}.warmup_iters * epoch_len", iters * epoch_len)
    return _Warmup(kind, iters, ratio)


def _run_lengths(name: str, epoch_len, max_epochs, max_iters) -> tuple:
    """Checks the run's lengths; ``max_iters`` defaults to ``max_epochs * epoch_len``."""
    lengths = {"epoch_len": epoch_len, "max_epochs": max_epochs, "max_iters": max_iters}
    epoch_len, max_epochs, max_iters = (
        None if value is None else validate.positive_int(f"{name} {key}", value) for key, value in lengths.items()
    )
    if epoch_len is not None and max_epochs is not None:
        implied = validate.positive_int(f"{name} max_epochs * epoch_len", max_epochs * epoch_len)
        if max_iters not in (None, implied):
            raise ValueError(f"{name} max_iters must be max_epochs * epoch_len = {implied}, got {max_iters}")
        max_iters = implied
    return epoch_len, max_epochs, max_iters


def _hook_schedule(
    name: str,
    policies: Mapping,
    cfg,
    base,
    lengths: tuple,
    *,
    warmup_ratio: float,
    warmup_by_epoch: bool,
    apply: Callable,
) -> Schedule:
    """Reads a config for ``policies`` and returns its schedule over training iterations."""
    if cfg is None:
        return constant_schedule(base)
    if not isinstance(cfg, Mapping):
        raise TypeError(f"{name} must be a dict, got {cfg!r}")
    options = dict(cfg)
    policy = options.pop("policy", None)
    if not isinstance(policy, str):
        raise ValueError(f"{name}.policy must be one of {list(policies)}, got {policy!r}")
    resolved = policy.title() if policy == policy.lower() else policy
    if resolved not in policies:
        raise ValueError(f"{name}.policy must be one of {list(policies)}, got {policy!r}")
    cfg = _Cfg(name, resolved, options)
    epoch_len, max_epochs, max_iters = lengths
    by_epoch = _take(cfg, "by_epoch", resolved not in _ITERATION_ONLY)
    if not isinstance(by_epoch, bool):
        raise TypeError(f"{name}.by_epoch must be True or False, got {by_epoch!r}")
    if by_epoch and resolved in _ITERATION_ONLY:
        raise ValueError(f"{name}.by_epoch must be False for policy {resolved!r} (as in MMCV), got True")
    if by_epoch and epoch_len is None:
        raise ValueError(f"{name}.by_epoch=True (policy {resolved!r}) needs epoch_len, got None")
    warmup = _warmup(cfg, epoch_len, ratio=warmup_ratio, by_epoch_key=warmup_by_epoch)
    if by_epoch:
        progress = _Progress(True, max_epochs, "max_epochs", epoch_len, warmup.iters)
    else:
        progress = _Progress(False, max_iters, "max_iters", epoch_len, warmup.iters)
    base = validate.finite(f"{name} base value", base)
    regular = policies[resolved](cfg, base, progress)
    if options:
        raise TypeError(f"{name} got unexpected keys {sorted(options)} for policy {resolved!r}")
    divisor = epoch_len if by_epoch else 1
    own_warmup = _WARMUP_VALUES.get(resolved) if policies is _LR_POLICIES else None

    def schedule(step):
        step = as_steps(step)
        value = jnp.broadcast_to(as_values(regular(step // divisor)), jnp.shape(step))
        if warmup.kind is None:
            return value
        if own_warmup is not None:
            warm = own_warmup(base, warmup.ratio, warmup.iters, step, value)
        else:
            warm = apply(value, warmup.factor(step))
        return jnp.where(step < warmup.iters, warm, value)

    phases = [(step * divisor, what) for step, what in phases_of(regular)]
    return with_phases(schedule, phases + ([(warmup.iters, f"{warmup.kind} warmup ends")] if warmup.kind else []))


def lr_config(cfg: Optional[dict], base_lr, *, epoch_len=None, max_epochs=None, max_iters=None) -> Schedule:
    """The lr of MMCV 1.7's ``lr_config`` at each training iteration (``LrUpdaterHook``).

    Policies: Fixed, Step, Exp, Poly, Inv, CosineAnnealing, FlatCosineAnnealing, CosineRestart,
    Cyclic, OneCycle, LinearAnnealing, each with MMCV's keys and defaults, and the policies the
    model zoos register: MMDetection 2.x's YOLOX (``num_last_epochs``, ``min_lr`` or
    ``min_lr_ratio``; needs ``epoch_len``) and MMClassification 0.x's CosineAnnealingCooldown
    (``cool_down_time=10``, ``cool_down_ratio=0.1``); warmup None, 'constant', 'linear' or 'exp'
    (``warmup_iters``, ``warmup_ratio=0.1``, ``warmup_by_epoch``), applied by multiplication
    (YOLOX's own warmup: ``base * warmup_ratio * ((k + 1) / W) ** 2``). ``epoch_len`` (iterations per epoch) is needed for ``by_epoch`` and
    ``warmup_by_epoch``; ``max_epochs`` / ``max_iters`` for the policies that anneal towards the
    end of the run (``max_iters`` defaults to ``max_epochs * epoch_len``). ``cfg=None`` gives the
    constant ``base_lr``. Errors in the config are raised here, naming the key and the value.
    """
    lengths = _run_lengths("lr_config", epoch_len, max_epochs, max_iters)
    return _hook_schedule(
        "lr_config", _LR_POLICIES, cfg, base_lr, lengths, warmup_ratio=0.1, warmup_by_epoch=True, apply=jnp.multiply
    )


def momentum_config(cfg: Optional[dict], base_momentum, *, epoch_len=None, max_epochs=None, max_iters=None) -> Schedule:
    """The momentum (or Adam's beta1) of MMCV 1.7's ``momentum_config`` at each training iteration.

    ``MomentumUpdaterHook`` policies Step (``gamma=0.5``, ``min_momentum``), CosineAnnealing and
    LinearAnnealing (``min_momentum`` or ``min_momentum_ratio``), Cyclic and OneCycle, with warmup
    None, 'constant', 'linear' or 'exp' (``warmup_iters``, ``warmup_ratio=0.9``; no
    ``warmup_by_epoch``), which divides the momentum by the lr hook's warmup factor. Arguments as
    in ``lr_config``; ``base_momentum`` is the optimizer's momentum (OneCycle ignores it).
    """
    lengths = _run_lengths("momentum_config", epoch_len, max_epochs, max_iters)
    return _hook_schedule(
        "momentum_config",
        _MOMENTUM_POLICIES,
        cfg,
        base_momentum,
        lengths,
        warmup_ratio=0.9,
        warmup_by_epoch=False,
        apply=jnp.divide,
    )
