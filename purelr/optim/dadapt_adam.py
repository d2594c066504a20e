"""D-Adaptation's DAdaptAdam (Defazio and Mishchenko, 2023), twin of ``dadaptation.DAdaptAdam`` (dadaptation
3.2): see ``purelr.optim.global_groups`` for what the D-Adaptation twins share."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from purelr.optim import base
from purelr.optim import double_float as df
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
    low: dict[str, jax.Array]  # the low halves of d, numerator_weighted (purelr.optim.double_float)


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
        dtype = gg.scalar(0.0, leaves).dtype
        return dict(
            k=jnp.zeros((), jnp.int32),
            **gg.wide_init(dict(d=df.hyper(hyperparams["d0"], hp["d0"], dtype), numerator_weighted=df.of(0.0, dtype))),
            exp_avg=gg.filled(leaves, treedef),
            exp_avg_sq=gg.filled(leaves, treedef),
            s=gg.filled(leaves, treedef),
        )

    def update_fields(grads, params, state, hp, leaf_hp, labels, treedef):
        active = [lr_ != 0 for lr_ in spec.static("lr", labels, 1.0)]
        scalars = gg.wide_scalars(state, ("d", "numerator_weighted"))
        d, dtype = scalars["d"], state.d.dtype

        def given(name, h=hp, label=None, default=None):  # the original's Python float
            return df.hyper(spec.given(hyperparams, name, label, default), h.get(name, default), dtype)

        beta1, beta2 = given("beta1"), given("beta2")
        lr = given("lr") if any(active) else df.of(0.0, dtype)
        dlr = d * lr
        if use_bias_correction:
            t = state.k + 1
            dlr = dlr * ((1 - beta2**t).sqrt() / (1 - beta1**t))
        sqrt_beta2 = beta2.sqrt()
        v_alpha, s_alpha = (1 - beta2).f32(), (dlr * (1 - sqrt_beta2)).f32()
        buffers = [treedef.flatten_up_to(tree) for tree in (state.exp_avg, state.exp_avg_sq, state.s)]
        numerators, sk_l1, columns = [], [], []
        for g, p, m, v, s, on, h, label in zip(grads, params, *buffers, active, leaf_hp, labels):
            if decays and not decouple:
                g = g + h["weight_decay"] * p
            if on:
                r_dlr = given("layer_scale", h, label, 1.0) * dlr
                numerators.append(r_dlr * df.of(jnp.vdot(g, s / (jnp.sqrt(v) + h["eps"])), dtype))
                m = m * beta1.f32() + (r_dlr * (1 - beta1)).f32() * g
                v = v * beta2.f32() + v_alpha * g * g
                s = s * sqrt_beta2.f32() + s_alpha * g
                sk_l1.append(given("layer_scale", h, label, 1.0) * df.of(jnp.sum(jnp.abs(s)), dtype))
            columns.append((m, v, s))
        numerator_weighted = sqrt_beta2 * scalars["numerator_weighted"] + (1 - sqrt_beta2) * (
            df.total(numerators) or 0.0
        )
        total_l1 = df.total(sk_l1) or df.of(0.0, dtype)
        skip = total_l1.hi == 0
        d_hat = numerator_weighted / ((1 - sqrt_beta2) * total_l1)
        d_new = df.larger(d, df.smaller(d_hat, d * given("growth_rate")))
        d_new = df.where(lr.hi > 0, d_new, d)
        updates = []
        for (m, v, _), p, h, label in zip(columns, params, leaf_hp, labels):
            decay = (-given("weight_decay", h, label) * dlr).f32()
            start = p + decay * p if decays and decouple else None
            step = (-1 * m) / (jnp.sqrt(v) + h["eps"])
            updates.append(jnp.where(skip, jnp.zeros_like(p), base.update_from(p, start, step)))
        m, v, s = (treedef.unflatten(list(column)) for column in zip(*columns))
        new = dict(d=d_new, numerator_weighted=numerator_weighted)
        return updates, dict(
            gg.wide_kept(skip, new, state),
            k=jnp.where(skip, state.k, state.k + 1),
            exp_avg=m,
            exp_avg_sq=v,
            s=s,
        )

    return gg.transformation("dadapt_adam", DAdaptAdamState, hyperparams, spec, init_fields, update_fields)
