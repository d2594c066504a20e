"""D-Adaptation's DAdaptSGD (Defazio and Mishchenko, 2023), twin of ``dadaptation.DAdaptSGD`` (dadaptation
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


class DAdaptSGDState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]
    hyperparams: dict[str, Any]
    k: jax.Array
    d: jax.Array
    numerator_weighted: jax.Array
    g0_norm: jax.Array
    z: Any
    s: Any
    x0: Any
    low: dict[str, jax.Array]  # the low halves of d, numerator_weighted, g0_norm (purelr.optim.double_float)


def dadapt_sgd(
    lr=1.0,
    momentum=0.0,
    weight_decay=0.0,
    log_every: int = 0,
    d0=1e-6,
    growth_rate=math.inf,
    fsdp_in_use: bool = False,
    *,
    groups: gg.GroupsArg = None,
    param_labels=None,
) -> optax.GradientTransformation:
    """Twin of ``dadaptation.DAdaptSGD``.

    At the first update ``g0_norm`` is the 2-norm of all gradients of the groups whose lr is not
    0 (without weight decay, as in the original). With ``dlr = d * lr / g0_norm``, ``g`` the
    gradient plus ``weight_decay * p``, for every leaf of those groups::

        numerator_weighted += dlr * <g, s>;  s += dlr * g;  sk_sq += |s|^2

    ``d = max(d, min(2 * numerator_weighted / sqrt(sk_sq), d * growth_rate))``; then every leaf
    ``z = x0 - s``, ``p = momentum * p + (1 - momentum) * z`` (``x0`` the initial params: a
    group of lr 0 goes back to them, as in the original). A group may set ``lr=0`` only:
    ``momentum`` and ``weight_decay`` are read from the first group by the original.
    """
    hyperparams = dict(
        lr=gg.positive("lr", lr),
        momentum=gg.number("momentum", momentum, None),
        weight_decay=gg.number("weight_decay", weight_decay, None),
        d0=gg.positive("d0", d0),
        growth_rate=gg.growth("growth_rate", growth_rate),
    )
    gg.flags(fsdp_in_use=fsdp_in_use)
    spec = gg.Groups("dadapt_sgd", groups, param_labels, dict(lr=gg.zero_lr))
    decays = base.maybe_nonzero(weight_decay)

    def init_fields(leaves, treedef, hp):
        dtype = gg.scalar(0.0, leaves).dtype
        zero = df.of(0.0, dtype)
        return dict(
            k=jnp.zeros((), jnp.int32),
            **gg.wide_init(dict(d=df.hyper(hyperparams["d0"], hp["d0"], dtype), numerator_weighted=zero, g0_norm=zero)),
            z=gg.copied(leaves, treedef),
            s=gg.filled(leaves, treedef),
            x0=gg.copied(leaves, treedef),
        )

    def update_fields(grads, params, state, hp, leaf_hp, labels, treedef):
        active = [lr_ != 0 for lr_ in spec.static("lr", labels, 1.0)]
        scalars = gg.wide_scalars(state, ("d", "numerator_weighted", "g0_norm"))
        d, dtype = scalars["d"], state.d.dtype

        def given(name):  # the original's Python float
            return df.hyper(hyperparams[name], hp[name], dtype)

        lr = given("lr") if any(active) else df.of(0.0, dtype)
        first = df.total([df.of(jnp.sum(g * g), dtype) for g, on in zip(grads, active) if on]) or df.of(0.0, dtype)
        g0_norm = df.where(state.k == 0, first.sqrt(), scalars["g0_norm"])
        dlr = d * lr / g0_norm
        numerator_weighted, sk_sq, sums = scalars["numerator_weighted"], [], []
        for g, p, s, on in zip(grads, params, treedef.flatten_up_to(state.s), active):
            if decays:
                g = g + hp["weight_decay"] * p
            if on:
                numerator_weighted = numerator_weighted + dlr * df.of(jnp.vdot(g, s), dtype)
                s = s + dlr.f32() * g
                sk_sq.append(df.of(jnp.sum(s * s), dtype))
            sums.append(s)
        total_sq = df.total(sk_sq) or df.of(0.0, dtype)
        d_hat = 2 * numerator_weighted / total_sq.sqrt()
        d_new = df.where(lr.hi > 0, df.larger(d, df.smaller(d_hat, d * given("growth_rate"))), d)
        skip = total_sq.hi == 0
        ck = 1 - given("momentum")
        keep, ck = (1 - ck).f32(), ck.f32()
        updates, zs = [], []
        for p, s, x0 in zip(params, sums, treedef.flatten_up_to(state.x0)):
            z = x0 - s
            updates.append(jnp.where(skip, jnp.zeros_like(p), base.update_from(p, p * keep, ck * z)))
            zs.append(z)
        z = jax.tree.map(lambda new, old: jnp.where(skip, old, new), treedef.unflatten(zs), state.z)
        new = dict(d=d_new, numerator_weighted=numerator_weighted, g0_norm=g0_norm)
        return updates, dict(
            gg.wide_kept(skip, new, state),
            k=jnp.where(skip, state.k, state.k + 1),
            z=z,
            s=treedef.unflatten(sums),
            x0=state.x0,
        )

    return gg.transformation("dadapt_sgd", DAdaptSGDState, hyperparams, spec, init_fields, update_fields)
