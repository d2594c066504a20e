"""timm's ``Lars``: SGD on gradients scaled by a layer-wise trust ratio (LARS), with LARC's
trust clipping and Nesterov momentum as flags (timm's ``lars``, ``larc``, ``nlars``, ``nlarc``),
and as options what MMPretrain's ``LARS`` does otherwise (``lars_exclude``, ``lr_in_buffer``)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from purelr.optim import base, timm_common
from purelr.optim.hyperparams import check


class LarsState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as optax's states do
    hyperparams: dict[str, jax.Array]
    momentum_buffer: Any  # None without momentum


def lars(
    lr=1.0,
    momentum=0.0,
    dampening=0.0,
    weight_decay=0.0,
    nesterov: bool = False,
    trust_coeff=0.001,
    eps=1e-8,
    trust_clip: bool = False,
    always_adapt: bool = False,
    foreach: bool | None = None,
    *,
    lars_exclude: bool = False,
    lr_in_buffer: bool = False,
) -> optax.GradientTransformation:
    """Twin of timm 1.0.31's ``timm.optim.Lars``; every number may be a schedule.

    Where ``weight_decay != 0`` or ``always_adapt``, with ``w = |param|`` and ``n = |grad|``::

        trust = trust_coeff * w / (n + w * weight_decay + eps)    (1 where w or n is 0)
        trust = min(trust / lr, 1)                                (trust_clip: LARC)
        g = (grad + weight_decay * param) * trust

    (``g = grad`` otherwise), then torch's SGD momentum: ``buf = g`` at the first update, later
    ``buf = momentum * buf + (1 - dampening) * g``; ``d = g + momentum * buf`` (nesterov) or
    ``buf``; ``param -= lr * d``. ``foreach`` is accepted and ignored.

    MMPretrain 1.2.0's ``LARS`` (``purelr.optim.openmmlab.mmpretrain_lars``) differs in two ways,
    each an option: ``lars_exclude`` (its parameter-group key) takes ``trust = 1`` and still adds
    the weight decay, ``g = grad + weight_decay * param``; ``lr_in_buffer`` scales ``g`` by ``lr``
    before the momentum (``g = (grad + weight_decay * param) * (trust * lr)``) and moves the param
    by ``d`` itself, so a scheduled lr acts on the step taken, not on the momentum gathered.
    """
    base.device_flags(foreach=foreach)
    hyperparams = dict(
        lr=check("lr", lr),
        momentum=check("momentum", momentum),
        dampening=check("dampening", dampening, minimum=None),
        weight_decay=check("weight_decay", weight_decay),
        trust_coeff=check("trust_coeff", trust_coeff),
        eps=check("eps", eps),
    )
    timm_common.nesterov_check(nesterov, hyperparams["momentum"], hyperparams["dampening"])
    has_momentum = base.maybe_nonzero(hyperparams["momentum"])
    adapts = always_adapt or base.maybe_nonzero(hyperparams["weight_decay"])
    first_from_zeros = not callable(dampening) and dampening == 0

    def init_buffers(params, hp):
        return dict(momentum_buffer=base.zeros(params) if has_momentum else None)

    def update_buffers(grads, state, params, hp):
        base.require_params(params, adapts or lars_exclude, "lars with weight_decay, always_adapt or lars_exclude")

        def in_buffer(x):
            return x * hp["lr"] if lr_in_buffer else x

        def leaf(g, p, buf):
            if lars_exclude:
                g = in_buffer(g + hp["weight_decay"] * p)
            elif adapts:
                trust = _trust_ratio(jnp.linalg.norm(p), jnp.linalg.norm(g), hp, trust_clip)
                scaled = (g + hp["weight_decay"] * p) * in_buffer(trust)
                g = (
                    scaled
                    if always_adapt or not callable(weight_decay)
                    else jnp.where(hp["weight_decay"] != 0, scaled, in_buffer(g))
                )
            else:
                g = in_buffer(g)
            if has_momentum:
                g, buf = timm_common.sgd_momentum(
                    g,
                    buf,
                    hp,
                    state.count,
                    nesterov=nesterov,
                    first_from_zeros=first_from_zeros,
                    scheduled=callable(momentum),
                )
            return (-g if lr_in_buffer else -hp["lr"] * g), buf

        updates, buf = base.leafwise(leaf, grads, params, state.momentum_buffer)
        return updates, dict(momentum_buffer=buf)

    return base.transformation(LarsState, hyperparams, init_buffers, update_buffers)


def _trust_ratio(w_norm, g_norm, hp, trust_clip: bool):
    ratio = hp["trust_coeff"] * w_norm / (g_norm + w_norm * hp["weight_decay"] + hp["eps"])
    ratio = jnp.where((w_norm > 0) & (g_norm > 0), ratio, 1.0)
    return jnp.minimum(ratio / hp["lr"], 1.0) if trust_clip else ratio
