"""D-Adaptation's DAdaptAdan (Defazio and Mishchenko, 2023), twin of ``dadaptation.DAdaptAdan`` (dadaptation
3.2): see ``purelr.optim.global_groups`` for what the D-Adaptation twins share."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

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
        return dict(
            k=jnp.zeros((), jnp.int32),
            d=gg.scalar(hp["d0"], leaves),
            gsq_weighted=gg.scalar(0.0, leaves),
            **{name: gg.filled(leaves, treedef) for name in ("exp_avg", "exp_avg_diff", "exp_avg_sq", "s", "pre_grad")},
        )

    def update_fields(grads, params, state, hp, leaf_hp, labels, treedef):
        beta1, beta2, beta3 = hp["beta1"], hp["beta2"], hp["beta3"]
        dlr = state.d * hp["lr"]
        buffers = [
            treedef.flatten_up_to(getattr(state, name))
            for name in ("exp_avg", "exp_avg_diff", "exp_avg_sq", "s", "pre_grad")
        ]
        g_sq, sksq_weighted, sk_l1, columns = [], [], [], []
        for g, m, n, v, s, pre, h in zip(grads, *buffers, leaf_hp):
            diff = g - jnp.where(state.k == 0, g, pre)
            u = g + beta2 * diff
            m = m * beta1 + (dlr * (1 - beta1)) * g
            n = n * beta2 + (dlr * (1 - beta2)) * diff
            v = v * beta3 + (1 - beta3) * (u * u)
            denom = jnp.sqrt(v) + h["eps"]
            g_sq.append(jnp.sum((g * g) / denom))
            s = s * beta3 + (dlr * (1 - beta3)) * g
            sksq_weighted.append(jnp.sum((s * s) / denom))
            sk_l1.append(jnp.sum(jnp.abs(s)))
            columns.append((m, n, v, s))
        gsq_weighted = beta3 * state.gsq_weighted + gg.total(g_sq) * dlr**2 * (1 - beta3)
        sk_l1 = gg.total(sk_l1)  # type: ignore[assignment]
        skip = sk_l1 == 0
        d_hat = (gg.total(sksq_weighted) / (1 - beta3) - gsq_weighted) / sk_l1
        d_new = jnp.where(hp["lr"] > 0, gg.d_step(state.d, d_hat, hp["growth_rate"]), state.d)
        updates = []
        for (m, n, v, _), p, h in zip(columns, params, leaf_hp):
            step = (m + beta2 * n) / (jnp.sqrt(v) + h["eps"])
            if no_prox:
                new = p * (1 - dlr * h["weight_decay"]) - step
            else:
                new = (p - step) / (1 + dlr * h["weight_decay"])
            updates.append(jnp.where(skip, jnp.zeros_like(p), new - p))
        m, n, v, s = (treedef.unflatten(list(column)) for column in zip(*columns))
        pre_grad = jax.tree.map(lambda new, old: jnp.where(skip, old, new), treedef.unflatten(grads), state.pre_grad)
        scalars = dict(k=state.k + 1, d=d_new, gsq_weighted=gsq_weighted)
        return updates, dict(
            gg.kept(skip, scalars, state), exp_avg=m, exp_avg_diff=n, exp_avg_sq=v, s=s, pre_grad=pre_grad
        )

    return gg.transformation("dadapt_adan", DAdaptAdanState, hyperparams, spec, init_fields, update_fields)
