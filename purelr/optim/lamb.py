"""timm's ``Lamb`` (NVIDIA's FusedLAMB variant), with its variants as flags: trust clipping
(``lambc``), decoupled decay (``lambw``), corrected decay (``lambcd``), caution (``clamb``),
``always_adapt``, ``grad_averaging`` and the global grad-norm pre-clip ``max_grad_norm``."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from purelr.optim import base, corrected_decay, timm_common
from purelr.schedules.core import resolve


class LambState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as optax's states do
    hyperparams: dict[str, jax.Array]
    exp_avg: Any
    exp_avg_sq: Any


def lamb(
    lr=1e-3,
    bias_correction: bool = True,
    betas=(0.9, 0.999),
    eps=1e-6,
    weight_decay=0.01,
    grad_averaging: bool = True,
    max_grad_norm=1.0,
    trust_clip: bool = False,
    always_adapt: bool = False,
    caution: bool = False,
    decoupled_decay: bool = False,
    corrected_weight_decay: bool = False,
    foreach: bool | None = None,
    *,
    max_lr_snapshot=None,
) -> optax.GradientTransformation:
    """Twin of timm 1.0.31's ``timm.optim.Lamb``; every number (``betas`` one by one) may be a schedule.

    With ``g = grad / max(global_norm / max_grad_norm, 1)`` (the norm of all gradients the
    transformation is given; no clipping for ``max_grad_norm=None``), at update ``t = count + 1``::

        exp_avg = lerp(exp_avg, g, 1 - beta1)  (grad_averaging)  or  beta1 * exp_avg + g
        exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * g * g
        u = (exp_avg / (1 - beta1 ** t)) / (sqrt(exp_avg_sq) / sqrt(1 - beta2 ** t) + eps)
        u *= caution_mask(u, g)                                          (caution)
        u += weight_decay * param   or, decoupled, param += -s * weight_decay * param
        u *= trust = |param| / |u| (1 where either is 0; min(trust, 1) with trust_clip)
                                                (weight_decay != 0 or always_adapt)
        param -= lr * u

    (no bias correction without ``bias_correction``; ``s = lr``, or ``lr ** 2 / max_lr_snapshot``
    with ``corrected_weight_decay``, ``max_lr_snapshot`` defaulting to a constant ``lr``). Under
    ``optax.multi_transform`` each group sees only its own gradients: build the groups with
    ``max_grad_norm=None`` behind ``grad_clip(max_grad_norm)``, as ``purelr.build`` does for timm
    names. ``foreach`` is accepted and ignored.
    """
    base.device_flags(foreach=foreach)
    hyperparams = base.adam_hyperparams(
        lr, betas, eps, weight_decay, **corrected_decay.snapshot(lr, corrected_weight_decay, max_lr_snapshot)
    )
    if max_grad_norm is not None:
        hyperparams["max_grad_norm"] = timm_common.positive("max_grad_norm", max_grad_norm, ", or None for no clipping")
    decays = base.maybe_nonzero(hyperparams["weight_decay"])
    complements = base.one_minus(hyperparams["beta1"]), base.one_minus(hyperparams["beta2"])
    log_betas = tuple(base.log_of(c) for c in complements)

    def init_buffers(params, hp):
        return dict(exp_avg=base.zeros(params), exp_avg_sq=base.zeros(params))

    def update_buffers(grads, state, params, hp):
        base.require_params(params, True, "lamb")
        if max_grad_norm is not None:
            divisor = clip_divisor(grads, hp["max_grad_norm"])
            grads = jax.tree.map(lambda g: g / divisor, grads)
        c1, c2 = (resolve(c, state.count) for c in complements)
        if bias_correction:
            t = base.step_number(state.count)
            bias_correction1, bias_correction2 = (base.bias_correction(lb, t, state.count) for lb in log_betas)
        else:
            bias_correction1 = bias_correction2 = 1.0
        bias_correction2_sqrt = jnp.sqrt(bias_correction2)

        def leaf(g, p, m, v):
            m = timm_common.lerp(m, g, c1) if grad_averaging else hp["beta1"] * m + g
            v = hp["beta2"] * v + c2 * g * g
            u = (m / bias_correction1) / (jnp.sqrt(v) / bias_correction2_sqrt + hp["eps"])
            if caution:
                u = u * timm_common.caution(u, g)
            start = None
            if decays and decoupled_decay:
                start = p + (-corrected_decay.decay_scale(hp) * hp["weight_decay"]) * p
            elif decays:
                u = u + hp["weight_decay"] * p
            if decays or always_adapt:
                ratio = _trust_ratio(jnp.linalg.norm(p if start is None else start), jnp.linalg.norm(u), trust_clip)
                adapt = always_adapt or not callable(weight_decay)
                u = u * (ratio if adapt else jnp.where(hp["weight_decay"] != 0, ratio, 1.0))
            return base.update_from(p, start, -hp["lr"] * u), m, v

        updates, m, v = base.leafwise(leaf, grads, params, state.exp_avg, state.exp_avg_sq)
        return updates, dict(exp_avg=m, exp_avg_sq=v)

    return base.transformation(LambState, hyperparams, init_buffers, update_buffers)


def _trust_ratio(w_norm, u_norm, trust_clip: bool):
    """``w_norm / u_norm``, 1 where either norm is 0; at most 1 with ``trust_clip`` (LAMBC)."""
    ratio = jnp.where((w_norm > 0) & (u_norm > 0), w_norm / jnp.where(u_norm > 0, u_norm, 1.0), 1.0)
    return jnp.minimum(ratio, 1.0) if trust_clip else ratio


def clip_divisor(grads, max_grad_norm):
    """timm Lamb's ``max(global_norm / max_grad_norm, 1)``: the 2-norm of the leaves' 2-norms."""
    norms = [jnp.linalg.norm(g) for g in jax.tree.leaves(grads) if not isinstance(g, optax.MaskedNode)]
    return jnp.maximum(jnp.linalg.norm(jnp.stack(norms)) / max_grad_norm, 1.0)


def grad_clip(max_grad_norm) -> optax.GradientTransformation:
    """timm Lamb's global grad-norm pre-clip on its own, ``grad / max(global_norm / max_grad_norm,
    1)`` (``max_grad_norm`` a number or a schedule): before an ``optax.multi_transform`` of
    ``lamb(max_grad_norm=None)`` groups it divides as timm's Lamb does over all its groups."""
    max_grad_norm = timm_common.positive("max_grad_norm", max_grad_norm, ", or None for no clipping")

    def update_fn(grads, state, params=None):
        divisor = clip_divisor(grads, resolve(max_grad_norm, state.count))
        return (
            jax.tree.map(lambda g: g / divisor, grads),
            optax.ScaleByScheduleState(count=optax.safe_int32_increment(state.count)),
        )

    return optax.GradientTransformation(
        lambda params: optax.ScaleByScheduleState(count=jnp.zeros((), jnp.int32)), update_fn
    )
