"""timm 1.0.31's ``timm.optim.Muon`` (its registry names ``muon``, ``nmuon``, ``adamuon``, ``nadamuon``):
Muon or AdaMuon on the leaves it suits, timm's AdamW (``adamw_legacy``) or NAdamW (``nesterov``)
on the others.

On a Muon leaf (``lerp`` torch's, ``NS`` bfloat16 Newton-Schulz, ``purelr.optim.muon``)::

    param *= 1 - lr * weight_decay
    buf = lerp(buf, g, 1 - momentum);  M = lerp(g, buf, momentum) if nesterov else buf
    O = NS(M viewed as a matrix (out, in * prod(spatial)), or as prod(spatial) matrices (out, in) with
           conv_mode='batched'), one (a, b, c) per step of ns_coefficients (the last repeated),
           dividing by max(||M|| * safety_factor, eps) (scale_eps: + eps * sqrt(in / out))
    muon:     param -= lr * scale * O      scale: 'original' sqrt(max(1, out / in)),
                                             'match_rms_adamw' 0.2 sqrt(max(out, in)), 'rms_to_rms'
                                             sqrt(out / in), None 1 (of O's matrix shape)
    adamuon:  exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * O * O
              U = O / (sqrt(exp_avg_sq / (1 - beta2 ** t)) + eps)
              ('match_rms_adamw': U = O / (sqrt(exp_avg_sq) + eps); U /= ||U|| + eps; scale
              0.2 sqrt(numel))
              param -= lr * scale * U      ('rms_to_rms' sqrt(out / in), 'rsqrt_in' in ** -0.5)

times ``prod(spatial) ** -0.5`` with ``conv_mode='batched'`` and ``normalize_spatial``. A leaf
suits Muon (timm's ``_is_suitable_for_muon``) when it has two dimensions above 1, neither of its
first two is 1, and its matrix view (out, in * spatial) has both sides at least 4 and an aspect
ratio at most 128; ``use_fallback=True`` (timm's group flag) sends every leaf to the fallback,
``use_muon`` (``True``/``False``) decides for every leaf. The fallback steps with
``lr * fallback_lr_scale``, ``betas``, ``eps`` and ``weight_decay``.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from purelr.optim import base
from purelr.optim import double_float as df
from purelr.optim import hyperparams as hp_lib
from purelr.optim.adamw_legacy import adamw_legacy
from purelr.optim.muon import LAYOUTS, decoupled_step, lerp, newton_schulz_sequence, torch_views
from purelr.optim.nadamw import nadamw
from purelr.optim.timm_common import stored
from purelr.schedules import validate
from purelr.schedules.core import resolve

# timm's coefficient presets (timm/optim/muon.py ``_COEFFICIENTS``): Keller Jordan's, You Jiacheng's
# per-step quintic, and Polar Express (arXiv:2505.16932) with safety 1e-2 and 2e-2.
COEFFICIENTS = {
    "original": [(3.4445, -4.7750, 2.0315)],
    "quintic": [
        (4.0848, -6.8946, 2.9270),
        (3.9505, -6.3029, 2.6377),
        (3.7418, -5.5913, 2.3037),
        (2.8769, -3.1427, 1.2046),
        (2.8366, -3.0525, 1.2012),
    ],
    "polar_express": [
        (8.237312490495555, -23.157747414558198, 16.680568411445915),
        (4.082441999064835, -2.893047735332586, 0.5252849256975648),
        (3.9263479922546582, -2.8547468034765298, 0.5318022422894988),
        (3.2982187133085143, -2.424541981026706, 0.48632008358844075),
        (2.2970369434552573, -1.63662558125903, 0.4002628455953627),
        (1.8763805351440397, -1.2347896577722228, 0.35891887501668385),
        (1.8564423485617974, -1.2132449880935525, 0.3568003487825883),
        (1.8749994008682747, -1.2499988017229169, 0.3749994008546422),
    ],
    "polar_express_safer": [
        (8.156554524902461, -22.48329292557795, 15.878769915207462),
        (4.0429299351667245, -2.808917465908704, 0.5000178451051299),
        (3.8916678022926563, -2.7724841532176825, 0.5060648178503389),
        (3.285753657755658, -2.3681294933425394, 0.46449024233003117),
        (2.3005307116270983, -1.6111665557258408, 0.3833374427545273),
        (1.8631210546382593, -1.2042160621002727, 0.3421879560523383),
        (1.8382572152247512, -1.1779263289537742, 0.3396513038637379),
        (1.8749999923301852, -1.2499999836060613, 0.374999991275876),
    ],
}
MUON_SCALES = (None, "original", "match_rms_adamw", "rms_to_rms")
ADAMUON_SCALES = (None, "match_rms_adamw", "rms_to_rms", "rsqrt_in")
CONV_MODES = ("flatten", "batched")
ALGOS = ("muon", "adamuon")


class TimmMuonState(NamedTuple):
    """The Muon leaves' ``count``, ``hyperparams`` and buffers (AdaMuon's ``exp_avg_sq``, None for
    Muon); in ``timm_muon``'s ``optax.multi_transform`` state under ``"muon"``, the fallback's
    (``AdamWLegacyState`` / ``NAdamWState``) under ``"fallback"``."""

    count: jax.Array  # type: ignore[assignment]
    hyperparams: dict[str, jax.Array]
    momentum_buffer: Any
    exp_avg_sq: Any


def ns_coefficients_list(value, steps: int) -> list[tuple[float, ...]]:
    """timm's ``resolve_ns_coefficients`` then its per-step sequence: a preset name, one triple or a
    list of triples, cut to ``steps`` or padded with its last triple."""
    if isinstance(value, str):
        triples: list = COEFFICIENTS[validate.one_of("ns_coefficients", value, tuple(COEFFICIENTS))]
    else:
        value = list(value)
        single = len(value) == 3 and all(_is_real(v) for v in value)
        triples = [value] if single else value
        if not triples:
            raise ValueError(f"Invalid ns_coefficients: {value!r} (the list cannot be empty)")
        for triple in triples:
            if isinstance(triple, (str, bytes)) or len(list(triple)) != 3 or not all(_is_real(v) for v in triple):
                raise ValueError(f"Invalid ns_coefficients: {value!r} (each must be 3 real numbers, got {triple!r})")
    floats = [tuple(float(v) for v in triple) for triple in triples]
    return floats[:steps] + [floats[-1]] * max(0, steps - len(floats))


def _is_real(value) -> bool:
    return isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)


def suitable_for_muon(shape, min_dim_size: int = 4, max_aspect_ratio: float = 128.0) -> bool:
    """timm's ``_is_suitable_for_muon`` on a torch-layout shape ``(out, in, *spatial)``."""
    if len(shape) < 2 or sum(size > 1 for size in shape) < 2 or shape[0] == 1 or shape[1] == 1:
        return False
    dims = (shape[0], math.prod(shape[1:]))
    return min(dims) >= min_dim_size and max(dims) / min(dims) <= max_aspect_ratio


