"""The MMEngine reader: ``optim_wrapper``, ``param_scheduler`` and ``train_cfg`` into a ``Recipe``.

``optim_wrapper.type``: ``OptimWrapper``; ``AmpOptimWrapper`` (``loss_scale``: torch's GradScaler,
``purelr.recipes.recipe.grad_scaler_of``; ``dtype`` is the autocast dtype of the forward pass, the
user's part: MMEngine scales the loss whatever it is, bfloat16 included, and so does the recipe);
``DeepSpeedOptimWrapper`` (the optimizer only: DeepSpeed's loss scaler comes from the config's
``strategy.fp16`` section, ``purelr.training.loss_scale.deepspeed_fp16``). A top-level ``fp16``
key (left in some MMEngine-era configs from their MMCV days) is not read by MMEngine's Runner and
is ignored here too.
"""

from __future__ import annotations

import difflib
import functools
import inspect

from purelr.recipes import registry
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
from purelr.schedules import mmengine, validate
from purelr.training import loss_scale

AMP_DTYPES = ("float16", "bfloat16", "float32", "float64")  # AmpOptimWrapper.valid_dtypes

SECTIONS = ("optim_wrapper", "param_scheduler", "train_cfg", "strategy")
"""The config keys this reader reads (the first one says the config is of this kind)."""


def read(cfg: dict, epoch_len) -> Recipe:
    wrapper = section(cfg, "optim_wrapper")
    wrapper_type = wrapper.pop("type", "OptimWrapper")
    validate.one_of("optim_wrapper.type", wrapper_type, ("OptimWrapper", "AmpOptimWrapper", "DeepSpeedOptimWrapper"))
    scaler = None
    if wrapper_type == "AmpOptimWrapper":
        scaler = grad_scaler_of(wrapper.pop("loss_scale", "dynamic"), "optim_wrapper.loss_scale")
        dtype = wrapper.pop("dtype", None)
        if dtype is not None:
            validate.one_of("optim_wrapper.dtype", dtype, AMP_DTYPES)
        if validate.flag("optim_wrapper.use_fsdp", wrapper.pop("use_fsdp", False)):
            raise ValueError(
                "optim_wrapper.use_fsdp=True (FSDP's ShardedGradScaler) is not twinned; "
                "the scale of AmpOptimWrapper without it is torch's GradScaler"
            )
    elif wrapper_type == "DeepSpeedOptimWrapper":
        scaler = deepspeed_scaler(section(cfg, "strategy"))
        extra = sorted(set(wrapper) - {"optimizer", "paramwise_cfg", "constructor"})
        if extra:  # DeepSpeedOptimWrapper.__init__(self, optimizer)
            raise ValueError(
                f"optim_wrapper: DeepSpeedOptimWrapper takes only an optimizer, got {extra} "
                "(DeepSpeed clips and accumulates from strategy.gradient_clipping / "
                "gradient_accumulation_steps)"
            )
    optimizer_cfg = wrapper.pop("optimizer", None)
    optimizer, hyperparams = optimizer_of(optimizer_cfg, "optim_wrapper.optimizer")
    max_epochs, max_iters = run_length("train_cfg", section(cfg, "train_cfg"), epoch_len)
    clip = clip_of(wrapper.pop("clip_grad", None), "optim_wrapper.clip_grad", mmengine_style=True)
    cumulative = validate.positive_int("optim_wrapper.accumulative_counts", wrapper.pop("accumulative_counts", 1))
    paramwise_cfg = section(wrapper, "paramwise_cfg")
    wrapper.pop("paramwise_cfg", None)
    constructor = wrapper.pop("constructor", "DefaultOptimWrapperConstructor")
    if wrapper:
        raise ValueError(f"optim_wrapper: unknown keys {sorted(wrapper)}")
    schedulers = cfg.get("param_scheduler") or []
    schedulers = [schedulers] if isinstance(schedulers, dict) else list(schedulers)
    lengths = dict(epoch_len=epoch_len, max_epochs=max_epochs, max_iters=max_iters)
    schedules = {}
    names = []
    for i, scheduler in enumerate(schedulers):
        name = scheduled_param(scheduler)
        if name is None:
            known = sorted({*mmengine.TYPES, *registry.registered("schedule")})
            close = difflib.get_close_matches(str(scheduler.get("type")), known, n=3, cutoff=0.5)
            raise ValueError(
                f"param_scheduler[{i}].type: unknown scheduler, or a generic one without param_name, "
                f"{scheduler.get('type')!r}; " + (f"did you mean {close}?" if close else f"known: {known}")
            )
        if name not in ("lr", "momentum") and name not in hyperparams:
            hyperparams = {**hyperparams, name: _group_default(optimizer, optimizer_cfg["type"], name, i)}
        names += [name] if name not in names else []
    for name in names:
        chosen = [s for s in schedulers if scheduled_param(s) == name]
        custom = len(chosen) == 1 and custom_schedule(chosen[0].get("type"), chosen[0], lengths)
        schedules[name] = checked_factory(
            custom or functools.partial(mmengine.param_scheduler, chosen, **lengths), name
        )
    return Recipe(
        optimizer,
        hyperparams,
        paramwise_cfg,
        constructor,
        "mmengine",
        clip,
        cumulative,
        schedules,
        max_iters,
        scaler,
        simsiam_fixed_lr(cfg.get("custom_hooks"), schedulers),
    )


