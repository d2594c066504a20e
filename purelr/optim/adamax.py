"""``torch.optim.Adamax``: Adam with an infinity-norm second moment."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from purelr.optim import base
from purelr.schedules.core import resolve


class AdamaxState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as optax's states do
    hyperparams: dict[str, jax.Array]
    exp_avg: Any
    exp_inf: Any


def adamax(
    lr=2e-3,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=0.0,
    foreach: bool | None = None,
    *,
    maximize: bool = False,
    differentiable: bool = False,
    capturable: bool = False,
) -> optax.GradientTransformation:
    """Twin of ``torch.optim.Adamax``; every number (``betas`` one by one) may be a schedule.

    With ``g = -grad if maximize else grad`` and ``g += weight_decay * param``, at ``t = count + 1``::

        exp_avg = lerp(exp_avg, g, 1 - beta1)
        exp_inf = max(beta2 * exp_inf, |g| + eps)
        param -= lr / (1 - beta1 ** t) * exp_avg / exp_inf
    """
    base.device_flags(foreach=foreach, capturable=capturable, differentiable=differentiable)
    hyperparams = base.adam_hyperparams(lr, betas, eps, weight_decay)
    decays = base.maybe_nonzero(hyperparams["weight_decay"])
    complement1 = base.one_minus(hyperparams["beta1"])
    log_beta1 = base.log_of(complement1)

    def init_buffers(params, hp):
        return dict(exp_avg=base.zeros(params), exp_inf=base.zeros(params))

    def update_buffers(grads, state, params, hp):
        base.require_params(params, decays, "adamax with weight_decay")
        c1 = resolve(complement1, state.count)
        clr = hp["lr"] / base.bias_correction(log_beta1, base.step_number(state.count), state.count)

        def leaf(g, p, m, u):
            g = base.gradient(g, p, hp, maximize=maximize, weight_decay=decays)
            m = m + c1 * (g - m)
            u = jnp.maximum(hp["beta2"] * u, jnp.abs(g) + hp["eps"])
            return -clr * (m / u), m, u

        updates, m, u = base.leafwise(leaf, grads, params, state.exp_avg, state.exp_inf)
        return updates, dict(exp_avg=m, exp_inf=u)

    return base.transformation(AdamaxState, hyperparams, init_buffers, update_buffers)
