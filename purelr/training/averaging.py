"""Weight averaging as pure functions: ``torch.optim.swa_utils.AveragedModel`` (SWA and EMA),
timm's ``ModelEmaV3``, MMEngine's ``ExponentialMovingAverage``, and SWALR from the SWA start.

An averager is ``Averager(init, update)``: ``init(tree)`` gives an ``AveragedState`` holding a copy
of the tree (torch's ``deepcopy(model)``) and ``update(state, tree, ...)`` the state after the
original's ``update_parameters(model)`` / ``update(model, step)``. The tree is what is averaged:
the params alone, or a flax variables dict ``{'params': ..., 'batch_stats': ...}`` for torch's
``use_buffers=True`` (MMEngine ``update_buffers=True``, timm's default, which averages the
``state_dict``). Every update is jittable; trees of another structure are rejected.
Integer leaves are copied, never averaged (timm and MMEngine's rule; flax trees seldom have them).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from purelr.schedules import join_schedules, validate
from purelr.schedules.core import Schedule, as_values
from purelr.schedules.torch import swa_lr


class AveragedState(NamedTuple):
    average: Any  # the averaged tree
    n_averaged: jax.Array  # torch ``n_averaged`` / MMEngine ``steps``: updates so far


class Averager(NamedTuple):
    init: Callable[[Any], AveragedState]
    update: Callable[..., AveragedState]


def _lerp(start, end, weight):
    """torch's CPU ``lerp``: ``start + weight * (end - start)`` if ``|weight| < 0.5``, else
    ``end - (end - start) * (1 - weight)``."""
    diff = end - start
    return jnp.where(jnp.abs(weight) < 0.5, start + weight * diff, end - diff * (1 - weight))


def _floating(leaf) -> bool:
    return jnp.issubdtype(jnp.asarray(leaf).dtype, jnp.inexact)


def _check_structure(average, tree):
    expected: Any = jax.tree.structure(average)  # jax types PyTreeDef as a bare alias
    given = jax.tree.structure(tree)
    if expected != given:
        raise ValueError(f"cannot average a tree of structure {given} into one of structure {expected}")
    for i, (a, b) in enumerate(zip(jax.tree.leaves(average), jax.tree.leaves(tree))):
        if jnp.shape(a) != jnp.shape(b):
            raise ValueError(f"leaf {i} has shape {jnp.shape(b)}, the average has {jnp.shape(a)}")


def _init(tree) -> AveragedState:
    return AveragedState(jax.tree.map(jnp.array, tree), jnp.zeros((), jnp.int32))


def get_swa_avg_fn() -> Callable:
    """torch's ``get_swa_avg_fn``: ``avg + (param - avg) / (n_averaged + 1)``."""
    return lambda avg, param, n: avg + (param - avg) / (n + 1)


def get_ema_avg_fn(decay: float = 0.999) -> Callable:
    """torch's ``get_ema_avg_fn``: ``decay * avg + (1 - decay) * param``."""
    decay = validate.in_range("decay", decay, 0.0, 1.0)
    return lambda avg, param, n: decay * avg + (1 - decay) * param


def get_swa_multi_avg_fn() -> Callable:
    """torch's ``get_swa_multi_avg_fn`` (its CUDA default): ``lerp(avg, param, 1 / (n + 1))`` on
    lists of leaves, returning the new list.

    torch's weight ``cast(float, 1 / (num_averaged + 1))`` is a tensor, not a Python float
    (``typing.cast`` converts nothing): ``1 / n`` of a long tensor, in torch's default dtype. Here
    it is ``1 / (n + 1)`` in JAX's default float dtype (float64 under ``jax_enable_x64``, as
    ``torch.set_default_dtype(torch.float64)``; else float32), then cast to each leaf's dtype.
    """

    def swa_update(avgs, params, n):
        weight = 1 / (jnp.asarray(n) + 1).astype(float)  # float: the default float dtype
        return [_lerp(a, p, weight.astype(a.dtype)) for a, p in zip(avgs, params)]

    return swa_update


def get_ema_multi_avg_fn(decay: float = 0.999) -> Callable:
    """torch's ``get_ema_multi_avg_fn``: ``lerp(avg, param, 1 - decay)`` on lists of leaves."""
    decay = validate.in_range("decay", decay, 0.0, 1.0)
    return lambda avgs, params, n: [_lerp(a, p, 1 - decay) for a, p in zip(avgs, params)]


