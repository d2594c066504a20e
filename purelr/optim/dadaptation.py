"""D-Adaptation (Defazio and Mishchenko, 2023): SGD, Adam, AdaGrad, Adan and Lion whose step size
``d`` is estimated on the fly from sums over all parameters, twins of the ``dadaptation``
package's ``DAdaptSGD``, ``DAdaptAdam``, ``DAdaptAdaGrad``, ``DAdaptAdan``, ``DAdaptLion``
(dadaptation 3.2).

Common to all: every number may be a schedule; the sums run over every leaf of every group in
one transformation (groups: ``purelr.optim.global_groups``), in the params' dtype (the originals
add them in Python floats: float64 against a float32 model); an update whose sums are all 0 (all
gradients 0 so far) keeps ``d`` and the sums, as the originals return early; ``log_every``
(printing) is accepted and ignored, and so is ``fsdp_in_use``: the sums here are always global.
Complex params are refused.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import optax

from purelr.optim import base
from purelr.optim import global_groups as gg
from purelr.optim import hyperparams as hp_lib
from purelr.schedules import validate

Groups = Mapping[str, Mapping[str, Any]] | None


def _zeros(leaves, treedef, fill=0.0):
    return treedef.unflatten([jnp.full_like(p, fill) for p in leaves])


def _copy(leaves, treedef):
    return treedef.unflatten(list(leaves))


def _d_step(d, d_hat, growth_rate):
    """``max(d, min(d_hat, d * growth_rate))``."""
    return gg.larger(d, gg.smaller(d_hat, d * growth_rate))


def _largest_lr(hp, active):
    """The originals' ``max(group['lr'] for group in param_groups)``: a group's lr is 0 or the lr."""
    return hp["lr"] if any(active) else jnp.zeros_like(hp["lr"])


def _flags(**flags):
    for name, value in flags.items():
        validate.flag(name, value)


# ---- DAdaptAdam --------------------------------------------------------------------------------


class DAdaptAdamState(NamedTuple):
    count: jax.Array
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
    groups: Groups = None,
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
    _flags(decouple=decouple, use_bias_correction=use_bias_correction, fsdp_in_use=fsdp_in_use)
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
            exp_avg=_zeros(leaves, treedef),
            exp_avg_sq=_zeros(leaves, treedef),
            s=_zeros(leaves, treedef),
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
        dlr = d * _largest_lr(hp, active) * bias_correction
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
        sk_l1 = gg.total(sk_l1)
        skip = sk_l1 == 0
        d_hat = numerator_weighted / ((1 - sqrt_beta2) * sk_l1)
        d_new = jnp.where(_largest_lr(hp, active) > 0, _d_step(d, d_hat, hp["growth_rate"]), d)
        updates = []
        for (m, v, _), p, h in zip(columns, params, leaf_hp):
            start = p + (-h["weight_decay"] * dlr) * p if decays and decouple else None
            step = (-1 * m) / (jnp.sqrt(v) + h["eps"])
            updates.append(jnp.where(skip, jnp.zeros_like(p), base.update_from(p, start, step)))
        m, v, s = (treedef.unflatten(list(column)) for column in zip(*columns))
        scalars = dict(k=state.k + 1, d=d_new, numerator_weighted=numerator_weighted)
        return updates, dict(gg.kept(skip, scalars, state), exp_avg=m, exp_avg_sq=v, s=s)

    return gg.transformation("dadapt_adam", DAdaptAdamState, hyperparams, spec, init_fields, update_fields)


# ---- DAdaptSGD ---------------------------------------------------------------------------------


class DAdaptSGDState(NamedTuple):
    count: jax.Array
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
    groups: Groups = None,
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
    _flags(fsdp_in_use=fsdp_in_use)
    spec = gg.Groups("dadapt_sgd", groups, param_labels, dict(lr=gg.zero_lr))
    decays = base.maybe_nonzero(weight_decay)

    def init_fields(leaves, treedef, hp):
        return dict(
            k=jnp.zeros((), jnp.int32),
            d=gg.scalar(hp["d0"], leaves),
            numerator_weighted=gg.scalar(0.0, leaves),
            g0_norm=gg.scalar(0.0, leaves),
            z=_copy(leaves, treedef),
            s=_zeros(leaves, treedef),
            x0=_copy(leaves, treedef),
        )

    def update_fields(grads, params, state, hp, leaf_hp, labels, treedef):
        active = [lr_ != 0 for lr_ in spec.static("lr", labels, 1.0)]
        lr = _largest_lr(hp, active)
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
        numerator_weighted, sk_sq = gg.total(numerators), gg.total(sk_sq)
        d_new = jnp.where(
            lr > 0, _d_step(state.d, 2 * numerator_weighted / jnp.sqrt(sk_sq), hp["growth_rate"]), state.d
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


# ---- DAdaptAdaGrad -----------------------------------------------------------------------------


class DAdaptAdaGradState(NamedTuple):
    count: jax.Array
    hyperparams: dict[str, Any]
    k: jax.Array
    d: jax.Array
    gsq_weighted: jax.Array
    sksq_weighted: jax.Array
    skl1: jax.Array
    alphak: Any
    sk: Any
    x0: Any


def dadapt_adagrad(
    lr=1.0,
    momentum=0.0,
    log_every: int = 0,
    weight_decay=0.0,
    eps=1e-6,
    d0=1e-6,
    growth_rate=math.inf,
    *,
    groups: Groups = None,
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
        zero = gg.scalar(0.0, leaves)
        return dict(
            k=jnp.zeros((), jnp.int32),
            d=gg.scalar(hp["d0"], leaves),
            gsq_weighted=zero,
            sksq_weighted=zero,
            skl1=zero,
            alphak=_zeros(leaves, treedef, 1e-6),
            sk=_zeros(leaves, treedef),
            x0=_copy(leaves, treedef),
        )

    def update_fields(grads, params, state, hp, leaf_hp, labels, treedef):
        dlr = state.d * hp["lr"]
        sksq_change, skl1_change, g_sq, columns = [], [], [], []
        for g, p, alphak, sk, h in zip(
            grads, params, treedef.flatten_up_to(state.alphak), treedef.flatten_up_to(state.sk), leaf_hp
        ):
            if decays:
                g = g + h["weight_decay"] * p
            old_sksq = jnp.sum((sk * sk) / (jnp.sqrt(alphak) + h["eps"]))
            old_skl1 = jnp.sum(jnp.abs(sk))
            alphak = alphak + g * g
            g_sq.append(jnp.sum((g * g) / (jnp.sqrt(alphak) + h["eps"])))
            sk = sk + dlr * g
            sksq_change.append(jnp.sum((sk * sk) / (jnp.sqrt(alphak) + h["eps"])) - old_sksq)
            skl1_change.append(jnp.sum(jnp.abs(sk)) - old_skl1)
            columns.append((alphak, sk))
        sksq_weighted = state.sksq_weighted + gg.total(sksq_change)
        skl1 = state.skl1 + gg.total(skl1_change)
        skip = skl1 == 0
        gsq_weighted = state.gsq_weighted + dlr * dlr * gg.total(g_sq)
        d_hat = (sksq_weighted - gsq_weighted) / skl1
        d_new = jnp.where(hp["lr"] > 0, _d_step(state.d, d_hat, hp["growth_rate"]), state.d)
        ck = 1 - hp["momentum"]
        updates = []
        for (alphak, sk), p, x0, h in zip(columns, params, treedef.flatten_up_to(state.x0), leaf_hp):
            z = x0 - sk / (jnp.sqrt(alphak) + h["eps"])
            updates.append(jnp.where(skip, jnp.zeros_like(p), base.update_from(p, p * (1 - ck), ck * z)))
        alphak, sk = (treedef.unflatten(list(column)) for column in zip(*columns))
        scalars = dict(k=state.k + 1, d=d_new, gsq_weighted=gsq_weighted, sksq_weighted=sksq_weighted, skl1=skl1)
        return updates, dict(gg.kept(skip, scalars, state), alphak=alphak, sk=sk, x0=state.x0)

    return gg.transformation("dadapt_adagrad", DAdaptAdaGradState, hyperparams, spec, init_fields, update_fields)


# ---- DAdaptAdan --------------------------------------------------------------------------------


class DAdaptAdanState(NamedTuple):
    count: jax.Array
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
    groups: Groups = None,
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
    _flags(no_prox=no_prox)
    spec = gg.Groups("dadapt_adan", groups, param_labels, dict(weight_decay=gg.number, eps=gg.positive))

    def init_fields(leaves, treedef, hp):
        return dict(
            k=jnp.zeros((), jnp.int32),
            d=gg.scalar(hp["d0"], leaves),
            gsq_weighted=gg.scalar(0.0, leaves),
            **{name: _zeros(leaves, treedef) for name in ("exp_avg", "exp_avg_diff", "exp_avg_sq", "s", "pre_grad")},
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
        sk_l1 = gg.total(sk_l1)
        skip = sk_l1 == 0
        d_hat = (gg.total(sksq_weighted) / (1 - beta3) - gsq_weighted) / sk_l1
        d_new = jnp.where(hp["lr"] > 0, _d_step(state.d, d_hat, hp["growth_rate"]), state.d)
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


# ---- DAdaptLion --------------------------------------------------------------------------------


class DAdaptLionState(NamedTuple):
    count: jax.Array
    hyperparams: dict[str, Any]
    k: jax.Array
    d: jax.Array
    numerator_weighted: jax.Array
    exp_avg: Any
    s: Any


def dadapt_lion(
    lr=1.0,
    betas=(0.9, 0.99),
    weight_decay=0.0,
    log_every: int = 0,
    d0=1e-6,
    fsdp_in_use: bool = False,
    *,
    groups: Groups = None,
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
    _flags(fsdp_in_use=fsdp_in_use)
    spec = gg.Groups("dadapt_lion", groups, param_labels, dict(weight_decay=gg.number))

    def init_fields(leaves, treedef, hp):
        return dict(
            k=jnp.zeros((), jnp.int32),
            d=gg.scalar(hp["d0"], leaves),
            numerator_weighted=gg.scalar(0.0, leaves),
            exp_avg=_zeros(leaves, treedef),
            s=_zeros(leaves, treedef),
        )

    def update_fields(grads, params, state, hp, leaf_hp, labels, treedef):
        beta1, beta2 = hp["beta1"], hp["beta2"]
        sqrt_beta2 = jnp.sqrt(beta2)
        dlr = state.d * hp["lr"]
        numerators, sk_l1, updates, columns = [], [], [], []
        for g, p, m, s, h in zip(
            grads, params, treedef.flatten_up_to(state.exp_avg), treedef.flatten_up_to(state.s), leaf_hp
        ):
            start = p * (1 - dlr * h["weight_decay"])
            u = jnp.sign(m * beta1 + (1 - beta1) * g)
            updates.append(base.update_from(p, start, -dlr * u))
            m = m * beta2 + ((1 - beta2) * dlr) * g
            numerators.append(dlr * jnp.vdot(u, s))
            s = s * sqrt_beta2 + ((1 - sqrt_beta2) * dlr) * u
            sk_l1.append(jnp.sum(jnp.abs(s)))
            columns.append((m, s))
        numerator_weighted = sqrt_beta2 * state.numerator_weighted + (1 - sqrt_beta2) * gg.total(numerators)
        sk_l1 = gg.total(sk_l1)
        d_hat = numerator_weighted / ((1 - sqrt_beta2) * sk_l1)
        d_new = jnp.where(hp["lr"] > 0, gg.larger(state.d, d_hat), state.d)
        m, s = (treedef.unflatten(list(column)) for column in zip(*columns))
        scalars = dict(k=state.k + 1, d=d_new, numerator_weighted=numerator_weighted)
        return updates, dict(gg.kept(sk_l1 == 0, scalars, state), exp_avg=m, s=s)

    return gg.transformation("dadapt_lion", DAdaptLionState, hyperparams, spec, init_fields, update_fields)
