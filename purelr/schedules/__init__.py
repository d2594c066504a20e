"""Learning-rate (and momentum) schedules as pure ``step -> value`` functions.

Family twins live in submodules named after their origin: ``purelr.schedules.torch``
(``torch.optim.lr_scheduler``), ``purelr.schedules.mmcv`` (MMCV 1.x ``lr_config`` /
``momentum_config``), ``purelr.schedules.mmengine`` (``param_scheduler``),
``purelr.schedules.timm`` (``timm.scheduler``), ``purelr.schedules.hf`` (``transformers.get_scheduler``),
``purelr.schedules.deepspeed`` (``deepspeed.runtime.lr_schedules``) and ``purelr.schedules.fvcore``
(fvcore's ``ParamScheduler``s, detectron2's ``LRMultiplier``). The bottom layer: imports jax and numpy only, no
other purelr layer.
"""

from purelr.schedules.core import (
    Schedule,
    as_steps,
    as_values,
    by_epoch,
    constant_schedule,
    cosine_anneal,
    join_schedules,
    linear_anneal,
    resolve,
)

__all__ = [
    "Schedule",
    "as_steps",
    "as_values",
    "by_epoch",
    "constant_schedule",
    "cosine_anneal",
    "join_schedules",
    "linear_anneal",
    "resolve",
]