def averaged_model(avg_fn: Callable | None = None, multi_avg_fn: Callable | None = None) -> Averager:
    """Twin of ``torch.optim.swa_utils.AveragedModel``: ``update(state, tree)`` copies the tree at
    the first update (``n_averaged == 0``), then applies ``multi_avg_fn(avg_leaves, leaves, n)``
    if given, else ``avg_fn(avg, param, n)`` leaf by leaf, else the running mean
    ``avg + (param - avg) / (n + 1)`` (torch's CPU default; on CUDA torch lerps with weight
    ``1 / (n + 1)``: ``get_swa_multi_avg_fn``); ``n_averaged += 1``.
    """
    if avg_fn is None and multi_avg_fn is None:
        avg_fn = get_swa_avg_fn()

    def update(state: AveragedState, tree) -> AveragedState:
        _check_structure(state.average, tree)
        avgs, leaves = jax.tree.leaves(state.average), jax.tree.leaves(tree)
        floats = [i for i, leaf in enumerate(avgs) if _floating(leaf)]
        n = state.n_averaged
        if multi_avg_fn is not None:
            new = list(avgs)
            for i, value in zip(floats, multi_avg_fn([avgs[i] for i in floats], [leaves[i] for i in floats], n)):
                new[i] = value
        else:
            assert avg_fn is not None
            new = [avg_fn(a, p, n) if i in floats else p for i, (a, p) in enumerate(zip(avgs, leaves))]
        new = [jnp.where(n == 0, p, jnp.asarray(v).astype(jnp.asarray(a).dtype)) for a, p, v in zip(avgs, leaves, new)]
        return AveragedState(jax.tree.unflatten(jax.tree.structure(tree), new), n + 1)

    return Averager(_init, update)


def _ema_update(weight_of: Callable):
    def update(state: AveragedState, tree, *args) -> AveragedState:
        _check_structure(state.average, tree)
        weight = weight_of(state.n_averaged, *args)
        average = jax.tree.map(
            lambda a, p: _lerp(a, p.astype(a.dtype), weight) if _floating(a) else p, state.average, tree
        )
        return AveragedState(average, state.n_averaged + 1)

    return update


def model_ema_v3(
    decay: float = 0.9999,
    min_decay: float = 0.0,
    update_after_step: int = 0,
    use_warmup: bool = False,
    warmup_gamma: float = 1.0,
    warmup_power: float = 2 / 3,
) -> Averager:
    """Twin of timm's ``ModelEmaV3`` (float32/float64 leaves: no stochastic rounding).

    ``update(state, tree, step=None)`` lerps every float leaf towards the tree with weight
    ``1 - d``: ``d = decay`` when ``step`` is None, else with ``s = max(0, step - update_after_step - 1)``::

        d = 0                                                      (s <= 0: a copy)
        d = max(min(1 - (1 + s / warmup_gamma) ** -warmup_power, decay), min_decay)  (use_warmup)
        d = decay                                                  (otherwise)
    """
    decay = validate.real("decay", decay)
    update_after_step = validate.integer("update_after_step", update_after_step)
    warmup_gamma = validate.positive("warmup_gamma", warmup_gamma)

    def weight(n, step=None):
        if step is None:
            return 1.0 - decay
        s = jnp.maximum(0, jnp.asarray(step) - update_after_step - 1)
        d = as_values(decay)
        if use_warmup:
            warm = 1 - (1 + as_values(s) / warmup_gamma) ** -warmup_power
            d = jnp.maximum(jnp.minimum(warm, decay), min_decay)
        return 1.0 - jnp.where(s <= 0, 0.0, d)

    return Averager(_init, _ema_update(weight))


def exponential_moving_average(momentum: float = 0.0002, interval: int = 1) -> Averager:
    """Twin of MMEngine's ``ExponentialMovingAverage``: ``update(state, tree)`` copies the tree
    at ``steps == 0``, then every ``interval``-th step lerps float leaves: ``lerp(avg, param,
    momentum)`` (``avg = (1 - momentum) * avg + momentum * param``); ``steps += 1``. With
    ``update_buffers=False`` MMEngine copies the buffers: average the params only and take
    ``batch_stats`` from the model.
    """
    momentum = validate.in_range("momentum", momentum, 0.0, 1.0, low_open=True, high_open=True)
    interval = validate.positive_int("interval", interval)

    def weight(n):
        return jnp.where(n == 0, 1.0, jnp.where(n % interval == 0, momentum, 0.0))

    return Averager(_init, _ema_update(weight))


def swa_schedule(
    schedule: Schedule, swa_start: int, swa_lr_value: float, anneal_epochs: int = 10, anneal_strategy: str = "cos"
) -> Schedule:
    """``schedule`` until step ``swa_start``, then ``torch.optim.swa_utils.SWALR`` built there:
    ``join_schedules([schedule, swa_lr(schedule(swa_start), swa_lr_value, ...)], [swa_start])``.

    Matches torch's loop that calls ``scheduler.step()`` before ``swa_start`` and constructs
    ``SWALR(optimizer, swa_lr=swa_lr_value, anneal_epochs=..., anneal_strategy=...)`` at
    ``swa_start`` (its construction is its step 0), calling ``swa_scheduler.step()`` after.
    """
    swa_start = validate.nonnegative_int("swa_start", swa_start)
    with jax.ensure_compile_time_eval():
        start_lr = float(schedule(swa_start))
    return join_schedules([schedule, swa_lr(start_lr, swa_lr_value, anneal_epochs, anneal_strategy)], [swa_start])
