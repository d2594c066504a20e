"""``timm.optim.SGDP`` (Heo et al., 2021): SGD with momentum whose step on a scale-invariant weight
is projected off the weight's radial direction (``purelr.optim.adamp.projection``)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import optax

from purelr.optim import base
from purelr.optim.adamp import LAYOUTS, projected_updates
from purelr.optim.hyperparams import check
from purelr.schedules import validate
from purelr.schedules.core import resolve


class SGDPState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as optax's states do
    hyperparams: dict[str, jax.Array]
    momentum: Any


def sgdp(
    lr,
    momentum=0.0,
    dampening=0.0,
    weight_decay=0.0,
    nesterov: bool = False,
    eps=1e-8,
    delta=0.1,
    wd_ratio=0.1,
    caution: bool = False,
    *,
    layout: str = "torch",
) -> optax.GradientTransformation:
    """Twin of ``timm.optim.SGDP`` (``lr`` required, as timm's); every number may be a schedule.

    From a zero buffer::

        momentum_buf = momentum * momentum_buf + (1 - dampening) * grad
        d = grad + momentum * momentum_buf if nesterov else momentum_buf
        d, ratio = projection(param, grad, d)                   (leaves of 2 or more axes)
        param *= 1 - lr * weight_decay * ratio / (1 - momentum)  (weight_decay != 0)
        param -= lr * d

    ``projection``, ``caution`` and ``layout`` as in ``purelr.optim.adamp.adamp``. The buffer is
    torch's ``state['momentum']``.
    """
    validate.one_of("layout", layout, LAYOUTS)
    hyperparams = dict(
        lr=check("lr", lr),
        momentum=check("momentum", momentum),
        dampening=check("dampening", dampening, minimum=None),
        weight_decay=check("weight_decay", weight_decay),
        eps=check("eps", eps),
        delta=check("delta", delta),
        wd_ratio=check("wd_ratio", wd_ratio),
    )
    decays = base.maybe_nonzero(hyperparams["weight_decay"])
    complement = base.one_minus(hyperparams["dampening"])

    def init_buffers(params, hp):
        base.check_real("sgdp", params)
        return dict(momentum=base.zeros(params))

    def update_buffers(grads, state, params, hp):
        base.require_params(params, True, "sgdp")
        m, c = hp["momentum"], resolve(complement, state.count)

        def leaf(g, buf):
            buf = m * buf + c * g
            return (g + m * buf if nesterov else buf), buf

        directions, buf = base.leafwise(leaf, grads, state.momentum)
        decay = hp["lr"] * hp["weight_decay"] / (1 - m) if decays else None
        updates = projected_updates(
            params, grads, directions, hp, step_size=hp["lr"], decay=decay, caution=caution, layout=layout
        )
        return updates, dict(momentum=buf)

    return base.transformation(SGDPState, hyperparams, init_buffers, update_buffers)