def lr_scale(shape, adjust_lr_fn, algo: str) -> tuple[float, bool]:
    """``(scale, rms_norm)`` of timm's ``get_lr_scale`` (Muon) / ``get_adamuon_lr_scale`` for the
    shape of Newton-Schulz's output."""
    out, inp = shape[-2], shape[-1]
    if adjust_lr_fn is None:
        return 1.0, False
    if adjust_lr_fn == "rms_to_rms":
        return (out / inp) ** 0.5, False
    if algo == "adamuon":
        if adjust_lr_fn == "match_rms_adamw":
            return 0.2 * math.prod(shape) ** 0.5, True
        return inp**-0.5, False
    if adjust_lr_fn == "original":
        return max(1, out / inp) ** 0.5, False
    return 0.2 * max(out, inp) ** 0.5, False


def _matrices(m, conv_mode: str):
    if m.ndim == 2:
        return m
    if conv_mode == "flatten":
        return m.reshape(m.shape[0], -1)
    return m.reshape(m.shape[0], m.shape[1], -1).transpose(2, 0, 1)


def _restored(o, shape, conv_mode: str):
    if o.ndim == 3:
        o = o.transpose(1, 2, 0)
    return o.reshape(shape)


def _orthogonalized(m, coefficients, eps, safety_factor, scale_eps: bool):
    """timm's ``zeropower_via_newtonschulz`` on a matrix or a batch of matrices."""
    if scale_eps:
        eps = eps * (m.shape[-1] / m.shape[-2]) ** 0.5

    def one(x):
        return newton_schulz_sequence(
            x, coefficients, eps, safety_factor=safety_factor, add_eps=scale_eps, batched=m.ndim == 3, contiguous=True
        )

    return one(m) if m.ndim == 2 else jax.vmap(one)(m)


