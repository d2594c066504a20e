"""``torch.optim.ASGD``: averaged stochastic gradient descent."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from purelr.optim import base
from purelr.optim.hyperparams import check


class ASGDState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as optax's states do
    hyperparams: dict[str, jax.Array]
    eta: jax.Array  # scalars (torch keeps one per parameter, all equal)
    mu: jax.Array
    ax: Any  # the averaged parameters


def asgd(
    lr=1e-2,
    lambd=1e-4,
    alpha=0.75,
    t0=1e6,
    weight_decay=0.0,
    foreach: bool | None = None,
    maximize: bool = False,
    differentiable: bool = False,
    capturable: bool = False,
) -> optax.GradientTransformation:
    """Twin of ``torch.optim.ASGD``; every number may be a schedule.

    ``eta`` starts at ``lr``, ``mu`` at 1, ``ax`` at 0. With ``g = -grad if maximize else grad``
    and ``g += weight_decay * param``, at ``t = count + 1``::

        param = param * (1 - lambd * eta) - eta * g
        ax = param if mu == 1 else ax + mu * (param - ax)
        eta = lr / (1 + lambd * lr * t) ** alpha
        mu = 1 / max(1, t - t0)

    The averaged parameters are ``state.ax``. The update needs the params.
    """
    base.device_flags(foreach=foreach, capturable=capturable, differentiable=differentiable)
    lr = check("lr", lr)
    lambd = check("lambd", lambd, minimum=None)
    alpha = check("alpha", alpha, minimum=None)
    t0 = check("t0", t0, minimum=None)
    weight_decay = check("weight_decay", weight_decay)
    decays = base.maybe_nonzero(weight_decay)
    hyperparams = dict(lr=lr, lambd=lambd, alpha=alpha, t0=t0, weight_decay=weight_decay)

    def init_buffers(params, hp):
        return dict(eta=hp["lr"], mu=jnp.ones_like(hp["lr"]), ax=base.zeros(params))

    def update_buffers(grads, state, params, hp):
        base.require_params(params, True, "asgd")
        eta, mu = state.eta, state.mu

        def leaf(g, p, ax):
            g = base.gradient(g, p, hp, maximize=maximize, weight_decay=decays)
            update = base.update_from(p, p * (1 - hp["lambd"] * eta), -eta * g)
            new_p = p + update
            return update, jnp.where(mu == 1, new_p, ax + (new_p - ax) * mu)

        updates, ax = base.leafwise(leaf, grads, params, state.ax)
        t = base.step_number(state.count)
        eta = hp["lr"] / (1 + hp["lambd"] * hp["lr"] * t) ** hp["alpha"]
        mu = 1 / jnp.maximum(1.0, t - hp["t0"])
        return updates, dict(eta=eta, mu=mu, ax=ax)

    return base.transformation(ASGDState, hyperparams, init_buffers, update_buffers)
