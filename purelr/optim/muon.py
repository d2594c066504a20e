"""Muon, the twin of ``torch.optim.Muon`` (torch 2.13), for 2-D leaves.

At update ``k``, for each matrix ``theta`` (shape ``A x B``) with gradient ``g``::

    B_t   = lerp(B_{t-1}, g, 1 - momentum)            # = momentum B_{t-1} + (1 - momentum) g
    M     = lerp(g, B_t, momentum) if nesterov else B_t
    O     = NS(M)                                     # Newton-Schulz, in bfloat16
    theta = theta * (1 - lr * weight_decay) - adjusted_lr * O

``NS`` rounds ``M`` to bfloat16, transposes it when ``A > B``, divides it by
``max(||M||_F, eps)`` and runs ``ns_steps`` times ``X <- a X + (b G + c G G) X`` with
``G = X X^T``, rounding every product to bfloat16 where torch's ``addmm`` does (each matmul and
its scaled sum is one rounding of the float32 result). ``adjusted_lr`` is ``lr * sqrt(max(1, A/B))``
(``adjust_lr_fn=None`` or ``"original"``) or ``lr * 0.2 * sqrt(max(A, B))`` (``"match_rms_adamw"``).
``lerp`` is torch's vectorized CPU kernel (:func:`lerp`); float32 programs form the scalars as
torch does, in double from Python floats (:mod:`purelr.optim.double_float`), then round once.
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
from purelr.optim import hyperparams as hp
from purelr.optim.timm_common import stored
from purelr.schedules import validate
from purelr.schedules.core import resolve

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
ADJUST_LR_FNS = (None, "original", "match_rms_adamw")
LAYOUTS = ("torch", "flax")


class MuonState(NamedTuple):
    """``count`` updates done; ``hyperparams`` in force at the last one (``lr``,
    ``weight_decay``, ``momentum``); torch's ``momentum_buffer`` per leaf."""

    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as optax's states do
    hyperparams: dict
    momentum_buffer: optax.Updates


def _bf16(x):
    """Rounds to bfloat16 as torch does (through float32), kept in ``x``'s dtype."""
    return jax.lax.reduce_precision(_f32(x), exponent_bits=8, mantissa_bits=7)


def _f32(x):
    """Rounds to float32, kept in ``x``'s dtype (``reduce_precision``: XLA may drop a round trip
    through float32 that ``astype`` spells, fusing the operations around it)."""
    return jax.lax.reduce_precision(x, exponent_bits=8, mantissa_bits=23)


def fma(a, b, c):
    """``a * b + c`` rounded once, as torch's vectorized CPU kernels form it (``vec::fmadd``:
    ``add_(t, alpha=...)``, ``lerp_``, bfloat16 ``addmm``'s ``beta * C``). Under x64 the float64
    value (exact for float32 and bfloat16 operands); in float32 the exact product (TwoProduct,
    ``purelr.optim.double_float``) added to ``c`` in double-float, then rounded: XLA may or may
    not fuse ``a * b + c`` itself, which moves the result by a float32 unit now and then."""
    a, b, c = jnp.broadcast_arrays(a, b, c)
    if jnp.result_type(c) == jnp.float64:
        return a * b + c
    return (df.Wide(c, jnp.zeros_like(c)) + df._two_prod(a, b)).hi


def _rounded_product(a, b):
    """``a * b`` rounded to float32, where XLA cannot fuse it into the sum that follows (in float32
    mode it drops ``reduce_precision`` and an optimization barrier, and forms one fused
    multiply-add: measured on timm's batched Newton-Schulz): the exact product's high part."""
    if jnp.result_type(a, b) == jnp.float64:
        return _f32(jax.lax.optimization_barrier(_f32(a * b)))
    a, b = jnp.broadcast_arrays(a, b)
    return df._two_prod(a, b).hi


def lerp(start, end, weight):
    """torch's CPU ``start.lerp(end, weight)`` with a scalar weight (its vectorized kernel): one
    fused multiply-add, ``weight * (end - start) + start`` for ``|weight| < 0.5``, else
    ``(weight - 1) * (end - start) + end``."""
    small = jnp.abs(weight) < 0.5
    return fma(jnp.where(small, weight, weight - 1), end - start, jnp.where(small, start, end))


# torch sums the squares of a bfloat16 matrix in float32 over 16 vector lanes (AVX-512; a lane
# tree at the end, then the remainder in order: measured on this project's CPU); purelr sums those
# past 4096 entries exactly and rounds once (this moves the bfloat16 norm only on a tie)
NORM_LANES = 16
ORDERED_NORM_SIZE = 4096