def _muon_leaves(
    lr, weight_decay, momentum, beta2, *, nesterov, coefficients, eps, safety_factor, adjust_lr_fn, conv_mode,
    normalize_spatial, algo, scale_eps, layout,
) -> optax.GradientTransformation:  # fmt: skip
    schedules = {"lr": lr, "weight_decay": weight_decay, "momentum": momentum}
    if algo == "adamuon":
        schedules["beta2"] = beta2
    complement, complement2 = base.one_minus(momentum), base.one_minus(beta2)
    log_beta2 = base.log_of(complement2) if algo == "adamuon" else None

    def init_buffers(params, hp):
        return dict(momentum_buffer=base.zeros(params), exp_avg_sq=base.zeros(params) if algo == "adamuon" else None)

    def update_buffers(grads, state, params, hp):
        base.require_params(params, True, "timm_muon")
        t = base.step_number(state.count)
        bias_correction2 = None if log_beta2 is None else base.bias_correction(log_beta2, t, state.count)
        mu, c, c2 = hp["momentum"], resolve(complement, state.count), resolve(complement2, state.count)

        def leaf(g, p, buf, v):
            def python_float(raw, value):  # a number timm holds as a Python float, rounded once
                return df.hyper(raw, value, p.dtype).hi.astype(p.dtype)

            buf = lerp(buf, g, python_float(complement, c))
            m = lerp(g, buf, python_float(momentum, mu)) if nesterov else buf
            matrices = _matrices(m, conv_mode)
            o = _orthogonalized(matrices, coefficients, eps, safety_factor, scale_eps)
            scale, rms_norm = lr_scale(o.shape, adjust_lr_fn, algo)
            spatial = math.prod(m.shape[2:]) if m.ndim >= 3 and conv_mode == "batched" and normalize_spatial else 1
            o = _restored(o, m.shape, conv_mode).astype(p.dtype)
            if algo == "adamuon":  # exp_avg_sq.mul_(beta2).addcmul_(O, O, value=1 - beta2): each op rounded
                v = stored(v * hp["beta2"], state.count)
                v = v + stored(python_float(complement2, c2) * o * o, state.count)
                o = o / (jnp.sqrt(v if rms_norm else v / bias_correction2) + eps)
                if rms_norm:
                    o = o / (jnp.sqrt(jnp.sum(o * o)) + eps)
            lr_, wd = (df.hyper(raw, hp[k], p.dtype) for raw, k in ((lr, "lr"), (weight_decay, "weight_decay")))
            return decoupled_step(p, o, lr_, wd, scale * spatial**-0.5, state.count) - p, buf, v

        torch_view, flax_view = torch_views(params, layout)
        updates, buf, v = base.leafwise(
            leaf, torch_view(grads), torch_view(params), torch_view(state.momentum_buffer), torch_view(state.exp_avg_sq)
        )
        return flax_view(updates), dict(momentum_buffer=flax_view(buf), exp_avg_sq=flax_view(v))

    return base.transformation(TimmMuonState, schedules, init_buffers, update_buffers)


