"""``purelr.build``: one optax transformation from a whole MMDetection 2.x or MMEngine config.

MMDetection 2.x (MMCV 1.x runner)::

    optimizer = dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=1e-4,
                     paramwise_cfg=dict(norm_decay_mult=0.0), constructor=...)
    optimizer_config = dict(grad_clip=dict(max_norm=35, norm_type=2))
        # or dict(type='GradientCumulativeOptimizerHook', cumulative_iters=4, grad_clip=...)
    lr_config = dict(policy='step', warmup='linear', warmup_iters=500, warmup_ratio=0.001, step=[8, 11])
    momentum_config = None
    runner = dict(type='EpochBasedRunner', max_epochs=12)      # or IterBasedRunner, max_iters

MMEngine::

    optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='SGD', ...), paramwise_cfg=...,
                         clip_grad=dict(max_norm=35, norm_type=2), accumulative_counts=1)
    param_scheduler = [dict(type='LinearLR', ...), dict(type='MultiStepLR', ...)]
    train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=12)  # or IterBasedTrainLoop, max_iters

The result, applied once per training iteration, does what the original runner does at that
iteration: gradients of frozen parameters dropped, accumulated (with the remainder rule), clipped
over all trainable parameters, then the optimizer of each parameter group with the lr (and
momentum / Adam's beta1) its schedulers set at that iteration, each group scheduled from its own
base value (``lr * lr_mult``).
"""

from __future__ import annotations

import difflib
import functools
import os
from typing import Any, Callable, NamedTuple

import jax
import optax

from purelr import accumulate as accumulate_lib
from purelr import paramwise as paramwise_lib
from purelr import registry
from purelr.config import load_config
from purelr.optim import clip_grad_norm, clip_grad_value
from purelr.schedules import mmcv, mmengine, validate



class Recipe(NamedTuple):
    """What a config asks for, read and checked, before anything is built."""

    optimizer: Callable
    hyperparams: dict
    paramwise_cfg: dict
    constructor: str
    style: str
    clip: Any  # None, ("norm", max_norm, norm_type) or ("value", clip_value)
    cumulative_iters: int
    schedules: dict  # {"lr" | "momentum": (base -> schedule)}
    max_iters: int | None


def build(cfg, params, *, epoch_len: int | None = None, module_kinds=None,
          frozen=None, layer_map=None) -> optax.GradientTransformation:
    """The optimizer an MMDetection 2.x, MMEngine or timm config describes, for ``params``.

    ``cfg``: a config dict or a file path (``purelr.load_config``). ``epoch_len``: iterations per
    epoch, needed by epoch-based schedules. ``module_kinds``: ``purelr.module_kinds.module_kinds
    (model, ...)`` for the norm / depth-wise rules of ``paramwise_cfg``. ``frozen``: a selector of
    the parameters torch would have with ``requires_grad=False``. A config with a ``timm`` entry
    (timm ``train.py`` arguments) is built by ``purelr.timm.build_timm`` (``layer_map`` for its
    ``layer_decay`` when the entry has no ``group_matcher``).
    """
    cfg = _loaded(cfg)
    if "timm" in cfg:
        from purelr import timm as timm_lib

        registry.import_custom(cfg.get("custom_imports"))
        return timm_lib.build_timm(cfg["timm"], params, updates_per_epoch=epoch_len, layer_map=layer_map,
                                   frozen=frozen)
    recipe = read_recipe(cfg, epoch_len=epoch_len)
    labels, settings = labels_of(recipe, params, module_kinds, frozen)
    schedules = dict(recipe.schedules)
    if recipe.cumulative_iters > 1:
        at_iteration = functools.partial(accumulate_lib.update_iteration, every=recipe.cumulative_iters,
                                         total=recipe.max_iters)
        schedules = {name: _read_at(factory, at_iteration) for name, factory in schedules.items()}
    hyperparams = dict(recipe.hyperparams)
    lr = hyperparams.pop("lr")
    weight_decay = hyperparams.pop("weight_decay", None)
    schedules = _schedule_targets(schedules, hyperparams)
    transform = paramwise_lib.paramwise_transform(recipe.optimizer, labels, settings, lr=lr,
                                                  weight_decay=weight_decay, schedules=schedules,
                                                  **hyperparams)
    if recipe.clip is not None:
        clip = clip_grad_norm(*recipe.clip[1:]) if recipe.clip[0] == "norm" else clip_grad_value(recipe.clip[1])
        transform = optax.chain(clip, transform)
    frozen_mask = jax.tree.map(lambda label: label == "frozen", labels)
    if any(jax.tree.leaves(frozen_mask)):
        transform = optax.chain(optax.masked(optax.set_to_zero(), frozen_mask), transform)
    if recipe.cumulative_iters > 1:
        transform = accumulate_lib.accumulate(transform, recipe.cumulative_iters, recipe.max_iters)
    return transform


