"""timm's own ``Adafactor`` (fairseq's, with timm's factoring rule), not ``torch.optim.Adafactor``
(``purelr.optim.adafactor``): factored second moments of tensors whose two factored dimensions
exceed ``min_dim_size_to_factor``, RMS update clipping, an optional first moment, and the relative
step size when no ``lr`` is given."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from purelr.optim import base, timm_common
from purelr.optim.hyperparams import check


class TimmAdafactorState(NamedTuple):
    """Buffers named as timm's ``state[p]`` keys; a leaf's unused ones are empty, shape ``(0,)``."""

    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as optax's states do
    hyperparams: dict[str, jax.Array]
    exp_avg: Any  # None without betas
    exp_avg_sq_row: Any
    exp_avg_sq_col: Any
    exp_avg_sq: Any


def timm_adafactor(
    lr=None,
    eps=1e-30,
    eps_scale=1e-3,
    clip_threshold=1.0,
    decay_rate=-0.8,
    betas=None,
    weight_decay=0.0,
    scale_parameter: bool = True,
    warmup_init: bool = False,
    min_dim_size_to_factor: int = 16,
    caution: bool = False,
) -> optax.GradientTransformation:
    """Twin of timm 1.0.31's ``timm.optim.Adafactor``; every number may be a schedule.

    At update ``t = count + 1``, with ``lr_t = lr``, or with ``lr=None`` the relative step
    ``min(1e-6 * t if warmup_init else 1e-2, 1 / sqrt(t))``, times ``max(eps_scale, rms(param))``
    when ``scale_parameter``; ``beta2t = 1 - t ** decay_rate``; ``q = grad ** 2 + eps``::

        factored (dims c, r):  row = lerp(row, mean_r(q), 1 - beta2t);  col = lerp(col, mean_c(q), 1 - beta2t)
                               u = rsqrt(row / mean_c(row)) * rsqrt(col) * grad
        otherwise:             exp_avg_sq = lerp(exp_avg_sq, q, 1 - beta2t);  u = rsqrt(exp_avg_sq) * grad
        u = lr_t * u / max(rms(u) / clip_threshold, 1)
        exp_avg = lerp(exp_avg, u, 1 - betas[0]);  u = exp_avg (* caution_mask(exp_avg, grad))  (betas)
        param += -weight_decay * lr_t * param;  param -= u

    A leaf is factored over its first two dims when it has more than two and both exceed
    ``min_dim_size_to_factor``, else over its last two when both do. Only ``betas[0]`` is read.
    """
    relative_step = lr is None
    if warmup_init and not relative_step:
        raise ValueError(f"warmup_init=True requires the relative step (lr=None), got lr={lr!r}")
    if isinstance(min_dim_size_to_factor, bool) or not isinstance(min_dim_size_to_factor, int):
        raise TypeError(f"min_dim_size_to_factor must be an int, got {min_dim_size_to_factor!r}")
    hyperparams = dict(
        eps=check("eps", eps),
        eps_scale=check("eps_scale", eps_scale),
        clip_threshold=timm_common.positive("clip_threshold", clip_threshold),
        decay_rate=check("decay_rate", decay_rate, minimum=None),
        weight_decay=check("weight_decay", weight_decay),
    )
    if not relative_step:
        hyperparams["lr"] = check("lr", lr)
    if betas is not None:
        if not isinstance(betas, (tuple, list)) or not betas:
            raise TypeError(f"betas must be None or a tuple whose first entry is beta1, got {betas!r}")
        hyperparams["beta1"] = check("betas[0]", betas[0], maximum=1.0)
    decays = base.maybe_nonzero(hyperparams["weight_decay"])

    def dims(p):
        return _factored_dims(p.shape, min_dim_size_to_factor)

    def reduced(p, dim):
        return jnp.zeros(p.shape[:dim] + p.shape[dim + 1 :], p.dtype)

    def init_buffers(params, hp):
        base.check_real("timm_adafactor", params)
        empty = lambda p: jnp.zeros((0,), p.dtype)  # noqa: E731
        return dict(
            exp_avg=base.zeros(params) if betas is not None else None,
            exp_avg_sq_row=base.buffer(params, lambda p: reduced(p, dims(p)[1]) if dims(p) else empty(p)),
            exp_avg_sq_col=base.buffer(params, lambda p: reduced(p, dims(p)[0]) if dims(p) else empty(p)),
            exp_avg_sq=base.buffer(params, lambda p: empty(p) if dims(p) else jnp.zeros_like(p)),
        )

    def update_buffers(grads, state, params, hp):
        base.require_params(params, True, "timm_adafactor")
        t = base.step_number(state.count)
        beta2t = 1.0 - t ** hp["decay_rate"]

        def leaf(g, p, m, row, col, v):
            if relative_step:
                lr_t = jnp.minimum(1e-6 * t if warmup_init else 1e-2, 1.0 / jnp.sqrt(t))
                lr_t = lr_t * jnp.maximum(hp["eps_scale"], _rms(p)) if scale_parameter else lr_t
            else:
                lr_t = hp["lr"]
            q = g * g + hp["eps"]
            factored = dims(p)
            if factored:
                dim_col, dim_row = factored
                row = timm_common.lerp(row, jnp.mean(q, axis=dim_row), 1.0 - beta2t)
                col = timm_common.lerp(col, jnp.mean(q, axis=dim_col), 1.0 - beta2t)
                r_factor = jnp.expand_dims(jax.lax.rsqrt(row / jnp.mean(row, axis=dim_col, keepdims=True)), dim_row)
                u = r_factor * jnp.expand_dims(jax.lax.rsqrt(col), dim_col) * g
            else:
                v = timm_common.lerp(v, q, 1.0 - beta2t)
                u = jax.lax.rsqrt(v) * g
            u = u / jnp.maximum(_rms(u) / hp["clip_threshold"], 1.0) * lr_t
            if betas is not None:
                m = timm_common.lerp(m, u, 1.0 - hp["beta1"])
                u = m * timm_common.caution(m, g) if caution else m
            start = p + (-hp["weight_decay"] * lr_t) * p if decays else None
            return base.update_from(p, start, -u), m, row, col, v

        updates, m, row, col, v = base.leafwise(
            leaf, grads, params, state.exp_avg, state.exp_avg_sq_row, state.exp_avg_sq_col, state.exp_avg_sq
        )
        return updates, dict(exp_avg=m, exp_avg_sq_row=row, exp_avg_sq_col=col, exp_avg_sq=v)

    return base.transformation(TimmAdafactorState, hyperparams, init_buffers, update_buffers)


def _factored_dims(shape, min_size: int):
    """timm's ``_get_options``: ``(dim_col, dim_row)`` or ``None``."""
    if len(shape) > 2 and shape[0] > min_size and shape[1] > min_size:
        return 0, 1
    if len(shape) >= 2 and shape[-2] > min_size and shape[-1] > min_size:
        return len(shape) - 2, len(shape) - 1
    return None


def _rms(x):
    """timm's ``norm(x) / sqrt(numel)``."""
    return jnp.linalg.norm(x) / math.sqrt(x.size)
