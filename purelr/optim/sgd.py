"""``torch.optim.SGD``: stochastic gradient descent with momentum, dampening and Nesterov."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from purelr.optim import base
from purelr.optim.hyperparams import check
from purelr.schedules.core import resolve


class SGDState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as optax's states do
    hyperparams: dict[str, jax.Array]
    momentum_buffer: Any  # None without momentum


def sgd(
    lr=1e-3,
    momentum=0.0,
    dampening=0.0,
    weight_decay=0.0,
    nesterov: bool = False,
    *,
    maximize: bool = False,
    foreach: bool | None = None,
    differentiable: bool = False,
    fused: bool | None = None,
) -> optax.GradientTransformation:
    """Twin of ``torch.optim.SGD``; every number may be a schedule.

    With ``g = -grad if maximize else grad`` and ``g += weight_decay * param``::

        buf = g                                          (first update)
        buf = momentum * buf + (1 - dampening) * g       (later updates)
        d = g + momentum * buf if nesterov else buf      (d = g when momentum == 0)
        param -= lr * d

    A momentum schedule is tested per update (torch's ``momentum != 0``); the buffer starts from
    ``g`` at update 0 (torch: at the first update whose momentum is not 0).
    """
    base.device_flags(foreach=foreach, differentiable=differentiable, fused=fused)
    lr = check("lr", lr)
    momentum = check("momentum", momentum)
    weight_decay = check("weight_decay", weight_decay)
    dampening = check("dampening", dampening, minimum=None)
    if nesterov and not callable(momentum) and not callable(dampening) and (momentum <= 0 or dampening != 0):
        raise ValueError(
            f"Nesterov momentum requires a momentum and zero dampening, got "
            f"momentum={momentum!r}, dampening={dampening!r}"
        )
    has_momentum = base.maybe_nonzero(momentum)
    decays = base.maybe_nonzero(weight_decay)
    hyperparams = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay)
    complement = base.one_minus(dampening)
    # Without dampening, the first update's ``momentum * 0 + 1 * g`` from the zero buffer is ``g``
    # already (torch's clone): no select over the buffer is needed.
    starts_from_zeros = not callable(dampening) and dampening == 0

    def init_buffers(params, hp):
        return dict(momentum_buffer=base.zeros(params) if has_momentum else None)

    def update_buffers(grads, state, params, hp):
        base.require_params(params, decays, "sgd with weight_decay")
        m, c = hp["momentum"], resolve(complement, state.count)

        def leaf(g, p, buf):
            g = base.gradient(g, p, hp, maximize=maximize, weight_decay=decays)
            if not has_momentum:
                return -hp["lr"] * g, None
            new_buf = m * buf + c * g
            if not starts_from_zeros:
                new_buf = jnp.where(state.count == 0, g, new_buf)
            d = g + m * new_buf if nesterov else new_buf
            if callable(momentum):
                d, new_buf = jnp.where(m != 0, d, g), jnp.where(m != 0, new_buf, buf)
            return -hp["lr"] * d, new_buf

        updates, buf = base.leafwise(leaf, grads, params, state.momentum_buffer)
        return updates, dict(momentum_buffer=buf)

    return base.transformation(SGDState, hyperparams, init_buffers, update_buffers)
