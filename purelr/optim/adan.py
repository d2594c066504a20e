"""``timm.optim.Adan`` (Xie et al., 2022): adaptive Nesterov momentum from the gradient and its
change between steps."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from purelr.optim import base
from purelr.optim import hyperparams as hp_lib
from purelr.optim.adafactor import torch_lerp
from purelr.optim.cautious import cautious
from purelr.schedules.core import resolve


class AdanState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as optax's states do
    hyperparams: dict[str, jax.Array]
    exp_avg: Any
    exp_avg_sq: Any
    exp_avg_diff: Any
    neg_pre_grad: Any


def adan(
    lr=1e-3,
    betas=(0.98, 0.92, 0.99),
    eps=1e-8,
    weight_decay=0.0,
    no_prox: bool = False,
    caution: bool = False,
    foreach: bool | None = None,
    *,
    decay_only: bool = False,
) -> optax.GradientTransformation:
    """Twin of ``timm.optim.Adan``; every number (``betas`` one by one) may be a schedule.
    ``foreach`` is accepted and ignored (timm's single-tensor arithmetic is the reference).

    At ``t = count + 1``, with ``d = grad - previous grad`` (0 at the first step)::

        exp_avg = lerp(exp_avg, grad, 1 - beta1)
        exp_avg_diff = beta2 * exp_avg_diff + (1 - beta2) * d
        exp_avg_sq = beta3 * exp_avg_sq + (1 - beta3) * (grad + beta2 * d) ** 2
        denom = sqrt(exp_avg_sq) / sqrt(1 - beta3 ** t) + eps
        param -= lr / (1 - beta1 ** t) * exp_avg / denom            (exp_avg masked with caution)
        param -= lr * beta2 / (1 - beta2 ** t) * exp_avg_diff / denom

    with ``param *= 1 - lr * weight_decay`` first (``no_prox``) or ``param /= 1 + lr *
    weight_decay`` last. ``neg_pre_grad`` holds ``-grad`` for the next step, as timm's state.

    ``decay_only`` (with ``no_prox``): the params are only decayed, the two steps above are not
    taken (the buffers move as usual), which is what MMPretrain 1.2.0's multi-tensor ``Adan``
    does with ``no_prox=True`` (its default ``foreach=True``; ``purelr.optim.openmmlab``).
    MMPretrain's global gradient clipping is ``grad_clip``.
    """
    base.device_flags(foreach=foreach)
    if not isinstance(betas, (tuple, list)) or len(betas) != 3:
        raise TypeError(f"betas must be a triple (beta1, beta2, beta3), got {betas!r}")
    hyperparams = dict(
        lr=hp_lib.check("lr", lr),
        eps=hp_lib.check("eps", eps),
        weight_decay=hp_lib.check("weight_decay", weight_decay),
        **{
            f"beta{i + 1}": hp_lib.check(f"betas[{i}]", beta, maximum=1.0, maximum_open=True)
            for i, beta in enumerate(betas)
        },
    )
    complements = tuple(base.one_minus(hyperparams[f"beta{i}"]) for i in (1, 2, 3))
    log_betas = tuple(base.log_of(c) for c in complements)

    def init_buffers(params, hp):
        return dict(
            exp_avg=base.zeros(params),
            exp_avg_sq=base.zeros(params),
            exp_avg_diff=base.zeros(params),
            neg_pre_grad=base.zeros(params),
        )

    def update_buffers(grads, state, params, hp):
        base.require_params(params, True, "adan")
        b2, b3 = hp["beta2"], hp["beta3"]
        c1, c2, c3 = (resolve(c, state.count) for c in complements)
        t = base.step_number(state.count)
        bc1, bc2, bc3 = (base.bias_correction(lb, t, state.count) for lb in log_betas)
        step_size, step_size_diff = hp["lr"] / bc1, hp["lr"] * b2 / bc2
        decay = hp["lr"] * hp["weight_decay"]

        def leaf(g, p, m, v, diff_avg, neg_pre_grad):
            diff = jnp.where(state.count == 0, 0.0, neg_pre_grad + g)
            m = torch_lerp(m, g, c1)
            diff_avg = b2 * diff_avg + c2 * diff
            mixed = b2 * diff + g
            v = b3 * v + c3 * mixed * mixed
            denom = jnp.sqrt(v) / jnp.sqrt(bc3) + hp["eps"]
            direction = cautious(m, g) if caution else m
            new = base.multiplied(p, 1 - decay) if no_prox else p
            if not (no_prox and decay_only):
                new = new + -step_size * (direction / denom)
                new = new + -step_size_diff * (diff_avg / denom)
            new = new if no_prox else new / (1 + decay)
            return base.update_from(p, new), m, v, diff_avg, -g

        updates, m, v, diff_avg, neg = base.leafwise(
            leaf, grads, params, state.exp_avg, state.exp_avg_sq, state.exp_avg_diff, state.neg_pre_grad
        )
        return updates, dict(exp_avg=m, exp_avg_sq=v, exp_avg_diff=diff_avg, neg_pre_grad=neg)

    return base.transformation(AdanState, hyperparams, init_buffers, update_buffers)


def grad_clip(max_grad_norm, eps=1e-8) -> optax.GradientTransformation:
    """MMPretrain 1.2.0 ``Adan``'s global gradient clipping, ``grad * min(max_grad_norm / (|grads| +
    eps), 1)``, ``|grads|`` the 2-norm of all the gradients it is given (before an
    ``optax.multi_transform`` of groups, as MMPretrain clips over every group; ``eps`` is the last
    group's there). ``max_grad_norm`` and ``eps`` are numbers or schedules."""
    max_grad_norm, eps = hp_lib.check("max_grad_norm", max_grad_norm), hp_lib.check("eps", eps)

    def update_fn(grads, state, params=None):
        leaves = [g for g in jax.tree.leaves(grads) if not isinstance(g, optax.MaskedNode)]
        norm = jnp.sqrt(sum(jnp.sum(g * g) for g in leaves))
        factor = jnp.minimum(resolve(max_grad_norm, state.count) / (norm + resolve(eps, state.count)), 1.0)
        return (
            jax.tree.map(lambda g: g * factor, grads),
            optax.ScaleByScheduleState(count=optax.safe_int32_increment(state.count)),
        )

    return optax.GradientTransformation(
        lambda params: optax.ScaleByScheduleState(count=jnp.zeros((), jnp.int32)), update_fn
    )
