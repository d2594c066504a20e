"""Muon as its author defines it (Keller Jordan's ``muon.py``, github.com/KellerJordan/Muon, the pip
package ``muon-optimizer`` 0.1.0): ``SingleDeviceMuon`` / ``Muon`` (``single_device_muon``) and
``SingleDeviceMuonWithAuxAdam`` / ``MuonWithAuxAdam`` (``muon_with_aux_adam``). The distributed
classes step each parameter as the single-device ones do (one rank per parameter, then an
all-gather): one twin serves both.

Muon on a leaf of ``ndim >= 2`` (leading axes a batch of matrices); 4-D leaves are refused: the
original views a 4-D update as ``(out, in * h * w)`` and never back, so ``p.add_`` fails on it::

    buf = lerp(buf, g, 1 - momentum);  M = lerp(g, buf, momentum)          (always Nesterov)
    O = zeropower_via_newtonschulz5(M) * sqrt(max(1, g.shape[-2] / g.shape[-1]))   (bfloat16)
    param = param * (1 - lr * weight_decay) - lr * O

``zeropower_via_newtonschulz5``: ``X = bf16(M)`` (transposed when tall) divided by ``||X|| + 1e-7``,
then five times ``A = X X^T; B = b A + (c A) A; X = a X + B X`` with ``(a, b, c) = (3.4445, -4.7750,
2.0315)``, every operation rounded to bfloat16 as torch's eager bfloat16 tensors are. The aux Adam::

    exp_avg = lerp(exp_avg, g, 1 - beta1);  exp_avg_sq = lerp(exp_avg_sq, g * g, 1 - beta2)
    param = param * (1 - lr * weight_decay)
            - lr * (exp_avg / (1 - beta1 ** t)) / (sqrt(exp_avg_sq / (1 - beta2 ** t)) + eps)
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from purelr.optim import base, timm_common
from purelr.optim import double_float as df
from purelr.optim import hyperparams as hp_lib
from purelr.optim.muon import (
    LAYOUTS,
    NS_COEFFICIENTS,
    _bf16,
    _f32,
    _matmul,
    _naive,
    _norm,
    decoupled_step,
    lerp,
    torch_views,
)
from purelr.optim.timm_muon import _if_any
from purelr.schedules import validate
from purelr.schedules.core import resolve


class SingleDeviceMuonState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]
    hyperparams: dict[str, jax.Array]
    momentum_buffer: Any


class AuxAdamState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]
    hyperparams: dict[str, jax.Array]
    exp_avg: Any
    exp_avg_sq: Any


def _scaled(x, factor):
    """A bfloat16 tensor times a Python number, as torch computes it (in float32, then rounded)."""
    return _bf16(_f32(float(np.float32(factor)) * x))


def zeropower_via_newtonschulz5(g, steps: int = 5, *, batched: bool = False):
    """The author's ``zeropower_via_newtonschulz5`` on a matrix (or a batch of them, leading axes,
    which torch multiplies with ``bmm``): bfloat16 values in the working dtype (see the module
    docstring)."""
    if g.ndim > 2:
        return jax.vmap(lambda m: zeropower_via_newtonschulz5(m, steps, batched=True))(g)
    a, b, c = NS_COEFFICIENTS
    work = jax.dtypes.canonicalize_dtype(jnp.float64)
    x = _bf16(g.astype(work))
    norm = _bf16(_norm(x))
    tall = g.shape[0] > g.shape[1]
    if tall:
        x = x.T
    x = _bf16(x / _bf16(norm + float(np.float32(1e-7))))

    def matmul(p, q, in_order=False):
        return _bf16(_matmul(p, q, in_order or _naive(p, q, batched)))

    for _ in range(steps):
        gram = matmul(x, x.T, in_order=True)
        update = _bf16(_scaled(gram, b) + matmul(_scaled(gram, c), gram))
        x = _bf16(_scaled(x, a) + matmul(update, x, in_order=tall))
    return x.T if tall else x


def muon_update(grad, momentum_buffer, beta, ns_steps: int = 5, nesterov: bool = True, *, complement=None):
    """``(update, momentum_buffer)`` of the author's ``muon_update`` (bfloat16 update values);
    ``complement``: ``1 - beta`` as the original forms it (default: in the working precision)."""
    momentum_buffer = lerp(momentum_buffer, grad, 1 - beta if complement is None else complement)
    update = lerp(grad, momentum_buffer, beta) if nesterov else momentum_buffer
    o = zeropower_via_newtonschulz5(update, ns_steps)
    return _scaled(o, max(1, grad.shape[-2] / grad.shape[-1]) ** 0.5), momentum_buffer


def _check_matrices(tree):
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree, is_leaf=base._is_masked):
        if not base._is_masked(leaf) and jnp.ndim(leaf) == 4:
            raise ValueError(
                f"single_device_muon cannot step a 4-D (conv) leaf, shape {tuple(jnp.shape(leaf))} at "
                f"{jax.tree_util.keystr(path)}: the original muon_update views its update as a matrix "
                f"and p.add_ fails; reshape the kernel to a matrix or give it to the aux Adam"
            )
        if not base._is_masked(leaf) and jnp.ndim(leaf) < 2:
            raise ValueError(
                f"single_device_muon needs leaves of 2 or more dimensions (its Newton-Schulz asserts "
                f"G.ndim >= 2), got shape {tuple(jnp.shape(leaf))} at {jax.tree_util.keystr(path)}: "
                f"give it to the aux Adam (muon_with_aux_adam)"
            )


def single_device_muon(
    lr=0.02, weight_decay=0.0, momentum=0.95, *, layout: str = "torch"
) -> optax.GradientTransformation:
    """Twin of the author's ``SingleDeviceMuon`` (and of ``Muon``, its distributed form): see the
    module docstring. Each number may be a schedule. The original validates nothing; here each must
    be finite and ``>= 0`` (``lr``, ``weight_decay``) or in ``[0, 1]`` (``momentum``).

    ``layout='flax'``: leaves named ``kernel`` are flax's ``(*spatial, in, out)`` and step as the
    original steps torch's ``(out, in, *spatial)`` weight (a Dense kernel as its transpose: the
    scale ``sqrt(max(1, out / in))``); other leaves, and every leaf with ``'torch'``, are read as
    torch lays them out (a 3-D leaf a batch of matrices over its first axis)."""
    schedules = {
        "lr": hp_lib.check("lr", lr),
        "weight_decay": hp_lib.check("weight_decay", weight_decay),
        "momentum": hp_lib.check("momentum", momentum, maximum=1.0),
    }
    validate.one_of("layout", layout, LAYOUTS)
    complement = base.one_minus(schedules["momentum"])

    def init_buffers(params, hp):
        _check_matrices(params)
        return dict(momentum_buffer=base.zeros(params))

    def update_buffers(grads, state, params, hp):
        base.require_params(params, True, "single_device_muon")
        _check_matrices(grads)

        def leaf(g, p, buf):
            def python_float(key):  # the original's Python float (a constant's float64 value)
                return df.hyper(schedules[key], hp[key], p.dtype)

            beta = python_float("momentum").hi.astype(p.dtype)
            c = df.hyper(complement, resolve(complement, state.count), p.dtype).hi.astype(p.dtype)
            o, buf = muon_update(g, buf, beta, complement=c)
            return decoupled_step(p, o, python_float("lr"), python_float("weight_decay"), 1.0, state.count) - p, buf

        torch_view, flax_view = torch_views(params, layout)
        updates, buf = base.leafwise(leaf, torch_view(grads), torch_view(params), torch_view(state.momentum_buffer))
        return flax_view(updates), dict(momentum_buffer=flax_view(buf))

    return base.transformation(SingleDeviceMuonState, schedules, init_buffers, update_buffers)


def aux_adam(lr=3e-4, betas=(0.9, 0.95), eps=1e-10, weight_decay=0.0) -> optax.GradientTransformation:
    """The Adam groups (``use_muon=False``) of the author's ``MuonWithAuxAdam`` (module docstring)."""
    hyperparams = base.adam_hyperparams(lr, betas, eps, weight_decay)
    _, complements, log_betas = base.adam_moments(hyperparams)

    def update_buffers(grads, state, params, hp):
        base.require_params(params, True, "muon_with_aux_adam")
        c1, c2 = (resolve(c, state.count) for c in complements)
        t = base.step_number(state.count)
        bias_correction1, bias_correction2 = (base.bias_correction(lb, t, state.count) for lb in log_betas)

        def leaf(g, p, m, v):
            m = timm_common.lerp(m, g, c1)
            v = timm_common.lerp(v, g * g, c2)
            update = (m / bias_correction1) / (jnp.sqrt(v / bias_correction2) + hp["eps"])
            return base.update_from(p, timm_common.decayed(p, hp, state.count), -hp["lr"] * update), m, v

        updates, m, v = base.leafwise(leaf, grads, params, state.exp_avg, state.exp_avg_sq)
        return updates, dict(exp_avg=m, exp_avg_sq=v)

    return base.transformation(AuxAdamState, hyperparams, base.moment_buffers, update_buffers)