def simsiam_fixed_lr(custom_hooks, schedulers) -> float | None:
    """The lr that MMPretrain's ``SimSiamHook(fix_pred_lr=True, lr=..., adjust_by_epoch=True)`` in
    ``custom_hooks`` gives the groups whose ``custom_keys`` entry says ``fix_lr=True``; None without
    it (other custom hooks do not touch the optimizer's groups). The hook sets that lr before each
    epoch (each iteration with ``adjust_by_epoch=False``) and the schedulers step after them, so the
    lr is constant where the lr schedulers step per epoch; with ``adjust_by_epoch=True`` and a
    scheduler stepping per iteration the groups would follow it from the hook's lr within each
    epoch, which is refused."""
    hooks = [
        (i, dict(hook))
        for i, hook in enumerate(custom_hooks or [])
        if isinstance(hook, dict) and str(hook.get("type", "")).rpartition(".")[2] == "SimSiamHook"
    ]
    if not hooks:
        return None
    i, hook = hooks[-1]
    where = f"custom_hooks[{i}]"
    hook.pop("type")
    hook.pop("priority", None)
    validate.known_keys(where, hook, ("fix_pred_lr", "lr", "adjust_by_epoch"))
    if "fix_pred_lr" not in hook or "lr" not in hook:
        raise ValueError(f"{where}: SimSiamHook needs fix_pred_lr and lr, got {sorted(hook)}")
    if not validate.flag(f"{where}.fix_pred_lr", hook["fix_pred_lr"]):
        return None
    lr = validate.nonnegative(f"{where}.lr", hook["lr"])
    if validate.flag(f"{where}.adjust_by_epoch", hook.get("adjust_by_epoch", True)):
        for j, scheduler in enumerate(schedulers):
            if scheduled_param(scheduler) == "lr" and (
                not scheduler.get("by_epoch", True) or scheduler.get("convert_to_iter_based", False)
            ):
                raise ValueError(
                    f"{where}: SimSiamHook(adjust_by_epoch=True) resets the fix_lr groups' lr once an "
                    f"epoch, and param_scheduler[{j}] ({scheduler.get('type')!r}) moves it at every "
                    f"iteration in between: not twinned (give the hook adjust_by_epoch=False, or "
                    f"step the lr schedulers by epoch)"
                )
    return lr


def deepspeed_scaler(strategy: dict):
    """The loss scaler of MMEngine's ``DeepSpeedStrategy``: its ``fp16`` section when enabled (it
    becomes DeepSpeed's ``fp16`` config), else none (bfloat16 and float32 runs are not scaled).
    DeepSpeed's ``gradient_clipping`` (fused with its unscaling) and ``gradient_accumulation_steps``
    are refused rather than ignored: they are not twinned."""
    if strategy.get("type", "DeepSpeedStrategy") != "DeepSpeedStrategy":
        raise ValueError(
            f"optim_wrapper.type='DeepSpeedOptimWrapper' runs under strategy.type="
            f"'DeepSpeedStrategy', got strategy.type={strategy.get('type')!r}"
        )
    for key, inert in (("gradient_clipping", (None, 0, 0.0)), ("gradient_accumulation_steps", (None, 1))):
        if strategy.get(key) not in inert:
            raise ValueError(f"strategy.{key}={strategy[key]!r}: DeepSpeed's {key.replace('_', ' ')} is not twinned")
    fp16 = section(strategy, "fp16")
    if not validate.flag("strategy.fp16.enabled", fp16.get("enabled", False)):
        return None
    try:
        return loss_scale.deepspeed_fp16(fp16)
    except ValueError as error:
        raise ValueError(f"strategy.{error}") from None


def _group_default(optimizer, kind, name: str, index: int):
    """The value a parameter group holds for ``name`` when the config does not give it: the
    optimizer's default (every torch optimizer's group has ``weight_decay``, 0 by default). An
    optimizer without that argument has no such entry, where MMEngine's scheduler raises KeyError."""
    parameter = inspect.signature(optimizer).parameters.get(name)
    if parameter is None or parameter.default is inspect.Parameter.empty or isinstance(parameter.default, bool):
        raise ValueError(
            f"param_scheduler[{index}] schedules {name!r}, which optimizer {kind!r} does not take "
            f"(its parameter groups have no {name!r}): give optim_wrapper.optimizer.{name}=..., or "
            f"schedule one of its hyperparameters"
        )
    return parameter.default


def scheduled_param(scheduler_cfg) -> str | None:
    """The parameter an MMEngine scheduler drives: ``lr`` (``*LR`` and registered schedules),
    ``momentum`` (``*Momentum``), ``weight_decay`` (MMPretrain's ``CosineAnnealingWeightDecay``) or a
    generic scheduler's ``param_name``."""
    if not isinstance(scheduler_cfg, dict):
        raise TypeError(f"param_scheduler entries must be dicts, got {scheduler_cfg!r}")
    kind = mmengine.unscoped(str(scheduler_cfg.get("type", "")))
    if (mmengine.ZOO_TYPES.get(kind) or (None, None))[1] is not None:
        return mmengine.ZOO_TYPES[kind][1]
    if kind.endswith("Momentum"):
        return "momentum"
    if kind.endswith("LR") or kind in registry.registered("schedule"):
        return "lr"
    return scheduler_cfg.get("param_name")