def _norm(x):
    """torch's Frobenius norm of a bfloat16 matrix (in its memory order) before the rounding to
    bfloat16: the squares summed and the root taken in float32."""
    squares = (x * x).reshape(-1)
    if squares.size > ORDERED_NORM_SIZE:
        return _f32(jnp.sqrt(_f32(jnp.sum(squares))))
    full = squares.size // NORM_LANES * NORM_LANES
    chunks = squares[:full].reshape(-1, NORM_LANES)
    lanes = jnp.zeros(NORM_LANES, x.dtype)
    if chunks.shape[0]:  # fewer entries than lanes: the remainder loop below sums them
        lanes = jax.lax.fori_loop(0, chunks.shape[0], lambda i, acc: _f32(acc + chunks[i]), lanes)
    step = NORM_LANES // 2
    while step:
        lanes = _f32(lanes + lanes[np.arange(NORM_LANES) ^ step])
        step //= 2
    total = lanes[0]
    for i in range(full, squares.size):
        total = _f32(total + squares[i])
    return _f32(jnp.sqrt(total))


# torch's bmm / baddbmm sum a batch item directly when contraction * rows * cols < 400 (its naive
# kernel), else hand each item to cpublas' gemm, as mm and addmm do (with oneDNN off)
NAIVE_BMM_SIZE = 400


def _naive(a, b, batched: bool) -> bool:
    return batched and a.shape[0] * a.shape[1] * b.shape[1] < NAIVE_BMM_SIZE


def _matmul(a, b, in_order: bool = False):
    """``a @ b`` of bfloat16 values summed in float32 in the order of torch's CPU kernels (each
    product is exact in float32, so only the order of the sums matters). cpublas' gemm on two
    row-major operands keeps four partial sums (the products ``k = j, j + 4, ...`` in sum ``j``, the
    last ``k % 4`` in sum 0) and adds them up at the end; ``in_order``: one sum, ``k = 0, 1, ...``,
    as the naive bmm kernel, and cpublas where one operand is a transposed view (its dot product,
    in order below 32 terms: longer ones take the CPU's vector lanes, not reproduced here)."""
    lanes = 1 if in_order else 4
    rounds = a.shape[1] // lanes

    def add(r, acc):
        cols = jax.lax.dynamic_slice_in_dim(a, r * lanes, lanes, axis=1)
        rows = jax.lax.dynamic_slice_in_dim(b, r * lanes, lanes, axis=0)
        return _f32(acc + cols.T[:, :, None] * rows[:, None, :])

    zeros = jnp.zeros((lanes, a.shape[0], b.shape[1]), a.dtype)
    partial = jax.lax.fori_loop(0, rounds, add, zeros, unroll=max(1, min(rounds, 8))) if rounds else zeros
    total = partial[0]
    for k in range(rounds * lanes, a.shape[1]):
        total = _f32(total + a[:, k, None] * b[None, k, :])
    for j in range(1, lanes):
        total = _f32(total + partial[j])
    return total


def _addmm(c, a, b, beta: float, alpha: float, *, in_order: bool = False, naive: bool = False):
    """torch's bfloat16 ``addmm(c, a, b, beta=beta, alpha=alpha)`` (``naive``: ``baddbmm``'s naive
    kernel on one batch item) before its rounding to bfloat16 (``beta``, ``alpha``: float32 values).

    cpublas adds ``beta * c`` to ``f32(alpha * (a @ b))`` with one rounding (a fused multiply-add,
    :func:`fma`); the naive kernel rounds ``beta * c`` and ``alpha * (a @ b)`` to float32 and adds
    them (:func:`_rounded_product` keeps XLA from fusing a product into the sum)."""
    scaled = _matmul(a, b, in_order or naive)
    if alpha != 1:
        scaled = _rounded_product(jnp.asarray(alpha, scaled.dtype), scaled)
    if beta == 0:
        return scaled
    if naive:
        return _f32(_rounded_product(jnp.asarray(beta, c.dtype), c) + scaled)
    return fma(jnp.asarray(beta, c.dtype), c, scaled)


def newton_schulz(m, ns_coefficients=NS_COEFFICIENTS, ns_steps=5, eps=1e-7):
    """torch's ``_zeropower_via_newtonschulz`` on a matrix: bfloat16 values, returned in the
    working dtype (float64 under ``jax_enable_x64``, else float32).

    torch's bfloat16 ``addmm`` on CPU (oneDNN off) sums ``A @ B`` in float32 (``_matmul``), scales
    it by ``alpha`` and adds ``beta * C`` (``_addmm``), then rounds to bfloat16. Here the float32
    sums are formed in the same order and the final fused sum rounded once (:func:`fma`: exact in
    float64, double-float in float32 mode), so both modes give torch's bits. The ordered sums cost ``k / 4`` sequential
    steps per product, the price of bit-equality.
    """
    return newton_schulz_sequence(m, [ns_coefficients] * ns_steps, eps)


