"""Prodigy (Mishchenko and Defazio, 2023): Adam whose step size ``d`` is estimated on the fly from
sums over all parameters, twin of ``prodigyopt.Prodigy`` (prodigyopt 1.1.2)."""

from __future__ import annotations

import functools
import math
import operator
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

    Precision: the tensor ops round as torch's CPU kernels do (``add_`` with an ``alpha`` and
    ``addcmul_`` one fused multiply-add each: ``double_float.fma``); each leaf's dot product and
    ``|s|_1`` are reduced in the params' dtype, as torch reduces each tensor (in XLA's order, not
    MKL's or torch's: the one difference left); ``d``, ``dlr`` and the sums over leaves and
    updates are Python floats (float64) in the original, and double-float pairs here for float32 params
    (``purelr.optim.double_float``: ``state.low`` holds their low halves), rounded to float32
    where the original hands them to a tensor op. With ``fsdp_in_use`` the original sends its two
    sums through a float32 tensor (``torch.zeros(2)``), and what it computes from them stays a
    float32 tensor: ``d_numerator`` from the first update, ``d`` and ``d_max`` once ``d_hat``
    exceeds ``d0`` (until then ``d_max == d0``, which tells the two apart); their arithmetic is then
    float32 operations, each Python operand rounded to float32 first, and so it is here.

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
        # fsdp_in_use on float32 params (the docstring): ``tensor(is_tensor, python, f32)`` is the
        # value in force, the float32 op where the original's operand is a float32 tensor.
        fsdp32 = fsdp_in_use and not d.plain

        def tensor(is_tensor, python, f32):
            return df.where(is_tensor, df.of(f32(), dtype), python) if fsdp32 else python

        was_tensor = fsdp32 & ~(scalars["d_max"] == d0)
        dlr = tensor(was_tensor, d * lr, lambda: d.hi * lr.f32())
        if use_bias_correction:
            t = state.k + 1
            correction = (1 - beta2**t).sqrt() / (1 - beta1**t)
            dlr = tensor(was_tensor, dlr * correction, lambda: dlr.hi * correction.f32())
        ratio = tensor(was_tensor, d / d0, lambda: d.hi / d0.f32())
        # the float32 numbers torch's tensor ops are handed (Python floats rounded)
        m_alpha = tensor(was_tensor, d * (1 - beta1), lambda: d.hi * (1 - beta1).f32()).f32()
        v_alpha = tensor(was_tensor, d * d * (1 - beta2), lambda: d.hi * d.hi * (1 - beta2).f32()).f32()
        s_alpha = tensor(
            was_tensor,
            ratio * (d if safeguard_warmup else dlr),
            lambda: ratio.hi * (d.hi if safeguard_warmup else dlr.hi),
        )
        s_alpha = s_alpha.f32()
        buffers = [treedef.flatten_up_to(tree) for tree in (state.exp_avg_sq, state.s, state.p0)]
        exp_avgs = treedef.flatten_up_to(state.exp_avg) if keep_exp_avg else [None] * len(grads)
        numerators, denominators, moments = [], [], []
        for g, p, v, s, p0, m, on, h, f in zip(
            grads, params, *buffers, exp_avgs, active, leaf_hp, layouts(treedef.unflatten(grads))
        ):
            if decays and not decouple:
                g = df.fma(p, h["weight_decay"], g)  # torch's add_(p, alpha=...): one rounding
            if on:
                sg = sliced(g, f)
                dot = jnp.dot(sg, p0 - sliced(p, f))
                numerators.append((ratio * dlr * df.of(dot, dtype), _rounded(ratio.hi * dlr.hi * dot)))
                if m is not None:  # a scheduled beta1 of 0 leaves it, as the original does
                    m = jnp.where(beta1.hi > 0, df.fma(g, m_alpha, m * beta1.f32()), m)
                v = df.fma(v_alpha * g, g, v * beta2.f32())  # addcmul_
                s = df.fma(sg, s_alpha, s * beta3.f32())
                denominators.append(df.of(jnp.sum(jnp.abs(s)), dtype))
            moments.append((g, m, v, s))
        delta = df.total(python for python, _ in numerators) or df.of(0.0, dtype)
        d_numerator = scalars["d_numerator"] * beta3 + delta
        d_denom = df.total(denominators) or df.of(0.0, dtype)
        d_hat = given("d_coef") * d_numerator / d_denom
        if fsdp32:  # the sums as float32 tensors (``dist_tensor``), the rest float32 ops
            delta = tensor(
                was_tensor, delta, lambda: functools.reduce(operator.add, [f32 for _, f32 in numerators], 0.0)
            )
            d_numerator = df.of(_rounded(scalars["d_numerator"].f32() * beta3.f32()) + delta.f32(), dtype)
            d_hat = df.of(given("d_coef").f32() * d_numerator.hi / d_denom.f32(), dtype)
        # Python's max and min; a float compared with a float32 tensor is rounded to float32 first
        rounded = (lambda x: df.of(x.f32(), dtype)) if fsdp32 else (lambda x: x)
        d_new = df.where((d == d0) & (d_hat > rounded(d)), d_hat, d)
        d_max = df.where(d_hat > rounded(scalars["d_max"]), d_hat, scalars["d_max"])
        is_tensor = fsdp32 & ~(d_max == d0)
        grown = tensor(is_tensor, d_new * given("growth_rate"), lambda: d_new.hi * given("growth_rate").f32())
        d_new = df.smaller(d_max, grown)
        skip = (d_denom.hi == 0) & (not fsdp_in_use)
        dlr_step = (-dlr).f32()
        d_step = tensor(was_tensor | is_tensor, -dlr * d_new, lambda: -dlr.f32() * d_new.f32()).f32()
        updates = []
        for (g, m, v, _), p, h, label in zip(moments, params, leaf_hp, labels):
            eps_h = given("eps", h, label)
            denom = jnp.sqrt(v) + tensor(is_tensor, d_new * eps_h, lambda: d_new.hi * eps_h.f32()).f32()
            start = None
            if decays and decouple:
                decay = given("weight_decay", h, label)
                start = df.fma(p, tensor(was_tensor, -decay * dlr, lambda: -decay.f32() * dlr.hi).f32(), p)
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


def _rounded(product):
    """``product`` rounded before it is added to anything (XLA would fuse the two into one
    multiply-add, as torch's two scalar ops do not)."""
    return jax.lax.optimization_barrier(product)


def kernel_layouts(params):
    """A ``torch_layout`` for flax params: every leaf named ``kernel`` with two or more dimensions
    (``Dense``, ``Conv``: ``(*spatial, in, out)``) to torch's ``(out, in, *spatial)``, the others
    ``None``."""

    def leaf(path, x):
        if getattr(path[-1], "key", None) != "kernel" or jnp.ndim(x) < 2:
            return None
        return lambda k: jnp.transpose(k, (k.ndim - 1, k.ndim - 2, *range(k.ndim - 2)))

    return jax.tree_util.tree_map_with_path(leaf, params)
