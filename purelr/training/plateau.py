"""Metric-driven learning rates: ``ReduceLROnPlateau`` (torch), ``ReduceOnPlateauLR`` (MMEngine)
and ``PlateauLRScheduler`` (timm) as a pure state and a jittable ``step(state, metric)``.

A plateau twin is a ``Plateau(init, step)`` pair: ``init()`` gives a ``PlateauState`` whose ``lr``
is the lr in force (a scalar, or one value per parameter group when ``lr`` is a list), and
``step(state, metric)`` gives the state after the original's ``scheduler.step(metric)``. A purelr
optimizer reads it as a schedule that ignores its step, built where the state is at hand (building
a twin is cheap and pure, so this is done inside the jitted train step)::

    plateau = reduce_lr_on_plateau(0.1, patience=3)
    make = lambda lr: purelr.optim.sgd(lr=lambda count: lr, momentum=0.9)
    opt_state = make(plateau.init().lr).init(params)          # the state's shape ignores lr
    # per update:   updates, opt_state = make(p_state.lr).update(grads, opt_state, params)
    # per epoch:    p_state = plateau.step(p_state, val_loss)

For parameter groups, give ``lr`` as a list and read ``p_state.lr[i]`` in group ``i``'s twin.
A NaN metric is never better than the best (every comparison with NaN is false): it counts as a
bad epoch, as in torch, and the best stays.

How this differs from ``optax.contrib.reduce_on_plateau``: optax reduces once the number of bad
evaluations *reaches* ``patience`` (torch: *exceeds* it, one evaluation later), it scales the
updates instead of setting the lr (so ``min_lr`` and ``eps`` are in units of the scale, and the
optimizer's ``hyperparams['lr']`` never changes), it knows only ``min`` mode, mixes ``rtol`` and
``atol`` in one test, has no ``eps`` and averages ``accumulation_size`` values per evaluation.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp

from purelr.schedules import mmengine, validate
from purelr.schedules.core import as_values

Array = jax.Array
INF = float("inf")


class PlateauState(NamedTuple):
    lr: Array  # the lr in force: a scalar, or one per parameter group
    best: Array  # torch's ``best``: the best metric so far (+-inf before the first)
    num_bad_epochs: Array
    cooldown_counter: Array
    epoch: Array  # torch ``last_epoch``; MMEngine ``_global_step``; timm the last ``epoch`` given


class Plateau(NamedTuple):
    init: Callable[[], PlateauState]
    step: Callable[..., PlateauState]  # step(state, metric=None) -> state


def _checked(check, name: str, value):
    """``check(name, value)`` for a Python number; a jax array (a traced value, for sweeping
    configurations under ``vmap``) passes unchecked."""
    return value if isinstance(value, jax.Array) else check(name, value)


def _lrs(name: str, lr):
    if isinstance(lr, (list, tuple)):
        return tuple(_checked(validate.nonnegative, f"{name}[{i}]", v) for i, v in enumerate(lr))
    return _checked(validate.nonnegative, name, lr)


def _min_lrs(name: str, min_lr, lr):
    """``min_lr`` broadcast to ``lr``'s groups, with torch's length check."""
    if isinstance(min_lr, (list, tuple)):
        if not isinstance(lr, tuple) or len(min_lr) != len(lr):
            groups = len(lr) if isinstance(lr, tuple) else 1
            raise ValueError(f"expected {groups} {name} values (one per lr), got {name}={min_lr!r}")
        return tuple(_checked(validate.nonnegative, f"{name}[{i}]", v) for i, v in enumerate(min_lr))
    return _checked(validate.nonnegative, name, min_lr)


def _factor(name: str, factor):
    factor = validate.real(name, factor)
    if factor >= 1.0:
        raise ValueError(f"{name} should be < 1.0, got {factor!r}")
    return factor


def _core(mode: str, factor, patience, threshold, threshold_mode: str, cooldown, min_lr, eps, names: dict):
    """Validated torch arithmetic: ``init(lr)`` and ``reduce(state, metric) -> state``."""
    mode = validate.one_of(names["mode"], mode, names["modes"])
    threshold_mode = validate.one_of(names["threshold_mode"], threshold_mode, ("rel", "abs"))
    factor = _checked(_factor, names["factor"], factor)
    patience = _checked(validate.nonnegative_int, names["patience"], patience)
    cooldown = _checked(validate.nonnegative_int, names["cooldown"], cooldown)
    threshold = _checked(validate.real, "threshold", threshold)
    eps = _checked(validate.real, "eps", eps)
    minimize = mode == names["modes"][0]
    rel_epsilon = 1.0 - threshold if minimize else threshold + 1.0  # a constant's in double, as torch

    def better(a, best):
        if threshold_mode == "rel":
            return a < best * rel_epsilon if minimize else a > best * rel_epsilon
        return a < best - threshold if minimize else a > best + threshold

    def reduce(state: PlateauState, metric) -> PlateauState:
        metric = as_values(metric)
        improved = better(metric, state.best)
        best = jnp.where(improved, metric, state.best)
        bad = jnp.where(improved, 0, state.num_bad_epochs + 1)
        in_cooldown = state.cooldown_counter > 0
        counter = jnp.where(in_cooldown, state.cooldown_counter - 1, state.cooldown_counter)
        bad = jnp.where(in_cooldown, 0, bad)
        fire = bad > patience
        new_lr = jnp.maximum(state.lr * factor, as_values(min_lr))
        lr = jnp.where(fire & (state.lr - new_lr > eps), new_lr, state.lr)
        return state._replace(
            lr=lr,
            best=best,
            num_bad_epochs=jnp.where(fire, 0, bad).astype(jnp.int32),
            cooldown_counter=jnp.where(fire, cooldown, counter).astype(jnp.int32),
        )

    def init(lr) -> PlateauState:
        zero = jnp.zeros((), jnp.int32)
        worst = names.get("worst", INF)
        return PlateauState(
            lr=as_values(lr),
            best=as_values(worst if minimize else -worst),
            num_bad_epochs=zero,
            cooldown_counter=zero,
            epoch=zero,
        )

    return init, reduce


_TORCH_NAMES = dict(
    mode="mode",
    modes=("min", "max"),
    threshold_mode="threshold_mode",
    factor="factor",
    patience="patience",
    cooldown="cooldown",
)


def reduce_lr_on_plateau(
    lr,
    mode: str = "min",
    factor: float = 0.1,
    patience: int = 10,
    threshold: float = 1e-4,
    threshold_mode: str = "rel",
    cooldown: int = 0,
    min_lr: float | Sequence[float] = 0.0,
    eps: float = 1e-8,
) -> Plateau:
    """Twin of ``torch.optim.lr_scheduler.ReduceLROnPlateau`` (torch 2.13); ``lr`` is the
    optimizer's lr (a list: one per parameter group). ``step(state, metric)``::

        better = metric < best * (1 - threshold)      (min, rel; max: > best * (1 + threshold);
                                                       abs: < best - threshold / > best + threshold)
        best, bad = (metric, 0) if better else (best, bad + 1)
        if cooldown_counter > 0: cooldown_counter -= 1; bad = 0
        if bad > patience:
            new = max(lr * factor, min_lr);  lr = new if lr - new > eps else lr
            cooldown_counter = cooldown;  bad = 0

    ``best`` starts at ``inf`` (min) or ``-inf`` (max); a NaN metric is a bad epoch.
    """
    lr = _lrs("lr", lr)
    init, reduce = _core(
        mode, factor, patience, threshold, threshold_mode, cooldown, _min_lrs("min_lr", min_lr, lr), eps, _TORCH_NAMES
    )

    def step(state, metric):
        return reduce(state, metric)._replace(epoch=state.epoch + 1)

    return Plateau(lambda: init(lr), step)


def reduce_on_plateau_lr(
    lr,
    monitor: str = "loss",
    rule: str = "less",
    factor: float = 0.1,
    patience: int = 10,
    threshold: float = 1e-4,
    threshold_rule: str = "rel",
    cooldown: int = 0,
    min_value: float | Sequence[float] = 0.0,
    eps: float = 1e-8,
    begin: int = 0,
    end: int = 2**31 - 1,
) -> Plateau:
    """Twin of MMEngine 0.10.7's ``ReduceOnPlateauLR`` (``by_epoch=True``, as MMEngine requires).

    MMEngine's runner calls ``scheduler.step()`` after every training epoch and
    ``scheduler.step(metrics)`` after every validation; so does this twin: ``step(state)`` (or
    ``step(state, None)``) counts a training epoch (``_global_step``), ``step(state, metrics)``
    takes a dict (the value under ``monitor``, a ``KeyError`` naming the keys if absent) or the
    metric itself and, while ``begin <= epoch < end``, applies torch's rule (``reduce_lr_on_plateau``)
    with ``rule`` ``less``/``greater`` for ``min``/``max``, ``threshold_rule`` for ``threshold_mode``
    and ``min_value`` for ``min_lr``. A NaN metric is a bad epoch. ``best`` starts at MMEngine's
    ``INF = 1e9`` (``-1e9`` for ``greater``), not at infinity: a first metric of 1e9 or more is no
    improvement.
    """
    lr = _lrs("lr", lr)
    begin = validate.nonnegative_int("begin", begin)
    end = validate.nonnegative_int("end", end)
    if end <= begin:
        raise ValueError(f"end should be larger than begin, got begin={begin!r}, end={end!r}")
    threshold = _checked(validate.nonnegative, "threshold", threshold)  # MMEngine raises below 0
    init, reduce = _core(
        rule,
        factor,
        patience,
        threshold,
        threshold_rule,
        cooldown,
        _min_lrs("min_value", min_value, lr),
        eps,
        dict(
            mode="rule",
            modes=("less", "greater"),
            threshold_mode="threshold_rule",
            factor="factor",
            patience="patience",
            cooldown="cooldown",
            worst=float(mmengine.INF),
        ),
    )

    def step(state, metrics=None):
        if metrics is None:
            return state._replace(epoch=state.epoch + 1)
        if isinstance(metrics, dict):
            if monitor not in metrics:
                raise KeyError(f"monitor {monitor!r} is not in the metrics' keys {list(metrics)}")
            metrics = metrics[monitor]
        active = (begin <= state.epoch) & (state.epoch < end)
        return jax.tree.map(lambda new, old: jnp.where(active, new, old), reduce(state, metrics), state)

    return Plateau(lambda: init(lr), step)


def plateau_lr_scheduler(
    lr,
    decay_rate: float = 0.1,
    patience_t: int = 10,
    threshold: float = 1e-4,
    cooldown_t: int = 0,
    warmup_t: int = 0,
    warmup_lr_init: float = 0.0,
    lr_min: float = 0.0,
    mode: str = "max",
) -> Plateau:
    """Twin of timm 1.0.31's ``PlateauLRScheduler`` (without noise), driven as timm's training
    loop drives it: ``step(state, metric)`` is ``scheduler.step(epoch + 1, metric)`` after epoch
    ``epoch`` (``state.epoch`` counts them; ``metric=None`` advances the epoch only).

    Up to ``warmup_t`` the lr is ``warmup_lr_init + epoch * (lr - warmup_lr_init) / warmup_t``
    (``warmup_lr_init`` at init) and metrics are ignored; afterwards torch's ``ReduceLROnPlateau``
    (``factor=decay_rate``, ``patience=patience_t``, ``cooldown=cooldown_t``, ``min_lr=lr_min``,
    ``threshold_mode='rel'``, ``eps=1e-8``) acts on the lr in force. Note timm's default ``mode``
    is ``'max'`` (an accuracy). timm's ``noise_range_t`` is not supported (its draws come from
    torch's generator).
    """
    lr = _lrs("lr", lr)
    warmup_t = validate.nonnegative_int("warmup_t", warmup_t)
    warmup_lr_init = validate.nonnegative("warmup_lr_init", warmup_lr_init)
    lr_min = _checked(validate.nonnegative, "lr_min", lr_min)
    init, reduce = _core(
        mode,
        decay_rate,
        patience_t,
        threshold,
        "rel",
        cooldown_t,
        lr_min,
        1e-8,
        dict(
            mode="mode",
            modes=("min", "max"),
            threshold_mode="threshold_mode",
            factor="decay_rate",
            patience="patience_t",
            cooldown="cooldown_t",
        ),
    )

    def step(state, metric=None):
        epoch = state.epoch + 1
        new = state if metric is None else reduce(state, metric)
        if warmup_t:
            slope = (as_values(lr) - warmup_lr_init) / warmup_t  # timm's warmup_steps
            warm = state._replace(lr=warmup_lr_init + as_values(epoch) * slope)
            new = jax.tree.map(lambda w, r: jnp.where(epoch <= warmup_t, w, r), warm, new)
        return new._replace(epoch=epoch)

    def start():
        return init(jnp.full_like(as_values(lr), warmup_lr_init) if warmup_t else lr)

    return Plateau(start, step)


TIMM_KEYS = ("best", "last_epoch")  # all that timm's PlateauLRScheduler.state_dict() keeps


def plateau_from_timm(plateau: Plateau, state_dict, lr, epoch: int) -> PlateauState:
    """A ``plateau_lr_scheduler`` twin's state from timm's ``PlateauLRScheduler.state_dict()``.

    timm keeps the best metric and its ``ReduceLROnPlateau``'s ``last_epoch`` only; the lr in force
    is the optimizer's (``lr``: its param groups' ``lr``, one number or one per group, as
    ``plateau.init().lr``) and ``epoch`` the last epoch given to ``scheduler.step`` (the training
    loop's). Neither the bad-epoch count nor the cooldown is kept: a timm run resumed from the
    ``state_dict`` starts both at 0, and so does this state (an uninterrupted run may reduce the lr
    at another epoch than either).
    """
    validate.mapping("state_dict", state_dict)
    if set(state_dict) != set(TIMM_KEYS):
        raise ValueError(
            f"state_dict must be timm's PlateauLRScheduler.state_dict() (keys {list(TIMM_KEYS)}), "
            f"got keys {sorted(state_dict)}: a scheduler of another type"
        )
    fresh = plateau.init()
    lr = jnp.asarray(lr, fresh.lr.dtype)
    if lr.shape != fresh.lr.shape:
        raise ValueError(f"lr has shape {lr.shape}, the plateau twin's lr {fresh.lr.shape} (one per param group)")
    best = jnp.asarray(float(state_dict["best"]), fresh.best.dtype)
    return fresh._replace(lr=lr, best=best, epoch=jnp.asarray(validate.nonnegative_int("epoch", epoch), jnp.int32))


def plateau_to_timm(state: PlateauState, last_epoch: int | None = None) -> dict:
    """timm's ``PlateauLRScheduler.state_dict()`` of a ``plateau_lr_scheduler`` twin's state (load
    it into the fresh scheduler, and ``state.lr`` as the optimizer groups' ``lr``): the best metric,
    and ``last_epoch``, timm's count of metric steps after warmup (nothing reads it; default
    ``state.epoch``). The bad-epoch count and the cooldown are left out, as timm leaves them out."""
    epoch = int(state.epoch) if last_epoch is None else validate.nonnegative_int("last_epoch", last_epoch)
    return {"best": float(state.best), "last_epoch": epoch}


def with_scheduler(plateau: Plateau, schedule) -> Plateau:
    """``ReduceLROnPlateau`` and a chainable torch scheduler on one optimizer, both stepped each
    epoch, ``plateau.step(metric)`` then ``scheduler.step()`` (torch's compound use, e.g. a
    ``LinearLR`` warmup under the plateau); ``schedule`` is its ``purelr.schedules.torch`` twin.

    ``init()``: the plateau's lr after the scheduler's constructor step, ``update(0, lr)``;
    ``step(state, metric)`` at the ``k``-th epoch (``state.epoch`` after the plateau's step):
    ``lr = update(k, reduce(lr, metric))``, where ``update`` is the twin's per-step map
    (``schedule.chain_maps.update``, torch's ``get_lr()`` on the lr the plateau left: a StepLR
    multiplies it by ``gamma`` at its steps, a LinearLR by the ratio of consecutive factors).
    For parameter groups (``lr`` a list) the twin must rescale the lr (``kind == "scale"``).
    """
    maps = getattr(schedule, "chain_maps", None)
    if maps is None or maps.kind not in ("scale", "affine", "absolute"):
        raise TypeError(f"with_scheduler needs a purelr.schedules.torch twin (not a composite), got {schedule!r}")
    if jnp.ndim(plateau.init().lr) and maps.kind != "scale":
        raise ValueError(
            f"with_scheduler: a {maps.kind!r} twin computes one lr from its own base, which cannot "
            "follow several parameter groups; give a twin that rescales the lr (kind 'scale')"
        )

    def init() -> PlateauState:
        state = plateau.init()
        return state._replace(lr=maps.update(0, state.lr))

    def step(state: PlateauState, metric) -> PlateauState:
        state = plateau.step(state, metric)
        return state._replace(lr=maps.update(state.epoch, state.lr))

    return Plateau(init, step)
