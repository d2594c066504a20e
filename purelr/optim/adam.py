"""``torch.optim.Adam`` (and, with decoupled weight decay, ``torch.optim.AdamW``)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from purelr.optim import base
from purelr.schedules.core import resolve


class AdamState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as optax's states do
    hyperparams: dict[str, jax.Array]
    exp_avg: Any
    exp_avg_sq: Any
    max_exp_avg_sq: Any  # None without amsgrad


def adam(
    lr=1e-3,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=0.0,
    amsgrad: bool = False,
    *,
    maximize: bool = False,
    decoupled_weight_decay: bool = False,
    foreach: bool | None = None,
    capturable: bool = False,
    differentiable: bool = False,
    fused: bool | None = None,
) -> optax.GradientTransformation:
    """Twin of ``torch.optim.Adam``; every number (``betas`` one by one) may be a schedule.

    With ``g = -grad if maximize else grad``, then ``g += weight_decay * param`` (or, decoupled,
    ``param *= 1 - lr * weight_decay``), at update ``t = count + 1``::

        exp_avg = lerp(exp_avg, g, 1 - beta1)
        exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * g * g
        max_exp_avg_sq = max(max_exp_avg_sq, exp_avg_sq)     (amsgrad; used below for exp_avg_sq)
        denom = sqrt(exp_avg_sq) / sqrt(1 - beta2 ** t) + eps
        param -= lr / (1 - beta1 ** t) * exp_avg / denom
    """
    base.device_flags(foreach=foreach, capturable=capturable, differentiable=differentiable, fused=fused)
    hyperparams = base.adam_hyperparams(lr, betas, eps, weight_decay)
    decays = base.maybe_nonzero(hyperparams["weight_decay"])
    complements = base.one_minus(hyperparams["beta1"]), base.one_minus(hyperparams["beta2"])
    log_betas = tuple(base.log_of(c) for c in complements)

    def init_buffers(params, hp):
        return dict(
            exp_avg=base.zeros(params),
            exp_avg_sq=base.zeros(params),
            max_exp_avg_sq=base.zeros(params) if amsgrad else None,
        )

    def update_buffers(grads, state, params, hp):
        base.require_params(params, decays, "adam with weight_decay")
        b2 = hp["beta2"]
        c1, c2 = (resolve(c, state.count) for c in complements)
        t = base.step_number(state.count)
        bias_correction1, bias_correction2 = (base.bias_correction(lb, t, state.count) for lb in log_betas)
        step_size = hp["lr"] / bias_correction1
        bias_correction2_sqrt = jnp.sqrt(bias_correction2)

        def leaf(g, p, m, v, v_max):
            g, start = base.gradient_and_decay(
                g, p, hp, maximize=maximize, weight_decay=decays, decoupled=decoupled_weight_decay
            )
            m = m + c1 * (g - m)
            v = b2 * v + c2 * g * g
            if amsgrad:
                v_max = jnp.maximum(v_max, v)
            denom = jnp.sqrt(v_max if amsgrad else v) / bias_correction2_sqrt + hp["eps"]
            return base.update_from(p, start, -step_size * (m / denom)), m, v, v_max

        updates, m, v, v_max = base.leafwise(leaf, grads, params, state.exp_avg, state.exp_avg_sq, state.max_exp_avg_sq)
        return updates, dict(exp_avg=m, exp_avg_sq=v, max_exp_avg_sq=v_max)

    return base.transformation(AdamState, hyperparams, init_buffers, update_buffers)
