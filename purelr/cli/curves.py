"""The lr and momentum curves of every parameter group of a config, evaluated at once.

``config_curves(cfg, epoch_len=..., ...)`` reads a config as ``purelr.build`` does and returns one
curve per group and quantity over the whole run, indexed by training iteration (the value the
original runner sets for that iteration), computed with one ``jit(vmap)`` per curve.

Groups come from ``paramwise_cfg``, applied to an example parameter tree that has a leaf for every
rule (a conv kernel and bias, a norm layer, a depth-wise conv, a 1-D leaf, and a leaf named after
each custom key), or to the user's own ``(params, module_kinds)``. Groups are named by their rule
(``default``, ``lr_mult=0.1``, ...); ``names`` says what each holds (``bias (lr x2)``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from purelr.params import paramwise
from purelr.params.module_kinds import dotted_names
from purelr.recipes import registry
from purelr.recipes.build import read_recipe
from purelr.recipes.config import load_config
from purelr.recipes.recipe import labels_of
from purelr.schedules import validate
from purelr.schedules.core import phases_of


class Curves(NamedTuple):
    """Curves of one config: ``values[(group, quantity)]`` over ``steps`` (iterations), each
    group's base lr (the config's lr times the group's ``lr_mult``), and the base value of every
    other curve where it has one (``starts[(group, "weight_decay")]``: the group's weight decay).
    ``phases``: ``{iteration: what begins there}`` from the schedules' own structure
    (``purelr.schedules.core.phases_of``); ``names``: each group's readable name;
    ``constants``: hyperparameters no schedule drives, ``{(group, name): value}``."""

    steps: np.ndarray
    epoch_len: int | None
    values: dict
    bases: dict
    starts: dict | None = None
    phases: dict | None = None
    names: dict | None = None
    constants: dict | None = None


def _phases(schedules, total: int) -> dict:
    """``{iteration: what}`` of the phase boundaries of ``schedules`` inside ``(0, total)``."""
    found: dict = {}
    for schedule in schedules:
        for step, what in phases_of(schedule):
            if 0 < step < total and what not in found.get(step, ""):
                found[step] = f"{found[step]}; {what}" if step in found else what
    return dict(sorted(found.items()))


def _held(name: str, kinds: dict, ndim: int, custom_keys) -> str:
    """What kind of parameter the leaf ``name`` is, for a group's name."""
    module, _, leaf = name.rpartition(".")
    kind = kinds.get(module)
    key = next((key for key in sorted(custom_keys, key=len, reverse=True) if key and key in name), None)
    if key is not None:
        return key.strip(".")
    if kind in ("norm", "dwconv"):
        return {"norm": "norm", "dwconv": "depth-wise conv"}[kind]
    return "bias" if leaf == "bias" else "1-D" if ndim <= 1 else "weights"


def group_name(setting: paramwise.ParamSetting, held) -> str:
    """``bias (lr x2, no decay)``: what a group holds, then how its setting differs."""
    scale = setting.lr_mult * setting.lr_scale
    notes = [] if scale == 1 else [f"lr x{scale:.3g}"]
    if setting.decay_mult != 1:
        notes.append("no decay" if setting.decay_mult == 0 else f"decay x{setting.decay_mult:.3g}")
    notes += [f"{k}={v}" for k, v in setting.options]
    what = ", ".join(sorted(set(held))) or "params"
    return f"{what} ({', '.join(notes)})" if notes else what


def example_params(paramwise_cfg: dict):
    """``(params, module_kinds)``: a small tree with a leaf for every ``paramwise_cfg`` rule."""
    leaf = jnp.zeros((2, 2))
    params = {
        "backbone": {
            "conv": {"kernel": jnp.zeros((3, 3, 2, 2)), "bias": jnp.zeros(2)},
            "norm": {"scale": jnp.zeros(2), "bias": jnp.zeros(2)},
            "dwconv": {"kernel": jnp.zeros((3, 3, 1, 2))},
            "embed": jnp.zeros(2),
        },
        "head": {"kernel": leaf, "bias": jnp.zeros(2)},
    }
    for i, key in enumerate(sorted((paramwise_cfg or {}).get("custom_keys", {}))):
        params[f"custom{i}"] = {key.strip(".") or "key": {"kernel": leaf}}
    kinds = {"backbone.conv": "conv", "backbone.norm": "norm", "backbone.dwconv": "dwconv"}
    return params, kinds


def with_run_length(cfg: dict, *, max_epochs=None, max_iters=None) -> dict:
    """``cfg`` with the run's length replaced, as editing the config would: the MMCV ``runner``'s
    (or ``total_epochs``), the MMEngine ``train_cfg``'s ``max_epochs`` / ``max_iters``, timm's
    ``epochs``; a DeepSpeed config's curves are drawn over ``max_iters`` updates (an entry beside
    ``deepspeed``, which only the curves read). Schedules that follow the run's length (cosine to the end, OneCycle) follow the new
    one. The override counts what the config counts: epochs or iterations."""
    for name, value in (("--max-epochs", max_epochs), ("--max-iters", max_iters)):
        if value is not None:
            validate.positive_int(name, value)
    if max_epochs is None and max_iters is None:
        return cfg
    if "hf" in cfg:
        length = (
            dict(num_train_epochs=max_epochs, max_steps=-1) if max_epochs is not None else dict(max_steps=max_iters)
        )
        return {**cfg, "hf": {**cfg["hf"], **length}}
    if "detectron2" in cfg:
        from purelr.recipes.detectron2 import solver_of

        if max_epochs is not None:
            raise ValueError(
                "detectron2 configs count iterations (SOLVER.MAX_ITER): give --max-iters, not --max-epochs"
            )
        return {**cfg, "detectron2": {**solver_of(cfg["detectron2"]), "MAX_ITER": max_iters}}
    if "deepspeed" in cfg:
        if max_epochs is not None:
            raise ValueError("DeepSpeed configs count optimizer updates: give --max-iters, not --max-epochs")
        return {**cfg, "max_iters": max_iters}
    if "timm" in cfg:
        if max_iters is not None:
            raise ValueError("timm configs count epochs (timm.epochs): give --max-epochs, not --max-iters")
        return {**cfg, "timm": {**cfg["timm"], "epochs": max_epochs}}
    key = "train_cfg" if "optim_wrapper" in cfg else "runner"
    runner = dict(cfg.get(key) or ({"max_epochs": cfg["total_epochs"]} if "total_epochs" in cfg else {}))
    counts = "max_epochs" if "max_epochs" in runner else "max_iters" if "max_iters" in runner else None
    given = "max_epochs" if max_epochs is not None else "max_iters"
    if counts not in (None, given):
        option = "--" + counts.replace("_", "-")
        raise ValueError(f"the config's {key} counts {counts[4:]} ({key}.{counts} = {runner[counts]!r}): give {option}")
    runner[given] = max_epochs if max_epochs is not None else max_iters
    return {**{k: v for k, v in cfg.items() if k != "total_epochs"}, key: runner}


def config_curves(
    cfg, *, epoch_len=None, max_epochs=None, max_iters=None, params=None, module_kinds=None, world_size=None
) -> Curves:
    """Every group's lr (and momentum / beta1 where the optimizer has one, and every other
    hyperparameter a scheduler drives, such as ``weight_decay``) at every iteration, over the whole run (its length replaced by ``max_epochs`` or ``max_iters``: ``with_run_length``)."""
    if epoch_len is not None:
        validate.positive_int("--epoch-len", epoch_len)
    cfg = with_run_length(
        cfg if isinstance(cfg, dict) else load_config(cfg), max_epochs=max_epochs, max_iters=max_iters
    )
    if "detectron2" in cfg:
        return detectron2_curves(cfg["detectron2"], params=params, module_kinds=module_kinds, world_size=world_size)
    if "timm" in cfg:
        return timm_curves(cfg["timm"], epoch_len=epoch_len, params=params, world_size=world_size)
    if "hf" in cfg:
        return hf_curves(cfg["hf"], epoch_len=epoch_len)
    if "deepspeed" in cfg:
        return deepspeed_curves(cfg["deepspeed"], cfg.get("max_iters"))
    recipe = read_recipe(cfg, epoch_len=epoch_len, world_size=world_size)
    if recipe.max_iters is None:
        raise ValueError(
            "the run's length is unknown: the config counts epochs and --epoch-len is "
            "not given, or has no max_epochs / max_iters; give --epoch-len or --max-iters"
        )
    total = recipe.max_iters
    if params is None:  # a registered constructor may say which tree shows its groups
        constructor = registry.registered("constructor").get(recipe.constructor)
        params, module_kinds = getattr(constructor, "example_params", example_params)(recipe.paramwise_cfg)
    labels, settings = labels_of(recipe, params, module_kinds, None)
    custom_keys = (recipe.paramwise_cfg or {}).get("custom_keys", {})
    held: dict = {}
    for name, label, leaf in zip(dotted_names(params), jax.tree.leaves(labels), jax.tree.leaves(params)):
        held.setdefault(label, []).append(_held(name, module_kinds or {}, np.ndim(leaf), custom_keys))
    built: list = []
    steps = jnp.arange(total)
    hyperparams = dict(recipe.hyperparams)
    momentum = hyperparams.get("momentum", (hyperparams.get("betas") or (None,))[0])
    others = [name for name in recipe.schedules if name not in ("lr", "momentum")]
    values, bases, starts, constants = {}, {}, {}, {}
    for label, setting in settings.items():
        if setting.frozen:
            continue
        group, schedules = paramwise.fixed(
            setting, paramwise.group_hyperparams(setting, **hyperparams), recipe.schedules, recipe.fixed_lr
        )
        bases[label] = group["lr"]
        values[(label, "lr")] = _evaluate(schedules.get("lr"), group["lr"], steps, built) * setting.lr_scale
        if momentum is not None:
            values[(label, "momentum")] = _evaluate(recipe.schedules.get("momentum"), momentum, steps, built)
        for name in others:
            starts[(label, name)] = group[name]
            values[(label, name)] = _evaluate(recipe.schedules[name], group[name], steps, built)
        if "weight_decay" not in others and group.get("weight_decay") is not None:
            constants[(label, "weight_decay")] = float(group["weight_decay"])
    names = {label: group_name(settings[label], held.get(label, ())) for label in bases}
    if len(names) == 1:
        names = {label: "all params" for label in names}
    return Curves(np.arange(total), epoch_len, values, bases, starts, _phases(built, total), names, constants)


def timm_curves(args: dict, *, epoch_len=None, params=None, world_size=None) -> Curves:
    """The lr of a ``timm=dict(...)`` config (timm's ``train.py`` arguments, its defaults applied)
    at every optimizer update: one curve, or with ``layer_decay`` one per layer-decay group (scaled
    by its ``lr_scale``, as timm's schedulers scale each group), the layers read from ``params``
    and ``group_matcher``, or from ``timm.model`` where purelr knows that model's layers
    (``purelr.recipes.timm.model_layers``). ``epoch_len`` is ``len(loader_train)``: an epoch has
    ``ceil(epoch_len / grad_accum_steps)`` updates."""
    from purelr.params import timm as paramwise_timm
    from purelr.recipes import timm as timm_lib

    if epoch_len is None:
        raise ValueError("timm configs count epochs: give --epoch-len (batches per epoch, len(loader_train))")
    args = {**timm_lib.train_args(args), "lr": timm_lib.scaled_lr(args, world_size)}
    updates_per_epoch = -(-epoch_len // validate.positive_int("timm.grad_accum_steps", args["grad_accum_steps"]))
    total = args["epochs"] * updates_per_epoch
    steps = jnp.arange(total)
    lr = args["lr"]
    if args["sched"] is None:
        curve = np.full(total, float(lr))
    else:
        schedule = timm_lib.create_scheduler_v2(
            lr, updates_per_epoch=updates_per_epoch, **timm_lib.scheduler_kwargs(args)
        )
        curve = _curve(schedule, steps)
    phases = {} if args["sched"] is None else _phases([schedule], total)
    scales = {"default": 1.0}
    if args["layer_decay"] is not None:
        matcher = args["group_matcher"]
        if params is None:
            params, matcher = timm_lib.model_layers(args.get("model")) or (None, None)
            matcher = args["group_matcher"] or matcher
        if params is None or matcher is None:
            raise ValueError(
                f"timm.layer_decay={args['layer_decay']!r} gives each layer of the model its own lr: "
                f"purelr knows the layers of timm's vit_* models (purelr.recipes.timm.VIT_DEPTHS), not "
                f"timm.model={args.get('model')!r}: give --model module:factory (the params) and "
                f"timm.group_matcher"
            )
        layer_map = timm_lib.layer_map_from_matcher(params, matcher)
        _, settings = paramwise_timm.param_groups_layer_decay(params, layer_map, layer_decay=args["layer_decay"])
        kept = [label for label, setting in settings.items() if not setting.frozen]
        order = sorted(
            kept, key=lambda label: (len(label.split("_")[1]), label) if label.startswith("layer_") else (0, label)
        )
        scales = {label: settings[label].lr_scale for label in order}
    layers = {label: label.split("_")[1] for label in scales if label.startswith("layer_")}
    names = {
        label: f"layer {layers[label]} (lr x{scale:.3g}{', no decay' if label.endswith('no_decay') else ''})"
        if label in layers
        else label
        for label, scale in scales.items()
    }
    return Curves(
        np.arange(total),
        updates_per_epoch,
        {(label, "lr"): curve * scale for label, scale in scales.items()},
        {label: lr * scale for label, scale in scales.items()},
        phases=phases,
        names=names,
        constants={("default", "weight_decay"): float(args["weight_decay"])} if "weight_decay" in args else None,
    )


def hf_curves(args: dict, *, epoch_len=None) -> Curves:
    """The lr of an ``hf=dict(...)`` config (``TrainingArguments`` fields) at every optimizer update
    of the Trainer's run: one curve, which the Trainer's two groups (decay, no decay) share.
    ``epoch_len`` is ``len(train_dataloader)``, needed unless ``hf.max_steps`` is set; an epoch has
    ``ceil(epoch_len / gradient_accumulation_steps)`` updates."""
    from purelr.recipes import hf as hf_lib

    args = hf_lib.training_arguments(args)
    total = hf_lib.training_steps(args, epoch_len)
    schedule = hf_lib.lr_schedule(args, epoch_len)(args["learning_rate"])
    curve = _curve(schedule, jnp.arange(total))
    accumulation = validate.positive_int("hf.gradient_accumulation_steps", args["gradient_accumulation_steps"])
    updates_per_epoch = None if epoch_len is None else max(-(-epoch_len // accumulation), 1)
    return Curves(
        np.arange(total),
        updates_per_epoch,
        {("default", "lr"): curve},
        {"default": float(args["learning_rate"])},
        phases=_phases([schedule], total),
    )


def detectron2_curves(solver_cfg, *, params=None, module_kinds=None, world_size=None) -> Curves:
    """The lr of each group of a detectron2 SOLVER (``purelr.recipes.detectron2.solver_of`` reads
    it) at every iteration up to ``MAX_ITER``: the groups of ``BIAS_LR_FACTOR``."""
    from purelr.recipes import detectron2

    solver = detectron2.solver_of(solver_cfg, world_size)
    total = solver["MAX_ITER"]
    steps = jnp.arange(total)
    curves = detectron2.lr_curves(solver, params, module_kinds)
    # The solver's structure: fvcore's schedulers mark no phases of their own.
    phases = {solver["WARMUP_ITERS"]: f"{solver['WARMUP_METHOD']} warmup ends"} if solver["WARMUP_ITERS"] else {}
    if solver["LR_SCHEDULER_NAME"] == "WarmupMultiStepLR":
        phases.update({step: f"decay by {solver['GAMMA']:g}" for step in solver["STEPS"]})
    return Curves(
        np.arange(total),
        None,
        {(label, "lr"): _curve(schedule, steps) for label, (_, schedule) in curves.items()},
        {label: base for label, (base, _) in curves.items()},
        phases={step: what for step, what in sorted(phases.items()) if 0 < step < total},
    )


def deepspeed_curves(ds_config, updates=None) -> Curves:
    """The lr (and Adam's beta1) of a DeepSpeed config at each optimizer update, one group (a
    DeepSpeed scheduler sets every group alike), over ``updates`` or the length
    ``purelr.recipes.deepspeed.curves`` picks to show the whole schedule."""
    from purelr.recipes import deepspeed as deepspeed_lib

    found = deepspeed_lib.curves(ds_config, updates)
    steps = jnp.arange(found.pop("updates"))
    values = {("default", quantity): _curve(schedule, steps) for quantity, schedule in found.items()}
    return Curves(np.asarray(steps), None, values, {"default": float(values[("default", "lr")][0])})


def _curve(schedule, steps) -> np.ndarray:
    """``schedule`` at every step, jitted over the vector of steps, in float64."""
    return np.asarray(jax.jit(jax.vmap(schedule))(steps), dtype=np.float64)


def _evaluate(factory, base, steps, built: list) -> np.ndarray:
    """``factory(base)`` at every step (``base`` where there is no factory); the schedule is
    appended to ``built``."""
    if factory is None:
        return np.full(steps.shape, float(base))
    built.append(factory(base))
    return _curve(built[-1], steps)
