"""The MMDetection 2.x (MMCV 1.x runner) reader: ``optimizer``, ``optimizer_config``,
``lr_config``, ``momentum_config`` and ``runner`` (or ``total_epochs`` / ``total_iters``) into a ``Recipe``."""

from __future__ import annotations

import functools

from purelr.recipes.recipe import Recipe, checked_factory, clip_of, custom_schedule, optimizer_of, run_length, section
from purelr.schedules import mmcv, validate

SECTIONS = ("optimizer", "optimizer_config", "lr_config", "momentum_config", "runner", "total_epochs", "total_iters")
"""The config keys this reader reads (the first one says the config is of this kind)."""


def read(cfg: dict, epoch_len) -> Recipe:
    optimizer, hyperparams = optimizer_of(cfg["optimizer"], "optimizer")
    runner = section(cfg, "runner") or default_runner(cfg)
    max_epochs, max_iters = run_length("runner", runner, epoch_len)
    hook = section(cfg, "optimizer_config")
    hook_type = hook.pop("type", "OptimizerHook")
    validate.one_of("optimizer_config.type", hook_type, ("OptimizerHook", "GradientCumulativeOptimizerHook"))
    cumulative = hook.pop("cumulative_iters", 1) if hook_type == "GradientCumulativeOptimizerHook" else 1
    clip = clip_of(hook.pop("grad_clip", None), "optimizer_config.grad_clip", mmengine_style=False)
    hook.pop("detect_anomalous_params", None)
    if hook:
        raise ValueError(f"optimizer_config: unknown keys {sorted(hook)}")
    lengths = dict(epoch_len=epoch_len, max_epochs=max_epochs, max_iters=max_iters)
    schedules = {}
    for name, key, make in (("lr", "lr_config", mmcv.lr_config), ("momentum", "momentum_config", mmcv.momentum_config)):
        if cfg.get(key) is not None:
            hook_cfg = section(cfg, key)
            if key == "lr_config" and runner.get("type") == "IterBasedRunner":
                # IterBasedRunner.register_training_hooks: lr_config.setdefault('by_epoch', False), lr only
                hook_cfg.setdefault("by_epoch", False)
            schedules[name] = checked_factory(custom_schedule(hook_cfg.get("policy"), hook_cfg, lengths)
                                               or functools.partial(make, hook_cfg, **lengths), name)
    return Recipe(optimizer, hyperparams, section(cfg["optimizer"], "paramwise_cfg"),
                  cfg["optimizer"].get("constructor", "DefaultOptimizerConstructor"), "mmcv", clip,
                  validate.positive_int("optimizer_config.cumulative_iters", cumulative), schedules, max_iters)


def default_runner(cfg: dict) -> dict:
    """The runner the training script builds for a config without ``runner``: MMDetection's and
    MMClassification's ``EpochBasedRunner`` for ``total_epochs``, MMSegmentation 0.x's
    ``IterBasedRunner`` for ``total_iters``."""
    if "total_epochs" in cfg:
        return {"type": "EpochBasedRunner", "max_epochs": cfg["total_epochs"]}
    if "total_iters" in cfg:
        return {"type": "IterBasedRunner", "max_iters": cfg["total_iters"]}
    return {}
