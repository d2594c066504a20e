"""``deepspeed.ops.lamb.FusedLamb`` (DeepSpeed 0.19.8), the Lamb of DeepSpeed configs."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from purelr.optim import base
from purelr.schedules import validate
from purelr.schedules.core import resolve


class FusedLambState(NamedTuple):  # its own type: a checkpoint of one is not restored into the other
    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as optax's states do
    hyperparams: dict[str, jax.Array]
    exp_avg: Any
    exp_avg_sq: Any


def fused_lamb(
    lr=1e-3,
    bias_correction: bool = True,
    betas=(0.9, 0.999),
    eps=1e-8,
    eps_inside_sqrt: bool = False,
    weight_decay=0.0,
    max_grad_norm=0.0,
    max_coeff=10.0,
    min_coeff=0.01,
    amsgrad: bool = False,
) -> optax.GradientTransformation:
    """Twin of DeepSpeed's ``FusedLamb`` (its CUDA kernel, ``csrc/lamb/fused_lamb_cuda_kernel.cu``;
    it has no CPU build); every number may be a schedule. For each leaf, at update ``t = count + 1``::

        exp_avg = beta1 * exp_avg + (1 - beta1) * grad
        exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * grad * grad
        update = exp_avg / (sqrt(exp_avg_sq) + eps) + weight_decay * param
                 (eps_inside_sqrt: exp_avg / sqrt(exp_avg_sq + eps))
        coeff = clip(||param|| / ||update||, min_coeff, max_coeff), 1 if either norm is 0
        param -= step_size * coeff * update,  step_size = lr * sqrt(1 - beta2 ** t) / (1 - beta1 ** t)

    (``step_size = lr`` without ``bias_correction``): the moments are not corrected, the step is,
    and the trust ratio is clipped to ``[min_coeff, max_coeff]``, unlike ``purelr.optim.lamb``
    (timm's). ``max_grad_norm > 0`` is refused (FusedLamb then needs the gradient norms handed
    to ``step``, which DeepSpeed's engine does not hand it: use ``gradient_clipping``), as is
    ``amsgrad``.
    """
    if validate.flag("amsgrad", amsgrad):
        raise ValueError("FusedLamb does not support amsgrad (DeepSpeed raises too), got amsgrad=True")
    if validate.nonnegative("max_grad_norm", max_grad_norm) > 0:
        raise ValueError(
            f"max_grad_norm={max_grad_norm!r}: FusedLamb clips only with the gradient norms handed to "
            f"its step(), which DeepSpeed's engine does not pass; use gradient_clipping"
        )
    corrected = validate.flag("bias_correction", bias_correction)
    inside = validate.flag("eps_inside_sqrt", eps_inside_sqrt)
    hyperparams = base.adam_hyperparams(lr, betas, eps, weight_decay, max_coeff=max_coeff, min_coeff=min_coeff)
    decays, complements, log_betas = base.adam_moments(hyperparams)

    def update_buffers(grads, state, params, hp):
        base.require_params(params, True, "fused_lamb")
        c1, c2 = (resolve(c, state.count) for c in complements)
        t = base.step_number(state.count)
        step_size = hp["lr"]
        if corrected:
            bc1, bc2 = (base.bias_correction(lb, t, state.count) for lb in log_betas)
            step_size = step_size * jnp.sqrt(bc2) / bc1

        def leaf(g, p, m, v):
            m = hp["beta1"] * m + c1 * g
            v = hp["beta2"] * v + c2 * g * g
            denom = jnp.sqrt(v + hp["eps"]) if inside else jnp.sqrt(v) + hp["eps"]
            update = m / denom + hp["weight_decay"] * p if decays else m / denom
            w_norm, u_norm = jnp.sqrt(jnp.sum(p * p)), jnp.sqrt(jnp.sum(update * update))
            ratio = jnp.clip(w_norm / jnp.where(u_norm == 0, 1, u_norm), hp["min_coeff"], hp["max_coeff"])
            coeff = jnp.where((w_norm != 0) & (u_norm != 0), ratio, 1.0)
            return base.update_from(p, None, -(step_size * coeff * update)), m, v

        updates, m, v = base.leafwise(leaf, grads, params, state.exp_avg, state.exp_avg_sq)
        return updates, dict(exp_avg=m, exp_avg_sq=v)

    return base.transformation(FusedLambState, hyperparams, base.moment_buffers, update_buffers)
