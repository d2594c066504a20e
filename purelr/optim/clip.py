"""Gradient clipping with torch's arithmetic: ``torch.nn.utils.clip_grad_norm_`` / ``clip_grad_value_``."""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from purelr.optim import fusion
from purelr.schedules import validate
from purelr.schedules.core import as_values


class ClipGradNormState(NamedTuple):
    total_norm: jax.Array  # the norm of the last gradients, before clipping (what torch returns)


def _sum_of_squares(x):
    return jnp.sum(x * x)


def _vector_norm(x, norm_type):
    x = jnp.abs(x)
    if norm_type == math.inf:
        return jnp.max(x)
    if norm_type == -math.inf:
        return jnp.min(x)
    if norm_type == 0:
        return jnp.sum(x != 0).astype(x.dtype)
    if norm_type == 2:
        return jnp.sqrt(_sum_of_squares(x))
    return jnp.sum(x**norm_type) ** (1.0 / norm_type)


def _scaled(g, coef):
    return (g * coef).astype(g.dtype)


def _clamped(g, clip_value):
    return jnp.clip(g, -clip_value, clip_value)


def _leaf_norms(leaves, norm_type):
    """Each leaf's norm, stacked. For the 2-norm of leaves of one dtype the square roots are taken
    once, over the stacked sums of squares: the same numbers, one kernel instead of one a leaf."""
    if norm_type == 2 and len({g.dtype for g in leaves}) == 1:
        return jnp.sqrt(jnp.stack([_sum_of_squares(jnp.abs(g)) for g in leaves]))
    return jnp.stack([_vector_norm(g, norm_type) for g in leaves])


def clip_grad_norm(max_norm, norm_type=2.0, error_if_nonfinite: bool = False) -> optax.GradientTransformation:
    """Twin of ``torch.nn.utils.clip_grad_norm_``: scales all gradients by one factor.

    ``total_norm`` is the ``norm_type``-norm of the per-leaf norms (any p, ``inf``, ``-inf``, 0)::

        g *= min(1, max_norm / (total_norm + 1e-6))

    (``optax.clip_by_global_norm`` has no ``1e-6`` and no ``norm_type``.) With
    ``error_if_nonfinite`` a non-finite total norm raises torch's ``RuntimeError`` when the update
    runs eagerly; under ``jit`` the norm is a tracer, nothing can raise, and the gradients come back
    scaled as torch scales them with ``error_if_nonfinite=False`` (by 0 for an infinite norm, so
    infinities become NaN; by NaN for a NaN norm): check ``state.total_norm``, or wrap the chain
    in ``purelr.optim.skip_nonfinite``. ``max_norm`` must be ``>= 0`` (``inf``: no clipping; torch
    accepts a negative one and flips the gradients' sign).
    """
    max_norm = validate.nonnegative("max_norm", max_norm, finite=False)
    norm_type = validate.real("norm_type", norm_type)

    def init_fn(params):
        del params
        return ClipGradNormState(total_norm=as_values(0.0))

    def update_fn(updates, state, params=None):
        del params, state
        leaves = jax.tree.leaves(updates)
        if not leaves:
            return updates, init_fn(None)
        total_norm = _vector_norm(_leaf_norms(leaves, norm_type), norm_type)
        if error_if_nonfinite and not isinstance(total_norm, jax.core.Tracer) and not jnp.isfinite(total_norm):
            raise RuntimeError(
                f"The total norm of order {norm_type} for gradients from `parameters` is non-finite, "
                "so it cannot be clipped. To disable this error and scale the gradients by the "
                "non-finite norm anyway, set `error_if_nonfinite=False`"
            )
        coef = jnp.minimum(max_norm / (total_norm + 1e-6), 1.0)
        clipped = jax.tree.map(lambda g: fusion.derived(_scaled, g, coef), updates)
        return clipped, ClipGradNormState(total_norm=as_values(total_norm))

    return optax.GradientTransformation(init_fn, update_fn)


def clip_grad_value(clip_value) -> optax.GradientTransformation:
    """Twin of ``torch.nn.utils.clip_grad_value_``: ``g = clamp(g, -clip_value, clip_value)``.

    ``clip_value`` must be ``>= 0`` (torch accepts a negative one and sets every gradient to it)."""
    clip_value = validate.nonnegative("clip_value", clip_value)

    def update_fn(updates, state, params=None):
        del params
        return jax.tree.map(lambda g: fusion.derived(_clamped, g, clip_value), updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)
