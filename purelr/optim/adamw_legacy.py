"""timm's ``AdamWLegacy`` (its AdamW from before ``torch.optim.AdamW``; the timm names ``adamwlegacy``,
``adamc``, ``cadamw``, ``cadamc``), with AMSGrad, caution, corrected weight decay and StableAdamW's
RMS update clipping as options."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from purelr.optim import base, corrected_decay, timm_common
from purelr.schedules.core import resolve


class AdamWLegacyState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]
    hyperparams: dict[str, jax.Array]
    exp_avg: Any
    exp_avg_sq: Any
    max_exp_avg_sq: Any  # None without amsgrad


def adamw_legacy(
    lr=1e-3,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=1e-2,
    amsgrad: bool = False,
    caution: bool = False,
    corrected_weight_decay: bool = False,
    maximize: bool = False,
    foreach: bool | None = None,
    capturable: bool = False,
    clipping_threshold=None,
    *,
    max_lr_snapshot=None,
) -> optax.GradientTransformation:
    """Twin of timm 1.0.31's ``timm.optim.AdamWLegacy``; every number (``betas`` one by one) may be a schedule.

    With ``g = -grad if maximize else grad``, ``s = lr`` (or ``lr ** 2 / max_lr_snapshot`` with
    ``corrected_weight_decay``, ``max_lr_snapshot`` defaulting to a constant ``lr``), at update
    ``t = count + 1``::

        param *= 1 - s * weight_decay
        exp_avg = lerp(exp_avg, g, 1 - beta1);  exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * g * g
        v = max(max_exp_avg_sq, exp_avg_sq) (amsgrad, kept as max_exp_avg_sq), else exp_avg_sq
        denom = sqrt(v) / sqrt(1 - beta2 ** t) + eps
        denom *= max(1, rms(g / denom) / clipping_threshold)               (clipping_threshold)
        m = exp_avg * caution_mask(exp_avg, g)  (caution), else exp_avg
        param -= lr / (1 - beta1 ** t) * m / denom

    ``foreach`` and ``capturable`` are accepted and ignored.
    """
    base.device_flags(foreach=foreach, capturable=capturable)
    hyperparams = base.adam_hyperparams(
        lr, betas, eps, weight_decay, **corrected_decay.snapshot(lr, corrected_weight_decay, max_lr_snapshot)
    )
    if clipping_threshold is not None:
        hyperparams["clipping_threshold"] = timm_common.positive("clipping_threshold", clipping_threshold, ", or None")
    _, complements, log_betas = base.adam_moments(hyperparams)

    def init_buffers(params, hp):
        return dict(base.moment_buffers(params), max_exp_avg_sq=base.zeros(params) if amsgrad else None)

    def update_buffers(grads, state, params, hp):
        base.require_params(params, True, "adamw_legacy")
        c1, c2 = (resolve(c, state.count) for c in complements)
        t = base.step_number(state.count)
        bias_correction1, bias_correction2 = (base.bias_correction(lb, t, state.count) for lb in log_betas)
        step_size = hp["lr"] / bias_correction1
        bias_correction2_sqrt = jnp.sqrt(bias_correction2)

        def leaf(g, p, m, v, v_max):
            g = -g if maximize else g
            start = timm_common.decayed(p, hp, state.count)
            m = timm_common.lerp(m, g, c1)
            v = hp["beta2"] * v + c2 * g * g
            if amsgrad:
                v_max = jnp.maximum(v_max, v)
            denom = clipped_denom(g, (v_max if amsgrad else v), bias_correction2_sqrt, hp, clipping_threshold)
            if caution:
                m_used = m * timm_common.caution(m, g)
            return base.update_from(p, start, -step_size * ((m_used if caution else m) / denom)), m, v, v_max

        updates, m, v, v_max = base.leafwise(leaf, grads, params, state.exp_avg, state.exp_avg_sq, state.max_exp_avg_sq)
        return updates, dict(exp_avg=m, exp_avg_sq=v, max_exp_avg_sq=v_max)

    return base.transformation(AdamWLegacyState, hyperparams, init_buffers, update_buffers)


def clipped_denom(g, v, bias_correction2_sqrt, hp, clipping_threshold):
    """timm's ``denom = sqrt(v) / sqrt(1 - beta2 ** t) + eps``, times StableAdamW's
    ``max(1, rms(g / denom) / clipping_threshold)`` when ``clipping_threshold`` is set."""
    denom = jnp.sqrt(v) / bias_correction2_sqrt + hp["eps"]
    if clipping_threshold is not None:
        rms = jnp.linalg.norm(g / denom) / jnp.sqrt(g.size)
        denom = denom * jnp.maximum(rms / hp["clipping_threshold"], 1.0)
    return denom
