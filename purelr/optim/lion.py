"""Lion (Chen et al., 2023, arXiv:2302.06675): the sign of an interpolated momentum, with decoupled
weight decay, as timm 1.0.31 (``timm.optim.Lion``) and lion-pytorch 0.2.5 (``lion_pytorch.Lion``,
``lion_pytorch.cautious_lion.Lion``) step it."""

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
    decoupled_weight_decay: bool = False,
    init_lr=None,
    cautious_factor=1.0,
    cautious_wd: bool = False,
    use_triton: bool = False,
) -> optax.GradientTransformation:
    """Twin of timm 1.0.31's ``timm.optim.Lion`` and of lion-pytorch 0.2.5's ``lion_pytorch.Lion``
    and ``lion_pytorch.cautious_lion.Lion``; every number (``betas`` one by one) may be a schedule.

    With ``g = -grad if maximize else grad``, ``s = lr`` (or ``lr ** 2 / max_lr_snapshot`` with
    ``corrected_weight_decay``, ``max_lr_snapshot`` defaulting to a constant ``lr``) and
    ``wd = weight_decay`` (``weight_decay / init_lr`` with ``decoupled_weight_decay``)::

        u = sign(lerp(exp_avg, g, 1 - beta1))
        u *= caution_mask(u, g)                                            (caution: timm's)
        c = where(u * g > 0, 1, cautious_factor);  u *= c / max(mean(c), 1e-5)   (cautious_factor < 1)
        param *= 1 - s * wd    (cautious_wd: where u * param > 0, the factor rounded to float32)
        param -= lr * u
        exp_avg = lerp(exp_avg, g, 1 - beta2)

    timm's keywords: ``caution``, ``corrected_weight_decay``, ``maximize``, ``foreach`` (accepted
    and ignored). lion-pytorch's: ``decoupled_weight_decay`` divides ``weight_decay`` by
    ``init_lr``, the lr its constructor got (``Lion(params, lr=...)``, 1e-4 by default, the same for
    every param group; here it defaults to a constant ``lr`` and a scheduled ``lr`` needs it);
    ``cautious_factor`` and ``cautious_wd`` are ``cautious_lion.Lion``'s (whose ``cautious_factor``
    defaults to 0: pass ``cautious_factor=0.0`` for its default; 1 turns it off, as there);
    ``use_triton=True`` is refused (a CUDA kernel of the same arithmetic). lion-pytorch computes
    the two interpolations as ``exp_avg * beta + g * (1 - beta)``, torch's ``lerp`` here: the
    same numbers up to a rounding of the buffer.
    """
    base.device_flags(foreach=foreach)
    if use_triton:
        raise ValueError(
            "use_triton=True is not supported: lion-pytorch's Triton kernel is a CUDA kernel of the "
            "same arithmetic; got use_triton=True (pass False)"
        )
    beta1, beta2 = base.check_betas(betas)
    cautious_factor = check("cautious_factor", cautious_factor, maximum=1.0)
    hyperparams = dict(
        lr=check("lr", lr),
        beta1=beta1,
        beta2=beta2,
        weight_decay=check("weight_decay", weight_decay),
        **corrected_decay.snapshot(lr, corrected_weight_decay, max_lr_snapshot),
    )
    if decoupled_weight_decay:
        hyperparams["init_lr"] = _init_lr(lr, init_lr)
    cautious = callable(cautious_factor) or cautious_factor < 1
    if cautious:
        hyperparams["cautious_factor"] = cautious_factor
    complements = base.one_minus(beta1), base.one_minus(beta2)

    def init_buffers(params, hp):
        return dict(exp_avg=base.zeros(params))

    def update_buffers(grads, state, params, hp):
        base.require_params(params, True, "lion")
        c1, c2 = (resolve(c, state.count) for c in complements)
        decay = hp["weight_decay"] / hp["init_lr"] if decoupled_weight_decay else hp["weight_decay"]
        rate = corrected_decay.decay_scale(hp) * decay

        def leaf(g, p, m):
            g = -g if maximize else g
            u = jnp.sign(timm_common.lerp(m, g, c1))
            if caution:
                u = u * timm_common.caution(u, g)
            if cautious:
                scale = jnp.where(u * g > 0, 1.0, hp["cautious_factor"]).astype(u.dtype)
                u = u * (scale / jnp.maximum(jnp.mean(scale), 1e-5))
            factor = 1.0 - rate
            if cautious_wd:  # lion-pytorch's mask is float32 whatever the param's dtype: so is the factor
                factor = jnp.where(u * p > 0, 1.0 - jnp.asarray(rate).astype(jnp.float32), jnp.float32(1.0))
            start = timm_common.stored(p * factor, state.count)
            return base.update_from(p, start, -hp["lr"] * u), timm_common.lerp(m, g, c2)

        updates, m = base.leafwise(leaf, grads, params, state.exp_avg)
        return updates, dict(exp_avg=m)

    return base.transformation(LionState, hyperparams, init_buffers, update_buffers)


def _init_lr(lr, init_lr):
    """lion-pytorch's ``_init_lr`` (the divisor of ``decoupled_weight_decay``): ``init_lr``, or a
    constant ``lr``; positive, as lion-pytorch asserts ``lr > 0``."""
    if init_lr is None:
        if callable(lr):
            raise ValueError(
                "decoupled_weight_decay with a scheduled lr needs init_lr (the lr lion-pytorch's "
                "constructor gets), got init_lr=None"
            )
        init_lr = lr
    return timm_common.positive("init_lr", init_lr)
