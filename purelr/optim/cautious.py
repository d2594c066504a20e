"""The mask of "Cautious Optimizers" (Liang et al., 2024, arXiv:2411.16085) as timm 1.0.31 applies it
(the ``caution=True`` flag of its optimizers): an update keeps only the entries that agree in sign
with the gradient, rescaled by the fraction kept::

    mask = (update * grad > 0)
    update * mask / max(mean(mask), 1e-3)

``mean`` is over the whole leaf (timm's ``mask.mean()`` per parameter tensor).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def caution_mask(update, grad):
    """timm's ``mask = (update * grad > 0); mask /= mask.mean().clamp(min=1e-3)``."""
    mask = (update * grad > 0).astype(update.dtype)
    return mask / jnp.maximum(jnp.mean(mask), 1e-3)


def cautious(update, grad):
    """``update * caution_mask(update, grad)``."""
    return update * caution_mask(update, grad)


def cautious_transform(inner: optax.GradientTransformation) -> optax.GradientTransformation:
    """``inner`` with the caution mask on its updates: ``u * caution_mask(-u, grad)`` per leaf (an
    optax update points against the direction timm masks, ``param -= lr * direction``).

    Equal to timm's ``caution=True`` where ``inner``'s update is a positive multiple of the direction
    timm masks, leaf by leaf: no weight decay (timm masks before it adds the decay, here the decay
    would be masked too) and no ``maximize`` (timm masks against the negated gradient). So
    ``cautious_transform(adamw_legacy(weight_decay=0))`` is ``adamw_legacy(caution=True,
    weight_decay=0)``, likewise ``nadamw`` and ``lion`` (tests/optim/test_cautious.py); with decay
    the twins' own ``caution=True`` flags apply the mask where timm does.
    """

    def update_fn(grads, state, params=None):
        updates, state = inner.update(grads, state, params)
        return jax.tree.map(lambda u, g: u * caution_mask(-u, g), updates, grads), state

    return optax.GradientTransformation(inner.init, update_fn)
