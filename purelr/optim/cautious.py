"""The mask of "Cautious Optimizers" (Liang et al., 2024, arXiv:2411.16085) as timm 1.0.31 applies it
(the ``caution=True`` flag of its optimizers): an update keeps only the entries that agree in sign
with the gradient, rescaled by the fraction kept::

    mask = (update * grad > 0)
    update * mask / max(mean(mask), 1e-3)

``mean`` is over the whole leaf (timm's ``mask.mean()`` per parameter tensor).
"""

from __future__ import annotations

import jax.numpy as jnp


def caution_mask(update, grad):
    """timm's ``mask = (update * grad > 0); mask /= mask.mean().clamp(min=1e-3)``."""
    mask = (update * grad > 0).astype(update.dtype)
    return mask / jnp.maximum(jnp.mean(mask), 1e-3)


def cautious(update, grad):
    """``update * caution_mask(update, grad)``."""
    return update * caution_mask(update, grad)
