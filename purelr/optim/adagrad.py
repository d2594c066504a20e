"""``torch.optim.Adagrad``: per-coordinate steps scaled by the root of summed squared gradients."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from purelr.optim import base
from purelr.optim.hyperparams import check


class AdagradState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as optax's states do
    hyperparams: dict[str, jax.Array]
    sum: Any


def adagrad(
    lr=1e-2,
    lr_decay=0.0,
    weight_decay=0.0,
    initial_accumulator_value=0.0,
    eps=1e-10,
    foreach: bool | None = None,
    *,
    maximize: bool = False,
    differentiable: bool = False,
    fused: bool | None = None,
) -> optax.GradientTransformation:
    """Twin of ``torch.optim.Adagrad``; every number may be a schedule
    (``initial_accumulator_value`` is read at count 0).

    ``sum`` starts at ``initial_accumulator_value``. With ``g = -grad if maximize else grad`` and
    ``g += weight_decay * param``, at ``t = count + 1``::

        sum += g * g
        param -= lr / (1 + (t - 1) * lr_decay) * g / (sqrt(sum) + eps)

    (``optax.adagrad`` differs: eps inside the root, no lr_decay.)
    """
    base.device_flags(foreach=foreach, differentiable=differentiable, fused=fused)
    lr = check("lr", lr)
    lr_decay = check("lr_decay", lr_decay)
    weight_decay = check("weight_decay", weight_decay)
    initial_accumulator_value = check("initial_accumulator_value", initial_accumulator_value)
    eps = check("eps", eps)
    decays = base.maybe_nonzero(weight_decay)
    hyperparams = dict(
        lr=lr,
        lr_decay=lr_decay,
        weight_decay=weight_decay,
        eps=eps,
        initial_accumulator_value=initial_accumulator_value,
    )

    def init_buffers(params, hp):
        return dict(sum=base.full(params, hp["initial_accumulator_value"]))

    def update_buffers(grads, state, params, hp):
        base.require_params(params, decays, "adagrad with weight_decay")
        clr = hp["lr"] / (1 + (base.step_number(state.count) - 1) * hp["lr_decay"])

        def leaf(g, p, total):
            g = base.gradient(g, p, hp, maximize=maximize, weight_decay=decays)
            total = total + g * g
            return -clr * (g / (jnp.sqrt(total) + hp["eps"])), total

        updates, total = base.leafwise(leaf, grads, params, state.sum)
        return updates, dict(sum=total)

    return base.transformation(AdagradState, hyperparams, init_buffers, update_buffers)
