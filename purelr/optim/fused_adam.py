"""``deepspeed.ops.adam.FusedAdam`` (DeepSpeed 0.19.8), the Adam of DeepSpeed configs."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from purelr.optim import base
from purelr.schedules import validate
from purelr.schedules.core import resolve


class FusedAdamState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as optax's states do
    hyperparams: dict[str, jax.Array]
    exp_avg: Any
    exp_avg_sq: Any


def fused_adam(
    lr=1e-3,
    bias_correction: bool = True,
    betas=(0.9, 0.999),
    eps=1e-8,
    adam_w_mode: bool = True,
    weight_decay=0.0,
    amsgrad: bool = False,
    set_grad_none: bool = True,
) -> optax.GradientTransformation:
    """Twin of DeepSpeed's ``FusedAdam`` (its ``multi_tensor_adam`` kernel, apex's) and of
    ``DeepSpeedCPUAdam`` (ZeRO-Offload's), which compute the same; every number may be a schedule.

    At update ``t = count + 1``, ``bc1 = 1 - beta1 ** t`` and ``bc2 = 1 - beta2 ** t`` (both 1
    without ``bias_correction``), ``wd = weight_decay``::

        g = grad + wd * param                       (adam_w_mode=False: L2)
        exp_avg = beta1 * exp_avg + (1 - beta1) * g
        exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * g * g
        update = (exp_avg / bc1) / (sqrt(exp_avg_sq / bc2) + eps)
        update += wd * param                        (adam_w_mode=True: decoupled)
        param -= lr * update

    With ``bias_correction`` this is ``torch.optim.AdamW`` (``adam_w_mode``) or ``torch.optim.Adam``
    rounded in another order (torch: ``param *= 1 - lr * wd``, then ``param -= lr / bc1 * exp_avg /
    (sqrt(exp_avg_sq) / sqrt(bc2) + eps)``); the defaults differ from torch's AdamW
    (``weight_decay=0``). ``amsgrad`` is refused, as FusedAdam refuses it; ``set_grad_none`` has no
    effect here.
    """
    if validate.flag("amsgrad", amsgrad):
        raise ValueError("FusedAdam does not support amsgrad (DeepSpeed raises too), got amsgrad=True")
    corrected = validate.flag("bias_correction", bias_correction)
    adam_w_mode = validate.flag("adam_w_mode", adam_w_mode)
    validate.flag("set_grad_none", set_grad_none)
    hyperparams = base.adam_hyperparams(lr, betas, eps, weight_decay)
    decays, complements, log_betas = base.adam_moments(hyperparams)

    def update_buffers(grads, state, params, hp):
        base.require_params(params, decays, "fused_adam with weight_decay")
        c1, c2 = (resolve(c, state.count) for c in complements)
        t = base.step_number(state.count)
        bc1, bc2 = (base.bias_correction(lb, t, state.count) for lb in log_betas) if corrected else (1.0, 1.0)

        def leaf(g, p, m, v):
            if decays and not adam_w_mode:
                g = g + hp["weight_decay"] * p
            m = hp["beta1"] * m + c1 * g
            v = hp["beta2"] * v + c2 * g * g
            update = (m / bc1) / (jnp.sqrt(v / bc2) + hp["eps"])
            if decays and adam_w_mode:
                update = update + hp["weight_decay"] * p
            return base.update_from(p, None, -hp["lr"] * update), m, v

        updates, m, v = base.leafwise(leaf, grads, params, state.exp_avg, state.exp_avg_sq)
        return updates, dict(exp_avg=m, exp_avg_sq=v)

    return base.transformation(FusedAdamState, hyperparams, base.moment_buffers, update_buffers)
