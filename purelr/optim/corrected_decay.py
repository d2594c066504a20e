"""timm's ``corrected_weight_decay`` (timm 1.0.31, its ``*c`` optimizer names): decoupled weight
decay scaled by ``lr ** 2 / max_lr`` instead of ``lr``, ``max_lr`` being the lr the optimizer was
constructed with (timm's ``max_lr_snapshot``), so that the decay follows the schedule's square."""

from __future__ import annotations

from purelr.optim import hyperparams as hp_lib


def with_max_lr(hyperparams: dict, corrected_weight_decay: bool, max_lr) -> dict:
    """``hyperparams`` with ``max_lr`` added under ``corrected_weight_decay``: ``max_lr`` if given,
    else the constant ``lr``. A scheduled ``lr`` needs ``max_lr`` (timm snapshots the number its
    constructor gets, the peak lr); it must be positive, as timm requires."""
    if not corrected_weight_decay:
        return hyperparams
    return dict(hyperparams, max_lr=snapshot(hyperparams["lr"], max_lr))


def snapshot(lr, max_lr, name: str = "max_lr"):
    """The checked max lr given as argument ``name``: ``max_lr``, else the constant ``lr``."""
    if max_lr is None:
        if callable(lr):
            raise ValueError(f"corrected_weight_decay with a scheduled lr needs {name} (timm's "
                             f"max_lr_snapshot, the lr its constructor gets, the peak lr), got {name}=None")
        max_lr = lr
    max_lr = hp_lib.check(name, max_lr)
    if not callable(max_lr) and max_lr <= 0:
        raise ValueError(f"Invalid {name}: {max_lr!r} (corrected weight decay requires a positive max lr)")
    return max_lr


def decay_scale(hp, key: str = "max_lr") -> object:
    """``lr ** 2 / hp[key]`` with a max lr in force under ``key``, else ``lr``."""
    return hp["lr"] ** 2 / hp[key] if key in hp else hp["lr"]
