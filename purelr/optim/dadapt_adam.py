"""D-Adaptation's DAdaptAdam (Defazio and Mishchenko, 2023), twin of ``dadaptation.DAdaptAdam`` (dadaptation
3.2): see ``purelr.optim.global_groups`` for what the D-Adaptation twins share."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from purelr.optim import base
from purelr.optim import global_groups as gg


class DAdaptAdamState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]
    hyperparams: dict[str, Any]
    k: jax.Array
    d: jax.Array
    numerator_weighted: jax.Array
    exp_avg: Any
    exp_avg_sq: Any
    s: Any


def dadapt_adam(
    lr=1.0,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=0.0,
    log_every: int = 0,
    decouple: bool = False,
    use_bias_correction: bool = False,
    d0=1e-6,
    growth_rate=math.inf,
    fsdp_in_use: bool = False,
    *,
    groups: gg.GroupsArg = None,
    param_labels=None,
) -> optax.GradientTransformation:
    """Twin of ``dadaptation.DAdaptAdam``.

    With ``dlr = d * lr * c`` (``c = sqrt(1 - beta2 ** (k + 1)) / (1 - beta1 ** (k + 1))`` with
    ``use_bias_correction``, else 1), ``b = sqrt(beta2)``, ``r`` a group's ``layer_scale``
    (default 1) and ``g`` the gradient (plus ``weight_decay * p`` unless ``decouple``), for every
    leaf of a group whose lr is not 0::

        numerator_acc += r * dlr * <g, s / (sqrt(exp_avg_sq) + eps)>
        exp_avg = beta1 * exp_avg + r * dlr * (1 - beta1) * g
        exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * g * g
        s = b * s + dlr * (1 - b) * g;  sk_l1 += r * |s|_1

    ``numerator_weighted = b * numerator_weighted + (1 - b) * numerator_acc``, ``d = max(d,
    min(numerator_weighted / ((1 - b) * sk_l1), d * growth_rate))``; then every leaf:
    ``p *= 1 - weight_decay * dlr`` (``decouple``), ``p -= exp_avg / (sqrt(exp_avg_sq) + eps)``.
    A group may set ``lr=0`` (left out of the sums and moments), ``weight_decay``, ``eps`` and
    ``layer_scale``.
    """
    beta1, beta2 = base.check_betas(betas)
    hyperparams = dict(
        lr=gg.positive("lr", lr),
        beta1=beta1,
        beta2=beta2,
        eps=gg.positive("eps", eps),
        weight_decay=gg.number("weight_decay", weight_decay, None),
        d0=gg.positive("d0", d0),
        growth_rate=gg.growth("growth_rate", growth_rate),
    )
    gg.flags(decouple=decouple, use_bias_correction=use_bias_correction, fsdp_in_use=fsdp_in_use)
    spec = gg.Groups(
        "dadapt_adam",
        groups,
        param_labels,
        dict(lr=gg.zero_lr, weight_decay=gg.number, eps=gg.positive, layer_scale=gg.number),
    )
    decays = base.maybe_nonzero(weight_decay) or any("weight_decay" in o for o in spec.overrides.values())

    def init_fields(leaves, treedef, hp):
        return dict(
            k=jnp.zeros((), jnp.int32),
            d=gg.scalar(hp["d0"], leaves),
            numerator_weighted=gg.scalar(0.0, leaves),
            exp_avg=gg.filled(leaves, treedef),
            exp_avg_sq=gg.filled(leaves, treedef),
            s=gg.filled(leaves, treedef),
        )

    def update_fields(grads, params, state, hp, leaf_hp, labels, treedef):
        active = [lr_ != 0 for lr_ in spec.static("lr", labels, 1.0)]
        beta1, beta2 = hp["beta1"], hp["beta2"]
        d = state.d
        if use_bias_correction:
            t = (state.k + 1).astype(d.dtype)
            bias_correction = jnp.sqrt(1 - beta2**t) / (1 - beta1**t)
        else:
            bias_correction = 1.0
        dlr = d * gg.largest_lr(hp, active) * bias_correction
        sqrt_beta2 = jnp.sqrt(beta2)
        buffers = [treedef.flatten_up_to(tree) for tree in (state.exp_avg, state.exp_avg_sq, state.s)]
        numerators, sk_l1, columns = [], [], []
        for g, p, m, v, s, on, h in zip(grads, params, *buffers, active, leaf_hp):
            if decays and not decouple:
                g = g + h["weight_decay"] * p
            r = h.get("layer_scale", 1.0)
            if on:
                numerators.append(r * dlr * jnp.vdot(g, s / (jnp.sqrt(v) + h["eps"])))
                m = m * beta1 + (r * dlr * (1 - beta1)) * g
                v = v * beta2 + (1 - beta2) * g * g
                s = s * sqrt_beta2 + (dlr * (1 - sqrt_beta2)) * g
                sk_l1.append(r * jnp.sum(jnp.abs(s)))
            columns.append((m, v, s))
        numerator_weighted = sqrt_beta2 * state.numerator_weighted + (1 - sqrt_beta2) * gg.total(numerators)
        sk_l1 = gg.total(sk_l1)  # type: ignore[assignment]
        skip = sk_l1 == 0
        d_hat = numerator_weighted / ((1 - sqrt_beta2) * sk_l1)
        d_new = jnp.where(gg.largest_lr(hp, active) > 0, gg.d_step(d, d_hat, hp["growth_rate"]), d)
        updates = []
        for (m, v, _), p, h in zip(columns, params, leaf_hp):
            start = p + (-h["weight_decay"] * dlr) * p if decays and decouple else None
            step = (-1 * m) / (jnp.sqrt(v) + h["eps"])
            updates.append(jnp.where(skip, jnp.zeros_like(p), base.update_from(p, start, step)))
        m, v, s = (treedef.unflatten(list(column)) for column in zip(*columns))
        scalars = dict(k=state.k + 1, d=d_new, numerator_weighted=numerator_weighted)
        return updates, dict(gg.kept(skip, scalars, state), exp_avg=m, exp_avg_sq=v, s=s)

    return gg.transformation("dadapt_adam", DAdaptAdamState, hyperparams, spec, init_fields, update_fields)
