"""``torch.optim.AdamW``: Adam with decoupled weight decay (default ``1e-2``)."""

from __future__ import annotations

import optax

from purelr.optim.adam import adam


def adamw(
    lr=1e-3,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=1e-2,
    amsgrad: bool = False,
    *,
    maximize: bool = False,
    foreach: bool | None = None,
    capturable: bool = False,
    differentiable: bool = False,
    fused: bool | None = None,
) -> optax.GradientTransformation:
    """Twin of ``torch.optim.AdamW``: ``adam(..., decoupled_weight_decay=True)``, so each update
    starts with ``param *= 1 - lr * weight_decay`` and the gradient is not decayed. State: ``AdamState``.
    """
    return adam(
        lr,
        betas,
        eps,
        weight_decay,
        amsgrad,
        maximize=maximize,
        decoupled_weight_decay=True,
        foreach=foreach,
        capturable=capturable,
        differentiable=differentiable,
        fused=fused,
    )
