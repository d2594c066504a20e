"""``timm.optim.Mars`` (Yuan et al., 2024): variance-reduced momentum (the gradient corrected by
its change since the last step, clipped to unit norm) in an AdamW or Lion update."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from purelr.optim import base
from purelr.optim.cautious import cautious
from purelr.schedules import validate
from purelr.schedules.core import resolve

MARS_TYPES = ("adamw", "lion")


class MarsState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as optax's states do
    hyperparams: dict[str, jax.Array]
    exp_avg: Any
    exp_avg_sq: Any
    last_grad: Any


def mars(
    lr=3e-3,
    betas=(0.9, 0.99),
    eps=1e-8,
    weight_decay=0.0,
    gamma=0.025,
    mars_type: str = "adamw",
    optimize_1d: bool = False,
    lr_1d_factor=1.0,
    betas_1d=None,
    caution: bool = False,
) -> optax.GradientTransformation:
    """Twin of ``timm.optim.Mars``; every number (``betas`` and ``betas_1d`` one by one) may be a
    schedule.

    On leaves of 2 or more axes (all leaves with ``optimize_1d``), at ``t = count + 1``::

        c = grad + gamma * beta1 / (1 - beta1) * (grad - last_grad)      (c = grad at t = 1)
        c = c / max(||c||, 1)
        exp_avg = beta1 * exp_avg + (1 - beta1) * c                     (masked with caution)
        adamw: exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * c * c
               param -= lr * (weight_decay * param + exp_avg / (1 - beta1 ** t)
                              / (sqrt(exp_avg_sq) / sqrt(1 - beta2 ** t) + eps))
        lion:  param -= lr * (weight_decay * param + sign(exp_avg))

    on the others AdamW with ``betas_1d`` (default ``betas``) on ``grad`` and ``lr * lr_1d_factor``.
    """
    validate.one_of("mars_type", mars_type, MARS_TYPES)
    betas_1d = betas if betas_1d is None else betas_1d
    hyperparams = base.adam_hyperparams(lr, betas, eps, weight_decay, gamma=gamma, lr_1d_factor=lr_1d_factor)
    hyperparams.update(
        zip(
            ("beta1_1d", "beta2_1d"),
            (base.check_betas(betas_1d) if betas_1d is not betas else (hyperparams["beta1"], hyperparams["beta2"])),
        )
    )
    complements = {name: base.one_minus(hyperparams[name]) for name in ("beta1", "beta2", "beta1_1d", "beta2_1d")}
    log_betas = {name: base.log_of(c) for name, c in complements.items()}

    def init_buffers(params, hp):
        return dict(exp_avg=base.zeros(params), exp_avg_sq=base.zeros(params), last_grad=base.zeros(params))

    def update_buffers(grads, state, params, hp):
        base.require_params(params, True, "mars")
        c = {name: resolve(value, state.count) for name, value in complements.items()}
        t = base.step_number(state.count)
        bc = {name: base.bias_correction(lb, t, state.count) for name, lb in log_betas.items()}

        def adamw_step(p, m, v, direction, b1, b2):
            denom = jnp.sqrt(v) / jnp.sqrt(bc[b2]) + hp["eps"]
            return p * hp["weight_decay"] + (direction / bc[b1]) / denom

        def steps(g, p, m, v, last):
            """``(step, exp_avg, exp_avg_sq)`` of one leaf."""
            if optimize_1d or g.ndim >= 2:
                b1 = hp["beta1"]
                corrected = (g - last) * (hp["gamma"] * (b1 / c["beta1"])) + g
                corrected = jnp.where(state.count == 0, g, corrected)
                corrected = corrected / jnp.maximum(jnp.sqrt(jnp.sum(corrected * corrected)), 1.0)
                m = b1 * m + c["beta1"] * corrected
                direction = cautious(m, g) if caution else m
                if mars_type == "lion":
                    return -hp["lr"] * (p * hp["weight_decay"] + jnp.sign(direction)), m, v
                v = hp["beta2"] * v + c["beta2"] * corrected * corrected
                return -hp["lr"] * adamw_step(p, m, v, direction, "beta1", "beta2"), m, v
            m = hp["beta1_1d"] * m + c["beta1_1d"] * g
            v = hp["beta2_1d"] * v + c["beta2_1d"] * g * g
            direction = cautious(m, g) if caution else m
            return -(hp["lr"] * hp["lr_1d_factor"]) * adamw_step(p, m, v, direction, "beta1_1d", "beta2_1d"), m, v

        def leaf(g, p, m, v, last):
            step, m, v = steps(g, p, m, v, last)
            return base.update_from(p, None, step), m, v, g

        updates, m, v, last = base.leafwise(leaf, grads, params, state.exp_avg, state.exp_avg_sq, state.last_grad)
        return updates, dict(exp_avg=m, exp_avg_sq=v, last_grad=last)

    return base.transformation(MarsState, hyperparams, init_buffers, update_buffers)
