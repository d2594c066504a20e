"""Drives MMCV 1.7.2's real LrUpdaterHook / MomentumUpdaterHook the way its runners call them.

``EpochBasedRunner.run``: ``before_run``; then per epoch ``before_train_epoch`` and, per batch,
``before_train_iter`` (``runner.iter`` counts over the whole run, ``runner.inner_iter`` within the
epoch) followed by the optimizer step and ``runner.iter += 1``; ``runner.epoch += 1`` after the
epoch. ``IterBasedRunner.run``: ``before_run``, ``before_epoch`` (a no-op for these hooks), then
per iteration ``runner.epoch = loader.epoch`` (which lags: it only moves when the loader is asked
for the first batch of the next epoch) and ``before_train_iter``. Hooks run in priority order: the lr hook
(VERY_HIGH) before the momentum hook (HIGH). The recorded values are what the optimizer holds
while it steps.
"""

import copy
import types

import numpy as np
import torch

from purelr.references.shims import lend_torchvision

lend_torchvision()  # mmcv.runner imports torchvision for checkpoint loading only, which nothing here uses

from mmcv.runner.hooks import HOOKS  # noqa: E402
from mmcv.utils import build_from_cfg  # noqa: E402


def build_hook(cfg, kind):
    """``BaseRunner.register_lr_hook`` / ``register_momentum_hook``: the hook for a config dict."""
    cfg = copy.deepcopy(cfg)
    policy = cfg.pop("policy")
    if policy == policy.lower():
        policy = policy.title()
    cfg["type"] = policy + kind
    return build_from_cfg(cfg, HOOKS)


def make_optimizer(lr, momentum=None, adam=False):
    """One dummy parameter; SGD holds ``momentum``, Adam ``betas[0]``."""
    param = [torch.nn.Parameter(torch.zeros(1))]
    if adam:
        return torch.optim.Adam(param, lr=lr, betas=(0.9 if momentum is None else momentum, 0.999))
    return torch.optim.SGD(param, lr=lr, momentum=0.9 if momentum is None else momentum)


def _runner(optimizer, epoch_len, max_epochs, max_iters):
    return types.SimpleNamespace(
        optimizer=optimizer,
        data_loader=range(epoch_len),
        epoch=0,
        iter=0,
        inner_iter=0,
        max_epochs=max_epochs,
        max_iters=max_iters,
    )


def _read(optimizer):
    group = optimizer.param_groups[0]
    momentum = group["momentum"] if "momentum" in group else group["betas"][0]
    return group["lr"], momentum


def _hooks(lr_cfg, momentum_cfg):
    hooks = []
    if lr_cfg is not None:
        hooks.append(build_hook(lr_cfg, "LrUpdaterHook"))
    if momentum_cfg is not None:
        hooks.append(build_hook(momentum_cfg, "MomentumUpdaterHook"))
    return hooks


def run_epoch_based(optimizer, *, epoch_len, max_epochs, lr_cfg=None, momentum_cfg=None):
    """(lr, momentum) arrays over every iteration of an ``EpochBasedRunner`` run."""
    hooks = _hooks(lr_cfg, momentum_cfg)
    runner = _runner(optimizer, epoch_len, max_epochs, max_epochs * epoch_len)
    for hook in hooks:
        hook.before_run(runner)
    values = []
    for epoch in range(max_epochs):
        runner.epoch = epoch
        for hook in hooks:
            hook.before_train_epoch(runner)
        for inner in range(epoch_len):
            runner.inner_iter = inner
            for hook in hooks:
                hook.before_train_iter(runner)
            values.append(_read(optimizer))
            runner.iter += 1
    return np.asarray(values, dtype=np.float64).T


def run_iter_based(optimizer, *, epoch_len, max_iters, lr_cfg=None, momentum_cfg=None):
    """(lr, momentum) arrays over every iteration of an ``IterBasedRunner`` run, whose
    ``register_training_hooks`` defaults ``lr_config``'s ``by_epoch`` to False."""
    hooks = _hooks(None if lr_cfg is None else {"by_epoch": False, **lr_cfg}, momentum_cfg)
    runner = _runner(optimizer, epoch_len, None, max_iters)
    for hook in hooks:
        hook.before_run(runner)
        hook.before_epoch(runner)
    values = []
    for k in range(max_iters):
        runner.epoch = max(k - 1, 0) // epoch_len
        for hook in hooks:
            hook.before_train_iter(runner)
        values.append(_read(optimizer))
        runner.inner_iter += 1
        runner.iter += 1
    return np.asarray(values, dtype=np.float64).T


def sample_epoch_based(optimizer, steps, *, epoch_len, max_epochs, lr_cfg=None, momentum_cfg=None):
    """(lr, momentum) at the given iterations of an ``EpochBasedRunner`` run, without the others.

    Exact: between ``before_train_epoch`` calls the hooks keep no state but the epoch's regular
    value, so jumping to iteration ``k`` means running ``before_train_epoch`` for epoch
    ``k // epoch_len`` and ``before_train_iter`` at ``k``. Python integers throughout.
    """
    hooks = _hooks(lr_cfg, momentum_cfg)
    runner = _runner(optimizer, epoch_len, max_epochs, max_epochs * epoch_len)
    for hook in hooks:
        hook.before_run(runner)
    values = []
    for k in steps:
        runner.epoch, runner.inner_iter = divmod(int(k), epoch_len)
        runner.iter = int(k)
        for hook in hooks:
            hook.before_train_epoch(runner)
        for hook in hooks:
            hook.before_train_iter(runner)
        values.append(_read(optimizer))
    return np.asarray(values, dtype=np.float64).T
