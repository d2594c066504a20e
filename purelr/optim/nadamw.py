"""timm's ``NAdamW``: Adam with Nesterov momentum and decoupled weight decay (the mlcommons
algorithmic-efficiency form), with caution and StableAdamW's RMS update clipping as options."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from purelr.optim import base, corrected_decay, timm_common
from purelr.optim.adamw_legacy import clipped_denom
from purelr.schedules.core import resolve


class NAdamWState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as optax's states do
    hyperparams: dict[str, jax.Array]
    exp_avg: Any
    exp_avg_sq: Any


def nadamw(
    lr=1e-3,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=1e-2,
    caution: bool = False,
    corrected_weight_decay: bool = False,
    maximize: bool = False,
    foreach: bool | None = None,
    capturable: bool = False,
    clipping_threshold=None,
    *,
    max_lr_snapshot=None,
) -> optax.GradientTransformation:
    """Twin of timm 1.0.31's ``timm.optim.NAdamW``; every number (``betas`` one by one) may be a schedule.

    With ``g = -grad if maximize else grad``, ``s = lr`` (or ``lr ** 2 / max_lr_snapshot`` with
    ``corrected_weight_decay``, ``max_lr_snapshot`` defaulting to a constant ``lr``), at update
    ``t = count + 1``::

        param *= 1 - s * weight_decay
        exp_avg = lerp(exp_avg, g, 1 - beta1);  exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * g * g
        n = lerp(exp_avg, g, 1 - beta1)                                    (Nesterov look-ahead)
        denom = sqrt(exp_avg_sq) / sqrt(1 - beta2 ** t) + eps
        denom *= max(1, rms(g / denom) / clipping_threshold)               (clipping_threshold)
        n *= caution_mask(n, g)                                            (caution)
        param -= lr / (1 - beta1 ** t) * n / denom

    ``foreach`` and ``capturable`` are accepted and ignored.
    """
    base.device_flags(foreach=foreach, capturable=capturable)
    hyperparams = base.adam_hyperparams(
        lr, betas, eps, weight_decay, **corrected_decay.snapshot(lr, corrected_weight_decay, max_lr_snapshot)
    )
    if clipping_threshold is not None:
        hyperparams["clipping_threshold"] = timm_common.positive("clipping_threshold", clipping_threshold, ", or None")
    complements = base.one_minus(hyperparams["beta1"]), base.one_minus(hyperparams["beta2"])
    log_betas = tuple(base.log_of(c) for c in complements)

    def init_buffers(params, hp):
        return dict(exp_avg=base.zeros(params), exp_avg_sq=base.zeros(params))

    def update_buffers(grads, state, params, hp):
        base.require_params(params, True, "nadamw")
        c1, c2 = (resolve(c, state.count) for c in complements)
        t = base.step_number(state.count)
        bias_correction1, bias_correction2 = (base.bias_correction(lb, t, state.count) for lb in log_betas)
        step_size = hp["lr"] / bias_correction1
        bias_correction2_sqrt = jnp.sqrt(bias_correction2)

        def leaf(g, p, m, v):
            g = -g if maximize else g
            start = timm_common.decayed(p, hp, state.count)
            m = timm_common.lerp(m, g, c1)
            v = hp["beta2"] * v + c2 * g * g
            n = timm_common.lerp(m, g, c1)
            denom = clipped_denom(g, v, bias_correction2_sqrt, hp, clipping_threshold)
            if caution:
                n = n * timm_common.caution(n, g)
            return base.update_from(p, start, -step_size * (n / denom)), m, v

        updates, m, v = base.leafwise(leaf, grads, params, state.exp_avg, state.exp_avg_sq)
        return updates, dict(exp_avg=m, exp_avg_sq=v)

    return base.transformation(NAdamWState, hyperparams, init_buffers, update_buffers)
