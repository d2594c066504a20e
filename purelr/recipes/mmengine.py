"""The MMEngine reader: ``optim_wrapper``, ``param_scheduler`` and ``train_cfg`` into a ``Recipe``."""

from __future__ import annotations

import difflib
import functools

from purelr.recipes import registry
from purelr.recipes.recipe import Recipe, checked_factory, clip_of, custom_schedule, optimizer_of, run_length, section
from purelr.schedules import mmengine, validate

SECTIONS = ("optim_wrapper", "param_scheduler", "train_cfg")
"""The config keys this reader reads (the first one says the config is of this kind)."""


def read(cfg: dict, epoch_len) -> Recipe:
    wrapper = section(cfg, "optim_wrapper")
    wrapper_type = wrapper.pop("type", "OptimWrapper")
    validate.one_of("optim_wrapper.type", wrapper_type, ("OptimWrapper",))
    optimizer, hyperparams = optimizer_of(wrapper.pop("optimizer", None), "optim_wrapper.optimizer")
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
    for i, scheduler in enumerate(schedulers):
        if scheduled_param(scheduler) not in ("lr", "momentum"):
            known = sorted({*mmengine.TYPES, *registry.registered("schedule")})
            close = difflib.get_close_matches(str(scheduler.get("type")), known, n=3, cutoff=0.5)
            raise ValueError(f"param_scheduler[{i}].type: unknown or non-lr/momentum scheduler "
                             f"{scheduler.get('type')!r}; " + (f"did you mean {close}?" if close else f"known: {known}"))
    for name in ("lr", "momentum"):
        chosen = [s for s in schedulers if scheduled_param(s) == name]
        custom = len(chosen) == 1 and custom_schedule(chosen[0].get("type"), chosen[0], lengths)
        if chosen:
            schedules[name] = checked_factory(custom or functools.partial(mmengine.param_scheduler, chosen, **lengths),
                                               name)
    return Recipe(optimizer, hyperparams, paramwise_cfg, constructor, "mmengine", clip, cumulative,
                  schedules, max_iters)


def scheduled_param(scheduler_cfg) -> str | None:
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