def read_recipe(cfg, *, epoch_len: int | None = None) -> Recipe:
    """Reads and checks a config (dict or file) into a ``Recipe``; errors name the key and value."""
    cfg = _loaded(cfg)
    registry.import_custom(cfg.get("custom_imports"))
    if "optim_wrapper" in cfg:
        return _mmengine_recipe(cfg, epoch_len)
    if "optimizer" in cfg:
        return _mmcv_recipe(cfg, epoch_len)
    raise ValueError(f"a config needs 'optimizer' (MMDetection 2.x), 'optim_wrapper' (MMEngine) or 'timm'; "
                     f"it has {sorted(cfg)}")


def _loaded(cfg) -> dict:
    if isinstance(cfg, (str, os.PathLike)):
        cfg = load_config(cfg)
    if not isinstance(cfg, dict):
        raise TypeError(f"a config must be a dict or a file path, got {cfg!r}")
    return cfg


def _optimizer(optimizer_cfg, where: str):
    if not isinstance(optimizer_cfg, dict) or "type" not in optimizer_cfg:
        raise ValueError(f"{where} must be a dict with a 'type', got {optimizer_cfg!r}")
    kwargs = {k: v for k, v in optimizer_cfg.items() if k not in ("type", "paramwise_cfg", "constructor")}
    if "lr" not in kwargs:
        raise ValueError(f"{where}.lr is missing: give the base learning rate")
    return registry.lookup("optimizer", optimizer_cfg["type"], f"{where}.type"), kwargs


def _run_length(where: str, runner: dict | None, epoch_len):
    """``(max_epochs, max_iters)`` of an MMCV ``runner`` or MMEngine ``train_cfg``."""
    runner = runner or {}
    max_epochs = runner.get("max_epochs")
    max_iters = runner.get("max_iters")
    if max_epochs is not None:
        max_epochs = validate.positive_int(f"{where}.max_epochs", max_epochs)
    if max_iters is not None:
        max_iters = validate.positive_int(f"{where}.max_iters", max_iters)
    if max_iters is None and max_epochs is not None and epoch_len is not None:
        max_iters = max_epochs * validate.positive_int("epoch_len", epoch_len)
    return max_epochs, max_iters


def _clip(clip_cfg, where: str, *, mmengine_style: bool):
    if clip_cfg is None:
        return None
    if not isinstance(clip_cfg, dict):
        raise ValueError(f"{where} must be a dict, got {clip_cfg!r}")
    clip_cfg = dict(clip_cfg)
    kind = clip_cfg.pop("type", "norm") if mmengine_style else "norm"
    validate.one_of(f"{where}.type", kind, ("norm", "value"))
    if kind == "value":
        return ("value", validate.nonnegative(f"{where}.clip_value", clip_cfg.get("clip_value")))
    unknown = sorted(set(clip_cfg) - {"max_norm", "norm_type"})
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; known: ['max_norm', 'norm_type']")
    if "max_norm" not in clip_cfg:
        raise ValueError(f"{where}.max_norm is missing")
    return ("norm", validate.nonnegative(f"{where}.max_norm", clip_cfg["max_norm"]),
            float(clip_cfg.get("norm_type", 2.0)))


def _mmcv_recipe(cfg: dict, epoch_len) -> Recipe:
    optimizer, hyperparams = _optimizer(cfg["optimizer"], "optimizer")
    runner = cfg.get("runner") or ({"max_epochs": cfg["total_epochs"]} if "total_epochs" in cfg else None)
    max_epochs, max_iters = _run_length("runner", runner, epoch_len)
    hook = dict(cfg.get("optimizer_config") or {})
    hook_type = hook.pop("type", "OptimizerHook")
    validate.one_of("optimizer_config.type", hook_type, ("OptimizerHook", "GradientCumulativeOptimizerHook"))
    cumulative = hook.pop("cumulative_iters", 1) if hook_type == "GradientCumulativeOptimizerHook" else 1
    clip = _clip(hook.pop("grad_clip", None), "optimizer_config.grad_clip", mmengine_style=False)
    hook.pop("detect_anomalous_params", None)
    if hook:
        raise ValueError(f"optimizer_config: unknown keys {sorted(hook)}")
    lengths = dict(epoch_len=epoch_len, max_epochs=max_epochs, max_iters=max_iters)
    schedules = {}
    for name, key, make in (("lr", "lr_config", mmcv.lr_config), ("momentum", "momentum_config", mmcv.momentum_config)):
        if cfg.get(key) is not None:
            schedules[name] = _checked_factory(_custom_schedule(cfg[key].get("policy"), cfg[key], lengths)
                                               or functools.partial(make, cfg[key], **lengths), name)
    return Recipe(optimizer, hyperparams, dict(cfg["optimizer"].get("paramwise_cfg") or {}),
                  cfg["optimizer"].get("constructor", "DefaultOptimizerConstructor"), "mmcv", clip,
                  validate.positive_int("optimizer_config.cumulative_iters", cumulative), schedules, max_iters)


def _custom_schedule(kind, cfg: dict, lengths: dict):
    """A registered schedule named by ``policy`` / ``type``, as ``base -> schedule``, or None."""
    if not isinstance(kind, str) or kind not in registry.registered("schedule"):
        return None
    make = registry.registered("schedule")[kind]
    kwargs = {k: v for k, v in cfg.items() if k not in ("policy", "type")}
    return lambda base: make(base, **lengths, **kwargs)


