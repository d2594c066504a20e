"""``timm.optim.AdamP`` (Heo et al., 2021): Adam whose step on a scale-invariant weight is projected
off the weight's radial direction; and the projection ``timm.optim.SGDP`` shares."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from purelr.optim import base
from purelr.optim.cautious import cautious
from purelr.schedules import validate
from purelr.schedules.core import resolve

LAYOUTS = ("torch", "flax")


class AdamPState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as optax's states do
    hyperparams: dict[str, jax.Array]
    exp_avg: Any
    exp_avg_sq: Any


def adamp(
    lr=1e-3,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=0.0,
    delta=0.1,
    wd_ratio=0.1,
    nesterov: bool = False,
    caution: bool = False,
    *,
    layout: str = "torch",
) -> optax.GradientTransformation:
    """Twin of ``timm.optim.AdamP``; every number (``betas`` one by one) may be a schedule.

    At ``t = count + 1``::

        exp_avg = beta1 * exp_avg + (1 - beta1) * grad
        exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * grad * grad
        denom = sqrt(exp_avg_sq) / sqrt(1 - beta2 ** t) + eps
        perturb = (beta1 * exp_avg + (1 - beta1) * grad if nesterov else exp_avg) / denom
        perturb, ratio = projection(param, grad, perturb)       (leaves of 2 or more axes)
        param *= 1 - lr * weight_decay * ratio                  (weight_decay > 0)
        param -= lr / (1 - beta1 ** t) * perturb

    ``projection`` (see ``projection``) removes the radial part of ``perturb`` when the gradient
    is nearly orthogonal to the weight, per output channel or else per leaf, and then weight
    decay is scaled by ``wd_ratio``; ``caution`` masks ``perturb`` (``purelr.optim.cautious``,
    timm's spherical variant on projected leaves). ``layout='flax'``: leaves named ``kernel``
    hold their output channels on the last axis (flax's ``Dense`` / ``Conv``), as torch's weights
    hold them on the first; other leaves are read as torch reads them.
    """
    validate.one_of("layout", layout, LAYOUTS)
    hyperparams = base.adam_hyperparams(lr, betas, eps, weight_decay, delta=delta, wd_ratio=wd_ratio)
    decays = base.maybe_nonzero(hyperparams["weight_decay"])
    complements = base.one_minus(hyperparams["beta1"]), base.one_minus(hyperparams["beta2"])
    log_betas = tuple(base.log_of(c) for c in complements)

    def init_buffers(params, hp):
        base.check_real("adamp", params)
        return dict(exp_avg=base.zeros(params), exp_avg_sq=base.zeros(params))

    def update_buffers(grads, state, params, hp):
        base.require_params(params, True, "adamp")
        b1, b2 = hp["beta1"], hp["beta2"]
        c1, c2 = (resolve(c, state.count) for c in complements)
        t = base.step_number(state.count)
        bias_correction1, bias_correction2 = (base.bias_correction(lb, t, state.count) for lb in log_betas)

        def leaf(g, m, v):
            m = b1 * m + c1 * g
            v = b2 * v + c2 * g * g
            denom = jnp.sqrt(v) / jnp.sqrt(bias_correction2) + hp["eps"]
            return (b1 * m + c1 * g if nesterov else m) / denom, m, v

        perturbs, m, v = base.leafwise(leaf, grads, state.exp_avg, state.exp_avg_sq)
        step_size = hp["lr"] / bias_correction1
        updates = projected_updates(
            params,
            grads,
            perturbs,
            hp,
            step_size=step_size,
            decay=hp["lr"] * hp["weight_decay"] if decays else None,
            caution=caution,
            layout=layout,
        )
        return updates, dict(exp_avg=m, exp_avg_sq=v)

    return base.transformation(AdamPState, hyperparams, init_buffers, update_buffers)


def projected_updates(params, grads, perturbs, hp, *, step_size, decay, caution: bool, layout: str):
    """Per leaf: ``perturb, ratio = projection(...)``, then the update of
    ``param *= 1 - decay * ratio`` (``decay=None``: none) and ``param -= step_size * perturb``."""
    treedef: Any = jax.tree.structure(params, is_leaf=_is_masked)  # jax types PyTreeDef as a bare alias
    paths = [path for path, _ in jax.tree_util.tree_flatten_with_path(params, is_leaf=_is_masked)[0]]
    updates = []
    for path, p, g, d in zip(
        paths, treedef.flatten_up_to(params), treedef.flatten_up_to(grads), treedef.flatten_up_to(perturbs)
    ):
        if _is_masked(p):
            updates.append(d)
            continue
        d, ratio = projection(
            p,
            g.astype(p.dtype),
            d,
            hp["delta"],
            hp["wd_ratio"],
            hp["eps"],
            caution=caution,
            channel_axis=channel_axis(path, p, layout),
        )
        start = None if decay is None else base.multiplied(p, 1 - decay * ratio)
        updates.append(base.update_from(p, start, -step_size * d))
    return treedef.unflatten(updates)


def channel_axis(path, param, layout: str) -> int:
    """The axis of ``param`` holding its output channels: the last of a flax ``kernel``, else 0."""
    name = getattr(path[-1], "key", getattr(path[-1], "name", None)) if path else None
    return param.ndim - 1 if layout == "flax" and name == "kernel" else 0


def projection(p, grad, perturb, delta, wd_ratio, eps, *, caution: bool, channel_axis: int = 0):
    """timm's ``adamp.projection`` on one leaf: ``(perturb, weight-decay ratio)``.

    For the channel view (each output channel a row) and then the layer view (the whole leaf one
    row), the first view where every row's ``|cosine_similarity(grad, param)|`` (norms clamped
    to ``eps``) is below ``delta / sqrt(row length)`` gives ``p_n = param / (||row|| + eps)`` and
    ``perturb -= p_n * sum_row(p_n * perturb)``, with ratio ``wd_ratio``; with ``caution`` the
    projected perturb is masked against the gradient's tangential part and projected again.
    Otherwise (and on leaves of fewer than 2 axes) ``perturb`` (masked against ``grad`` with
    ``caution``) with ratio 1.
    """
    result = cautious(perturb, grad) if caution else perturb
    ratio = jnp.ones((), p.dtype)
    if p.ndim <= 1:
        return result, ratio
    channel_rows = tuple(a for a in range(p.ndim) if a != channel_axis)
    for axes in (tuple(range(p.ndim)), channel_rows):  # the layer view first: the channel view wins
        row_length = math.prod(p.shape[a] for a in axes)

        def row_sum(x):
            return jnp.sum(x, axis=axes, keepdims=True)

        cosine = jnp.abs(
            row_sum(
                grad
                / jnp.maximum(jnp.sqrt(row_sum(grad * grad)), eps)
                * (p / jnp.maximum(jnp.sqrt(row_sum(p * p)), eps))
            )
        )
        hit = jnp.max(cosine) < delta / math.sqrt(row_length)
        p_n = p / (jnp.sqrt(row_sum(p * p)) + eps)
        projected = perturb - p_n * row_sum(p_n * perturb)
        if caution:
            projected = cautious(projected, grad - p_n * row_sum(p_n * grad))
            projected = projected - p_n * row_sum(p_n * projected)
        result = jnp.where(hit, projected, result)
        ratio = jnp.where(hit, wd_ratio, ratio)
    return result, ratio


def _is_masked(x) -> bool:
    return isinstance(x, optax.MaskedNode)
