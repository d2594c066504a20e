"""Drives DeepSpeed 0.19.8's real schedulers (``deepspeed.runtime.lr_schedules``) as its engine does.

The engine builds the scheduler on the optimizer and calls ``scheduler.step()`` once after each
optimizer step, so the lr (and ``betas``) in force at update ``t`` are what the scheduler holds
after ``t`` calls. ``step(t - 1)`` jumps there directly (DeepSpeed's ``last_batch_iteration``
argument), which is how far-off steps are read without stepping through them.
"""

import numpy as np
import torch
from deepspeed.runtime import lr_schedules


def make_scheduler(kind: str, params: dict, base_lr: float = 1e-3, betas=(0.9, 0.999)):
    """``(optimizer, scheduler)``: a torch Adam on one parameter (lr ``base_lr``) and DeepSpeed's
    scheduler ``kind`` built on it with ``params``, as the engine builds it."""
    optimizer = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=base_lr, betas=betas)
    return optimizer, getattr(lr_schedules, kind)(optimizer, **params)


def curves(kind: str, params: dict, steps, base_lr: float = 1e-3):
    """``(lr, beta1, beta2)`` at each update in ``steps`` (integers >= 0, any order)."""
    optimizer, scheduler = make_scheduler(kind, params, base_lr)
    group = optimizer.param_groups[0]
    start = (group["lr"], *group["betas"])
    values = []
    for t in np.asarray(steps).tolist():
        if t == 0:
            values.append(start)
            continue
        scheduler.step(t - 1)
        values.append((group["lr"], *group["betas"]))
    return tuple(np.asarray(column, dtype=np.float64) for column in zip(*values))