def newton_schulz_sequence(
    m, coefficients, eps=1e-7, *, safety_factor=1.0, add_eps: bool = False, batched: bool = False,
    contiguous: bool = False,
):  # fmt: skip
    """``newton_schulz`` with one ``(a, b, c)`` per step (timm's ``zeropower_via_newtonschulz``):
    the bfloat16 ``M`` (transposed when tall) is divided by ``max(||M||_F * safety_factor, eps)``
    (``||M||_F * safety_factor + eps`` with ``add_eps``), each factor rounded to bfloat16.
    ``batched``: ``M`` is one item of a batch that torch multiplies with ``baddbmm``;
    ``contiguous``: the transposed tall ``M`` is copied (timm) rather than kept a view (torch), which
    changes the kernel of the first step's product ``X' = a X + (b G + c G G) X``."""
    work = jax.dtypes.canonicalize_dtype(jnp.float64)
    x = _bf16(m.astype(work))
    norm = _bf16(_bf16(_norm(x)) * float(np.float32(safety_factor)))
    tall = m.shape[0] > m.shape[1]
    if tall:
        x = x.T
    if add_eps:
        x = _bf16(x / _bf16(norm + float(np.float32(eps))))
    else:
        x = _bf16(x / jnp.maximum(norm, _bf16(jnp.asarray(eps, work))))
    for step, coefficient in enumerate(coefficients):
        a, b, c = (float(np.float32(v)) for v in coefficient)
        naive = _naive(x, x.T, batched)
        gram = _bf16(_addmm(None, x, x.T, 0.0, 1.0, in_order=True, naive=naive))
        gram_update = _bf16(_addmm(gram, gram, gram, b, c, naive=naive))
        strided = tall and step == 0 and not contiguous
        x = _bf16(_addmm(x, gram_update, x, a, 1.0, in_order=strided, naive=naive))
    return x.T if tall else x


def decoupled_step(p, o, lr, weight_decay, scale: float, count):
    """torch's ``p.mul_(1 - lr * weight_decay); p.add_(o, alpha=-lr * scale)``, the new ``p``:
    ``lr``, ``weight_decay`` the original's Python floats (``double_float.hyper``), ``scale`` a
    Python float; each factor formed in double and rounded once to ``p``'s dtype, the decayed
    param stored (rounded) before the fused multiply-add."""
    decay = (1 - lr * weight_decay).hi.astype(p.dtype)
    step = (lr * scale).hi.astype(p.dtype)
    return fma(-step, o.astype(p.dtype), stored(p * decay, count))


def _adjusted_ratio(shape, adjust_lr_fn):
    rows, cols = shape
    if adjust_lr_fn == "match_rms_adamw":
        return 0.2 * math.sqrt(max(rows, cols))
    return math.sqrt(max(1, rows / cols))


def torch_views(params, layout: str):
    """``(to_torch, to_flax)``, functions of trees shaped as ``params``: with ``layout='flax'`` each
    leaf named ``kernel`` of ``n >= 2`` axes, flax's ``(*spatial, in, out)``, transposed to torch's
    ``(out, in, *spatial)`` and back; with ``'torch'`` both return the tree as it is."""
    treedef: Any = jax.tree.structure(params, is_leaf=base._is_masked)  # jax types PyTreeDef as a bare alias

    def axes(path, p):
        name = getattr(path[-1], "key", getattr(path[-1], "name", None)) if path else None
        if layout != "flax" or name != "kernel" or base._is_masked(p) or p is None or jnp.ndim(p) < 2:
            return None
        n = jnp.ndim(p)
        return (n - 1, n - 2, *range(n - 2))

    to_torch = treedef.flatten_up_to(jax.tree_util.tree_map_with_path(axes, params, is_leaf=base._is_masked))
    to_flax = [None if perm is None else tuple(int(i) for i in np.argsort(perm)) for perm in to_torch]

    def view(perms):
        def apply(tree):
            if tree is None or layout != "flax":
                return tree
            leaves = treedef.flatten_up_to(tree)
            return treedef.unflatten(
                [
                    x if perm is None or x is None or base._is_masked(x) else jnp.transpose(x, perm)
                    for x, perm in zip(leaves, perms)
                ]
            )

        return apply

    return view(to_torch), view(to_flax)


