"""``timm.optim.AdaBelief`` (Zhuang et al., 2020): Adam whose second moment tracks the gradient's
deviation from its running mean; rectified as RAdam with ``rectify``."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from purelr.optim import base
from purelr.optim.adafactor import torch_lerp
from purelr.schedules.core import resolve


class AdaBeliefState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as optax's states do
    hyperparams: dict[str, jax.Array]
    exp_avg: Any
    exp_avg_var: Any
    max_exp_avg_var: Any  # None without amsgrad


def adabelief(
    lr=1e-3,
    betas=(0.9, 0.999),
    eps=1e-16,
    weight_decay=0.0,
    amsgrad: bool = False,
    decoupled_decay: bool = True,
    fixed_decay: bool = False,
    rectify: bool = True,
    degenerated_to_sgd: bool = True,
    foreach: bool | None = None,
) -> optax.GradientTransformation:
    """Twin of ``timm.optim.AdaBelief``; every number (``betas`` one by one) may be a schedule.
    ``foreach`` is accepted and ignored (timm's single-tensor arithmetic is the reference).

    With ``param *= 1 - lr * weight_decay`` (``1 - weight_decay`` with ``fixed_decay``) when
    ``decoupled_decay``, else ``grad += weight_decay * param``; at ``t = count + 1``::

        exp_avg = lerp(exp_avg, grad, 1 - beta1)
        exp_avg_var = beta2 * exp_avg_var + (1 - beta2) * (grad - exp_avg) ** 2 + eps
        max_exp_avg_var = max(max_exp_avg_var, exp_avg_var)                 (amsgrad)
        param -= lr / (1 - beta1 ** t) * exp_avg
                 / (sqrt(max_exp_avg_var or exp_avg_var) / sqrt(1 - beta2 ** t) + eps)

    or, with ``rectify``, RAdam's ``rho_t = rho_inf - 2 t beta2 ** t / (1 - beta2 ** t)``,
    ``rho_inf = 2 / (1 - beta2) - 1``: when ``rho_t >= 5``::

        param -= lr * sqrt((1 - beta2 ** t) (rho_t - 4) (rho_t - 2) rho_inf
                           / ((rho_inf - 4) rho_t (rho_inf - 2))) / (1 - beta1 ** t)
                 * exp_avg / (sqrt(exp_avg_var) + eps)

    else ``param -= lr / (1 - beta1 ** t) * exp_avg`` with ``degenerated_to_sgd`` (no step without).
    """
    base.device_flags(foreach=foreach)
    hyperparams = base.adam_hyperparams(lr, betas, eps, weight_decay)
    decays = base.maybe_nonzero(hyperparams["weight_decay"])
    complements = base.one_minus(hyperparams["beta1"]), base.one_minus(hyperparams["beta2"])
    log_betas = tuple(base.log_of(c) for c in complements)

    def init_buffers(params, hp):
        return dict(
            exp_avg=base.zeros(params),
            exp_avg_var=base.zeros(params),
            max_exp_avg_var=base.zeros(params) if amsgrad else None,
        )

    def update_buffers(grads, state, params, hp):
        base.require_params(params, decays, "adabelief with weight_decay")
        b2, eps = hp["beta2"], hp["eps"]
        c1, c2 = (resolve(c, state.count) for c in complements)
        t = base.step_number(state.count)
        bias_correction1, bias_correction2 = (base.bias_correction(lb, t, state.count) for lb in log_betas)
        rho_inf = 2 / c2 - 1
        rho_t = rho_inf - 2 * t * (1 - bias_correction2) / bias_correction2
        adaptive = rho_t >= 5
        rectified_size = (
            jnp.sqrt(
                jnp.where(
                    adaptive,
                    bias_correction2 * (rho_t - 4) / (rho_inf - 4) * (rho_t - 2) / rho_t * rho_inf / (rho_inf - 2),
                    1.0,
                )
            )
            / bias_correction1
        )
        sgd_size = 1.0 / bias_correction1 if degenerated_to_sgd else 0.0
        decay = hp["weight_decay"] if fixed_decay else hp["lr"] * hp["weight_decay"]

        def leaf(g, p, m, v, v_max):
            g = g + hp["weight_decay"] * p if decays and not decoupled_decay else g
            start = base.multiplied(p, 1 - decay) if decays and decoupled_decay else None
            m = torch_lerp(m, g, c1)
            residual = g - m
            v = b2 * v + c2 * residual * residual + eps
            if amsgrad:
                v_max = jnp.maximum(v_max, v)
            if not rectify:
                denom = jnp.sqrt(v_max if amsgrad else v) / jnp.sqrt(bias_correction2) + eps
                return base.update_from(p, start, -(hp["lr"] / bias_correction1) * (m / denom)), m, v, v_max
            step = jnp.where(
                adaptive, -(rectified_size * hp["lr"]) * (m / (jnp.sqrt(v) + eps)), -(sgd_size * hp["lr"]) * m
            )
            return base.update_from(p, start, step), m, v, v_max

        updates, m, v, v_max = base.leafwise(
            leaf, grads, params, state.exp_avg, state.exp_avg_var, state.max_exp_avg_var
        )
        return updates, dict(exp_avg=m, exp_avg_var=v, max_exp_avg_var=v_max)

    return base.transformation(AdaBeliefState, hyperparams, init_buffers, update_buffers)
