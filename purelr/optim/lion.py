"""timm's ``Lion``: the sign of an interpolated momentum, with decoupled weight decay."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from purelr.optim import base, corrected_decay, timm_common
from purelr.optim.hyperparams import check
from purelr.schedules.core import resolve


class LionState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as optax's states do
    hyperparams: dict[str, jax.Array]
    exp_avg: Any


def lion(
    lr=1e-4,
    betas=(0.9, 0.99),
    weight_decay=0.0,
    caution: bool = False,
    corrected_weight_decay: bool = False,
    maximize: bool = False,
    foreach: bool | None = None,
    *,
    max_lr_snapshot=None,
) -> optax.GradientTransformation:
    """Twin of timm 1.0.31's ``timm.optim.Lion``; every number (``betas`` one by one) may be a schedule.

    With ``g = -grad if maximize else grad`` and ``s = lr`` (or ``lr ** 2 / max_lr_snapshot`` with
    ``corrected_weight_decay``, ``max_lr_snapshot`` defaulting to a constant ``lr``)::

        param *= 1 - s * weight_decay
        u = sign(lerp(exp_avg, g, 1 - beta1));  u *= caution_mask(u, g)   (caution)
        param -= lr * u
        exp_avg = lerp(exp_avg, g, 1 - beta2)

    ``foreach`` is accepted and ignored (torch's single-tensor arithmetic is the reference).
    """
    base.device_flags(foreach=foreach)
    beta1, beta2 = base.check_betas(betas)
    hyperparams = dict(
        lr=check("lr", lr),
        beta1=beta1,
        beta2=beta2,
        weight_decay=check("weight_decay", weight_decay),
        **corrected_decay.snapshot(lr, corrected_weight_decay, max_lr_snapshot),
    )
    complements = base.one_minus(beta1), base.one_minus(beta2)

    def init_buffers(params, hp):
        return dict(exp_avg=base.zeros(params))

    def update_buffers(grads, state, params, hp):
        base.require_params(params, True, "lion")
        c1, c2 = (resolve(c, state.count) for c in complements)

        def leaf(g, p, m):
            g = -g if maximize else g
            start = timm_common.decayed(p, hp, state.count)
            u = jnp.sign(timm_common.lerp(m, g, c1))
            if caution:
                u = u * timm_common.caution(u, g)
            return base.update_from(p, start, -hp["lr"] * u), timm_common.lerp(m, g, c2)

        updates, m = base.leafwise(leaf, grads, params, state.exp_avg)
        return updates, dict(exp_avg=m)

    return base.transformation(LionState, hyperparams, init_buffers, update_buffers)
