"""timm's ``RMSpropTF``: RMSprop as TensorFlow computes it (eps inside the root, ``square_avg``
starting at ones, the lr inside the momentum buffer)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from purelr.optim import base, corrected_decay, timm_common
from purelr.optim.hyperparams import check
from purelr.schedules.core import resolve


class RMSpropTFState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as optax's states do
    hyperparams: dict[str, jax.Array]
    square_avg: Any
    grad_avg: Any  # None unless centered
    momentum_buffer: Any  # None without momentum


def rmsprop_tf(
    lr=1e-2,
    alpha=0.9,
    eps=1e-10,
    weight_decay=0.0,
    momentum=0.0,
    centered: bool = False,
    decoupled_decay: bool = False,
    corrected_weight_decay: bool = False,
    lr_in_momentum: bool = True,
    caution: bool = False,
    foreach: bool | None = None,
    *,
    max_lr_snapshot=None,
) -> optax.GradientTransformation:
    """Twin of timm 1.0.31's ``timm.optim.RMSpropTF``; every number may be a schedule.

    With ``g += weight_decay * param`` (or, ``decoupled_decay``, ``param *= 1 - s * weight_decay``
    where ``s = lr``, or ``lr ** 2 / max_lr_snapshot`` with ``corrected_weight_decay``)::

        square_avg += (1 - alpha) * (g * g - square_avg)            (square_avg starts at 1)
        grad_avg += (1 - alpha) * (g - grad_avg)                    (centered)
        avg = sqrt(square_avg - grad_avg ** 2 + eps)  or  sqrt(square_avg + eps)
        buf = momentum * buf + lr * g / avg;  param -= buf          (momentum > 0, lr_in_momentum)
        buf = momentum * buf + g / avg;  param -= lr * buf          (momentum > 0, otherwise)
        param -= lr * g / avg                                       (momentum == 0)

    ``caution`` multiplies the buffer applied (not the one kept) by timm's cautious mask.
    ``max_lr_snapshot`` is timm's (the constructor's lr): ``lr`` by default, needed with an lr
    schedule and ``corrected_weight_decay``. ``foreach`` is accepted and ignored.
    """
    base.device_flags(foreach=foreach)
    hyperparams = dict(
        lr=check("lr", lr),
        alpha=check("alpha", alpha),
        eps=check("eps", eps),
        weight_decay=check("weight_decay", weight_decay),
        momentum=check("momentum", momentum),
        **corrected_decay.snapshot(lr, corrected_weight_decay, max_lr_snapshot),
    )
    decays = base.maybe_nonzero(hyperparams["weight_decay"])
    has_momentum = base.maybe_nonzero(hyperparams["momentum"])
    complement = base.one_minus(hyperparams["alpha"])

    def init_buffers(params, hp):
        return dict(
            square_avg=base.full(params, 1.0),
            grad_avg=base.zeros(params) if centered else None,
            momentum_buffer=base.zeros(params) if has_momentum else None,
        )

    def update_buffers(grads, state, params, hp):
        base.require_params(params, decays, "rmsprop_tf with weight_decay")
        c, m = resolve(complement, state.count), hp["momentum"]

        def leaf(g, p, square_avg, grad_avg, buf):
            g, start = _decayed(g, p, hp, state.count, decays=decays, decoupled=decoupled_decay)
            square_avg = square_avg + c * (g * g - square_avg)
            if centered:
                grad_avg = grad_avg + c * (g - grad_avg)
                avg = jnp.sqrt(square_avg - grad_avg * grad_avg + hp["eps"])
            else:
                avg = jnp.sqrt(square_avg + hp["eps"])
            if not has_momentum:
                return base.update_from(p, start, -hp["lr"] * (g / avg)), square_avg, grad_avg, None
            if lr_in_momentum:
                new_buf = m * buf + hp["lr"] * (g / avg)
                applied = new_buf * timm_common.caution(new_buf, g) if caution else new_buf
                delta = -applied
            else:
                new_buf = m * buf + g / avg
                applied = new_buf * timm_common.caution(new_buf, g) if caution else new_buf
                delta = -hp["lr"] * applied
            if callable(momentum):
                delta = jnp.where(m > 0, delta, -hp["lr"] * (g / avg))
                new_buf = jnp.where(m > 0, new_buf, buf)
            return base.update_from(p, start, delta), square_avg, grad_avg, new_buf

        updates, square_avg, grad_avg, buf = base.leafwise(
            leaf, grads, params, state.square_avg, state.grad_avg, state.momentum_buffer
        )
        return updates, dict(square_avg=square_avg, grad_avg=grad_avg, momentum_buffer=buf)

    return base.transformation(RMSpropTFState, hyperparams, init_buffers, update_buffers)


def _decayed(g, p, hp, count, *, decays: bool, decoupled: bool):
    """``(g, start)``: ``g + weight_decay * param`` (L2), or ``g`` and the param after timm's
    decoupled ``param *= 1 - wd_scale * weight_decay`` (``start``; ``None`` without decay)."""
    if not decays:
        return g, None
    if decoupled:
        return g, timm_common.decayed(p, hp, count)
    return g + hp["weight_decay"] * p, None
