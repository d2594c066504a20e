"""``timm.optim.MADGRAD`` (Defazio & Jelassi, 2021): momentumized, adaptive, dual-averaged
gradient descent."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from purelr.optim import base
from purelr.optim.hyperparams import check


class MADGRADState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as optax's states do
    hyperparams: dict[str, jax.Array]
    grad_sum_sq: Any
    s: Any
    x0: Any  # None when momentum is the constant 0


def madgrad(
    lr=1e-2, momentum=0.9, weight_decay=0.0, eps=1e-6, decoupled_decay: bool = False
) -> optax.GradientTransformation:
    """Twin of ``timm.optim.MADGRAD`` (dense gradients); every number may be a schedule.

    With ``lamb = (lr + eps) * sqrt(t)`` at ``t = count + 1``, ``param *= 1 - lr * weight_decay``
    (``decoupled_decay``) or ``grad += weight_decay * param``::

        x0 = param + s / (grad_sum_sq ** (1/3) + eps)       (momentum == 0; else the first param)
        grad_sum_sq += lamb * grad * grad
        s += lamb * grad
        z = x0 - s / (grad_sum_sq ** (1/3) + eps)
        param = momentum * param + (1 - momentum) * z       (param = z when momentum == 0)
    """
    lr = check("lr", lr)
    if not callable(lr) and lr <= 0:
        raise ValueError(f"Invalid lr: {lr!r} (must be > 0, as timm's MADGRAD)")
    hyperparams = dict(
        lr=lr,
        momentum=check("momentum", momentum, maximum=1.0, maximum_open=True),
        weight_decay=check("weight_decay", weight_decay),
        eps=check("eps", eps),
    )
    decays = base.maybe_nonzero(hyperparams["weight_decay"])
    has_momentum = base.maybe_nonzero(hyperparams["momentum"])

    def init_buffers(params, hp):
        return dict(
            grad_sum_sq=base.zeros(params),
            s=base.zeros(params),
            x0=base.buffer(params, jnp.array) if has_momentum else None,
        )

    def update_buffers(grads, state, params, hp):
        base.require_params(params, True, "madgrad")
        eps, momentum = hp["eps"], hp["momentum"]
        lamb = (hp["lr"] + eps) * jnp.sqrt(base.step_number(state.count))
        ck = 1 - momentum

        def leaf(g, param, grad_sum_sq, s, x0):
            p = param
            if decays and decoupled_decay:
                p = base.multiplied(p, 1 - hp["lr"] * hp["weight_decay"])
            elif decays:
                g = g + hp["weight_decay"] * p
            dual_start = p + s / (grad_sum_sq ** (1 / 3) + eps)
            grad_sum_sq = grad_sum_sq + lamb * g * g
            s = s + lamb * g
            z = (dual_start if x0 is None else jnp.where(momentum == 0, dual_start, x0)) - s / (
                grad_sum_sq ** (1 / 3) + eps
            )
            new = z if x0 is None else jnp.where(momentum == 0, z, p * (1 - ck) + ck * z)
            return base.update_from(param, new), grad_sum_sq, s, x0

        updates, grad_sum_sq, s, x0 = base.leafwise(leaf, grads, params, state.grad_sum_sq, state.s, state.x0)
        return updates, dict(grad_sum_sq=grad_sum_sq, s=s, x0=x0)

    return base.transformation(MADGRADState, hyperparams, init_buffers, update_buffers)
