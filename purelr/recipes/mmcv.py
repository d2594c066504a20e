"""The MMDetection 2.x (MMCV 1.x runner) reader: ``optimizer``, ``optimizer_config``,
``lr_config``, ``momentum_config``, ``runner`` (or ``total_epochs`` / ``total_iters``) and ``fp16``
into a ``Recipe``.

Float16 training: ``optimizer_config.type='Fp16OptimizerHook'`` or
``'GradientCumulativeFp16OptimizerHook'`` (MMSegmentation 0.x's way), or a top-level
``fp16=dict(loss_scale=...)`` (MMDetection 2.x's and MMClassification 0.x's train scripts build
``Fp16OptimizerHook(**optimizer_config, **fp16)``); ``loss_scale`` defaults to ``512.``. With torch
>= 1.6, MMCV 1.7.2's hooks scale with torch's GradScaler (``purelr.recipes.recipe.grad_scaler_of``),
not MMCV's own ``LossScaler`` (``purelr.training.loss_scale.mmcv_loss_scaler``, torch < 1.6).
"""

from __future__ import annotations

import functools

from purelr.recipes.recipe import (
    Recipe,
    checked_factory,
    clip_of,
    custom_schedule,
    grad_scaler_of,
    optimizer_of,
    run_length,
    section,
)
from purelr.schedules import mmcv, validate

SECTIONS = (
    "optimizer",
    "optimizer_config",
    "lr_config",
    "momentum_config",
    "runner",
    "total_epochs",
    "total_iters",
    "fp16",
)
"""The config keys this reader reads (the first one says the config is of this kind)."""
HOOKS = ("OptimizerHook", "GradientCumulativeOptimizerHook", "Fp16OptimizerHook", "GradientCumulativeFp16OptimizerHook")
FP16_IPU_KEYS = ("velocity_accum_type", "accum_type")  # IPUFp16OptimizerHook's, ignored off IPUs (MMClassification)


def read(cfg: dict, epoch_len) -> Recipe:
    optimizer, hyperparams = optimizer_of(cfg["optimizer"], "optimizer")
    runner = section(cfg, "runner") or default_runner(cfg)
    max_epochs, max_iters = run_length("runner", runner, epoch_len)
    hook = section(cfg, "optimizer_config")
    hook_type = hook.pop("type", "OptimizerHook")
    validate.one_of("optimizer_config.type", hook_type, HOOKS)
    scaler = fp16_scaler(cfg, hook, hook_type)
    cumulative = hook.pop("cumulative_iters", 1) if hook_type.startswith("GradientCumulative") else 1
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
            schedules[name] = checked_factory(
                custom_schedule(hook_cfg.get("policy"), hook_cfg, lengths)
                or functools.partial(make, hook_cfg, **lengths),
                name,
            )
    return Recipe(
        optimizer,
        hyperparams,
        section(cfg["optimizer"], "paramwise_cfg"),
        cfg["optimizer"].get("constructor", "DefaultOptimizerConstructor"),
        "mmcv",
        clip,
        validate.positive_int("optimizer_config.cumulative_iters", cumulative),
        schedules,
        max_iters,
        scaler,
    )


def fp16_scaler(cfg: dict, hook: dict, hook_type: str):
    """The GradScaler of an ``Fp16OptimizerHook`` (its ``loss_scale`` popped from ``hook``, default
    ``512.``), or of a top-level ``fp16`` section over a plain hook; None without either. A config
    with both (MMSegmentation 0.x's ``fp16 = dict()`` placeholder beside the hook) takes the hook's,
    and they must not disagree. Its ``coalesce``, ``bucket_size_mb`` and ``distributed`` concern
    gradient all-reduce only."""
    fp16 = cfg.get("fp16")
    fp16 = None if fp16 is None else dict(validate.mapping("fp16", fp16))
    if fp16 is not None:
        validate.known_keys("fp16", fp16, ("loss_scale", *FP16_IPU_KEYS))
    if "Fp16" not in hook_type:
        if fp16 is None:
            return None
        if hook_type != "OptimizerHook":
            raise ValueError(
                f"fp16 with optimizer_config.type={hook_type!r}: the train scripts build "
                "Fp16OptimizerHook(**optimizer_config, **fp16), which takes no type; use "
                "optimizer_config.type='GradientCumulativeFp16OptimizerHook'"
            )
        return grad_scaler_of(fp16.get("loss_scale", 512.0), "fp16.loss_scale")
    for key in ("coalesce", "bucket_size_mb", "distributed"):
        hook.pop(key, None)
    loss_scale = hook.pop("loss_scale", 512.0)
    if fp16 is not None and fp16.get("loss_scale", loss_scale) != loss_scale:
        raise ValueError(
            f"fp16.loss_scale={fp16['loss_scale']!r} and optimizer_config.loss_scale={loss_scale!r} disagree: give one"
        )
    return grad_scaler_of(loss_scale, "optimizer_config.loss_scale")


def default_runner(cfg: dict) -> dict:
    """The runner the training script builds for a config without ``runner``: MMDetection's and
    MMClassification's ``EpochBasedRunner`` for ``total_epochs``, MMSegmentation 0.x's
    ``IterBasedRunner`` for ``total_iters``."""
    if "total_epochs" in cfg:
        return {"type": "EpochBasedRunner", "max_epochs": cfg["total_epochs"]}
    if "total_iters" in cfg:
        return {"type": "IterBasedRunner", "max_iters": cfg["total_iters"]}
    return {}
