"""Adaptive gradient clipping (AGC, Brock et al. 2021): twin of timm's
``timm.utils.agc.adaptive_clip_grad(parameters, clip_factor, eps, norm_type)``.

Each output unit ``i`` of a leaf (a row of torch's ``(out, in)`` Linear weight, a filter of its
``(out, in, kh, kw)`` conv weight; the whole leaf when it has one dimension or none) is clipped on
its own, with ``||.||`` the ``norm_type``-norm over the unit::

    max_norm = clip_factor * max(||p_i||, eps)
    g_i = g_i                                          if ||g_i|| < max_norm
    g_i = g_i * (max_norm / max(||g_i||, 1e-6))        otherwise

Which axis holds the units: torch keeps the output first; flax's ``nn.Dense`` kernel is ``(in,
out)`` and ``nn.Conv``'s ``(kh, kw, in, out)``, the output last. ``layout="flax"`` (the default)
takes the last axis of leaves named ``kernel`` (Dense, Conv, DenseGeneral with one output axis)
and the first axis of every other leaf of two or more dimensions (``nn.Embed``'s ``embedding``,
which is ``(num, features)`` as in torch, and parameters made with ``self.param``, which keep the
shape the author chose); ``layout="torch"`` takes the first axis everywhere (trees in torch's
layout); a function ``(dotted name, leaf) -> axis`` decides per leaf.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from purelr.optim.clip import _vector_norm
from purelr.schedules import validate

LAYOUTS = ("flax", "torch")


def _dotted(path) -> str:
    return ".".join(str(getattr(key, "key", getattr(key, "name", getattr(key, "idx", key)))) for key in path)


def unit_axis(name: str, leaf, layout="flax") -> int:
    """The axis of ``leaf`` (dotted ``name``) whose entries are the output units, per ``layout``."""
    if callable(layout):
        return layout(name, leaf)
    return -1 if layout == "flax" and name.rpartition(".")[2] == "kernel" else 0


def unitwise_norm(x, axis: int, norm_type=2.0):
    """``norm_type``-norm of ``x`` per entry of ``axis``, shaped to broadcast against ``x``; the
    norm of the whole of ``x`` when it has one dimension or none (timm's ``unitwise_norm``)."""
    if jnp.ndim(x) <= 1:
        return _vector_norm(x, norm_type)
    norms = jax.vmap(lambda unit: _vector_norm(unit, norm_type), in_axes=axis)(x)
    shape = [1] * jnp.ndim(x)
    shape[axis] = x.shape[axis]
    return norms.reshape(shape)


def adaptive_clip_grad(
    clip_factor=0.01, eps=1e-3, norm_type=2.0, *, layout: str | Callable = "flax"
) -> optax.GradientTransformation:
    """Twin of ``timm.utils.agc.adaptive_clip_grad`` (formula above): needs ``params`` at update.

    timm's ``train.py`` clips every parameter but the classifier's (the model's last two
    parameters) with ``--clip-mode agc``: wrap this in ``optax.masked`` to leave the head out.
    """
    clip_factor = validate.nonnegative("clip_factor", clip_factor)
    eps = validate.nonnegative("eps", eps)
    norm_type = validate.real("norm_type", norm_type)
    if not callable(layout):
        validate.one_of("layout", layout, LAYOUTS)

    def clip_leaf(path, g, p):
        axis = unit_axis(_dotted(path), p, layout)
        max_norm = jnp.maximum(unitwise_norm(p, axis, norm_type), eps) * clip_factor
        grad_norm = unitwise_norm(g, axis, norm_type)
        clipped = g * (max_norm / jnp.maximum(grad_norm, 1e-6))
        return jnp.where(grad_norm < max_norm, g, clipped).astype(g.dtype)

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("adaptive_clip_grad needs the params: call update(grads, state, params)")
        return jax.tree_util.tree_map_with_path(clip_leaf, updates, params), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)
