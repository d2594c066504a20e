"""PSGD with a Kronecker-factored preconditioner (Xi-Lin Li's PSGD) as heavyball 3.2.1 steps it
(``heavyball.PSGDKron``: its ``exp_avg``, ``scale_by_psgd`` and ``trust_region_clip_`` chain).

Per parameter (its dims of size 1 dropped, as heavyball's ``SqueezeGrad`` drops them) one factor
``Q_i`` per dimension, upper-triangular or diagonal (as timm's ``kron`` chooses: diagonal for dims
larger than ``max_size_triangular``, params of fewer than ``min_ndim_triangular`` dims and those
``memory_save_mode`` names), and per factor a running lower bound ``lb_i`` of its step's
normaliser. At heavyball's step ``t = count + 1``::

    m = lerp(m, g, 1 - debias(beta1, t))              debias(b, n) = 1 - (1 - b) / (1 - b ** n)
    t = 1:  Q_i = s ** (1 / ndim) * (I or 1),  s = precond_init_scale, or by default
            (precond_init_scale_scale * mean(|m| ** 4) ** (-1 / 8)) ** precond_init_scale_power (0.5)
    renew (the running sum of the update probability passes an integer):
        Q_i *= exp(mean_j log max|Q_j| - log max|Q_i|)          (balancing, with two factors or more)
        V = normal;  G = h + (dampening + eps_float32 * |h|) * V    (h = m if momentum_into_precond_update else g)
        A = Q G (each factor on its dim);  B = V Q^-1 (diagonals divided first, then triangular solves)
        T1_i, T2_i = Gram matrices (diagonals) of A and B over the other dims
        l = max(T1_i + T2_i) (diagonal) or its largest eigenvalue by power iteration (triangular)
        lb_i = l = max(l, lb_i + (l - lb_i) * (1 - lower_bound_beta))
        Q_i -= precond_lr * (Q_i * (T1_i - T2_i) or triu(T1_i - T2_i) @ Q_i) / l
    u = Q^T Q m;  u = clamp(1.5 * (0.1 * copysign(log1p(|u| / 1.5), u) + 0.9 * tanh(u / 1.5)), -2, 2)
    u = caution(u, g)   (caution: zero where signs differ, times numel / kept)
    lr_t = lr * t / max(t, warmup_steps + 1)
    param = param * (1 - weight_decay * lr_t) - lr_t * u
            (cautious_weight_decay: decay only where param and u share their sign bit)

Its randomness is an input: ``update(..., draws=...)`` takes the normals ``V`` (heavyball's
``torch.randn_like`` in ``dampen_grad``), else they are drawn from ``state.key``.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from purelr.optim import base
from purelr.optim import hyperparams as hp_lib
from purelr.optim.kron import HIGHEST, _gram, _init_factors, _on_axis, _precondition, _triangular, draw
from purelr.optim.kron import _solve_right_upper as _solve_right_upper_float32
from purelr.schedules.core import resolve

MEMORY_SAVE_MODES = (None, "one_diag", "smart_one_diag", "all_diag")
EPS32 = float(np.finfo(np.float32).eps)
TINY32 = float(np.finfo(np.float32).tiny)


class PSGDKronState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]
    hyperparams: dict[str, jax.Array]
    cumulative_prob: jax.Array  # heavyball's running sum of update probabilities
    exp_avg: Any
    Q: Any  # per leaf a tuple of factors: (n, n) upper-triangular or (n,) diagonal  # noqa: N815 (torch's name)
    running_lower_bound: Any  # per leaf a tuple of scalars, one per factor
    key: jax.Array  # draws the normals update is not given


_REFUSED = dict(
    split="splits large dimensions into blocks",
    merge_dims="merges dimensions before preconditioning",
    mars="adds MARS' gradient correction",
    precond_grad_accum="accumulates gradients between preconditioner updates",
    delayed="preconditions with the factors before their update",
    cached="caches the factors' products",
    hessian_approx="preconditions with Hessian-vector products",
)


def psgd_kron(
    lr=0.001,
    beta=None,
    betas=(0.9, 0.999),
    weight_decay=0.0,
    cautious_weight_decay: bool = False,
    preconditioner_update_probability=None,
    max_size_triangular: int = 2048,
    min_ndim_triangular: int = 2,
    memory_save_mode: str | None = None,
    momentum_into_precond_update: bool = True,
    warmup_steps: int = 0,
    merge_dims: bool = False,
    split: bool = False,
    store_triu_as_line: bool = True,
    multi_tensor: bool = True,
    q_dtype: str = "float32",
    storage_dtype: str = "float32",
    mars: bool = False,
    caution: bool = False,
    delayed: bool = False,
    cached: bool = False,
    exp_avg_input: bool = True,
    precond_grad_accum: bool = False,
    lower_bound_beta=0.9,
    dampening=1e-9,
    precond_update_power_iterations: int = 2,
    precond_init_scale: float | None = None,
    precond_init_scale_scale: float = 1.0,
    precond_init_scale_power: float | None = None,
    precond_lr=0.1,
    hessian_approx: bool = False,
    compile_step: bool = False,
    promote: bool = False,
    *,
    seed: int = 0,
) -> optax.GradientTransformationExtraArgs:
    """Twin of heavyball 3.2.1's ``heavyball.PSGDKron`` (the formula in the module docstring), with
    its keyword names and defaults; ``lr``, ``beta`` / ``betas``, ``weight_decay``, ``precond_lr``,
    ``lower_bound_beta``, ``dampening`` and ``preconditioner_update_probability`` may be schedules.

    ``update(grads, state, params, *, draws=None)``: ``draws`` is a tree like params of standard
    normals (heavyball's ``torch.randn_like`` of a preconditioner update); without it they are
    drawn from ``state.key`` (``seed``). ``preconditioner_update_probability`` None is heavyball's
    ``precond_update_prob_schedule()`` (1 for 1000 updates, then ``0.999 ** (t - 1000)`` down to
    0.03); a schedule is called with ``count`` (heavyball's callable with ``count + 1``). Either way
    the factors are updated when heavyball's running sum of the probabilities passes an integer
    (kept in ``cumulative_prob``, float64 under x64 as heavyball's Python floats).
    ``store_triu_as_line``, ``multi_tensor``, ``compile_step`` and ``promote`` are accepted and
    ignored (storage and compilation); ``q_dtype`` and ``storage_dtype`` name the dtypes of ``Q``
    and ``exp_avg`` (the arithmetic is the params' dtype: pass ``"float64"`` under x64);
    ``split``, ``merge_dims``, ``mars``, ``precond_grad_accum``, ``delayed``, ``cached``,
    ``hessian_approx``, ``exp_avg_input=False`` and ``memory_save_mode="one_triu"`` are refused
    (not twinned), as are heavyball's ``gradient_clipping`` / ``update_clipping`` / ``ecc``
    (not keywords here: the update is clipped by ``trust_region_clip_`` as heavyball's default).
    """
    flags = dict(
        split=split,
        merge_dims=merge_dims,
        mars=mars,
        precond_grad_accum=precond_grad_accum,
        delayed=delayed,
        cached=cached,
        hessian_approx=hessian_approx,
    )
    for name, reason in _REFUSED.items():
        if flags[name]:
            raise ValueError(f"{name}=True is not supported: heavyball's {name} {reason}; got {name}={flags[name]!r}")
    if not exp_avg_input:
        raise ValueError("exp_avg_input=False is not supported (heavyball's default True is twinned); got False")
    if memory_save_mode not in MEMORY_SAVE_MODES:
        raise ValueError(f"memory_save_mode must be one of {MEMORY_SAVE_MODES}, got {memory_save_mode!r}")
    for name, value in (
        ("max_size_triangular", max_size_triangular),
        ("min_ndim_triangular", min_ndim_triangular),
        ("precond_update_power_iterations", precond_update_power_iterations),
        ("warmup_steps", warmup_steps),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    for name, dtype_name in (("q_dtype", q_dtype), ("storage_dtype", storage_dtype)):
        if dtype_name not in ("float32", "float64", "bfloat16", "float16"):
            raise ValueError(f"{name} must name a float dtype, got {dtype_name!r}")
    init_scale = _init_scale_rule(precond_init_scale, precond_init_scale_scale, precond_init_scale_power)
    beta1, _ = base.check_betas(betas)
    if beta is not None:
        beta1 = hp_lib.check("beta", beta, maximum=1.0, maximum_open=True)
    prob = preconditioner_update_probability
    if prob is not None and not callable(prob):
        prob = hp_lib.check("preconditioner_update_probability", prob)
    hyperparams = dict(
        lr=hp_lib.check("lr", lr),
        beta1=beta1,
        weight_decay=hp_lib.check("weight_decay", weight_decay),
        precond_lr=hp_lib.check("precond_lr", precond_lr),
        lower_bound_beta=hp_lib.check("lower_bound_beta", lower_bound_beta, maximum=1.0),
        dampening=hp_lib.check("dampening", dampening),
    )
    storage, q_storage = jnp.dtype(storage_dtype), jnp.dtype(q_dtype)

    def triangular(p) -> tuple:
        return _triangular(_squeezed(p), max_size_triangular, min_ndim_triangular, memory_save_mode)

    def init_fn(params):
        base.check_real("psgd_kron", params)
        for p in jax.tree.leaves(params):
            if not _squeezed(p):
                raise ValueError(
                    f"psgd_kron: params of one element are not supported (heavyball buckets them), got {p!r}"
                )
        return PSGDKronState(
            count=jnp.zeros((), jnp.int32),
            hyperparams=hp_lib.initial(hyperparams),
            cumulative_prob=jnp.zeros((), jnp.result_type(float)),
            exp_avg=base.buffer(params, lambda p: jnp.zeros(p.shape, storage)),
            Q=base.buffer(params, lambda p: _init_factors(_squeezed(p), q_storage, 1.0, triangular(p))),
            running_lower_bound=base.buffer(params, lambda p: tuple(jnp.zeros((), p.dtype) for _ in _squeezed(p))),
            key=jax.random.PRNGKey(seed),
        )

    def update_fn(grads, state, params=None, *, draws=None, **extra_args):
        base.require_params(params, True, "psgd_kron")
        hp = hp_lib.in_force(hyperparams, state.count)
        key, draw_key = jax.random.split(state.key)
        if draws is None:
            draws = draw(draw_key, params)["normal"]
        probability = _probability(prob, state.count)
        cumulative = state.cumulative_prob + probability
        renew = jnp.floor(cumulative) > jnp.floor(state.cumulative_prob)
        t = state.count + 1

        def leaf(g, p, m, factors, bounds, normal):
            dtype = p.dtype
            tri = triangular(p)
            g = g.astype(dtype)
            w = 1 - _debias(jnp.asarray(hp["beta1"], dtype), t)
            m = m.astype(dtype) * (1 - w) + g * w
            scale = init_scale(m)
            factors = tuple(
                jnp.where(state.count == 0, q.astype(dtype) * scale ** (1 / len(factors)), q.astype(dtype))
                for q in factors
            )
            shape = _squeezed(p)
            target = (m if momentum_into_precond_update else g).reshape(shape)
            renewed = _psgd_update(
                factors, bounds, tri, target, normal.astype(dtype).reshape(shape), hp, precond_update_power_iterations
            )
            factors, bounds = (
                tuple(jnp.where(renew, a, b) for a, b in zip(*pair)) for pair in zip(renewed, (factors, bounds))
            )
            u = _trust_region_clip(_precondition(factors, tri, m.reshape(shape))).reshape(p.shape)
            if caution:
                keep = jnp.signbit(g) == jnp.signbit(u)
                u = jnp.where(keep, u, 0) * (u.size / jnp.maximum(jnp.sum(keep), 1))
            decay = hp["weight_decay"]
            if cautious_weight_decay:
                decay = decay * (jnp.signbit(p) == jnp.signbit(u))
            lr = hp["lr"] * t / jnp.maximum(t, warmup_steps + 1)
            new_p = p * (1 - decay * lr) + u * -lr
            return new_p - p, m.astype(storage), tuple(q.astype(q_storage) for q in factors), bounds

        treedef = jax.tree.structure(grads, is_leaf=base._is_masked)
        trees = (grads, params, state.exp_avg, state.Q, state.running_lower_bound, draws)
        columns = [treedef.flatten_up_to(tree) for tree in trees]  # type: ignore[attr-defined]
        rows = [(g, None, None, None) if base._is_masked(g) else leaf(g, *rest) for g, *rest in zip(*columns)]
        updates, m, factors, bounds = (treedef.unflatten(list(column)) for column in zip(*rows))  # type: ignore[attr-defined]
        return updates, PSGDKronState(
            count=optax.safe_int32_increment(state.count),
            hyperparams=hp,
            cumulative_prob=cumulative,
            exp_avg=m,
            Q=factors,
            running_lower_bound=bounds,
            key=key,
        )

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def precond_update_prob_schedule(step, max_prob=1.0, min_prob=0.03, decay=0.999, flat_start=1000):
    """heavyball's ``precond_update_prob_schedule()`` at its step ``step`` (1-based):
    ``max(min_prob, max_prob * decay ** max(step - flat_start, 0))``."""
    n = jnp.asarray(step, jnp.result_type(float))
    return jnp.maximum(min_prob, max_prob * decay ** jnp.maximum(n - flat_start, 0))


def _probability(prob, count):
    if prob is None:
        return precond_update_prob_schedule(count + 1)
    return jnp.asarray(resolve(prob, count), jnp.result_type(float))


def _init_scale_rule(scale, scale_scale, scale_power):
    """heavyball's ``precond_init_scale``: the number given, or computed from the first update."""
    scale_scale = hp_lib.check("precond_init_scale_scale", scale_scale)
    if scale is not None:
        scale = hp_lib.check("precond_init_scale", scale)
        if callable(scale):
            raise TypeError("precond_init_scale must be a number or None (it sets the factors once), got a schedule")
        return lambda m: jnp.asarray(scale, m.dtype)
    power = 0.5 if scale_power is None else hp_lib.check("precond_init_scale_power", scale_power, minimum=None)

    def computed(m):
        logs = 4 * jnp.log(jnp.maximum(jnp.abs(m), 1e-12)).ravel()
        mean = (jax.scipy.special.logsumexp(logs) - math.log(m.size)) / 8
        root = jnp.where(-mean > 0, 1 / jnp.exp(mean), jnp.exp(-mean))
        return (root * scale_scale) ** power

    return computed


def _squeezed(p) -> tuple:
    """The shape heavyball preconditions (its ``SqueezeGrad``): dims of size 1 dropped."""
    return tuple(s for s in p.shape if s != 1)


def _debias(beta, n):
    return 1 - (1 - beta) / (1 - beta**n)


def _psgd_update(factors: tuple, bounds: tuple, triangular: tuple, h, normal, hp, iterations: int) -> tuple:
    """heavyball's ``dampen_grad`` and ``psgd_update_precond`` (see the module docstring)."""
    if len(factors) > 1:
        logs = [jnp.log(jnp.max(jnp.abs(q))) for q in factors]
        mean = sum(logs) / len(factors)
        factors = tuple(q * jnp.exp(mean - n) for q, n in zip(factors, logs))
    g = h + (hp["dampening"] + EPS32 * jnp.abs(h)) * normal
    a = g
    for axis, (q, tri) in enumerate(zip(factors, triangular)):
        a = _on_axis(q, a, axis, tri)
    conj_b = normal
    for axis, (q, tri) in enumerate(zip(factors, triangular)):
        if not tri:
            conj_b = conj_b / q.reshape((-1,) + (1,) * (conj_b.ndim - 1 - axis))
    for axis, (q, tri) in enumerate(zip(factors, triangular)):
        if tri:
            conj_b = jnp.moveaxis(_solve_right_upper(jnp.moveaxis(conj_b, axis, -1), q), -1, axis)
    new_factors, new_bounds = [], []
    for axis, (q, bound, tri) in enumerate(zip(factors, bounds, triangular)):
        term1, term2 = _gram(a, axis, tri), _gram(conj_b, axis, tri)
        if tri:
            ell = _max_eigenvalue(term1 + term2, iterations)
            step = jnp.matmul(jnp.triu(term1 - term2), q, precision=HIGHEST)
        else:
            ell = jnp.max(term1 + term2)
            step = q * (term1 - term2)
        ell = jnp.maximum(ell, bound + (ell - bound) * (1 - hp["lower_bound_beta"])).astype(bound.dtype)
        new_factors.append(q - step / ell * hp["precond_lr"])
        new_bounds.append(ell)
    return tuple(new_factors), tuple(new_bounds)


def _solve_right_upper(x, a):
    """``x @ inv(a)`` for an upper-triangular ``a``: in float32 rounded as MKL (timm's ``kron``
    helper), else by JAX's triangular solve."""
    if x.dtype == jnp.float32:
        return _solve_right_upper_float32(x, a)
    return jax.scipy.linalg.solve_triangular(a, x.reshape(-1, a.shape[0]).T, trans=1, lower=False).T.reshape(x.shape)


def _max_eigenvalue(a, iterations: int):
    """heavyball's ``max_eigenvalue_spd``: power iteration from the row of largest norm."""
    row_norms = jnp.linalg.norm(a, axis=-1)
    index = jnp.argmax(row_norms)
    scale = jnp.maximum(row_norms[index], TINY32)
    a = a / scale
    x = a[index]

    def product(v):
        return jnp.matmul(jnp.matmul(v, a.T, precision=HIGHEST), a.T, precision=HIGHEST)

    for _ in range(iterations):
        y = product(x)
        x = y / jnp.maximum(jnp.linalg.norm(y), 1e-12)
    return jnp.sqrt(jnp.sum(x * product(x))) * scale


def _trust_region_clip(u, lerp=0.9, scale=1.5):
    """heavyball's ``trust_region_clip_``."""
    x = u / scale
    tanh = jnp.tanh(x)
    x = jnp.copysign(jnp.log1p(jnp.abs(x)), tanh) * (1 - lerp) + tanh * lerp
    return jnp.clip(x * scale, -2, 2)
