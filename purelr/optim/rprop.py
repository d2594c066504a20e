"""``torch.optim.Rprop``: resilient backpropagation, steps from gradient signs only."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from purelr.optim import base
from purelr.optim.hyperparams import check


class RpropState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as optax's states do
    hyperparams: dict[str, jax.Array]
    prev: Any
    step_size: Any


def rprop(
    lr=1e-2,
    etas=(0.5, 1.2),
    step_sizes=(1e-6, 50.0),
    *,
    capturable: bool = False,
    foreach: bool | None = None,
    maximize: bool = False,
    differentiable: bool = False,
) -> optax.GradientTransformation:
    """Twin of ``torch.optim.Rprop``; every number may be a schedule (``lr`` only seeds
    ``step_size``, so it is read at count 0, as torch reads it at the first step).

    ``step_size`` starts at ``lr`` and ``prev`` at 0. With ``g = -grad if maximize else grad``::

        s = sign(g * prev)
        step_size = clip(step_size * (etaplus if s > 0 else etaminus if s < 0 else 1),
                         step_size_min, step_size_max)
        g = 0 where s < 0
        param -= sign(g) * step_size;  prev = g

    Validation: torch's ``0 < etaminus < 1 < etaplus``; beyond torch, ``0 <= step_sizes[0] <=
    step_sizes[1]`` (torch accepts any pair, and clamps every step size to ``step_sizes[1]``
    when they are reversed).
    """
    base.device_flags(foreach=foreach, capturable=capturable, differentiable=differentiable)
    lr = check("lr", lr)
    etaminus, etaplus = (check(f"etas[{i}]", eta) for i, eta in enumerate(etas))
    if not callable(etaminus) and not callable(etaplus) and not 0.0 < etaminus < 1.0 < etaplus:
        raise ValueError(f"Invalid eta values: etas={tuple(etas)!r} (must be 0 < etas[0] < 1 < etas[1])")
    step_size_min, step_size_max = (check(f"step_sizes[{i}]", s) for i, s in enumerate(step_sizes))
    if not callable(step_size_min) and not callable(step_size_max) and step_size_min > step_size_max:
        raise ValueError(f"Invalid step_sizes: {tuple(step_sizes)!r} (must be step_sizes[0] <= step_sizes[1])")
    hyperparams = dict(
        lr=lr, etaminus=etaminus, etaplus=etaplus, step_size_min=step_size_min, step_size_max=step_size_max
    )

    def init_buffers(params, hp):
        return dict(prev=base.zeros(params), step_size=base.full(params, hp["lr"]))

    def update_buffers(grads, state, params, hp):
        def leaf(g, prev, step_size):
            g = base.gradient(g, None, hp, maximize=maximize, weight_decay=False)
            s = jnp.sign(g * prev)
            factor = jnp.where(s > 0, hp["etaplus"], jnp.where(s < 0, hp["etaminus"], 1.0))
            step_size = jnp.clip(step_size * factor, hp["step_size_min"], hp["step_size_max"])
            g = jnp.where(s < 0, 0, g)
            return -(jnp.sign(g) * step_size), g, step_size

        updates, prev, step_size = base.leafwise(leaf, grads, state.prev, state.step_size)
        return updates, dict(prev=prev, step_size=step_size)

    return base.transformation(RpropState, hyperparams, init_buffers, update_buffers)
