"""detectron2's solver schedule composed of fvcore 0.1.5's real ParamSchedulers, stepped by torch.

detectron2 has no wheel here, and its ``build_lr_scheduler`` / ``WarmupParamScheduler`` /
``LRMultiplier`` only compose fvcore's schedulers: this module re-states that composition (written
for purelr from ``detectron2/solver/build.py`` and ``detectron2/solver/lr_scheduler.py`` at
facebookresearch/detectron2@02b5c4e2, not copied) around fvcore's own classes, and steps it as
detectron2's ``LRScheduler`` hook does (after every iteration) on a torch optimizer. It reads a
SOLVER dict already completed with detectron2's defaults (``purelr.recipes.detectron2.solver_of``).
"""

from __future__ import annotations

import numpy as np
import torch
from fvcore.common import param_scheduler as fvcore


def warmup_param_scheduler(scheduler, warmup_factor, warmup_length, warmup_method="linear", rescale_interval=False):
    """detectron2's ``WarmupParamScheduler``: fvcore's ``CompositeParamScheduler`` of a warmup
    (``ConstantParamScheduler`` / ``LinearParamScheduler`` from ``warmup_factor * scheduler(0)``)
    and ``scheduler``."""
    start = warmup_factor * scheduler(0.0)
    if warmup_method == "constant":
        warmup = fvcore.ConstantParamScheduler(start)
    elif warmup_method == "linear":
        warmup = fvcore.LinearParamScheduler(start, scheduler(0.0 if rescale_interval else warmup_length))
    else:
        raise ValueError(f"Unknown warmup method: {warmup_method}")
    return fvcore.CompositeParamScheduler(
        [warmup, scheduler],
        lengths=[warmup_length, 1 - warmup_length],
        interval_scaling=["rescaled", "rescaled" if rescale_interval else "fixed"],
    )


def multiplier(solver: dict):
    """The fvcore multiplier ``build_lr_scheduler`` hands ``LRMultiplier`` for ``solver``."""
    name, max_iter = solver["LR_SCHEDULER_NAME"], solver["MAX_ITER"]
    if name == "WarmupMultiStepLR":
        steps = [s for s in solver["STEPS"] if s <= max_iter]
        main = fvcore.MultiStepParamScheduler(
            values=[solver["GAMMA"] ** k for k in range(len(steps) + 1)], milestones=steps, num_updates=max_iter
        )
    elif name == "WarmupCosineLR":
        main = fvcore.CosineParamScheduler(1, solver["BASE_LR_END"] / solver["BASE_LR"])
    elif name == "WarmupStepWithFixedGammaLR":
        main = fvcore.StepWithFixedGammaParamScheduler(
            base_value=1.0, gamma=solver["GAMMA"], num_decays=solver["NUM_DECAYS"], num_updates=max_iter
        )
    else:
        raise ValueError(f"Unknown LR scheduler: {name}")
    return warmup_param_scheduler(
        main,
        solver["WARMUP_FACTOR"],
        min(solver["WARMUP_ITERS"] / max_iter, 1.0),
        solver["WARMUP_METHOD"],
        solver["RESCALE_INTERVAL"],
    )


class LRMultiplier(torch.optim.lr_scheduler.LRScheduler):
    """detectron2's ``LRMultiplier``: every group's lr is its initial lr times
    ``multiplier(last_epoch / max_iter)``."""

    def __init__(self, optimizer, multiplier, max_iter: int):
        self._multiplier, self._max_iter = multiplier, max_iter
        super().__init__(optimizer)

    def get_lr(self):
        factor = self._multiplier(self.last_epoch / self._max_iter)
        return [base_lr * factor for base_lr in self.base_lrs]


def lr_curve(solver: dict, base_lrs, iters: int) -> np.ndarray:
    """``(iters, groups)``: the lr of each group (initial lrs ``base_lrs``) at iterations
    ``0 .. iters - 1`` of detectron2's trainer (the hook steps the scheduler after each one)."""
    optimizer = torch.optim.SGD([{"params": [torch.zeros(1)], "lr": lr} for lr in base_lrs], lr=base_lrs[0])
    scheduler = LRMultiplier(optimizer, multiplier(solver), solver["MAX_ITER"])
    values = []
    for iteration in range(iters):
        if iteration:  # not after the last one: fvcore's Step schedulers index past their list at 1.0
            optimizer.step()
            scheduler.step()
        values.append([group["lr"] for group in optimizer.param_groups])
    return np.asarray(values)