def _checked_factory(factory, name: str):
    """Builds the schedule once now, so that a config error is raised here naming its key."""
    factory(1.0 if name == "lr" else 0.9)
    return factory


def _mmengine_recipe(cfg: dict, epoch_len) -> Recipe:
    wrapper = dict(cfg["optim_wrapper"])
    wrapper_type = wrapper.pop("type", "OptimWrapper")
    validate.one_of("optim_wrapper.type", wrapper_type, ("OptimWrapper",))
    optimizer, hyperparams = _optimizer(wrapper.pop("optimizer", None), "optim_wrapper.optimizer")
    train_cfg = cfg.get("train_cfg") or {}
    max_epochs, max_iters = _run_length("train_cfg", train_cfg, epoch_len)
    clip = _clip(wrapper.pop("clip_grad", None), "optim_wrapper.clip_grad", mmengine_style=True)
    cumulative = validate.positive_int("optim_wrapper.accumulative_counts", wrapper.pop("accumulative_counts", 1))
    paramwise_cfg = dict(wrapper.pop("paramwise_cfg", None) or {})
    constructor = wrapper.pop("constructor", "DefaultOptimWrapperConstructor")
    if wrapper:
        raise ValueError(f"optim_wrapper: unknown keys {sorted(wrapper)}")
    schedulers = cfg.get("param_scheduler") or []
    schedulers = [schedulers] if isinstance(schedulers, dict) else list(schedulers)
    lengths = dict(epoch_len=epoch_len, max_epochs=max_epochs, max_iters=max_iters)
    schedules = {}
    for i, scheduler in enumerate(schedulers):
        if _scheduled_param(scheduler) not in ("lr", "momentum"):
            known = sorted({*mmengine.TYPES, *registry.registered("schedule")})
            close = difflib.get_close_matches(str(scheduler.get("type")), known, n=3, cutoff=0.5)
            raise ValueError(f"param_scheduler[{i}].type: unknown or non-lr/momentum scheduler "
                             f"{scheduler.get('type')!r}; " + (f"did you mean {close}?" if close else f"known: {known}"))
    for name in ("lr", "momentum"):
        chosen = [s for s in schedulers if _scheduled_param(s) == name]
        custom = len(chosen) == 1 and _custom_schedule(chosen[0].get("type"), chosen[0], lengths)
        if chosen:
            schedules[name] = _checked_factory(custom or functools.partial(mmengine.param_scheduler, chosen, **lengths),
                                               name)
    return Recipe(optimizer, hyperparams, paramwise_cfg, constructor, "mmengine", clip, cumulative,
                  schedules, max_iters)


def _scheduled_param(scheduler_cfg) -> str | None:
    """The parameter an MMEngine scheduler drives: ``lr`` (``*LR`` and registered schedules),
    ``momentum`` (``*Momentum``) or a generic scheduler's ``param_name``."""
    if not isinstance(scheduler_cfg, dict):
        raise TypeError(f"param_scheduler entries must be dicts, got {scheduler_cfg!r}")
    kind = str(scheduler_cfg.get("type", ""))
    if kind.endswith("Momentum"):
        return "momentum"
    if kind.endswith("LR") or kind in registry.registered("schedule"):
        return "lr"
    return scheduler_cfg.get("param_name")


def _read_at(factory, at_iteration):
    def make(base):
        schedule = factory(base)
        return lambda update: schedule(at_iteration(update))

    return make


def _schedule_targets(schedules: dict, hyperparams: dict) -> dict:
    """Maps a ``momentum`` schedule onto the optimizer's own argument: ``momentum`` (SGD,
    RMSprop) or ``betas[0]`` (the Adam family), as MMCV's and MMEngine's momentum schedulers do."""
    if "momentum" not in schedules:
        return schedules
    schedules = dict(schedules)
    momentum = schedules.pop("momentum")
    if "betas" in hyperparams:
        schedules["betas"] = lambda betas: (momentum(betas[0]), *betas[1:])
    elif "momentum" in hyperparams:
        schedules["momentum"] = momentum
    else:
        raise ValueError("a momentum schedule needs the optimizer's momentum or betas: give "
                         "optimizer.momentum=... or optimizer.betas=(...)")
    return schedules


def labels_of(recipe: Recipe, params, module_kinds, frozen):
    """``(labels, settings)`` of the config's constructor (paramwise_cfg rules or a registered one)."""
    if recipe.constructor in ("DefaultOptimizerConstructor", "DefaultOptimWrapperConstructor"):
        return paramwise_lib.paramwise_labels(params, recipe.paramwise_cfg,
                                              weight_decay=recipe.hyperparams.get("weight_decay"),
                                              module_kinds=module_kinds, frozen=frozen, style=recipe.style)
    constructor = registry.lookup("constructor", recipe.constructor, "constructor")
    return constructor(params, recipe.hyperparams, recipe.paramwise_cfg, module_kinds=module_kinds,
                       frozen=frozen)
