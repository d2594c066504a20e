"""timm's ``corrected_weight_decay`` (timm 1.0.31, its ``*c`` optimizer names): decoupled weight
decay scaled by ``lr ** 2 / max_lr_snapshot`` instead of ``lr``, ``max_lr_snapshot`` being the lr
the optimizer was constructed with (timm keeps it under that name in every param group), so that
the decay follows the schedule's square."""

from __future__ import annotations

from typing import Any

from purelr.optim import hyperparams as hp_lib


def snapshot(lr, corrected_weight_decay: bool, max_lr_snapshot) -> dict:
    """``{"max_lr_snapshot": value}`` to add to a twin's hyperparameters under
    ``corrected_weight_decay`` (``{}`` without it): ``max_lr_snapshot`` if given, else the constant
    ``lr``. A scheduled ``lr`` needs it (timm snapshots the number its constructor gets, the peak
    lr); it must be positive, as timm requires."""
    if not corrected_weight_decay:
        return {}
    if max_lr_snapshot is None:
        if callable(lr):
            raise ValueError(
                "corrected_weight_decay with a scheduled lr needs max_lr_snapshot (the lr "
                "timm's constructor gets, the peak lr), got max_lr_snapshot=None"
            )
        max_lr_snapshot = lr
    max_lr_snapshot = hp_lib.check("max_lr_snapshot", max_lr_snapshot)
    if not callable(max_lr_snapshot) and max_lr_snapshot <= 0:
        raise ValueError(
            f"Invalid max_lr_snapshot: {max_lr_snapshot!r} (corrected weight decay requires a positive max lr)"
        )
    return {"max_lr_snapshot": max_lr_snapshot}


def decay_scale(hp) -> Any:
    """timm's ``wd_scale``: ``lr ** 2 / max_lr_snapshot`` with a snapshot in force, else ``lr``."""
    return hp["lr"] ** 2 / hp["max_lr_snapshot"] if "max_lr_snapshot" in hp else hp["lr"]
