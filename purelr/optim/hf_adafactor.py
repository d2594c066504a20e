"""Hugging Face's own ``Adafactor`` (``transformers.optimization.Adafactor``, fairseq's), not
``torch.optim.Adafactor`` (``purelr.optim.adafactor``) nor timm's (``purelr.optim.timm_adafactor``):
every tensor of two or more dimensions is factored over its last two, the parameter scale
multiplies an explicit ``lr`` too, and ``AdafactorSchedule``'s lr is read from the state
(:func:`adafactor_schedule_lr`)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from purelr.optim import base
from purelr.optim.hyperparams import check
from purelr.optim.timm_adafactor import _rms  # transformers' norm(x) / sqrt(numel), as timm's


class HfAdafactorState(NamedTuple):
    """Buffers named as transformers' ``state[p]`` keys; a leaf's unused ones are empty, shape ``(0,)``.
    ``RMS``: each param's root mean square before the last update (a scalar per leaf)."""

    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as optax's states do
    hyperparams: dict[str, jax.Array]
    exp_avg: Any  # None without beta1
    exp_avg_sq_row: Any
    exp_avg_sq_col: Any
    exp_avg_sq: Any
    RMS: Any  # noqa: N815 (transformers' key)


def hf_adafactor(
    lr=None,
    eps=(1e-30, 1e-3),
    clip_threshold=1.0,
    decay_rate=-0.8,
    beta1=None,
    weight_decay=0.0,
    scale_parameter: bool = True,
    relative_step: bool = True,
    warmup_init: bool = False,
) -> optax.GradientTransformation:
    """Twin of transformers 5.24.0's ``Adafactor``; every number may be a schedule.

    At update ``t = count + 1``: ``rho = lr``, or with ``relative_step``
    ``min(1e-6 * t if warmup_init else 1e-2, 1 / sqrt(t))``; ``lr_t = rho * max(eps[1], rms(param))``
    when ``scale_parameter``, else ``rho``; ``beta2t = 1 - t ** decay_rate``; ``q = grad ** 2 + eps[0]``::

        ndim >= 2:  row = beta2t * row + (1 - beta2t) * mean_-1(q);  col = beta2t * col + (1 - beta2t) * mean_-2(q)
                    u = rsqrt(row / mean(row)) * rsqrt(col) * grad
        otherwise:  exp_avg_sq = beta2t * exp_avg_sq + (1 - beta2t) * q;  u = rsqrt(exp_avg_sq) * grad
        u = lr_t * u / max(rms(u) / clip_threshold, 1)
        exp_avg = beta1 * exp_avg + (1 - beta1) * u;  u = exp_avg      (beta1 given)
        param += -weight_decay * lr_t * param;  param -= u

    transformers' checks: an ``lr`` with ``relative_step=True`` and ``warmup_init`` without
    ``relative_step`` are refused, and so is ``relative_step=False`` with no ``lr``.
    """
    if lr is not None and relative_step:
        raise ValueError(f"hf_adafactor: cannot combine a manual lr={lr!r} and relative_step=True")
    if warmup_init and not relative_step:
        raise ValueError("hf_adafactor: warmup_init=True requires relative_step=True")
    if lr is None and not relative_step:
        raise ValueError("hf_adafactor: relative_step=False needs an lr, got lr=None")
    if not isinstance(eps, (tuple, list)) or len(eps) != 2:
        raise TypeError(f"eps must be a pair (eps for the squared gradient, eps for the param scale), got {eps!r}")
    hyperparams = dict(
        eps1=check("eps[0]", eps[0]),
        eps2=check("eps[1]", eps[1]),
        clip_threshold=check("clip_threshold", clip_threshold),
        decay_rate=check("decay_rate", decay_rate, minimum=None),
        weight_decay=check("weight_decay", weight_decay),
    )
    if not relative_step:
        hyperparams["lr"] = check("lr", lr)
    if beta1 is not None:
        hyperparams["beta1"] = check("beta1", beta1, maximum=1.0)
    decays = base.maybe_nonzero(hyperparams["weight_decay"])

    def init_buffers(params, hp):
        base.check_real("hf_adafactor", params)
        empty = lambda p: jnp.zeros((0,), p.dtype)  # noqa: E731
        return dict(
            exp_avg=base.zeros(params) if beta1 is not None else None,
            exp_avg_sq_row=base.buffer(params, lambda p: jnp.zeros(p.shape[:-1], p.dtype) if p.ndim >= 2 else empty(p)),
            exp_avg_sq_col=base.buffer(
                params, lambda p: jnp.zeros(p.shape[:-2] + p.shape[-1:], p.dtype) if p.ndim >= 2 else empty(p)
            ),
            exp_avg_sq=base.buffer(params, lambda p: empty(p) if p.ndim >= 2 else jnp.zeros_like(p)),
            RMS=base.buffer(params, lambda p: jnp.zeros((), p.dtype)),
        )

    def update_buffers(grads, state, params, hp):
        base.require_params(params, True, "hf_adafactor")
        t = base.step_number(state.count)
        beta2t = 1.0 - t ** hp["decay_rate"]

        def running(average, value):
            return average * beta2t + value * (1.0 - beta2t)

        def leaf(g, p, m, row, col, v):
            rms = _rms(p)
            lr_t = _step_lr(t, hp, rms, scale_parameter, relative_step, warmup_init)
            q = g * g + hp["eps1"]
            if p.ndim >= 2:
                row = running(row, jnp.mean(q, axis=-1))
                col = running(col, jnp.mean(q, axis=-2))
                r_factor = jax.lax.rsqrt(row / jnp.mean(row, axis=-1, keepdims=True))[..., None]
                u = r_factor * jax.lax.rsqrt(col)[..., None, :] * g
            else:
                v = running(v, q)
                u = jax.lax.rsqrt(v) * g
            u = u / jnp.maximum(_rms(u) / hp["clip_threshold"], 1.0) * lr_t
            if beta1 is not None:
                m = m * hp["beta1"] + u * (1.0 - hp["beta1"])
                u = m
            start = p + p * (-hp["weight_decay"] * lr_t) if decays else None
            return base.update_from(p, start, -u), m, row, col, v, rms

        updates, m, row, col, v, rms = base.leafwise(
            leaf, grads, params, state.exp_avg, state.exp_avg_sq_row, state.exp_avg_sq_col, state.exp_avg_sq
        )
        return updates, dict(exp_avg=m, exp_avg_sq_row=row, exp_avg_sq_col=col, exp_avg_sq=v, RMS=rms)

    return base.transformation(HfAdafactorState, hyperparams, init_buffers, update_buffers)


