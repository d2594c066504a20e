"""timm's ``NAdamLegacy`` (its NAdam from before ``torch.optim.NAdam``; the timm name ``nadamlegacy``)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from purelr.optim import base
from purelr.schedules.core import resolve


class NAdamLegacyState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]
    hyperparams: dict[str, jax.Array]
    exp_avg: Any
    exp_avg_sq: Any
    m_schedule: jax.Array  # a scalar (timm keeps one per parameter, all equal)


def nadam_legacy(
    lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, schedule_decay=4e-3
) -> optax.GradientTransformation:
    """Twin of timm 1.0.31's ``timm.optim.NAdamLegacy``; every number may be a schedule.

    With ``g = grad + weight_decay * param``, at ``t = count + 1``::

        mu(t) = beta1 * (1 - 0.5 * 0.96 ** (t * schedule_decay))
        m_schedule *= mu(t)
        exp_avg = beta1 * exp_avg + (1 - beta1) * g;  exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * g * g
        denom = sqrt(exp_avg_sq) / sqrt(1 - beta2 ** t) + eps
        param -= lr * (1 - mu(t)) / (1 - m_schedule) * g / denom
        param -= lr * mu(t + 1) / (1 - m_schedule * mu(t + 1)) * exp_avg / denom

    timm validates only ``lr >= 0``; here the betas, ``eps`` and ``weight_decay`` are checked as
    torch's Adam checks them.
    """
    hyperparams = base.adam_hyperparams(lr, betas, eps, weight_decay, schedule_decay=schedule_decay)
    decays, complements, log_betas = base.adam_moments(hyperparams)

    def init_buffers(params, hp):
        return dict(base.moment_buffers(params), m_schedule=jnp.ones_like(hp["lr"]))

    def update_buffers(grads, state, params, hp):
        base.require_params(params, decays, "nadam_legacy with weight_decay")
        c1, c2 = (resolve(c, state.count) for c in complements)
        t = base.step_number(state.count)
        mu = hp["beta1"] * (1.0 - 0.5 * 0.96 ** (t * hp["schedule_decay"]))
        mu_next = hp["beta1"] * (1.0 - 0.5 * 0.96 ** ((t + 1) * hp["schedule_decay"]))
        m_schedule = state.m_schedule * mu
        grad_coef = -hp["lr"] * (1.0 - mu) / (1.0 - m_schedule)
        avg_coef = -hp["lr"] * mu_next / (1.0 - m_schedule * mu_next)
        bias_correction2_sqrt = jnp.sqrt(base.bias_correction(log_betas[1], t, state.count))

        def leaf(g, p, m, v):
            g = base.gradient(g, p, hp, maximize=False, weight_decay=decays)
            m = base.multiplied(m, hp["beta1"]) + c1 * g
            v = hp["beta2"] * v + c2 * g * g
            denom = jnp.sqrt(v) / bias_correction2_sqrt + hp["eps"]
            return base.update_from(p, None, grad_coef * g / denom, avg_coef * m / denom), m, v

        updates, m, v = base.leafwise(leaf, grads, params, state.exp_avg, state.exp_avg_sq)
        return updates, dict(exp_avg=m, exp_avg_sq=v, m_schedule=m_schedule)

    return base.transformation(NAdamLegacyState, hyperparams, init_buffers, update_buffers)
