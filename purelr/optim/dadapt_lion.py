"""D-Adaptation's DAdaptLion (Defazio and Mishchenko, 2023), twin of ``dadaptation.DAdaptLion`` (dadaptation
3.2): see ``purelr.optim.global_groups`` for what the D-Adaptation twins share."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from purelr.optim import base
from purelr.optim import double_float as df
from purelr.optim import global_groups as gg


class DAdaptLionState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]
    hyperparams: dict[str, Any]
    k: jax.Array
    d: jax.Array
    numerator_weighted: jax.Array
    exp_avg: Any
    s: Any
    low: dict[str, jax.Array]  # the low halves of d, numerator_weighted (purelr.optim.double_float)


def dadapt_lion(
    lr=1.0,
    betas=(0.9, 0.99),
    weight_decay=0.0,
    log_every: int = 0,
    d0=1e-6,
    fsdp_in_use: bool = False,
    *,
    groups: gg.GroupsArg = None,
    param_labels=None,
) -> optax.GradientTransformation:
    """Twin of ``dadaptation.DAdaptLion``.

    With ``dlr = d * lr`` and ``b = sqrt(beta2)``, for every leaf (in this order)::

        p *= 1 - dlr * weight_decay
        u = sign(beta1 * exp_avg + (1 - beta1) * g);  p -= dlr * u
        exp_avg = beta2 * exp_avg + (1 - beta2) * dlr * g
        numerator_acc += dlr * <u, s>;  s = b * s + (1 - b) * dlr * u;  sk_l1 += |s|_1

    ``numerator_weighted = b * numerator_weighted + (1 - b) * numerator_acc``, ``d = max(d,
    numerator_weighted / ((1 - b) * sk_l1))`` (no growth limit). The params move even when
    ``sk_l1`` is 0 (they do in the original, which returns only before its ``d`` update). A group
    may set ``weight_decay`` (the original accepts a group lr of 0 and ignores it: refused here).
    """
    hyperparams = dict(
        lr=gg.number("lr", lr, 0.0),
        **dict(zip(("beta1", "beta2"), base.check_betas(betas))),
        weight_decay=gg.number("weight_decay", weight_decay, None),
        d0=gg.positive("d0", d0),
    )
    gg.flags(fsdp_in_use=fsdp_in_use)
    spec = gg.Groups("dadapt_lion", groups, param_labels, dict(weight_decay=gg.number))

    def init_fields(leaves, treedef, hp):
        dtype = gg.scalar(0.0, leaves).dtype
        d0 = df.hyper(hyperparams["d0"], hp["d0"], dtype)
        return dict(
            k=jnp.zeros((), jnp.int32),
            **gg.wide_init(dict(d=d0, numerator_weighted=df.of(0.0, dtype))),
            exp_avg=gg.filled(leaves, treedef),
            s=gg.filled(leaves, treedef),
        )

    def update_fields(grads, params, state, hp, leaf_hp, labels, treedef):
        scalars = gg.wide_scalars(state, ("d", "numerator_weighted"))
        d, dtype = scalars["d"], state.d.dtype

        def given(name, h=hp, label=None):  # the original's Python float
            return df.hyper(spec.given(hyperparams, name, label), h[name], dtype)

        beta1, beta2 = given("beta1"), given("beta2")
        sqrt_beta2 = beta2.sqrt()
        lr = given("lr")
        dlr = d * lr
        u_alpha, m_alpha, s_alpha = (1 - beta1).f32(), ((1 - beta2) * dlr).f32(), ((1 - sqrt_beta2) * dlr).f32()
        numerator_acum, sk_l1, updates, columns = df.of(0.0, dtype), df.of(0.0, dtype), [], []
        for g, p, m, s, h, label in zip(
            grads, params, treedef.flatten_up_to(state.exp_avg), treedef.flatten_up_to(state.s), leaf_hp, labels
        ):
            start = p * (1 - dlr * given("weight_decay", h, label)).f32()
            u = jnp.sign(m * beta1.f32() + u_alpha * g)
            updates.append(base.update_from(p, start, (-dlr).f32() * u))
            m = m * beta2.f32() + m_alpha * g
            numerator_acum = numerator_acum + dlr * df.of(jnp.vdot(u, s), dtype)
            s = s * sqrt_beta2.f32() + s_alpha * u
            sk_l1 = sk_l1 + df.of(jnp.sum(jnp.abs(s)), dtype)
            columns.append((m, s))
        numerator_weighted = sqrt_beta2 * scalars["numerator_weighted"] + (1 - sqrt_beta2) * numerator_acum
        d_hat = numerator_weighted / ((1 - sqrt_beta2) * sk_l1)
        d_new = df.where(lr.hi > 0, df.larger(d, d_hat), d)
        m, s = (treedef.unflatten(list(column)) for column in zip(*columns))
        skip = sk_l1.hi == 0
        new = dict(d=d_new, numerator_weighted=numerator_weighted)
        return updates, dict(gg.wide_kept(skip, new, state), k=jnp.where(skip, state.k, state.k + 1), exp_avg=m, s=s)

    return gg.transformation("dadapt_lion", DAdaptLionState, hyperparams, spec, init_fields, update_fields)