def _step_lr(t, hp, rms, scale_parameter: bool, relative_step: bool, warmup_init: bool):
    """transformers' ``Adafactor._get_lr``: ``rho``, times ``max(eps[1], rms)`` when ``scale_parameter``."""
    if relative_step:
        rho = jnp.minimum(1e-6 * t if warmup_init else 1e-2, 1.0 / jnp.sqrt(t))
    else:
        rho = hp["lr"]
    return rho * jnp.maximum(hp["eps2"], rms) if scale_parameter else rho


def adafactor_schedule_lr(
    state: HfAdafactorState,
    initial_lr: float = 0.0,
    *,
    scale_parameter: bool = True,
    relative_step: bool = True,
    warmup_init: bool = False,
) -> jax.Array:
    """Twin of ``transformers.optimization.AdafactorSchedule(optimizer, initial_lr).get_last_lr()[0]``
    for an ``hf_adafactor`` made with these flags: ``initial_lr`` before the first update, then the
    lr that update used for the first parameter (the first leaf in jax's tree order; the value the
    Trainer logs)."""
    rms = jax.tree.leaves(state.RMS)[0]
    lr = _step_lr(
        base.step_number(state.count - 1), state.hyperparams, rms, scale_parameter, relative_step, warmup_init
    )
    return jnp.where(state.count == 0, initial_lr, lr)