def muon_with_aux_adam(
    use_muon,
    *,
    lr=0.02,
    momentum=0.95,
    weight_decay=0.0,
    adam_lr=3e-4,
    adam_betas=(0.9, 0.95),
    adam_eps=1e-10,
    adam_weight_decay=0.0,
    layout: str = "torch",
) -> optax.GradientTransformation:
    """Twin of the author's ``SingleDeviceMuonWithAuxAdam`` / ``MuonWithAuxAdam``: Muon on the leaves
    ``use_muon`` marks, the aux Adam on the others, with the original's group defaults (Muon: lr
    0.02, momentum 0.95, weight_decay 0; Adam: lr 3e-4, betas (0.9, 0.95), eps 1e-10, weight_decay 0).

    ``use_muon``: a pytree of bools like the params, or a function ``params -> that pytree``, or a
    predicate ``(path, leaf) -> bool`` (two arguments, ``jax.tree_util.tree_map_with_path``'s).
    Groups of other settings: ``optax.multi_transform`` of ``single_device_muon`` and ``aux_adam``
    (or ``purelr.params`` groups), as the original takes several groups of each kind.
    ``layout``: as ``single_device_muon``'s.
    """
    labels = _labels(use_muon)
    return optax.multi_transform(
        {
            True: _if_any(single_device_muon(lr, weight_decay, momentum, layout=layout)),
            False: _if_any(aux_adam(adam_lr, adam_betas, adam_eps, adam_weight_decay)),
        },
        labels,
    )


def _labels(use_muon) -> Callable | Any:
    if not callable(use_muon):
        return jax.tree.map(bool, use_muon)
    try:
        two = len(inspect.signature(use_muon).parameters) == 2
    except (TypeError, ValueError):
        two = False
    if two:
        return lambda params: jax.tree_util.tree_map_with_path(lambda path, p: bool(use_muon(path, p)), params)
    return use_muon
