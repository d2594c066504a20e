"""``torch.optim.RMSprop``: steps scaled by a running root-mean-square of gradients."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from purelr.optim import base
from purelr.optim.hyperparams import check
from purelr.schedules.core import resolve


class RMSpropState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as optax's states do
    hyperparams: dict[str, jax.Array]
    square_avg: Any
    grad_avg: Any  # None unless centered
    momentum_buffer: Any  # None without momentum


def rmsprop(
    lr=1e-2,
    alpha=0.99,
    eps=1e-8,
    weight_decay=0.0,
    momentum=0.0,
    centered: bool = False,
    capturable: bool = False,
    foreach: bool | None = None,
    maximize: bool = False,
    differentiable: bool = False,
) -> optax.GradientTransformation:
    """Twin of ``torch.optim.RMSprop``; every number may be a schedule.

    With ``g = -grad if maximize else grad`` and ``g += weight_decay * param``::

        square_avg = alpha * square_avg + (1 - alpha) * g * g
        grad_avg = lerp(grad_avg, g, 1 - alpha)                         (centered)
        avg = sqrt(square_avg - grad_avg ** 2 if centered else square_avg) + eps
        buf = momentum * buf + g / avg;  param -= lr * buf              (momentum > 0)
        param -= lr * g / avg                                           (otherwise)

    eps is added outside the root and momentum acts before the lr (``optax.rmsprop`` differs on both).
    """
    base.device_flags(foreach=foreach, capturable=capturable, differentiable=differentiable)
    lr = check("lr", lr)
    alpha = check("alpha", alpha)
    eps = check("eps", eps)
    weight_decay = check("weight_decay", weight_decay)
    momentum = check("momentum", momentum)
    decays = base.maybe_nonzero(weight_decay)
    has_momentum = base.maybe_nonzero(momentum)
    hyperparams = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum)
    complement = base.one_minus(alpha)

    def init_buffers(params, hp):
        return dict(
            square_avg=base.zeros(params),
            grad_avg=base.zeros(params) if centered else None,
            momentum_buffer=base.zeros(params) if has_momentum else None,
        )

    def update_buffers(grads, state, params, hp):
        base.require_params(params, decays, "rmsprop with weight_decay")
        a, m, c = hp["alpha"], hp["momentum"], resolve(complement, state.count)

        def leaf(g, p, square_avg, grad_avg, buf):
            g = base.gradient(g, p, hp, maximize=maximize, weight_decay=decays)
            square_avg = a * square_avg + c * g * g
            if centered:
                grad_avg = grad_avg + c * (g - grad_avg)
                avg = jnp.sqrt(square_avg - grad_avg * grad_avg) + hp["eps"]
            else:
                avg = jnp.sqrt(square_avg) + hp["eps"]
            if not has_momentum:
                return -hp["lr"] * (g / avg), square_avg, grad_avg, None
            new_buf = m * buf + g / avg
            if callable(momentum):
                return (
                    -hp["lr"] * jnp.where(m > 0, new_buf, g / avg),
                    square_avg,
                    grad_avg,
                    jnp.where(m > 0, new_buf, buf),
                )
            return -hp["lr"] * new_buf, square_avg, grad_avg, new_buf

        updates, square_avg, grad_avg, buf = base.leafwise(
            leaf, grads, params, state.square_avg, state.grad_avg, state.momentum_buffer
        )
        return updates, dict(square_avg=square_avg, grad_avg=grad_avg, momentum_buffer=buf)

    return base.transformation(RMSpropState, hyperparams, init_buffers, update_buffers)
