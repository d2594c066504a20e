"""Gradient accumulation with MMCV's and MMEngine's remainder rule.

Twin of MMCV 1.x's ``GradientCumulativeOptimizerHook(cumulative_iters=n)`` and MMEngine's
``OptimWrapper(accumulative_counts=n)``: iteration ``k`` (from 0) adds its gradient divided by
``n``, or by the remainder ``r = total % n`` in the last, incomplete group
(``k >= total - r``); the inner transformation steps on the sum at iterations where
``(k + 1) % n == 0`` and at the last iteration ``total - 1``, and passes zeros otherwise.
With ``repeat=True`` the count starts again every ``total`` iterations: timm's ``train.py``
(``train_one_epoch``) applies the rule to each epoch of ``total`` batches.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from purelr.schedules import validate


class AccumulateState(NamedTuple):
    iteration: jax.Array
    gradients: Any
    inner_state: Any


def update_iteration(update: jax.Array, every: int, total: int | None) -> jax.Array:
    """The training iteration at which update ``update`` (from 0) is applied."""
    last = (update + 1) * every - 1
    return last if total is None else jnp.minimum(last, total - 1)


def accumulate(
    inner: optax.GradientTransformation, every: int, total: int | None = None, *, repeat: bool = False
) -> optax.GradientTransformation:
    """Sums ``every`` iterations' gradients (scaled by ``1/every``) before each ``inner`` update.

    ``total``: the run's number of iterations, for the remainder rule (``None``: no remainder);
    with ``repeat``, an epoch's (the rule applies to every ``total`` iterations).
    ``inner``'s schedules are read at its own update count: give them ``update_iteration`` to read
    the lr of the iteration that steps, as MMCV's hooks set it.
    """
    validate.transformation("inner", inner)
    every = validate.positive_int("every", every)
    total = None if total is None else validate.positive_int("total", total)
    if validate.flag("repeat", repeat) and total is None:
        raise ValueError("accumulate: repeat=True needs total (the iterations of an epoch)")
    divisible = 0 if total is None else total // every * every

    def init_fn(params):
        return AccumulateState(jnp.zeros((), jnp.int32), jax.tree.map(jnp.zeros_like, params), inner.init(params))

    def update_fn(updates, state, params=None):
        k = state.iteration
        if total is None:
            factor, steps = jnp.asarray(1.0 / every), (k + 1) % every == 0
        else:
            factor = jnp.where(k < divisible, 1.0 / every, 1.0 / max(total - divisible, 1))
            steps = ((k + 1) % every == 0) | (k == total - 1)
        summed = jax.tree.map(lambda acc, g: acc + g * factor.astype(g.dtype), state.gradients, updates)
        stepped, inner_state = inner.update(summed, state.inner_state, params)
        keep = lambda new, old: jnp.where(steps, new, old)
        return (
            jax.tree.map(lambda u: jnp.where(steps, u, jnp.zeros_like(u)), stepped),
            AccumulateState(
                (k + 1) % total if repeat else k + 1,
                jax.tree.map(lambda s: jnp.where(steps, jnp.zeros_like(s), s), summed),
                jax.tree.map(keep, inner_state, state.inner_state),
            ),
        )

    return optax.GradientTransformation(init_fn, update_fn)
