"""``torch.optim.RAdam``: Adam with the variance rectification of Liu et al. (2019)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from purelr.optim import base
from purelr.schedules.core import resolve


class RAdamState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as optax's states do
    hyperparams: dict[str, jax.Array]
    exp_avg: Any
    exp_avg_sq: Any


def radam(
    lr=1e-3,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=0.0,
    decoupled_weight_decay: bool = False,
    *,
    maximize: bool = False,
    foreach: bool | None = None,
    capturable: bool = False,
    differentiable: bool = False,
) -> optax.GradientTransformation:
    """Twin of ``torch.optim.RAdam``; every number (``betas`` one by one) may be a schedule.

    With ``g = -grad if maximize else grad``, then ``g += weight_decay * param`` (or, decoupled,
    ``param *= 1 - lr * weight_decay``), at ``t = count + 1``::

        exp_avg = lerp(exp_avg, g, 1 - beta1)
        exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * g * g
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 * t * beta2 ** t / (1 - beta2 ** t)
        rect = sqrt((rho_t - 4) (rho_t - 2) rho_inf / ((rho_inf - 4) (rho_inf - 2) rho_t))
        adaptive = sqrt(1 - beta2 ** t) / (sqrt(exp_avg_sq) + eps)
        param -= exp_avg / (1 - beta1 ** t) * lr * (adaptive * rect if rho_t > 5 else 1)
    """
    base.device_flags(foreach=foreach, capturable=capturable, differentiable=differentiable)
    hyperparams = base.adam_hyperparams(lr, betas, eps, weight_decay)
    decays = base.maybe_nonzero(hyperparams["weight_decay"])
    complements = base.one_minus(hyperparams["beta1"]), base.one_minus(hyperparams["beta2"])
    log_betas = tuple(base.log_of(c) for c in complements)

    def init_buffers(params, hp):
        return dict(exp_avg=base.zeros(params), exp_avg_sq=base.zeros(params))

    def update_buffers(grads, state, params, hp):
        base.require_params(params, decays, "radam with weight_decay")
        b2 = hp["beta2"]
        c1, c2 = (resolve(c, state.count) for c in complements)
        t = base.step_number(state.count)
        bias_correction1, bias_correction2 = (base.bias_correction(lb, t, state.count) for lb in log_betas)
        rho_inf = 2 / c2 - 1
        rho_t = rho_inf - 2 * t * (1 - bias_correction2) / bias_correction2
        rectified = rho_t > 5.0
        rect = jnp.sqrt(
            jnp.where(rectified, (rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t), 1.0)
        )

        def leaf(g, p, m, v):
            g, start = base.gradient_and_decay(
                g, p, hp, maximize=maximize, weight_decay=decays, decoupled=decoupled_weight_decay
            )
            m = m + c1 * (g - m)
            v = b2 * v + c2 * g * g
            step = m / bias_correction1 * hp["lr"]
            adaptive = jnp.sqrt(bias_correction2) / (jnp.sqrt(v) + hp["eps"])
            return base.update_from(p, start, -jnp.where(rectified, step * adaptive * rect, step)), m, v

        updates, m, v = base.leafwise(leaf, grads, params, state.exp_avg, state.exp_avg_sq)
        return updates, dict(exp_avg=m, exp_avg_sq=v)

    return base.transformation(RAdamState, hyperparams, init_buffers, update_buffers)
