"""D-Adaptation's DAdaptSGD (Defazio and Mishchenko, 2023), twin of ``dadaptation.DAdaptSGD`` (dadaptation
3.2): see ``purelr.optim.global_groups`` for what the D-Adaptation twins share."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from purelr.optim import base
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
        return dict(
            k=jnp.zeros((), jnp.int32),
            d=gg.scalar(hp["d0"], leaves),
            numerator_weighted=gg.scalar(0.0, leaves),
            g0_norm=gg.scalar(0.0, leaves),
            z=gg.copied(leaves, treedef),
            s=gg.filled(leaves, treedef),
            x0=gg.copied(leaves, treedef),
        )

    def update_fields(grads, params, state, hp, leaf_hp, labels, treedef):
        active = [lr_ != 0 for lr_ in spec.static("lr", labels, 1.0)]
        lr = gg.largest_lr(hp, active)
        first = jnp.sqrt(gg.total([jnp.sum(g * g) for g, on in zip(grads, active) if on]))
        g0_norm = jnp.where(state.k == 0, first, state.g0_norm)
        dlr = state.d * lr / g0_norm
        numerators, sk_sq, sums = [state.numerator_weighted], [], []
        for g, p, s, on in zip(grads, params, treedef.flatten_up_to(state.s), active):
            if decays:
                g = g + hp["weight_decay"] * p
            if on:
                numerators.append(dlr * jnp.vdot(g, s))
                s = s + dlr * g
                sk_sq.append(jnp.sum(s * s))
            sums.append(s)
        numerator_weighted, sk_sq = gg.total(numerators), gg.total(sk_sq)  # type: ignore[assignment]
        d_new = jnp.where(
            lr > 0,
            gg.d_step(state.d, 2 * numerator_weighted / jnp.sqrt(sk_sq), hp["growth_rate"]),  # type: ignore[arg-type]
            state.d,
        )
        skip = sk_sq == 0
        ck = 1 - hp["momentum"]
        updates, zs = [], []
        for p, s, x0 in zip(params, sums, treedef.flatten_up_to(state.x0)):
            z = x0 - s
            updates.append(jnp.where(skip, jnp.zeros_like(p), base.update_from(p, p * (1 - ck), ck * z)))
            zs.append(z)
        z = jax.tree.map(lambda new, old: jnp.where(skip, old, new), treedef.unflatten(zs), state.z)
        scalars = dict(k=state.k + 1, d=d_new, numerator_weighted=numerator_weighted, g0_norm=g0_norm)
        return updates, dict(gg.kept(skip, scalars, state), z=z, s=treedef.unflatten(sums), x0=state.x0)

    return gg.transformation("dadapt_sgd", DAdaptSGDState, hyperparams, spec, init_fields, update_fields)
