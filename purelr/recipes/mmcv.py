"""The MMDetection 2.x (MMCV 1.x runner) reader: ``optimizer``, ``optimizer_config``,
``lr_config``, ``momentum_config`` and ``runner`` (or ``total_epochs``) into a ``Recipe``."""

from __future__ import annotations

import functools

from purelr.recipes.recipe import Recipe, checked_factory, clip_of, custom_schedule, optimizer_of, run_length
from purelr.schedules import mmcv, validate


def read(cfg: dict, epoch_len) -> Recipe:
    optimizer, hyperparams = optimizer_of(cfg["optimizer"], "optimizer")
    runner = cfg.get("runner") or ({"max_epochs": cfg["total_epochs"]} if "total_epochs" in cfg else None)
    max_epochs, max_iters = run_length("runner", runner, epoch_len)
    hook = dict(cfg.get("optimizer_config") or {})
    hook_type = hook.pop("type", "OptimizerHook")
    validate.one_of("optimizer_config.type", hook_type, ("OptimizerHook", "GradientCumulativeOptimizerHook"))
    cumulative = hook.pop("cumulative_iters", 1) if hook_type == "GradientCumulativeOptimizerHook" else 1
    clip = clip_of(hook.pop("grad_clip", None), "optimizer_config.grad_clip", mmengine_style=False)
    hook.pop("detect_anomalous_params", None)
    if hook:
        raise ValueError(f"optimizer_config: unknown keys {sorted(hook)}")
    lengths = dict(epoch_len=epoch_len, max_epochs=max_epochs, max_iters=max_iters)
    hook_cfgs = {"lr_config": cfg.get("lr_config"), "momentum_config": cfg.get("momentum_config")}
    if (runner or {}).get("type") == "IterBasedRunner" and hook_cfgs["lr_config"] is not None:
        # IterBasedRunner.register_training_hooks: lr_config.setdefault('by_epoch', False) (lr only)
        hook_cfgs["lr_config"] = {"by_epoch": False, **hook_cfgs["lr_config"]}
    schedules = {}
    for name, key, make in (("lr", "lr_config", mmcv.lr_config), ("momentum", "momentum_config", mmcv.momentum_config)):
        if hook_cfgs[key] is not None:
            schedules[name] = checked_factory(custom_schedule(hook_cfgs[key].get("policy"), hook_cfgs[key], lengths)
                                               or functools.partial(make, hook_cfgs[key], **lengths), name)
    return Recipe(optimizer, hyperparams, dict(cfg["optimizer"].get("paramwise_cfg") or {}),
                  cfg["optimizer"].get("constructor", "DefaultOptimizerConstructor"), "mmcv", clip,
                  validate.positive_int("optimizer_config.cumulative_iters", cumulative), schedules, max_iters)
