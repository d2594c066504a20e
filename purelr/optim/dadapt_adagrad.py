"""D-Adaptation's DAdaptAdaGrad (Defazio and Mishchenko, 2023), twin of ``dadaptation.DAdaptAdaGrad`` (dadaptation
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


class DAdaptAdaGradState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]
    hyperparams: dict[str, Any]
    k: jax.Array
    d: jax.Array
    gsq_weighted: jax.Array
    sksq_weighted: jax.Array
    skl1: jax.Array
    alphak: Any
    sk: Any
    x0: Any
    low: dict[str, jax.Array]  # the low halves of d and the sums (purelr.optim.double_float)


def dadapt_adagrad(
    lr=1.0,
    momentum=0.0,
    log_every: int = 0,
    weight_decay=0.0,
    eps=1e-6,
    d0=1e-6,
    growth_rate=math.inf,
    *,
    groups: gg.GroupsArg = None,
    param_labels=None,
) -> optax.GradientTransformation:
    """Twin of ``dadaptation.DAdaptAdaGrad`` (dense gradients: JAX has no sparse ones).

    With ``dlr = d * lr``, ``g`` the gradient plus ``weight_decay * p`` and ``w(x) = sum(x * x /
    (sqrt(alphak) + eps))``, for every leaf (``alphak`` starts at 1e-6)::

        sksq_weighted -= w(sk);  skl1 -= |sk|_1          (with the old alphak and sk)
        alphak += g * g;  g_sq += w(g);  sk += dlr * g
        sksq_weighted += w(sk);  skl1 += |sk|_1

    (the running sums updated by differences, as in the original), ``gsq_weighted += dlr ** 2 *
    g_sq``, ``d = max(d, min((sksq_weighted - gsq_weighted) / skl1, d * growth_rate))``; then
    ``z = x0 - sk / (sqrt(alphak) + eps)``, ``p = momentum * p + (1 - momentum) * z``. A group may
    set ``weight_decay`` and ``eps`` (the original reads lr and momentum from its first group).
    """
    hyperparams = dict(
        lr=gg.positive("lr", lr),
        momentum=gg.number("momentum", momentum, 0.0),
        weight_decay=gg.number("weight_decay", weight_decay, None),
        eps=gg.positive("eps", eps),
        d0=gg.positive("d0", d0),
        growth_rate=gg.growth("growth_rate", growth_rate),
    )
    spec = gg.Groups("dadapt_adagrad", groups, param_labels, dict(weight_decay=gg.number, eps=gg.positive))
    decays = base.maybe_nonzero(weight_decay) or any("weight_decay" in o for o in spec.overrides.values())

    def init_fields(leaves, treedef, hp):
        dtype = gg.scalar(0.0, leaves).dtype
        zero = df.of(0.0, dtype)
        d0 = df.hyper(hyperparams["d0"], hp["d0"], dtype)
        return dict(
            k=jnp.zeros((), jnp.int32),
            **gg.wide_init(dict(d=d0, gsq_weighted=zero, sksq_weighted=zero, skl1=zero)),
            alphak=gg.filled(leaves, treedef, 1e-6),
            sk=gg.filled(leaves, treedef),
            x0=gg.copied(leaves, treedef),
        )

    def update_fields(grads, params, state, hp, leaf_hp, labels, treedef):
        scalars = gg.wide_scalars(state, ("d", "gsq_weighted", "sksq_weighted", "skl1"))
        d, dtype = scalars["d"], state.d.dtype

        def given(name):  # the original's Python float
            return df.hyper(hyperparams[name], hp[name], dtype)

        lr = given("lr")
        dlr = d * lr
        sksq_change, skl1_change, g_sq, columns = df.of(0.0, dtype), df.of(0.0, dtype), df.of(0.0, dtype), []
        for g, p, alphak, sk, h in zip(
            grads, params, treedef.flatten_up_to(state.alphak), treedef.flatten_up_to(state.sk), leaf_hp
        ):
            if decays:
                g = g + h["weight_decay"] * p
            old_sksq = df.of(jnp.sum((sk * sk) / (jnp.sqrt(alphak) + h["eps"])), dtype)
            old_skl1 = df.of(jnp.sum(jnp.abs(sk)), dtype)
            alphak = alphak + g * g
            g_sq = g_sq + df.of(jnp.sum((g * g) / (jnp.sqrt(alphak) + h["eps"])), dtype)
            sk = sk + dlr.f32() * g
            sksq_change = sksq_change + (df.of(jnp.sum((sk * sk) / (jnp.sqrt(alphak) + h["eps"])), dtype) - old_sksq)
            skl1_change = skl1_change + (df.of(jnp.sum(jnp.abs(sk)), dtype) - old_skl1)
            columns.append((alphak, sk))
        sksq_weighted = scalars["sksq_weighted"] + sksq_change
        skl1 = scalars["skl1"] + skl1_change
        skip = skl1.hi == 0
        gsq_weighted = scalars["gsq_weighted"] + dlr * dlr * g_sq
        d_hat = (sksq_weighted - gsq_weighted) / skl1
        d_new = df.where(lr.hi > 0, df.larger(d, df.smaller(d_hat, d * given("growth_rate"))), d)
        ck = 1 - given("momentum")
        keep, ck = (1 - ck).f32(), ck.f32()
        updates = []
        for (alphak, sk), p, x0, h in zip(columns, params, treedef.flatten_up_to(state.x0), leaf_hp):
            z = x0 - sk / (jnp.sqrt(alphak) + h["eps"])
            updates.append(jnp.where(skip, jnp.zeros_like(p), base.update_from(p, p * keep, ck * z)))
        alphak, sk = (treedef.unflatten(list(column)) for column in zip(*columns))
        new = dict(d=d_new, gsq_weighted=gsq_weighted, sksq_weighted=sksq_weighted, skl1=skl1)
        return updates, dict(
            gg.wide_kept(skip, new, state), k=jnp.where(skip, state.k, state.k + 1), alphak=alphak, sk=sk, x0=state.x0
        )

    return gg.transformation("dadapt_adagrad", DAdaptAdaGradState, hyperparams, spec, init_fields, update_fields)
