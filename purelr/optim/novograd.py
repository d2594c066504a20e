"""``timm.optim.NvNovoGrad`` (Ginsburg et al., 2019; NVIDIA's variant, timm's ``novograd``):
momentum over gradients normalized by a per-leaf running average of their squared norm."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from purelr.optim import base
from purelr.optim.corrected_decay import decay_scale, snapshot
from purelr.schedules.core import resolve


class NovoGradState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as optax's states do
    hyperparams: dict[str, jax.Array]
    exp_avg: Any
    exp_avg_sq: Any  # a scalar per leaf
    max_exp_avg_sq: Any  # None without amsgrad


def novograd(
    lr=1e-3,
    betas=(0.95, 0.98),
    eps=1e-8,
    weight_decay=0.0,
    grad_averaging: bool = False,
    amsgrad: bool = False,
    decoupled_decay: bool = False,
    corrected_weight_decay: bool = False,
    *,
    max_lr_snapshot=None,
) -> optax.GradientTransformation:
    """Twin of ``timm.optim.NvNovoGrad``; every number (``betas`` one by one) may be a schedule.
    ``max_lr_snapshot``: see ``purelr.optim.corrected_decay``.

    Per leaf, with ``norm = sum(grad ** 2)``::

        exp_avg_sq = norm if exp_avg_sq == 0 else beta2 * exp_avg_sq + (1 - beta2) * norm
        max_exp_avg_sq = max(max_exp_avg_sq, exp_avg_sq)                  (amsgrad, used below)
        update = grad / (sqrt(exp_avg_sq) + eps) + weight_decay * param   (L2; or decoupled:
                                      param *= 1 - lr * weight_decay, lr ** 2 / max_lr_snapshot corrected)
        exp_avg = beta1 * exp_avg + (1 - beta1 if grad_averaging else 1) * update
        param -= lr * exp_avg

    ``exp_avg_sq`` is kept in the param's dtype (timm: in torch's default dtype, the same when
    torch's default dtype is the params').
    """
    hyperparams = dict(
        base.adam_hyperparams(lr, betas, eps, weight_decay), **snapshot(lr, corrected_weight_decay, max_lr_snapshot)
    )
    decays = base.maybe_nonzero(hyperparams["weight_decay"])
    complements = base.one_minus(hyperparams["beta1"]), base.one_minus(hyperparams["beta2"])

    def init_buffers(params, hp):
        base.check_real("novograd", params)
        scalars = base.buffer(params, lambda p: jnp.zeros((), p.dtype))
        return dict(exp_avg=base.zeros(params), exp_avg_sq=scalars, max_exp_avg_sq=scalars if amsgrad else None)

    def update_buffers(grads, state, params, hp):
        base.require_params(params, decays, "novograd with weight_decay")
        b1, b2 = hp["beta1"], hp["beta2"]
        c1, c2 = (resolve(c, state.count) for c in complements)
        decay = decay_scale(hp) * hp["weight_decay"]

        def leaf(g, p, m, v, v_max):
            norm = jnp.sum(g * g)
            v = jnp.where(v == 0, norm, b2 * v + c2 * norm)
            if amsgrad:
                v_max = jnp.maximum(v_max, v)
            update = g / (jnp.sqrt(v_max if amsgrad else v) + hp["eps"])
            if decays and not decoupled_decay:
                update = update + hp["weight_decay"] * p
            if grad_averaging:
                update = update * c1
            m = b1 * m + update
            start = base.multiplied(p, 1 - decay) if decays and decoupled_decay else None
            return base.update_from(p, start, -hp["lr"] * m), m, v, v_max

        updates, m, v, v_max = base.leafwise(leaf, grads, params, state.exp_avg, state.exp_avg_sq, state.max_exp_avg_sq)
        return updates, dict(exp_avg=m, exp_avg_sq=v, max_exp_avg_sq=v_max)

    return base.transformation(NovoGradState, hyperparams, init_buffers, update_buffers)
