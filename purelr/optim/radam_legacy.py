"""timm's ``RAdamLegacy`` (its RAdam from before ``torch.optim.RAdam``; the timm name ``radamlegacy``),
which steps in float32 whatever the params' dtype."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from purelr.optim import base
from purelr.optim import schedule_free as sf
from purelr.schedules.core import resolve


class RAdamLegacyState(NamedTuple):
    """``exp_avg`` and ``exp_avg_sq`` hold float32 numbers (in the params' dtype)."""

    count: jax.Array  # type: ignore[assignment]
    hyperparams: dict[str, jax.Array]
    exp_avg: Any
    exp_avg_sq: Any


def radam_legacy(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0) -> optax.GradientTransformation:
    """Twin of timm 1.0.31's ``timm.optim.RAdamLegacy``; every number may be a schedule.

    At ``t = count + 1``, with ``rho_inf = 2 / (1 - beta2) - 1`` and
    ``rho_t = rho_inf - 2 t beta2 ** t / (1 - beta2 ** t)``::

        exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * g * g;  exp_avg = beta1 * exp_avg + (1 - beta1) * g
        param -= weight_decay * lr * param
        rho_t >= 5:  param -= step * exp_avg / (sqrt(exp_avg_sq) + eps),
                     step = lr * sqrt((1 - beta2 ** t) (rho_t - 4) (rho_t - 2) rho_inf
                                      / ((rho_inf - 4) (rho_inf - 2) rho_t)) / (1 - beta1 ** t)
        else:        param -= lr / (1 - beta1 ** t) * exp_avg

    The original computes the numbers in Python (double) and every tensor operation in float32,
    on float32 copies of the param and gradient, the param written back in its own dtype: here
    the same, each operation rounded to float32 as torch's CPU kernels round it (``add_`` with
    ``alpha`` and ``addcmul_`` as one fused multiply-add, computed through float64 when x64 is on;
    products rounded before they are added: ``base.multiplied``). In float32 ``rho_t`` is computed as
    ``schedule_free.rho`` computes it. timm validates nothing; the betas, ``eps``, ``lr`` and
    ``weight_decay`` are checked as torch's Adam checks them.
    """
    hyperparams = base.adam_hyperparams(lr, betas, eps, weight_decay)
    decays, complements, log_betas = base.adam_moments(hyperparams)

    def update_buffers(grads, state, params, hp):
        base.require_params(params, True, "radam_legacy")
        c1, c2 = (resolve(c, state.count) for c in complements)
        t = base.step_number(state.count)
        correction2 = base.bias_correction(log_betas[1], t, state.count)
        rho_t, rho_inf = sf.rho(hp, state.count, log_betas[1])
        rectified = rho_t >= 5
        ratio = correction2 * (rho_t - 4) / (rho_inf - 4) * (rho_t - 2) / rho_t * rho_inf / (rho_inf - 2)
        step = hp["lr"] * jnp.where(rectified, jnp.sqrt(jnp.where(rectified, ratio, 1.0)), 1.0)
        step = step / base.bias_correction(log_betas[0], t, state.count)
        f32 = _float32(hp, c1=c1, c2=c2, decay=-hp["weight_decay"] * hp["lr"], step=-step)

        def leaf(g, p, m, v):
            g, p32 = g.astype(jnp.float32), p.astype(jnp.float32)
            v = _fma(base.multiplied(g, f32["c2"]), g, base.multiplied(v.astype(jnp.float32), f32["beta2"]))
            m = _fma(f32["c1"], g, base.multiplied(m.astype(jnp.float32), f32["beta1"]))
            if decays:
                p32 = _fma(f32["decay"], p32, p32)
            adam = p32 + base.multiplied(m, f32["step"]) / (jnp.sqrt(v) + f32["eps"])
            p32 = jnp.where(rectified, adam, _fma(f32["step"], m, p32))
            return base.update_from(p, p32.astype(p.dtype)), m, v

        updates, m, v = base.leafwise(leaf, grads, params, state.exp_avg, state.exp_avg_sq)
        return updates, dict(exp_avg=m, exp_avg_sq=v)

    return base.transformation(RAdamLegacyState, hyperparams, base.moment_buffers, update_buffers)


def _float32(hp, **more) -> dict:
    """The numbers torch's float32 kernels see: each rounded to float32."""
    return {k: jnp.asarray(v).astype(jnp.float32) for k, v in dict(hp, **more).items()}


def _fma(a, b, c):
    """``a * b + c`` rounded once to float32 (torch's CPU ``add_(alpha=)`` / ``addcmul_``): the
    product of two float32 numbers is exact in float64, the sum rounded to float64 and then to
    float32 (a second rounding that differs from one only at float64 ties, about 2**-29 of the
    time). Without x64, in float32."""
    if jax.dtypes.canonicalize_dtype(jnp.float64) != jnp.float64:
        return a * b + c
    wide = jnp.asarray(a, jnp.float64) * jnp.asarray(b, jnp.float64) + jnp.asarray(c, jnp.float64)
    return wide.astype(jnp.float32)
