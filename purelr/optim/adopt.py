"""``timm.optim.Adopt`` (Taniguchi et al., 2024): Adam that normalizes the gradient by the second
moment of the previous steps, so that it converges with any ``beta2``."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from purelr.optim import base
from purelr.optim import hyperparams as hp_lib
from purelr.optim.adafactor import torch_lerp
from purelr.optim.cautious import cautious
from purelr.optim.corrected_decay import decay_scale, snapshot
from purelr.schedules.core import as_values, resolve


class AdoptState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as optax's states do
    hyperparams: dict[str, jax.Array]
    exp_avg: Any
    exp_avg_sq: Any


def adopt(
    lr=1e-3,
    betas=(0.9, 0.9999),
    eps=1e-6,
    clip_exp=0.333,
    weight_decay=0.0,
    decoupled: bool = False,
    corrected_weight_decay: bool = False,
    *,
    caution: bool = False,
    foreach: bool | None = None,
    maximize: bool = False,
    capturable: bool = False,
    differentiable: bool = False,
    max_lr_snapshot=None,
) -> optax.GradientTransformation:
    """Twin of ``timm.optim.Adopt``; every number (``betas`` one by one, ``clip_exp`` unless
    ``None``) may be a schedule. ``max_lr_snapshot``: see ``purelr.optim.corrected_decay``.

    With ``g = -grad if maximize else grad`` (``g += weight_decay * param`` unless ``decoupled``),
    the first update only sets ``exp_avg_sq = g * g``; at each later ``t = count + 1``::

        param -= lr * weight_decay * param                   (decoupled; lr ** 2 / max_lr_snapshot corrected)
        n = clamp(g / max(sqrt(exp_avg_sq), eps), -(t - 1) ** clip_exp, (t - 1) ** clip_exp)
        exp_avg = lerp(exp_avg, n, 1 - beta1)
        param -= lr * exp_avg                                (exp_avg masked with caution)
        exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * g * g
    """
    base.device_flags(foreach=foreach, capturable=capturable, differentiable=differentiable)
    more = {} if clip_exp is None else dict(clip_exp=hp_lib.check("clip_exp", clip_exp, minimum=None))
    hyperparams = dict(
        base.adam_hyperparams(lr, betas, eps, weight_decay, **more),
        **snapshot(lr, corrected_weight_decay, max_lr_snapshot),
    )
    decays = base.maybe_nonzero(hyperparams["weight_decay"])
    complements = base.one_minus(hyperparams["beta1"]), base.one_minus(hyperparams["beta2"])

    def init_buffers(params, hp):
        return dict(exp_avg=base.zeros(params), exp_avg_sq=base.zeros(params))

    def update_buffers(grads, state, params, hp):
        base.require_params(params, decays, "adopt with weight_decay")
        b2 = hp["beta2"]
        c1, c2 = (resolve(c, state.count) for c in complements)
        first = state.count == 0
        clip = None if clip_exp is None else as_values(state.count) ** hp["clip_exp"]
        decay = decay_scale(hp) * hp["weight_decay"]

        def leaf(g, p, m, v):
            g = base.gradient(g, p, hp, maximize=maximize, weight_decay=decays and not decoupled)
            normed = g / jnp.maximum(jnp.sqrt(v), hp["eps"])
            if clip is not None:
                normed = jnp.clip(normed, -clip, clip)
            new_m = torch_lerp(m, normed, c1)
            direction = cautious(new_m, g) if caution else new_m
            deltas = ((-decay * p,) if decays and decoupled else ()) + (-hp["lr"] * direction,)
            update = base.update_from(p, None, *deltas)
            return (
                jnp.where(first, jnp.zeros_like(update), update),
                jnp.where(first, m, new_m),
                jnp.where(first, g * g, b2 * v + c2 * g * g),
            )

        updates, m, v = base.leafwise(leaf, grads, params, state.exp_avg, state.exp_avg_sq)
        return updates, dict(exp_avg=m, exp_avg_sq=v)

    return base.transformation(AdoptState, hyperparams, init_buffers, update_buffers)
