"""``timm.optim.Lookahead`` (Zhang et al., 2019) around any purelr optimizer: every ``k`` steps the
params move to slow weights pulled ``alpha`` of the way towards them."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from purelr.optim import base
from purelr.optim import hyperparams as hp_lib
from purelr.schedules.core import as_values


class LookaheadState(NamedTuple):
    """``count`` (timm's ``lookahead_step``); ``hyperparams``: the inner optimizer's in force with
    ``lookahead_alpha`` and ``lookahead_k`` (timm's ``param_groups``); timm's ``lookahead_slow_buff``
    (zeros until the first sync); the inner optimizer's state."""

    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as optax's states do
    hyperparams: dict[str, jax.Array]
    lookahead_slow_buff: Any
    inner_state: Any


def lookahead(optimizer: optax.GradientTransformation, alpha=0.5, k=6) -> optax.GradientTransformation:
    """Twin of ``timm.optim.Lookahead(optimizer, alpha, k)``; ``alpha`` and ``k`` may be schedules.

    After each update of ``optimizer`` (the fast weights), at ``t = count + 1``::

        slow = fast                                      (t == k: timm's first sync copies)
        slow = slow + alpha * (fast - slow)              (t a multiple of k)
        fast = slow                                      (t a multiple of k)

    The update needs the params. ``state.hyperparams`` holds the inner twin's values in force
    (when its state has them) with ``lookahead_alpha`` and ``lookahead_k``.
    """
    hyperparams = dict(
        lookahead_alpha=hp_lib.check("alpha", alpha, maximum=1.0), lookahead_k=hp_lib.check("k", k, minimum=1)
    )

    def merged(inner_state, hp):
        return {**getattr(inner_state, "hyperparams", {}), **hp}

    def init_fn(params):
        inner_state = optimizer.init(params)
        return LookaheadState(
            jnp.zeros((), jnp.int32), merged(inner_state, hp_lib.initial(hyperparams)), base.zeros(params), inner_state
        )

    def update_fn(grads, state, params=None):
        base.require_params(params, True, "lookahead")
        updates, inner_state = optimizer.update(grads, state.inner_state, params)
        hp = hp_lib.in_force(hyperparams, state.count)
        t = as_values(state.count + 1)
        sync = jnp.mod(t, hp["lookahead_k"]) == 0
        first = t == hp["lookahead_k"]

        def leaf(u, p, slow):
            fast = p + u
            pulled = jnp.where(first, fast, slow + hp["lookahead_alpha"] * (fast - slow))
            return jnp.where(sync, pulled - p, u), jnp.where(sync, pulled, slow)

        updates, slow = base.leafwise(leaf, updates, params, state.lookahead_slow_buff)
        return updates, LookaheadState(
            optax.safe_int32_increment(state.count), merged(inner_state, hp), slow, inner_state
        )

    return optax.GradientTransformation(init_fn, update_fn)
