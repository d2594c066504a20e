"""``torch.optim.NAdam``: Adam with Nesterov momentum and torch's momentum-decay schedule."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from purelr.optim import base
from purelr.schedules.core import resolve


class NAdamState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as optax's states do
    hyperparams: dict[str, jax.Array]
    exp_avg: Any
    exp_avg_sq: Any
    mu_product: jax.Array  # a scalar (torch keeps one per parameter, all equal)


def nadam(
    lr=2e-3,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=0.0,
    momentum_decay=4e-3,
    decoupled_weight_decay: bool = False,
    *,
    maximize: bool = False,
    foreach: bool | None = None,
    capturable: bool = False,
    differentiable: bool = False,
) -> optax.GradientTransformation:
    """Twin of ``torch.optim.NAdam``; every number (``betas`` one by one) may be a schedule.

    With ``g = -grad if maximize else grad``, then ``g += weight_decay * param`` (or, decoupled,
    ``param *= 1 - lr * weight_decay``), at ``t = count + 1``::

        mu(t) = beta1 * (1 - 0.5 * 0.96 ** (t * momentum_decay))
        mu_product *= mu(t)
        exp_avg = lerp(exp_avg, g, 1 - beta1)
        exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * g * g
        denom = sqrt(exp_avg_sq / (1 - beta2 ** t)) + eps
        param -= lr * (1 - mu(t)) / (1 - mu_product) * g / denom
        param -= lr * mu(t + 1) / (1 - mu_product * mu(t + 1)) * exp_avg / denom
    """
    base.device_flags(foreach=foreach, capturable=capturable, differentiable=differentiable)
    hyperparams = base.adam_hyperparams(lr, betas, eps, weight_decay, momentum_decay=momentum_decay)
    decays = base.maybe_nonzero(hyperparams["weight_decay"])
    complements = base.one_minus(hyperparams["beta1"]), base.one_minus(hyperparams["beta2"])
    log_beta2 = base.log_of(complements[1])

    def init_buffers(params, hp):
        return dict(exp_avg=base.zeros(params), exp_avg_sq=base.zeros(params), mu_product=jnp.ones_like(hp["lr"]))

    def update_buffers(grads, state, params, hp):
        base.require_params(params, decays, "nadam with weight_decay")
        b1, b2 = hp["beta1"], hp["beta2"]
        c1, c2 = (resolve(c, state.count) for c in complements)
        t = base.step_number(state.count)
        mu = b1 * (1.0 - 0.5 * 0.96 ** (t * hp["momentum_decay"]))
        mu_next = b1 * (1.0 - 0.5 * 0.96 ** ((t + 1) * hp["momentum_decay"]))
        mu_product = state.mu_product * mu
        grad_coef = -hp["lr"] * (1.0 - mu) / (1.0 - mu_product)
        avg_coef = -hp["lr"] * mu_next / (1.0 - mu_product * mu_next)
        bias_correction2 = base.bias_correction(log_beta2, t, state.count)

        def leaf(g, p, m, v):
            g, start = base.gradient_and_decay(
                g, p, hp, maximize=maximize, weight_decay=decays, decoupled=decoupled_weight_decay
            )
            m = m + c1 * (g - m)
            v = b2 * v + c2 * g * g
            denom = jnp.sqrt(v / bias_correction2) + hp["eps"]
            # torch addcdiv_(t1, t2, value=c): (c * t1) / t2.
            return base.update_from(p, start, grad_coef * g / denom, avg_coef * m / denom), m, v

        updates, m, v = base.leafwise(leaf, grads, params, state.exp_avg, state.exp_avg_sq)
        return updates, dict(exp_avg=m, exp_avg_sq=v, mu_product=mu_product)

    return base.transformation(NAdamState, hyperparams, init_buffers, update_buffers)
