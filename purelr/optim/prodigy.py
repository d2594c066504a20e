"""Prodigy (Mishchenko and Defazio, 2023): Adam whose step size ``d`` is estimated on the fly from
sums over all parameters, twin of ``prodigyopt.Prodigy`` (prodigyopt 1.1.2)."""

from __future__ import annotations

import math
from typing import Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import optax

from purelr.optim import base
from purelr.optim import double_float as df
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
    s: Any  # flat, every slice_p-th entry (of the param in torch's layout with torch_layout)
    p0: Any  # the initial params, flat, every slice_p-th entry (likewise)
    low: dict[str, jax.Array]  # the low halves of d, d_max, d_numerator (purelr.optim.double_float)
    torch_order: jax.Array  # s and p0 slice the params in torch's layout (torch_layout given)


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
    torch_layout=None,
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
    its first group).

    Precision: each leaf's dot product and ``|s|_1`` are reduced in the params' dtype, as torch
    reduces each tensor; ``d``, ``dlr`` and the sums over leaves and updates are Python floats
    (float64) in the original, and double-float pairs here for float32 params
    (``purelr.optim.double_float``: ``state.low`` holds their low halves), rounded to float32
    where the original hands them to a tensor op.

    ``torch_layout``: with ``slice_p > 1`` the original slices each param flattened in torch's
    layout, so for a param whose layout differs (a flax conv kernel ``(kh, kw, in, out)``, torch
    ``(out, in, kh, kw)``) it sums other entries than a slice of the flax param. ``torch_layout``
    gives per param a function taking it to torch's layout (or ``None``: the same layout), as a
    tree like the params or a function of the params (``kernel_layouts``: every ``kernel``);
    ``s`` and ``p0`` then hold the entries torch holds, in torch's order, and ``from_torch`` /
    ``to_torch`` copy them as they are (``state.torch_order``).
    """
    if torch_layout is not None and not callable(torch_layout) and not isinstance(torch_layout, Mapping):
        raise ValueError(
            f"prodigy: torch_layout must be a tree of functions or a function of the params, got {torch_layout!r}"
        )
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

    def layouts(params) -> list:
        if torch_layout is None:
            return [None] * len(jax.tree.leaves(params))
        tree = torch_layout(params) if callable(torch_layout) else torch_layout
        found = jax.tree.leaves(tree, is_leaf=lambda x: x is None)
        if len(found) != len(jax.tree.leaves(params)) or not all(f is None or callable(f) for f in found):
            raise ValueError(
                f"prodigy: torch_layout must give one function or None per param ({len(jax.tree.leaves(params))}), "
                f"got {tree!r}"
            )
        return found

    def sliced(x, layout):
        return (x if layout is None else layout(x)).ravel()[::slice_p]

    def init_fields(leaves, treedef, hp):
        dtype = gg.scalar(0.0, leaves).dtype
        d0_value = df.hyper(hyperparams["d0"], hp["d0"], dtype)
        return dict(
            k=jnp.zeros((), jnp.int32),
            **gg.wide_init(dict(d=d0_value, d_max=d0_value, d_numerator=df.of(0.0, dtype))),
            exp_avg=treedef.unflatten([jnp.zeros_like(p) for p in leaves]) if keep_exp_avg else None,
            exp_avg_sq=treedef.unflatten([jnp.zeros_like(p) for p in leaves]),
            s=treedef.unflatten(
                [jnp.zeros_like(sliced(p, f)) for p, f in zip(leaves, layouts(treedef.unflatten(leaves)))]
            ),
            p0=treedef.unflatten([sliced(p, f) for p, f in zip(leaves, layouts(treedef.unflatten(leaves)))]),
            torch_order=jnp.asarray(torch_layout is not None),
        )

    def update_fields(grads, params, state, hp, leaf_hp, labels, treedef):
        active = [lr_ != 0 for lr_ in spec.static("lr", labels, 1.0)]
        scalars = gg.wide_scalars(state, ("d", "d_max", "d_numerator"))
        d, dtype = scalars["d"], state.d.dtype

        def given(name, h=hp, label=None):  # the original's Python float
            return df.hyper(spec.given(hyperparams, name, label), h[name], dtype)

        beta1, beta2 = given("beta1"), given("beta2")
        beta3 = given("beta3") if "beta3" in hp else beta2.sqrt()
        lr = given("lr") if any(active) else df.of(0.0, dtype)
        d0 = given("d0")
        dlr = d * lr
        if use_bias_correction:
            t = state.k + 1
            dlr = dlr * ((1 - beta2**t).sqrt() / (1 - beta1**t))
        ratio = d / d0
        # the float32 numbers torch's tensor ops are handed (Python floats rounded)
        m_alpha, v_alpha = (d * (1 - beta1)).f32(), (d * d * (1 - beta2)).f32()
        s_alpha = (ratio * (d if safeguard_warmup else dlr)).f32()
        buffers = [treedef.flatten_up_to(tree) for tree in (state.exp_avg_sq, state.s, state.p0)]
        exp_avgs = treedef.flatten_up_to(state.exp_avg) if keep_exp_avg else [None] * len(grads)
        numerators, denominators, moments = [], [], []
        for g, p, v, s, p0, m, on, h, f in zip(
            grads, params, *buffers, exp_avgs, active, leaf_hp, layouts(treedef.unflatten(grads))
        ):
            if decays and not decouple:
                g = g + h["weight_decay"] * p
            if on:
                sg = sliced(g, f)
                numerators.append(ratio * dlr * df.of(jnp.dot(sg, p0 - sliced(p, f)), dtype))
                if m is not None:  # a scheduled beta1 of 0 leaves it, as the original does
                    m = jnp.where(beta1.hi > 0, m * beta1.f32() + m_alpha * g, m)
                v = v * beta2.f32() + v_alpha * g * g
                s = s * beta3.f32() + s_alpha * sg
                denominators.append(df.of(jnp.sum(jnp.abs(s)), dtype))
            moments.append((g, m, v, s))
        d_numerator = scalars["d_numerator"] * beta3 + (df.total(numerators) or 0.0)
        d_denom = df.total(denominators) or df.of(0.0, dtype)
        d_hat = given("d_coef") * d_numerator / d_denom
        d_new = df.where(d == d0, df.larger(d, d_hat), d)
        d_max = df.larger(scalars["d_max"], d_hat)
        d_new = df.smaller(d_max, d_new * given("growth_rate"))
        skip = (d_denom.hi == 0) & (not fsdp_in_use)
        dlr_step, d_step = (-dlr).f32(), (-dlr * d_new).f32()
        updates = []
        for (g, m, v, _), p, h, label in zip(moments, params, leaf_hp, labels):
            denom = jnp.sqrt(v) + (d_new * given("eps", h, label)).f32()
            start = p + (-given("weight_decay", h, label) * dlr).f32() * p if decays and decouple else None
            step = (d_step * g) / denom
            if m is not None:
                step = jnp.where(beta1.hi > 0, (dlr_step * m) / denom, step)
            updates.append(jnp.where(skip, jnp.zeros_like(p), base.update_from(p, start, step)))
        columns = [treedef.unflatten(list(column)) for column in zip(*moments)]
        new = dict(d=d_new, d_max=d_max, d_numerator=d_numerator)
        return updates, dict(
            gg.wide_kept(skip, new, state),
            k=jnp.where(skip, state.k, state.k + 1),
            exp_avg=columns[1] if keep_exp_avg else None,
            exp_avg_sq=columns[2],
            s=columns[3],
            p0=state.p0,
            torch_order=state.torch_order,
        )

    return gg.transformation("prodigy", ProdigyState, hyperparams, spec, init_fields, update_fields)


def kernel_layouts(params):
    """A ``torch_layout`` for flax params: every leaf named ``kernel`` with two or more dimensions
    (``Dense``, ``Conv``: ``(*spatial, in, out)``) to torch's ``(out, in, *spatial)``, the others
    ``None``."""

    def leaf(path, x):
        if getattr(path[-1], "key", None) != "kernel" or jnp.ndim(x) < 2:
            return None
        return lambda k: jnp.transpose(k, (k.ndim - 1, k.ndim - 2, *range(k.ndim - 2)))

    return jax.tree_util.tree_map_with_path(leaf, params)