def timm_muon(
    lr=0.02,
    weight_decay=0.0,
    momentum=0.95,
    nesterov: bool = False,
    ns_steps: int = 5,
    ns_coefficients="quintic",
    eps: float = 1e-7,
    safety_factor: float = 1.0,
    adjust_lr_fn: str | None = "match_rms_adamw",
    conv_mode: str = "flatten",
    normalize_spatial: bool = True,
    adamw_lr=None,
    fallback_lr_scale: float = 1.0,
    betas=(0.9, 0.95),
    algo: str = "muon",
    scale_eps: bool = False,
    capturable: bool = False,
    verbose: bool = False,
    *,
    use_fallback: bool = False,
    use_muon: bool | None = None,
    layout: str = "torch",
) -> optax.GradientTransformation:
    """Twin of timm 1.0.31's ``timm.optim.Muon`` (the module docstring gives the arithmetic).

    ``lr``, ``weight_decay``, ``momentum`` and ``betas`` may be schedules; ``adamw_lr`` (deprecated
    in timm) sets ``fallback_lr_scale = adamw_lr / lr``. ``use_fallback`` / ``use_muon`` are timm's
    param-group flags (``purelr.params`` groups give them per group). ``layout='flax'``: leaves named
    ``kernel`` are read as flax's ``(*spatial, in, out)``. ``capturable`` and ``verbose`` are
    accepted and ignored. Validation as timm's: ``lr``, ``weight_decay``, ``eps`` >= 0,
    ``0 <= momentum < 1``, ``conv_mode`` and ``algo`` known, ``adjust_lr_fn`` known for ``algo``
    (timm asserts it at the first step), ``ns_coefficients`` a preset or real triples.
    """
    lr = hp_lib.check("lr", lr)
    weight_decay = hp_lib.check("weight_decay", weight_decay)
    momentum = hp_lib.check("momentum", momentum, maximum=1.0, maximum_open=True)
    eps = validate.nonnegative("eps", eps)
    validate.one_of("conv_mode", conv_mode, CONV_MODES)
    validate.one_of("algo", algo, ALGOS)
    validate.one_of("layout", layout, LAYOUTS)
    allowed = ADAMUON_SCALES if algo == "adamuon" else MUON_SCALES
    if adjust_lr_fn not in allowed:
        raise ValueError(f"Invalid adjust_lr_fn: {adjust_lr_fn!r} for algo={algo!r} (must be one of {allowed})")
    ns_steps = validate.nonnegative_int("ns_steps", ns_steps)
    coefficients = ns_coefficients_list(ns_coefficients, ns_steps)
    safety_factor = validate.finite("safety_factor", safety_factor)
    beta1, beta2 = base.check_betas(betas)
    base.device_flags(capturable=capturable)
    if adamw_lr is not None:
        if callable(lr) or lr == 0:
            raise ValueError(
                f"adamw_lr={adamw_lr!r} needs a constant nonzero lr (fallback_lr_scale = adamw_lr / lr), got lr={lr!r}: "
                f"give fallback_lr_scale"
            )
        fallback_lr_scale = adamw_lr / lr
    fallback_lr_scale = validate.finite("fallback_lr_scale", fallback_lr_scale)
    core = _muon_leaves(
        lr, weight_decay, momentum, beta2, nesterov=nesterov, coefficients=coefficients, eps=eps,
        safety_factor=safety_factor, adjust_lr_fn=adjust_lr_fn, conv_mode=conv_mode,
        normalize_spatial=normalize_spatial, algo=algo, scale_eps=scale_eps, layout=layout,
    )  # fmt: skip
    fallback_lr = (lambda k: resolve(lr, k) * fallback_lr_scale) if callable(lr) else lr * fallback_lr_scale
    fallback = (nadamw if nesterov else adamw_legacy)(fallback_lr, (beta1, beta2), eps, weight_decay)

    def labels(params):
        def label(path, p):
            shape = jnp.shape(p)
            if layout == "flax" and path and getattr(path[-1], "key", None) == "kernel" and len(shape) >= 2:
                shape = (shape[-1], shape[-2], *shape[:-2])
            if use_fallback:
                return "fallback"
            if use_muon is not None:
                return "muon" if use_muon else "fallback"
            return "muon" if suitable_for_muon(shape) else "fallback"

        return jax.tree_util.tree_map_with_path(label, params)

    return optax.multi_transform({"muon": _if_any(core), "fallback": _if_any(fallback)}, labels)


def _if_any(inner: optax.GradientTransformation) -> optax.GradientTransformation:
    """``inner``, leaving its state as it is at an update where ``multi_transform`` gives it no leaf
    (a group with no leaf for Muon, or none for the fallback)."""

    def update_fn(updates, state, params=None):
        if all(base._is_masked(x) for x in jax.tree.leaves(updates, is_leaf=base._is_masked)):
            return updates, state
        return inner.update(updates, state, params)

    return optax.GradientTransformation(inner.init, update_fn)
