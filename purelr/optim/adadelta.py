"""``torch.optim.Adadelta``: steps scaled by the ratio of running root-mean-square deltas and gradients."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from purelr.optim import base
from purelr.optim.hyperparams import check
from purelr.schedules.core import resolve


class AdadeltaState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as optax's states do
    hyperparams: dict[str, jax.Array]
    square_avg: Any
    acc_delta: Any


def adadelta(
    lr=1.0,
    rho=0.9,
    eps=1e-6,
    weight_decay=0.0,
    foreach: bool | None = None,
    *,
    capturable: bool = False,
    maximize: bool = False,
    differentiable: bool = False,
) -> optax.GradientTransformation:
    """Twin of ``torch.optim.Adadelta``; every number may be a schedule.

    With ``g = -grad if maximize else grad`` and ``g += weight_decay * param``::

        square_avg = rho * square_avg + (1 - rho) * g * g
        delta = sqrt(acc_delta + eps) / sqrt(square_avg + eps) * g
        acc_delta = rho * acc_delta + (1 - rho) * delta * delta
        param -= lr * delta
    """
    base.device_flags(foreach=foreach, capturable=capturable, differentiable=differentiable)
    lr = check("lr", lr)
    rho = check("rho", rho, maximum=1.0)
    eps = check("eps", eps)
    weight_decay = check("weight_decay", weight_decay)
    decays = base.maybe_nonzero(weight_decay)
    hyperparams = dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay)
    complement = base.one_minus(rho)

    def init_buffers(params, hp):
        return dict(square_avg=base.zeros(params), acc_delta=base.zeros(params))

    def update_buffers(grads, state, params, hp):
        base.require_params(params, decays, "adadelta with weight_decay")
        rho_t, eps_t, c = hp["rho"], hp["eps"], resolve(complement, state.count)

        def leaf(g, p, square_avg, acc_delta):
            g = base.gradient(g, p, hp, maximize=maximize, weight_decay=decays)
            square_avg = rho_t * square_avg + c * g * g
            delta = jnp.sqrt(acc_delta + eps_t) / jnp.sqrt(square_avg + eps_t) * g
            acc_delta = rho_t * acc_delta + c * delta * delta
            return -hp["lr"] * delta, square_avg, acc_delta

        updates, square_avg, acc_delta = base.leafwise(leaf, grads, params, state.square_avg, state.acc_delta)
        return updates, dict(square_avg=square_avg, acc_delta=acc_delta)

    return base.transformation(AdadeltaState, hyperparams, init_buffers, update_buffers)
