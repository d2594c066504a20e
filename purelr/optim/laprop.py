"""``timm.optim.LaProp`` (Ziyin et al., 2020): momentum over gradients already normalized by the
second moment, separating momentum from adaptivity."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from purelr.optim import base
from purelr.optim.cautious import cautious
from purelr.optim.corrected_decay import decay_scale, snapshot
from purelr.schedules.core import resolve


class LaPropState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as optax's states do
    hyperparams: dict[str, jax.Array]
    exp_avg: Any
    exp_avg_sq: Any
    exp_avg_lr_1: jax.Array  # scalars: timm keeps the same pair for every param
    exp_avg_lr_2: jax.Array


def laprop(
    lr=4e-4,
    betas=(0.9, 0.999),
    eps=1e-15,
    weight_decay=0.0,
    caution: bool = False,
    corrected_weight_decay: bool = False,
    foreach: bool | None = None,
    *,
    max_lr_snapshot=None,
) -> optax.GradientTransformation:
    """Twin of ``timm.optim.LaProp``; every number (``betas`` one by one) may be a schedule.
    ``foreach`` is accepted and ignored; ``max_lr_snapshot``: see ``purelr.optim.corrected_decay``.

    Each update::

        exp_avg_lr_1 = beta1 * exp_avg_lr_1 + (1 - beta1) * lr       (the lr's running average)
        exp_avg_lr_2 = beta2 * exp_avg_lr_2 + (1 - beta2)
        exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * grad * grad
        exp_avg = beta1 * exp_avg + lr * (1 - beta1) * grad / (sqrt(exp_avg_sq / exp_avg_lr_2) + eps)
        param -= lr / exp_avg_lr_1 * exp_avg                  (0 when exp_avg_lr_1 is 0; exp_avg
                                                               masked with caution)
        param -= lr * weight_decay * param                    (after the step; lr ** 2 / max_lr_snapshot corrected)

    ``exp_avg_lr_1`` and ``exp_avg_lr_2`` are kept in the default float dtype (timm: a Python
    float and a tensor of torch's default dtype).
    """
    base.device_flags(foreach=foreach)
    hyperparams = dict(
        base.adam_hyperparams(lr, betas, eps, weight_decay), **snapshot(lr, corrected_weight_decay, max_lr_snapshot)
    )
    decays = base.maybe_nonzero(hyperparams["weight_decay"])
    complements = base.one_minus(hyperparams["beta1"]), base.one_minus(hyperparams["beta2"])

    def init_buffers(params, hp):
        zero = jnp.zeros((), jnp.result_type(float))
        return dict(exp_avg=base.zeros(params), exp_avg_sq=base.zeros(params), exp_avg_lr_1=zero, exp_avg_lr_2=zero)

    def update_buffers(grads, state, params, hp):
        base.require_params(params, decays, "laprop with weight_decay")
        b1, b2, lr = hp["beta1"], hp["beta2"], hp["lr"]
        c1, c2 = (resolve(c, state.count) for c in complements)
        lr_1 = state.exp_avg_lr_1 * b1 + c1 * lr
        lr_2 = state.exp_avg_lr_2 * b2 + c2
        step_size = jnp.where(lr_1 != 0, lr / jnp.where(lr_1 != 0, lr_1, 1.0), 0.0)
        decay = decay_scale(hp) * hp["weight_decay"]

        def leaf(g, p, m, v):
            v = b2 * v + c2 * g * g
            m = b1 * m + lr * c1 * (g / (jnp.sqrt(v / lr_2) + hp["eps"]))
            direction = cautious(m, g) if caution else m
            step = -step_size * direction
            if not decays:
                return base.update_from(p, None, step), m, v
            stepped = p + step
            return base.update_from(p, stepped, -decay * stepped), m, v

        updates, m, v = base.leafwise(leaf, grads, params, state.exp_avg, state.exp_avg_sq)
        return updates, dict(exp_avg=m, exp_avg_sq=v, exp_avg_lr_1=lr_1, exp_avg_lr_2=lr_2)

    return base.transformation(LaPropState, hyperparams, init_buffers, update_buffers)
