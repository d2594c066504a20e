"""timm's ``SGDW``: torch's SGD with decoupled weight decay (timm's ``sgdw``, ``nesterovw``)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import optax

from purelr.optim import base, corrected_decay, timm_common
from purelr.optim.hyperparams import check


class SGDWState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as optax's states do
    hyperparams: dict[str, jax.Array]
    momentum_buffer: Any  # None without momentum


def sgdw(
    lr=1e-3,
    momentum=0.0,
    dampening=0.0,
    weight_decay=0.0,
    nesterov: bool = False,
    *,
    caution: bool = False,
    corrected_weight_decay: bool = False,
    maximize: bool = False,
    foreach: bool | None = None,
    differentiable: bool = False,
    max_lr_snapshot=None,
) -> optax.GradientTransformation:
    """Twin of timm 1.0.31's ``timm.optim.SGDW``; every number may be a schedule.

    With ``g = -grad if maximize else grad`` and ``s = lr`` (or ``lr ** 2 / max_lr_snapshot`` with
    ``corrected_weight_decay``, ``max_lr_snapshot`` defaulting to a constant ``lr``)::

        param *= 1 - s * weight_decay
        buf = g  (first update),  buf = momentum * buf + (1 - dampening) * g  (later)
        d = g + momentum * buf if nesterov else buf;  d *= caution_mask(d, g)  (caution)
        param -= lr * d                                    (d = g when momentum == 0)

    ``foreach`` and ``differentiable`` are accepted and ignored.
    """
    base.device_flags(foreach=foreach, differentiable=differentiable)
    hyperparams = dict(
        lr=check("lr", lr),
        momentum=check("momentum", momentum),
        dampening=check("dampening", dampening, minimum=None),
        weight_decay=check("weight_decay", weight_decay),
        **corrected_decay.snapshot(lr, corrected_weight_decay, max_lr_snapshot),
    )
    timm_common.nesterov_check(nesterov, hyperparams["momentum"], hyperparams["dampening"])
    has_momentum = base.maybe_nonzero(hyperparams["momentum"])
    first_from_zeros = not callable(dampening) and dampening == 0

    def init_buffers(params, hp):
        return dict(momentum_buffer=base.zeros(params) if has_momentum else None)

    def update_buffers(grads, state, params, hp):
        base.require_params(params, True, "sgdw")

        def leaf(g, p, buf):
            g = -g if maximize else g
            start = timm_common.decayed(p, hp, state.count)
            if not has_momentum:
                return base.update_from(p, start, -hp["lr"] * g), None
            d, new_buf = timm_common.sgd_momentum(
                g,
                buf,
                hp,
                state.count,
                nesterov=nesterov,
                first_from_zeros=first_from_zeros,
                scheduled=callable(momentum),
                cautious=caution,
            )
            return base.update_from(p, start, -hp["lr"] * d), new_buf

        updates, buf = base.leafwise(leaf, grads, params, state.momentum_buffer)
        return updates, dict(momentum_buffer=buf)

    return base.transformation(SGDWState, hyperparams, init_buffers, update_buffers)