def _check_2d(tree):
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        if jnp.ndim(leaf) != 2:
            raise ValueError(
                f"muon only supports 2-D parameters, found shape {tuple(jnp.shape(leaf))} at "
                f"{jax.tree_util.keystr(path)} (use another optimizer for it, e.g. with "
                f"optax.multi_transform)"
            )


def muon(
    lr=1e-3,
    weight_decay=0.1,
    momentum=0.95,
    nesterov: bool = True,
    ns_coefficients=NS_COEFFICIENTS,
    eps: float = 1e-7,
    ns_steps: int = 5,
    adjust_lr_fn: str | None = None,
    *,
    layout: str = "torch",
) -> optax.GradientTransformation:
    """Twin of ``torch.optim.Muon`` (see the module docstring for the formula).

    ``lr``, ``weight_decay`` and ``momentum`` may be floats or schedules (read at the update's
    ``count``). Every leaf must be a real matrix (``ValueError`` otherwise, at ``init``).
    Validation is torch's: ``lr >= 0``, ``momentum >= 0``, ``weight_decay >= 0``, ``adjust_lr_fn``
    one of ``None``, ``"original"``, ``"match_rms_adamw"``, plus what torch checks at its first
    step: three ``ns_coefficients`` and ``ns_steps < 100``; finite ``ns_coefficients``.

    ``layout='flax'``: leaves named ``kernel`` are flax's ``(in, out)`` and step as torch steps the
    ``(out, in)`` weight, its transpose (``adjusted_lr`` from torch's shape); other leaves, and every
    leaf with ``'torch'``, are read as torch lays them out.
    """
    lr = hp.check("lr", lr)
    momentum = hp.check("momentum", momentum)
    weight_decay = hp.check("weight_decay", weight_decay)
    validate.one_of("layout", layout, LAYOUTS)
    if adjust_lr_fn not in ADJUST_LR_FNS:
        raise ValueError(f"Invalid adjust_lr_fn: {adjust_lr_fn!r} (must be one of {ADJUST_LR_FNS})")
    if len(ns_coefficients) != 3:
        raise ValueError(f"Invalid ns_coefficients: {ns_coefficients!r} (must be 3 values)")
    ns_coefficients = tuple(hp.check(f"ns_coefficients[{i}]", c, minimum=None) for i, c in enumerate(ns_coefficients))
    ns_steps = validate.nonnegative_int("ns_steps", ns_steps)
    if ns_steps >= 100:
        raise ValueError(f"Invalid ns_steps: {ns_steps!r} (must be < 100)")
    schedules = {"lr": lr, "weight_decay": weight_decay, "momentum": momentum}
    complement = base.one_minus(momentum)

    def init_fn(params):
        base.check_real("muon", params)
        _check_2d(params)
        return MuonState(
            count=jnp.zeros((), jnp.int32),
            hyperparams=hp.initial(schedules),
            momentum_buffer=jax.tree.map(jnp.zeros_like, params),
        )

    def update_fn(updates, state, params):
        if params is None:
            raise ValueError("muon needs params (for its decoupled weight decay)")
        base.check_real("muon", params)
        _check_2d(updates)
        values = hp.in_force(schedules, state.count)
        mu, c = values["momentum"], resolve(complement, state.count)

        def leaf(g, p, buf):
            g = g.astype(p.dtype)
            buf = lerp(buf, g, df.hyper(complement, c, p.dtype).hi.astype(p.dtype))
            m = lerp(g, buf, df.hyper(momentum, mu, p.dtype).hi.astype(p.dtype)) if nesterov else buf
            o = newton_schulz(m, ns_coefficients, ns_steps, eps)
            lr_, wd = (df.hyper(raw, values[k], p.dtype) for raw, k in ((lr, "lr"), (weight_decay, "weight_decay")))
            return decoupled_step(p, o, lr_, wd, _adjusted_ratio(p.shape, adjust_lr_fn), state.count) - p, buf

        torch_view, flax_view = torch_views(params, layout)
        out = jax.tree.map(leaf, torch_view(updates), torch_view(params), torch_view(state.momentum_buffer))
        treedef: Any = jax.tree.structure(updates)  # jax types PyTreeDef as a bare alias
        new_updates, buffers = (flax_view(treedef.unflatten(parts)) for parts in zip(*treedef.flatten_up_to(out)))
        return new_updates, MuonState(state.count + 1, values, buffers)

    return optax.GradientTransformation(init_fn, update_fn)
