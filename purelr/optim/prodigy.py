"""Prodigy (Mishchenko and Defazio, 2023): Adam whose step size ``d`` is estimated on the fly from
sums over all parameters, twin of ``prodigyopt.Prodigy`` (prodigyopt 1.1.2)."""

from __future__ import annotations

import math
from typing import Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import optax

from purelr.optim import base
from purelr.optim import global_groups as gg
from purelr.schedules import validate


class ProdigyState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]
    hyperparams: dict[str, Any]
    k: jax.Array  # updates taken (a skipped update, all-zero gradients, does not count)
    d: jax.Array
    d_max: jax.Array
    d_numerator: jax.Array
    exp_avg: Any  # None when beta1 is the constant 0
    exp_avg_sq: Any
    s: Any  # flat, every slice_p-th entry
    p0: Any  # the initial params, flat, every slice_p-th entry


GROUP_KEYS = dict(lr=gg.zero_lr, weight_decay=gg.number, eps=gg.positive)


def prodigy(
    lr=1.0,
    betas=(0.9, 0.999),
    beta3=None,
    eps=1e-8,
    weight_decay=0.0,
    decouple: bool = True,
    use_bias_correction: bool = False,
    safeguard_warmup: bool = False,
    d0=1e-6,
    d_coef=1.0,
    growth_rate=math.inf,
    fsdp_in_use: bool = False,
    slice_p: int = 1,
    *,
    groups: Mapping[str, Mapping[str, Any]] | None = None,
    param_labels=None,
) -> optax.GradientTransformation:
    """Twin of ``prodigyopt.Prodigy``; every number (``betas`` one by one) may be a schedule.

    At update ``k`` (``beta3`` defaulting to ``sqrt(beta2)``, ``c = sqrt(1 - beta2 ** (k + 1)) /
    (1 - beta1 ** (k + 1))`` with ``use_bias_correction``, else 1, ``dlr = d * lr * c``), for every
    leaf of a group whose lr is not 0, ``g`` the gradient (plus ``weight_decay * p`` unless
    ``decouple``) and ``g'``, ``p'``, ``p0'`` every ``slice_p``-th entry of the flat ``g``, ``p``
    and initial ``p``::

        numerator = beta3 * numerator + sum over leaves of (d / d0) * dlr * <g', p0' - p'>
        exp_avg = beta1 * exp_avg + d * (1 - beta1) * g
        exp_avg_sq = beta2 * exp_avg_sq + d * d * (1 - beta2) * g * g
        s = beta3 * s + (d / d0) * (d if safeguard_warmup else dlr) * g'
        d_hat = d_coef * numerator / sum over leaves of |s|_1
        d = max(d, d_hat) while d == d0;  d_max = max(d_max, d_hat);  d = min(d_max, d * growth_rate)

    then with the new ``d``, for every leaf: ``p *= 1 - weight_decay * dlr`` (``decouple``) and
    ``p -= dlr * exp_avg / (sqrt(exp_avg_sq) + d * eps)`` (``beta1 = 0``: ``dlr * d * g`` for
    ``exp_avg``). When every ``s`` is 0 (all gradients 0 so far) the update is skipped after the
    moments, as the original returns early, unless ``fsdp_in_use`` (honoured: the sums here are
    always global, and it only turns the early return off, as in the original).

    Parameter groups: ``groups`` and ``param_labels`` (``purelr.optim.global_groups``); a group may
    set ``weight_decay``, ``eps`` and ``lr=0`` (left out of the sums and moments but still
    stepped, as in the original). The other options are global (the original reads them from
    its first group). The sums are accumulated in the params' dtype (the original adds them in
    Python floats: float64 against a float32 model).
    """
    lr = gg.positive("lr", lr)
    eps = gg.positive("eps", eps)
    beta1, beta2 = base.check_betas(betas)
    hyperparams = dict(
        lr=lr,
        beta1=beta1,
        beta2=beta2,
        eps=eps,
        weight_decay=gg.number("weight_decay", weight_decay, None),
        d0=gg.positive("d0", d0),
        d_coef=gg.number("d_coef", d_coef, None),
        growth_rate=gg.growth("growth_rate", growth_rate),
    )
    if beta3 is not None:
        hyperparams["beta3"] = gg.number("beta3", beta3)
    gg.flags(
        decouple=decouple,
        use_bias_correction=use_bias_correction,
        safeguard_warmup=safeguard_warmup,
        fsdp_in_use=fsdp_in_use,
    )
    slice_p = validate.positive_int("slice_p", slice_p)
    spec = gg.Groups("prodigy", groups, param_labels, GROUP_KEYS)
    keep_exp_avg = callable(beta1) or beta1 > 0
    decays = base.maybe_nonzero(weight_decay) or any("weight_decay" in o for o in spec.overrides.values())

    def sliced(x):
        return x.ravel()[::slice_p]

    def init_fields(leaves, treedef, hp):
        d0_value = gg.scalar(hp["d0"], leaves)
        return dict(
            k=jnp.zeros((), jnp.int32),
            d=d0_value,
            d_max=d0_value,
            d_numerator=gg.scalar(0.0, leaves),
            exp_avg=treedef.unflatten([jnp.zeros_like(p) for p in leaves]) if keep_exp_avg else None,
            exp_avg_sq=treedef.unflatten([jnp.zeros_like(p) for p in leaves]),
            s=treedef.unflatten([jnp.zeros_like(sliced(p)) for p in leaves]),
            p0=treedef.unflatten([sliced(p) for p in leaves]),
        )

    def update_fields(grads, params, state, hp, leaf_hp, labels, treedef):
        active = [lr_ != 0 for lr_ in spec.static("lr", labels, 1.0)]
        beta1, beta2 = hp["beta1"], hp["beta2"]
        beta3 = hp["beta3"] if "beta3" in hp else jnp.sqrt(beta2)
        lr = hp["lr"] if any(active) else jnp.zeros_like(hp["lr"])
        d, d0 = state.d, hp["d0"]
        if use_bias_correction:
            t = (state.k + 1).astype(d.dtype)
            bias_correction = jnp.sqrt(1 - beta2**t) / (1 - beta1**t)
        else:
            bias_correction = 1.0
        dlr = d * lr * bias_correction
        buffers = [treedef.flatten_up_to(tree) for tree in (state.exp_avg_sq, state.s, state.p0)]
        exp_avgs = treedef.flatten_up_to(state.exp_avg) if keep_exp_avg else [None] * len(grads)
        numerators, denominators, moments = [], [], []
        for g, p, v, s, p0, m, on, h in zip(grads, params, *buffers, exp_avgs, active, leaf_hp):
            if decays and not decouple:
                g = g + h["weight_decay"] * p
            if on:
                sg = sliced(g)
                numerators.append((d / d0) * dlr * jnp.dot(sg, p0 - sliced(p)))
                if m is not None:  # a scheduled beta1 of 0 leaves it, as the original does
                    m = jnp.where(beta1 > 0, m * beta1 + (d * (1 - beta1)) * g, m)
                v = v * beta2 + (d * d * (1 - beta2)) * g * g
                s = s * beta3 + ((d / d0) * (d if safeguard_warmup else dlr)) * sg
                denominators.append(jnp.sum(jnp.abs(s)))
            moments.append((g, m, v, s))
        d_numerator = gg.total([state.d_numerator * beta3, *numerators])
        d_denom = gg.total(denominators)
        d_hat = hp["d_coef"] * d_numerator / d_denom
        d_new = jnp.where(d == d0, gg.larger(d, d_hat), d)
        d_max = gg.larger(state.d_max, d_hat)
        d_new = gg.smaller(d_max, d_new * hp["growth_rate"])
        skip = (d_denom == 0) & (not fsdp_in_use)
        updates = []
        for (g, m, v, _), p, h in zip(moments, params, leaf_hp):
            denom = jnp.sqrt(v) + d_new * h["eps"]
            start = p + (-h["weight_decay"] * dlr) * p if decays and decouple else None
            step = (-dlr * d_new * g) / denom
            if m is not None:
                step = jnp.where(beta1 > 0, (-dlr * m) / denom, step)
            updates.append(jnp.where(skip, jnp.zeros_like(p), base.update_from(p, start, step)))
        columns = [treedef.unflatten(list(column)) for column in zip(*moments)]
        return updates, dict(
            gg.kept(skip, dict(k=state.k + 1, d=d_new, d_max=d_max, d_numerator=d_numerator), state),
            exp_avg=columns[1] if keep_exp_avg else None,
            exp_avg_sq=columns[2],
            s=columns[3],
            p0=state.p0,
        )

    return gg.transformation("prodigy", ProdigyState, hyperparams, spec, init_fields, update_fields)
