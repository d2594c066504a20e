"""timm's ``AdafactorBigVision`` (``adafactorbv``, ``adafactorbvc``, ``cadafactorbv``,
``cadafactorbvc``): Big Vision's Adafactor, with factored second moments over a tensor's two
largest dims, RMS update clipping, a momentum kept in its own dtype (bfloat16 by default) and
decoupled weight decay, scaled by the lr or not (``unscaled_wd``)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from purelr.optim import base, corrected_decay, timm_common
from purelr.optim.hyperparams import check
from purelr.schedules.core import resolve

MOMENTUM_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


class AdafactorBigVisionState(NamedTuple):
    """Buffers named as timm's ``state[p]`` keys; a leaf's unused ones are empty, shape ``(0,)``."""

    count: jax.Array  # type: ignore[assignment]
    hyperparams: dict[str, jax.Array]
    exp_avg_sq_r: Any
    exp_avg_sq_c: Any
    exp_avg_sq: Any
    exp_avg: Any  # in momentum_dtype; None without momentum


def adafactor_big_vision(
    lr=1.0,
    min_dim_size_to_factor: int = 16,
    decay_rate=0.8,
    decay_offset=0,
    beta2_cap=0.999,
    momentum=0.9,
    momentum_dtype="bfloat16",
    eps=None,
    weight_decay=0.0,
    clipping_threshold=None,
    unscaled_wd: bool = False,
    caution: bool = False,
    corrected_weight_decay: bool = False,
    *,
    max_lr_snapshot=None,
) -> optax.GradientTransformation:
    """Twin of timm 1.0.31's ``timm.optim.AdafactorBigVision``; every number may be a schedule.

    At update ``t = count + 1``, with ``s = max(t - decay_offset, 1) ** -decay_rate``,
    ``b = 1 - min(beta2_cap, 1 - s)`` and ``q = grad ** 2 + eps`` (``eps=None``: 1e-7 for float16
    gradients, else 1e-30)::

        factored (dims c, r: the second largest and the largest, at least min_dim_size_to_factor):
            r_avg = lerp(r_avg, mean_r(q), b);  c_avg = lerp(c_avg, mean_c(q), b)
            u = grad * rsqrt(r_avg / mean_c(r_avg)) * rsqrt(c_avg)
        otherwise:  exp_avg_sq = lerp(exp_avg_sq, q, b);  u = grad * rsqrt(exp_avg_sq)
        u /= max(rms(u) / clipping_threshold, 1)                     (clipping_threshold)
        exp_avg = lerp(exp_avg, u, 1 - momentum) in momentum_dtype;  u = exp_avg  (momentum)
        u *= caution_mask(u, grad)                                   (momentum and caution)
        param *= 1 - lr * weight_decay   (unscaled_wd: 1 - weight_decay);  param -= lr * u

    With ``corrected_weight_decay`` the decay's ``lr`` is ``lr ** 2 / max_lr_snapshot`` (unscaled:
    ``lr / max_lr_snapshot``), ``max_lr_snapshot`` defaulting to a constant ``lr``.
    ``momentum_dtype``: "bfloat16", "float16", "float32" or a JAX dtype; ``momentum=None`` keeps
    no first moment.
    """
    if isinstance(min_dim_size_to_factor, bool) or not isinstance(min_dim_size_to_factor, int):
        raise TypeError(f"min_dim_size_to_factor must be an int, got {min_dim_size_to_factor!r}")
    if isinstance(momentum_dtype, str):
        if momentum_dtype not in MOMENTUM_DTYPES:
            raise ValueError(f"momentum_dtype must be one of {sorted(MOMENTUM_DTYPES)}, got {momentum_dtype!r}")
        momentum_dtype = MOMENTUM_DTYPES[momentum_dtype]
    momentum_dtype = jnp.dtype(momentum_dtype)
    hyperparams = dict(
        lr=check("lr", lr),
        weight_decay=check("weight_decay", weight_decay),
        decay_rate=check("decay_rate", decay_rate, minimum=None),
        decay_offset=check("decay_offset", decay_offset),
        beta2_cap=check("beta2_cap", beta2_cap, maximum=1.0),
        **corrected_decay.snapshot(lr, corrected_weight_decay, max_lr_snapshot),
    )
    for name, value in (("momentum", momentum), ("eps", eps), ("clipping_threshold", clipping_threshold)):
        if value is not None:
            hyperparams[name] = check(name, value)
    decays = base.maybe_nonzero(hyperparams["weight_decay"])
    cap_complement = base.one_minus(hyperparams["beta2_cap"])
    momentum_complement = None if momentum is None else base.one_minus(hyperparams["momentum"])

    def init_buffers(params, hp):
        base.check_real("adafactor_big_vision", params)

        def factor(p, dim):
            dims = factored_dims(p.shape, min_dim_size_to_factor)
            return jnp.zeros((0,), p.dtype) if dims is None else jnp.zeros_like(jnp.mean(p, dims[dim], keepdims=True))

        def full(p):
            return jnp.zeros((0,), p.dtype) if factored_dims(p.shape, min_dim_size_to_factor) else jnp.zeros_like(p)

        return dict(
            exp_avg_sq_r=base.buffer(params, lambda p: factor(p, 1)),
            exp_avg_sq_c=base.buffer(params, lambda p: factor(p, 0)),
            exp_avg_sq=base.buffer(params, full),
            exp_avg=None if momentum is None else base.buffer(params, lambda p: jnp.zeros(p.shape, momentum_dtype)),
        )

    def update_buffers(grads, state, params, hp):
        base.require_params(params, True, "adafactor_big_vision")
        t = base.step_number(state.count)
        s = jnp.maximum(t - hp["decay_offset"], 1.0) ** -hp["decay_rate"]
        # torch's 1 - min(beta2_cap, 1 - s), without rounding 1 - s first
        b = jnp.where(1.0 - s > hp["beta2_cap"], resolve(cap_complement, state.count), s)
        c1 = None if momentum is None else resolve(momentum_complement, state.count)

        def leaf(g, p, row, col, v, m):
            q = jnp.square(g) + (hp["eps"] if eps is not None else 1e-7 if g.dtype == jnp.float16 else 1e-30)
            dims = factored_dims(g.shape, min_dim_size_to_factor)
            if dims is not None:
                dc, dr = dims
                row = timm_common.lerp(row, jnp.mean(q, dr, keepdims=True), b)
                col = timm_common.lerp(col, jnp.mean(q, dc, keepdims=True), b)
                u = g * jax.lax.rsqrt(row / jnp.mean(row, dc, keepdims=True)) * jax.lax.rsqrt(col)
            else:
                v = timm_common.lerp(v, q, b)
                u = g * jax.lax.rsqrt(v)
            if clipping_threshold is not None:
                u = u / jnp.maximum(jnp.linalg.norm(u) / u.size**0.5 / hp["clipping_threshold"], 1.0)
            if momentum is not None:
                m = _lerp_in(momentum_dtype, m, u, c1)
                u = m.astype(u.dtype)
                u = u * timm_common.caution(u, g) if caution else u
            start = None
            if decays:
                start = timm_common.stored(p * (1.0 - _decay_scale(hp) * hp["weight_decay"]), state.count)
            return base.update_from(p, start, -(hp["lr"] * u)), row, col, v, m

        updates, row, col, v, m = base.leafwise(
            leaf, grads, params, state.exp_avg_sq_r, state.exp_avg_sq_c, state.exp_avg_sq, state.exp_avg
        )
        m = None if m is None else jax.tree.map(lambda x: x.astype(momentum_dtype), m)  # leafwise casts up
        return updates, dict(exp_avg_sq_r=row, exp_avg_sq_c=col, exp_avg_sq=v, exp_avg=m)

    def _decay_scale(hp):
        if not unscaled_wd:
            return corrected_decay.decay_scale(hp)
        return hp["lr"] / hp["max_lr_snapshot"] if "max_lr_snapshot" in hp else 1.0

    return base.transformation(AdafactorBigVisionState, hyperparams, init_buffers, update_buffers)


def factored_dims(shape: tuple, min_dim_size_to_factor: int) -> tuple[int, int] | None:
    """timm's ``_factored_dims``: ``(dc, dr)``, the second largest and the largest dim (the later of
    equal sizes counting as larger), or ``None`` below two dims or when the second largest is
    smaller than ``min_dim_size_to_factor``."""
    if len(shape) < 2:
        return None
    order = sorted((size, i) for i, size in enumerate(shape))
    if order[-2][0] < min_dim_size_to_factor:
        return None
    return order[-2][1], order[-1][1]


def _lerp_in(dtype, m, u, weight):
    """torch's ``m.lerp_(u.to(dtype), weight)`` on a buffer of ``dtype``: computed in float32 for
    the half types (torch's opmath), ``u`` rounded to ``dtype`` through float32 (torch converts a
    double to a half type through float)."""
    opmath = jnp.promote_types(dtype, jnp.float32)
    if u.dtype != dtype:
        u = u.astype(jnp.float32).astype(dtype) if jnp.dtype(dtype).itemsize < 4 else u.astype(dtype)
    out = timm_common.lerp(m.astype(opmath), u.astype(opmath), jnp.asarray(weight).astype(opmath))
    return out.astype(dtype)
