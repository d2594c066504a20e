"""SOAP (Vyas et al., 2024, arXiv:2409.11321: Adam in the eigenbasis of Shampoo's preconditioner)
as heavyball 3.2.1 steps it (``heavyball.SOAP``, its ``scale_by_soap`` chain).

Per parameter, its dimensions merged as heavyball's ``dim_merger`` merges them (``merge_dims``),
each dimension ``i`` of size at most ``max_precond_dim`` (and not 1; a 1-D parameter only with
``precondition_1d``) keeps a Gram matrix ``GG_i`` (``G G^T`` contracted over the other dimensions)
and an orthogonal basis ``Q_i``. ``project(x)`` multiplies every such dimension by ``Q_i^T``,
``project_back`` by ``Q_i``; ``debias(b, n) = 1 - (1 - b) / (1 - b ** n)``. At heavyball's step
``t = count + 1``::

    t = 1:   GG_i = outer_i(g);  Q_i = eigenvectors of GG_i, largest eigenvalue first;  no update
    t > 1:   b1, b2 = debias(beta1, t - 1), debias(beta2, t - 1)  (beta2 = 1 - t ** -beta2_scale with palm)
             exp_avg = lerp(exp_avg, project(g), 1 - b1)
             exp_avg_sq = lerp(exp_avg_sq, project(g) ** 2, 1 - b2)
             u = project_back(exp_avg / max(sqrt(exp_avg_sq), eps))
             GG_i = lerp(GG_i, outer_i(g), 1 - debias(shampoo_beta, t))
             every precondition_frequency-th step: Q_i = qr_step(GG_i, Q_i), exp_avg rotated into it
             lr_t = lr * t / max(t, warmup_steps + 1)
             u = caution(u, g)   (caution: zero where signs differ, times numel / kept)
             param = param * (1 - weight_decay * lr_t) - lr_t * u
                     (cautious_weight_decay: decay only where param and u share their sign bit)

``qr_step``: one step of subspace iteration, ``QR(GG Q + lift * max|e| * Q)`` with the columns taken
in descending order of ``e = diag(Q^T GG Q)`` and put back in place, signs making ``R``'s diagonal
positive; ``lift = max(1e-8, min(64 n eps_dtype, 0.125))``.

The first basis is ``eigh`` of one gradient's Gram matrix: where its null space has dimension 2 or
more (``G G^T`` of an ``m x n`` gradient with ``m > n + 1``), the basis chosen there is the LAPACK
implementation's, and torch's and JAX's choose differently: both are valid SOAP runs, but they
part from the first update on. Elsewhere the basis is unique up to column signs, which the
params do not depend on.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from purelr.optim import base
from purelr.optim import hyperparams as hp_lib


class SOAPState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]
    hyperparams: dict[str, jax.Array]
    cumulative_prob: jax.Array
    exp_avg: Any
    exp_avg_sq: Any
    GG: Any
    Q: Any


_REFUSED = dict(
    split="splits large dimensions into blocks",
    mars="adds MARS' gradient correction",
    use_precond_schedule="replaces precondition_frequency by a step-dependent probability",
    precond_grad_accum="accumulates gradients between preconditioner updates",
)


def soap(
    lr=3e-3,
    betas=(0.9, 0.95),
    shampoo_beta=0.95,
    eps=1e-8,
    weight_decay=0.01,
    cautious_weight_decay: bool = False,
    precondition_frequency: int = 2,
    max_precond_dim: int = 2048,
    merge_dims: bool = True,
    precondition_1d: bool = False,
    warmup_steps: int = 0,
    split: bool = False,
    multi_tensor: bool = True,
    mars: bool = False,
    caution: bool = False,
    palm: bool = False,
    beta2_scale=0.8,
    use_precond_schedule: bool = False,
    storage_dtype: str = "float32",
    precond_grad_accum: bool = False,
    compile_step: bool = False,
    promote: bool = False,
) -> optax.GradientTransformation:
    """Twin of heavyball 3.2.1's ``heavyball.SOAP`` (the formula in the module docstring), with its
    keyword names and defaults; every number but the integers may be a schedule.

    ``multi_tensor``, ``compile_step`` and ``promote`` are accepted and ignored (heavyball's
    buckets and compilation do not change the arithmetic); ``split``, ``mars``,
    ``use_precond_schedule`` and ``precond_grad_accum`` are refused (not twinned yet), as are
    heavyball's ``gradient_clipping`` / ``update_clipping`` / ``ecc`` (not keywords here).
    ``storage_dtype`` is the dtype ``exp_avg`` and ``exp_avg_sq`` are kept in; the arithmetic is
    heavyball's where it is the params' dtype (pass ``"float64"`` under x64, as heavyball needs).
    heavyball decides a preconditioner update by a running sum of ``1 / precondition_frequency``
    in Python floats (``cumulative_prob``; 3 updates at steps 3, 7, 9, ... not 3, 6, 9): the
    state keeps that sum, in float64 under x64 (the same steps); in float32 the steps are the
    same when ``precondition_frequency`` is a power of two.
    """
    for name, reason in _REFUSED.items():
        if locals()[name]:
            raise ValueError(f"{name}=True is not supported: heavyball's {name} {reason}; got {name}=True")
    for name, value in (("precondition_frequency", precondition_frequency), ("max_precond_dim", max_precond_dim)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
        raise ValueError(f"warmup_steps must be a non-negative integer, got {warmup_steps!r}")
    if storage_dtype not in ("float32", "float64", "bfloat16", "float16"):
        raise ValueError(f"storage_dtype must name a float dtype, got {storage_dtype!r}")
    beta1, beta2 = base.check_betas(betas)
    hyperparams = dict(
        lr=hp_lib.check("lr", lr),
        beta1=beta1,
        beta2=beta2,
        shampoo_beta=hp_lib.check("shampoo_beta", shampoo_beta, maximum=1.0, maximum_open=True),
        eps=hp_lib.check("eps", eps),
        weight_decay=hp_lib.check("weight_decay", weight_decay),
    )
    if palm:
        hyperparams["beta2_scale"] = hp_lib.check("beta2_scale", beta2_scale)
    probability = 1.0 / precondition_frequency
    storage = jnp.dtype(storage_dtype)

    def init_fn(params):
        hp = hp_lib.initial(hyperparams)
        leaves, treedef = _flatten(params)
        layouts = [None if _masked(p) else _layout(p, max_precond_dim, merge_dims, precondition_1d) for p in leaves]
        zeros = [None if lay is None else jnp.zeros(lay[0], storage) for lay in layouts]
        square = [
            None if lay is None else tuple(None if n is None else jnp.zeros((n, n), p.dtype) for n in lay[1])
            for p, lay in zip(leaves, layouts)
        ]
        return SOAPState(
            count=jnp.zeros((), jnp.int32),
            hyperparams=hp,
            cumulative_prob=jnp.zeros((), jnp.result_type(float)),
            exp_avg=treedef.unflatten(zeros),
            exp_avg_sq=treedef.unflatten(zeros),
            GG=treedef.unflatten(square),
            Q=treedef.unflatten(square),
        )

    def update_fn(grads, state, params=None):
        base.require_params(params, True, "soap")
        hp = hp_lib.in_force(hyperparams, state.count)
        t = state.count + 1
        cumulative = state.cumulative_prob + probability
        refresh = jnp.floor(cumulative) > jnp.floor(state.cumulative_prob)
        flat_grads, treedef = _flatten(grads)
        columns = [treedef.flatten_up_to(tree) for tree in (params, state.exp_avg, state.exp_avg_sq, state.GG, state.Q)]
        outputs = []
        for g, p, m, v, gg, q in zip(flat_grads, *columns):
            if _masked(g):
                outputs.append((g, None, None, None, None))
                continue
            step = _leaf_step(hp, t, refresh, warmup_steps, caution, cautious_weight_decay, palm)
            outputs.append(jax.lax.cond(state.count == 0, _leaf_init, step, g, p, m, v, gg, q))
        updates, m, v, gg, q = (treedef.unflatten(list(column)) for column in zip(*outputs))
        new_state = SOAPState(optax.safe_int32_increment(state.count), hp, cumulative, m, v, gg, q)
        return updates, new_state

    return optax.GradientTransformation(init_fn, update_fn)


def _masked(x) -> bool:
    return isinstance(x, optax.MaskedNode)


def _flatten(tree):
    leaves, treedef = jax.tree.flatten(tree, is_leaf=_masked)
    return leaves, treedef


def _layout(param, max_precond_dim: int, merge_dims: bool, precondition_1d: bool):
    """``(merged shape, size of each dimension's preconditioner or None)``, as heavyball's
    ``dim_merger`` (without ``split``) and ``init_preconditioner`` choose them."""
    shape = tuple(param.shape)
    if merge_dims and len(shape) > 1:
        merged, size = [], 1
        for s in shape[1:][::-1]:
            if size * s > max_precond_dim:
                merged.append(size if size > 1 else s)
                size = s if size > 1 else 1
            else:
                size *= s
        if size > 1:
            merged.append(size)
        shape = (shape[0], *merged[::-1])
    if math.prod(shape) > 1 and (len(shape) > 1 or precondition_1d):
        return shape, tuple(None if s > max_precond_dim or s == 1 else s for s in shape)
    return shape, (None,) * len(shape)


def _outer(g, i):
    """``GG_i``'s new term: ``g`` times itself, contracted over every dimension but ``i``."""
    others = [k for k in range(g.ndim) if k != i]
    return jnp.tensordot(g, g, axes=(others, others))


def _project(x, qs, back: bool):
    for i, q in enumerate(qs):
        if q is not None:
            x = jnp.moveaxis(jnp.tensordot(x, q, axes=([i], [1 if back else 0])), -1, i)
    return x


def _lerp(x, y, weight):
    """heavyball's ``x * (1 - weight) + y * weight``."""
    return x * (1 - weight) + y * weight


def _debias(beta, n):
    """heavyball's ``beta_debias`` of a tensor beta: ``1 - (1 - beta) / -expm1(n log1p(beta - 1))``."""
    return 1 - (1 - beta) / -jnp.expm1(n * jnp.log1p(beta - 1))


def _basis(gg):
    """heavyball's first basis: ``eigh(GG + 1e-30 I)`` (lower triangle), largest eigenvalue first."""
    eye = jnp.eye(gg.shape[-1], dtype=gg.dtype)
    return jnp.flip(jnp.linalg.eigh(gg + 1e-30 * eye, UPLO="L", symmetrize_input=False)[1], -1)


def _qr_step(gg, q):
    """heavyball's ``get_orthogonal_matrix_QR`` for one factor (see the module docstring)."""
    gram = gg @ q
    eig = jnp.sum(q * gram, axis=0)
    magnitude = jnp.maximum(jnp.max(jnp.abs(eig)), jnp.finfo(gg.dtype).tiny)
    lift = max(1e-8, min(64 * gg.shape[-1] * float(jnp.finfo(gg.dtype).eps), 0.125))
    work = gram + (lift * magnitude) * q
    order = jnp.argsort(-eig)
    orthogonal, triangular = jnp.linalg.qr(work[:, order])
    signs = jnp.sign(jnp.diagonal(triangular))
    orthogonal = orthogonal * jnp.where(signs != 0, signs, 1)[None, :]
    return jnp.zeros_like(work).at[:, order].set(orthogonal)


def _leaf_init(g, p, m, v, gg, q):
    """Step 1: the Gram matrices of the first gradient and their eigenbases; the param stays."""
    g = g.reshape(m.shape).astype(p.dtype)
    gg = tuple(None if old is None else _outer(g, i) for i, old in enumerate(gg))
    return jnp.zeros_like(p), m, v, gg, tuple(None if x is None else _basis(x) for x in gg)


def _leaf_step(hp, t, refresh, warmup_steps, caution, cautious_weight_decay, palm):
    def step(g, p, m, v, gg, q):
        dtype = p.dtype
        g = g.astype(dtype).reshape(m.shape)
        beta2 = 1 - t.astype(dtype) ** -hp["beta2_scale"] if palm else hp["beta2"]
        b1, b2 = _debias(hp["beta1"].astype(dtype), t - 1), _debias(jnp.asarray(beta2, dtype), t - 1)
        projected = _project(g, q, back=False)
        new_m = _lerp(m.astype(dtype), projected, 1 - b1)
        new_v = _lerp(v.astype(dtype), projected * projected, 1 - b2)
        u = _project(new_m / jnp.maximum(jnp.sqrt(jnp.maximum(new_v, 0)), hp["eps"]), q, back=True)
        shampoo = hp["shampoo_beta"]
        b = 1 - (1 - shampoo) / (1 - shampoo ** t.astype(dtype))
        gg = tuple(None if old is None else _lerp(old, _outer(g, i), 1 - b) for i, old in enumerate(gg))
        new_q = tuple(None if x is None else _qr_step(x, old) for x, old in zip(gg, q))
        rotated = _project(_project(new_m, q, back=True), new_q, back=False)
        new_m = jnp.where(refresh, rotated, new_m)
        q = tuple(None if x is None else jnp.where(refresh, x, old) for x, old in zip(new_q, q))
        lr = hp["lr"] * t / jnp.maximum(t, warmup_steps + 1)
        if caution:
            keep = jnp.signbit(g) == jnp.signbit(u)
            u = jnp.where(keep, u, 0) * (u.size / jnp.maximum(jnp.sum(keep), 1))
        decay = hp["weight_decay"]
        if cautious_weight_decay:
            decay = decay * (jnp.signbit(p.reshape(u.shape)) == jnp.signbit(u))
        new_p = p.reshape(u.shape) * (1 - decay * lr) + u * -lr
        update = (new_p - p.reshape(u.shape)).reshape(p.shape)
        return update, new_m.astype(m.dtype), new_v.astype(v.dtype), gg, q

    return step
