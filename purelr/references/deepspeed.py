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


def curves(kind: str, params: dict, steps, base_lr: float = 1e-3, betas=(0.9, 0.999)):
    """``(lr, beta1, beta2)`` at each update in ``steps`` (integers >= 0, any order)."""
    optimizer, scheduler = make_scheduler(kind, params, base_lr, betas)
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


def _distributed_environment():
    """One process's ``torch.distributed`` environment, which ``deepspeed.initialize`` reads."""
    import os
    import socket

    if "MASTER_PORT" not in os.environ:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            os.environ["MASTER_PORT"] = str(probe.getsockname()[1])
    for key, value in dict(MASTER_ADDR="127.0.0.1", RANK="0", WORLD_SIZE="1", LOCAL_RANK="0").items():
        os.environ.setdefault(key, value)


class _Leaves(torch.nn.Module):
    """The parameters of a flat ``{name: array}`` dict; ``forward(grads)`` is ``sum(p * g)``, whose
    gradient with respect to each parameter is the ``g`` given for it."""

    def __init__(self, params, dtype):
        super().__init__()
        self.names = sorted(params)
        self.leaves = torch.nn.ParameterList(
            torch.nn.Parameter(torch.tensor(params[n], dtype=dtype)) for n in self.names
        )

    def forward(self, grads):
        return sum((p * torch.as_tensor(grads[n], dtype=p.dtype)).sum() for n, p in zip(self.names, self.leaves))


def engine_run(config: dict, params: dict, grads, dtype=torch.float32):
    """DeepSpeed's engine (``deepspeed.initialize`` on one process) trained on the micro-batch
    gradients ``grads`` (a list of ``{name: array}``; the loss of micro-batch ``k`` is
    ``sum(p * grads[k])``): ``engine.backward`` then ``engine.step()`` for each. Returns the params
    after each micro-batch (``{name: array}``) and the lr of the first group after each.

    float64: the engine's gradient all-reduce, which refuses float64 and is the identity on one
    process, is turned off (``enable_backward_allreduce``), and its ``clip_grad_norm_`` (which
    takes the norm in float32) is replaced by torch's ``clip_grad_norm_`` in float64, the same
    formula, ``min(1, max_norm / (norm + 1e-6))``.
    """
    import logging

    import deepspeed
    from deepspeed.runtime import engine as engine_module

    _distributed_environment()
    deepspeed.utils.logger.setLevel(logging.ERROR)
    model = _Leaves(params, dtype)
    original_clip = engine_module.clip_grad_norm_
    if dtype == torch.float64:
        engine_module.clip_grad_norm_ = lambda parameters, max_norm, mpu=None: torch.nn.utils.clip_grad_norm_(
            list(parameters), max_norm
        )
    try:
        engine, *_ = deepspeed.initialize(model=model, config=config, model_parameters=model.parameters())
        if dtype == torch.float64:
            engine.enable_backward_allreduce = False
        trajectory, lrs = [], []
        for grad in grads:
            engine.backward(engine(grad))
            engine.step()
            trajectory.append({n: p.detach().numpy().copy() for n, p in zip(model.names, model.leaves)})
            lrs.append(engine.optimizer.param_groups[0]["lr"])
    finally:
        engine_module.clip_grad_norm_ = original_clip
    return trajectory, np.asarray(lrs, dtype=np.float64)
