"""D-Adaptation's DAdaptAdan (Defazio and Mishchenko, 2023), twin of ``dadaptation.DAdaptAdan`` (dadaptation
3.2): see ``purelr.optim.global_groups`` for what the D-Adaptation twins share."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from purelr.optim import double_float as df
from purelr.optim import global_groups as gg
from purelr.optim import hyperparams as hp_lib


class DAdaptAdanState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]
    hyperparams: dict[str, Any]
    k: jax.Array
    d: jax.Array
    gsq_weighted: jax.Array
    exp_avg: Any
    exp_avg_diff: Any
    exp_avg_sq: Any
    s: Any
    pre_grad: Any
    low: dict[str, jax.Array]  # the low halves of d, gsq_weighted (purelr.optim.double_float)


def dadapt_adan(
    lr=1.0,
    betas=(0.98, 0.92, 0.99),
    eps=1e-8,
    weight_decay=0.02,
    no_prox: bool = False,
    log_every: int = 0,
    d0=1e-6,
    growth_rate=math.inf,
    *,
    groups: gg.GroupsArg = None,
    param_labels=None,
) -> optax.GradientTransformation:
    """Twin of ``dadaptation.DAdaptAdan``.

    With ``dlr = d * lr``, ``diff = g - pre_grad`` (0 at the first update), ``u = g + beta2 *
    diff`` and ``denom = sqrt(exp_avg_sq) + eps`` after its update, for every leaf::

        exp_avg = beta1 * exp_avg + dlr * (1 - beta1) * g
        exp_avg_diff = beta2 * exp_avg_diff + dlr * (1 - beta2) * diff
        exp_avg_sq = beta3 * exp_avg_sq + (1 - beta3) * u * u
        g_sq += sum(g * g / denom);  s = beta3 * s + dlr * (1 - beta3) * g
        sksq_weighted += sum(s * s / denom);  sk_l1 += |s|_1

    ``gsq_weighted = beta3 * gsq_weighted + g_sq * dlr ** 2 * (1 - beta3)``, ``d = max(d,
    min((sksq_weighted / (1 - beta3) - gsq_weighted) / sk_l1, d * growth_rate))``; then every
    leaf, ``step = (exp_avg + beta2 * exp_avg_diff) / denom``: ``p = p * (1 - dlr * weight_decay)
    - step`` with ``no_prox``, else ``p = (p - step) / (1 + dlr * weight_decay)``. A group may set
    ``weight_decay`` and ``eps`` (the original reads lr and betas from its first group).
    """
    if not isinstance(betas, (tuple, list)) or len(betas) != 3:
        raise TypeError(f"betas must be a triple (beta1, beta2, beta3), got {betas!r}")
    beta1, beta2, beta3 = (
        hp_lib.check(f"betas[{i}]", beta, maximum=1.0, maximum_open=True) for i, beta in enumerate(betas)
    )
    hyperparams = dict(
        lr=gg.positive("lr", lr),
        beta1=beta1,
        beta2=beta2,
        beta3=beta3,
        eps=gg.positive("eps", eps),
        weight_decay=gg.number("weight_decay", weight_decay, None),
        d0=gg.positive("d0", d0),
        growth_rate=gg.growth("growth_rate", growth_rate),
    )
    gg.flags(no_prox=no_prox)
    spec = gg.Groups("dadapt_adan", groups, param_labels, dict(weight_decay=gg.number, eps=gg.positive))

    def init_fields(leaves, treedef, hp):
        dtype = gg.scalar(0.0, leaves).dtype
        return dict(
            k=jnp.zeros((), jnp.int32),
            **gg.wide_init(dict(d=df.hyper(hyperparams["d0"], hp["d0"], dtype), gsq_weighted=df.of(0.0, dtype))),
            **{name: gg.filled(leaves, treedef) for name in ("exp_avg", "exp_avg_diff", "exp_avg_sq", "s", "pre_grad")},
        )

    def update_fields(grads, params, state, hp, leaf_hp, labels, treedef):
        scalars = gg.wide_scalars(state, ("d", "gsq_weighted"))
        d, dtype = scalars["d"], state.d.dtype

        def given(name, h=hp, label=None):  # the original's Python float
            return df.hyper(spec.given(hyperparams, name, label), h[name], dtype)

        beta1, beta2, beta3 = given("beta1"), given("beta2"), given("beta3")
        lr = given("lr")
        dlr = d * lr
        b2 = beta2.f32()
        m_alpha, n_alpha = (dlr * (1 - beta1)).f32(), (dlr * (1 - beta2)).f32()
        v_alpha, s_alpha = (1 - beta3).f32(), (dlr * (1 - beta3)).f32()
        buffers = [
            treedef.flatten_up_to(getattr(state, name))
            for name in ("exp_avg", "exp_avg_diff", "exp_avg_sq", "s", "pre_grad")
        ]
        g_sq = sksq_weighted = sk_l1 = df.of(0.0, dtype)
        columns = []
        for g, m, n, v, s, pre, h in zip(grads, *buffers, leaf_hp):
            diff = g - jnp.where(state.k == 0, g, pre)
            u = g + b2 * diff
            m = m * beta1.f32() + m_alpha * g
            n = n * b2 + n_alpha * diff
            v = v * beta3.f32() + v_alpha * (u * u)
            denom = jnp.sqrt(v) + h["eps"]
            g_sq = g_sq + df.of(jnp.sum((g * g) / denom), dtype)
            s = s * beta3.f32() + s_alpha * g
            sksq_weighted = sksq_weighted + df.of(jnp.sum((s * s) / denom), dtype)
            sk_l1 = sk_l1 + df.of(jnp.sum(jnp.abs(s)), dtype)
            columns.append((m, n, v, s))
        gsq_weighted = beta3 * scalars["gsq_weighted"] + g_sq * (dlr * dlr) * (1 - beta3)
        skip = sk_l1.hi == 0
        d_hat = (sksq_weighted / (1 - beta3) - gsq_weighted) / sk_l1
        d_new = df.where(lr.hi > 0, df.larger(d, df.smaller(d_hat, d * given("growth_rate"))), d)
        updates = []
        for (m, n, v, _), p, h, label in zip(columns, params, leaf_hp, labels):
            step = (m + b2 * n) / (jnp.sqrt(v) + h["eps"])
            decay = dlr * given("weight_decay", h, label)
            if no_prox:
                new = p * (1 - decay).f32() - step
            else:
                new = (p - step) / (1 + decay).f32()
            updates.append(jnp.where(skip, jnp.zeros_like(p), new - p))
        m, n, v, s = (treedef.unflatten(list(column)) for column in zip(*columns))
        pre_grad = jax.tree.map(lambda new, old: jnp.where(skip, old, new), treedef.unflatten(grads), state.pre_grad)
        new_scalars = dict(d=d_new, gsq_weighted=gsq_weighted)
        return updates, dict(
            gg.wide_kept(skip, new_scalars, state),
            k=jnp.where(skip, state.k, state.k + 1),
            exp_avg=m,
            exp_avg_diff=n,
            exp_avg_sq=v,
            s=s,
            pre_grad=pre_grad,
        )

    return gg.transformation("dadapt_adan", DAdaptAdanState, hyperparams, spec, init_fields, update_fields)
