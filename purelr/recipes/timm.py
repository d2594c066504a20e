"""timm's optimizer and scheduler factories with timm's argument names, as one optax transformation.

Twins of timm 1.0.31's ``timm.optim.create_optimizer_v2`` and ``timm.scheduler.create_scheduler_v2``
as timm's ``train.py`` uses them, for the optimizer names whose math is a ``torch.optim`` algorithm
(``SUPPORTED``). A timm recipe in a config file is a ``timm=dict(...)`` entry with ``train.py``'s
argument names (read as timm's ``optimizer_kwargs`` / ``scheduler_kwargs`` read them, with their
defaults for missing names)::

    timm = dict(opt='adamw', lr=5e-4, weight_decay=0.05, opt_eps=1e-8, opt_betas=(0.9, 0.999),
                layer_decay=0.65, group_matcher=dict(stem=r'^cls_token|^pos_embed|^patch_embed',
                                                     blocks=[(r'^blocks\\.(\\d+)', None), (r'^norm', (99999,))]),
                sched='cosine', epochs=100, warmup_epochs=5, warmup_lr=1e-6, min_lr=1e-6,
                sched_on_updates=False)

``purelr.build(cfg, params, epoch_len=updates_per_epoch)`` builds it (``build_timm``). timm reads
the layers of ``layer_decay`` from ``model.group_matcher``; here ``group_matcher`` (the same dict,
its regular expressions matched against flax dotted names) or an explicit ``layer_map``.
"""

from __future__ import annotations

import collections
import difflib
import functools
import inspect
import re
from typing import Any, Callable, Mapping, NamedTuple

import optax

from purelr import optim
from purelr.params import paramwise as paramwise_lib
from purelr.params import timm as paramwise_timm
from purelr.params.module_kinds import dotted_names
from purelr.schedules import timm as timm_schedules
from purelr.schedules import validate

MATCH_PREV_GROUP = 99999  # timm.models._manipulate.MATCH_PREV_GROUP[0]


class OptimInfo(NamedTuple):
    """timm's ``OptimInfo`` for a supported name: the purelr twin and timm's flags and defaults."""
    optimizer: Callable
    has_eps: bool = True
    has_momentum: bool = False
    has_betas: bool = False
    defaults: tuple = ()


SUPPORTED = {
    "sgd": OptimInfo(optim.sgd, has_eps=False, has_momentum=True, defaults=(("nesterov", True),)),
    "nesterov": OptimInfo(optim.sgd, has_eps=False, has_momentum=True, defaults=(("nesterov", True),)),
    "momentum": OptimInfo(optim.sgd, has_eps=False, has_momentum=True, defaults=(("nesterov", False),)),
    "adam": OptimInfo(optim.adam, has_betas=True),
    "adamw": OptimInfo(optim.adamw, has_betas=True),
    "nadam": OptimInfo(optim.nadam, has_betas=True),
    "radam": OptimInfo(optim.radam, has_betas=True),
    "radamw": OptimInfo(optim.radam, has_betas=True, defaults=(("decoupled_weight_decay", True),)),
    "adamax": OptimInfo(optim.adamax, has_betas=True),
    "adagrad": OptimInfo(optim.adagrad, defaults=(("eps", 1e-8),)),
    "adadelta": OptimInfo(optim.adadelta),
    "rmsprop": OptimInfo(optim.rmsprop, has_momentum=True, defaults=(("alpha", 0.9),)),
    # timm's own optimizers; adamp / sgdp read flax kernels' output channels on their last axis
    "adamp": OptimInfo(optim.adamp, has_betas=True, defaults=(("wd_ratio", 0.01), ("nesterov", True), ("layout", "flax"))),
    "cadamp": OptimInfo(optim.adamp, has_betas=True,
                        defaults=(("wd_ratio", 0.01), ("nesterov", True), ("caution", True), ("layout", "flax"))),
    "sgdp": OptimInfo(optim.sgdp, has_momentum=True, defaults=(("nesterov", True), ("layout", "flax"))),
    "csgdp": OptimInfo(optim.sgdp, has_momentum=True, defaults=(("nesterov", True), ("caution", True), ("layout", "flax"))),
    "adabelief": OptimInfo(optim.adabelief, has_betas=True, defaults=(("rectify", False),)),
    "radabelief": OptimInfo(optim.adabelief, has_betas=True, defaults=(("rectify", True),)),
    "madgrad": OptimInfo(optim.madgrad, has_momentum=True),
    "madgradw": OptimInfo(optim.madgrad, has_momentum=True, defaults=(("decoupled_decay", True),)),
    "adan": OptimInfo(optim.adan, has_betas=True, defaults=(("no_prox", False),)),
    "adanw": OptimInfo(optim.adan, has_betas=True, defaults=(("no_prox", True),)),
    "cadan": OptimInfo(optim.adan, has_betas=True, defaults=(("caution", True), ("no_prox", False))),
    "cadanw": OptimInfo(optim.adan, has_betas=True, defaults=(("caution", True), ("no_prox", True))),
    "adopt": OptimInfo(optim.adopt, has_betas=True),
    "adoptw": OptimInfo(optim.adopt, has_betas=True, defaults=(("decoupled", True),)),
    "cadopt": OptimInfo(optim.adopt, has_betas=True, defaults=(("caution", True),)),
    "cadoptw": OptimInfo(optim.adopt, has_betas=True, defaults=(("decoupled", True), ("caution", True))),
    "laprop": OptimInfo(optim.laprop, has_betas=True),
    "claprop": OptimInfo(optim.laprop, has_betas=True, defaults=(("caution", True),)),
    "novograd": OptimInfo(optim.novograd, has_betas=True),
    "novogradw": OptimInfo(optim.novograd, has_betas=True, defaults=(("decoupled_decay", True),)),
    "mars": OptimInfo(optim.mars, has_betas=True),
    "cmars": OptimInfo(optim.mars, has_betas=True, defaults=(("caution", True),)),
}

OPTIMIZER_ARGS = ("opt", "lr", "weight_decay", "momentum", "opt_eps", "opt_betas", "layer_decay",
                  "layer_decay_min_scale", "layer_decay_no_opt_scale", "opt_args", "opt_foreach",
                  "filter_bias_and_bn", "no_weight_decay_list", "group_matcher")
# timm.scheduler.scheduler_kwargs: train.py argument -> (create_scheduler_v2 argument, default).
SCHEDULER_ARGS = {
    "sched": ("sched", "cosine"), "epochs": ("num_epochs", 100), "decay_epochs": ("decay_epochs", 30),
    "decay_milestones": ("decay_milestones", [30, 60]), "warmup_epochs": ("warmup_epochs", 5),
    "cooldown_epochs": ("cooldown_epochs", 0), "patience_epochs": ("patience_epochs", 10),
    "decay_rate": ("decay_rate", 0.1), "min_lr": ("min_lr", 0.0), "warmup_lr": ("warmup_lr", 1e-5),
    "warmup_prefix": ("warmup_prefix", False), "lr_noise": ("noise", None),
    "lr_noise_pct": ("noise_pct", 0.67), "lr_noise_std": ("noise_std", 1.0), "seed": ("noise_seed", 42),
    "lr_cycle_mul": ("cycle_mul", 1.0), "lr_cycle_decay": ("cycle_decay", 0.1),
    "lr_cycle_limit": ("cycle_limit", 1), "lr_k_decay": ("k_decay", 1.0), "lr_decay_fn": ("decay_fn", None),
    "lr_stable_timescale": ("stable_timescale", None),
}


def optimizer_info(opt: str) -> tuple[str, OptimInfo]:
    """timm's name parsing (``opt.lower().split('_')[-1]``, a ``lookahead_`` prefix wrapping the
    optimizer in ``purelr.optim.lookahead``); unsupported names raise listing the supported ones."""
    if not isinstance(opt, str):
        raise TypeError(f"opt must be a timm optimizer name, got {opt!r}")
    parts = opt.lower().split("_")
    name = parts[-1]
    if name not in SUPPORTED:
        close = difflib.get_close_matches(name, SUPPORTED, n=3, cutoff=0.6)
        hint = f" (did you mean {close}?)" if close else ""
        raise ValueError(f"opt={opt!r} is not supported{hint}: purelr twins the timm optimizers whose "
                         f"math is a torch.optim algorithm: {sorted(SUPPORTED)}")
    if len(parts) > 1 and parts[0] == "lookahead":
        return name, SUPPORTED[name]._replace(optimizer=_with_lookahead(SUPPORTED[name].optimizer))
    return name, SUPPORTED[name]


def _with_lookahead(optimizer: Callable) -> Callable:
    """timm's ``lookahead_`` prefix: ``Lookahead(optimizer)`` with its defaults (``alpha=0.5``,
    ``k=6``), around each group's optimizer (timm's Lookahead steps every group alike)."""

    @functools.wraps(optimizer)
    def make(*args, **kwargs):
        return optim.lookahead(optimizer(*args, **kwargs))

    return make


def layer_map_from_matcher(params, group_matcher: Mapping[str, Any]) -> dict[str, int]:
    """Twin of ``timm.models.group_parameters(model, group_matcher, reverse=True)`` on dotted names:
    ``{name: layer id}``. Each entry of ``group_matcher`` is a regex or a list of ``(regex, suffix)``;
    a name takes the first regex that matches its start, keyed by (entry index, the regex's groups,
    the suffix); unmatched names come last; a suffix of ``(99999,)`` joins the previous layer."""
    compiled = []
    for ordinal, (group, spec) in enumerate(validate.mapping("group_matcher", group_matcher).items()):
        if spec is None:
            continue
        for pattern, suffix in spec if isinstance(spec, (list, tuple)) else [(spec, None)]:
            compiled.append((_compiled(f"group_matcher[{group!r}]", pattern), (ordinal,), suffix))

    def key(name):
        for pattern, prefix, suffix in compiled:
            match = pattern.match(name)
            if match:
                parts = (prefix, match.groups(), suffix)
                return tuple(float(x) for part in parts if part for x in part)
        return (float("inf"),)

    grouping = collections.defaultdict(list)
    for name in dotted_names(params):
        grouping[key(name)].append(name)
    layers, layer = {}, -1
    for group in sorted(grouping):
        if layer < 0 or group[-1] != MATCH_PREV_GROUP:
            layer += 1
        layers.update((name, layer) for name in grouping[group])
    return layers


def _compiled(name: str, pattern) -> re.Pattern:
    try:
        return re.compile(pattern)
    except (re.error, TypeError) as error:
        raise ValueError(f"{name} must be a regular expression, got {pattern!r}: {error}") from error


def create_optimizer_v2(params, opt: str = "sgd", lr=None, weight_decay: float = 0.0, momentum: float = 0.9,
                        foreach=None, filter_bias_and_bn: bool = True, layer_decay: float | None = None,
                        layer_decay_min_scale: float = 0.0, layer_decay_no_opt_scale: float | None = None, *,
                        layer_map=None, no_weight_decay_list=(), frozen=None,
                        **kwargs) -> optax.GradientTransformation:
    """Twin of ``timm.optim.create_optimizer_v2(model, ...)`` for the names in ``SUPPORTED``.

    Groups as timm makes them from a model: ``param_groups_weight_decay`` (no decay for ``ndim <= 1``
    and ``.bias`` leaves when ``filter_bias_and_bn``, and for ``no_weight_decay_list``, timm's
    ``model.no_weight_decay()``), or ``param_groups_layer_decay`` when ``layer_decay`` is given (then
    ``layer_map``, ``{name: layer}`` or ``name -> layer``, is needed; see ``layer_map_from_matcher``).
    timm's defaults: ``sgd``/``nesterov`` are Nesterov SGD, ``momentum`` plain SGD with momentum,
    ``rmsprop`` has ``alpha=0.9``, ``adagrad`` ``eps=1e-8``; ``momentum`` goes only to optimizers
    that take it, ``eps``/``betas`` only to those that take them. ``lr`` is a number or a schedule
    (``create_scheduler_v2``); ``lr=None`` leaves the optimizer's default. Each group's lr is
    multiplied by its layer-decay ``lr_scale`` as every timm scheduler does (a timm optimizer used
    with no scheduler at all ignores ``lr_scale``). ``foreach`` is accepted and has no effect.
    """
    del foreach
    _, info = optimizer_info(opt)
    validate.flag("filter_bias_and_bn", filter_bias_and_bn)
    if layer_decay is not None:
        if layer_map is None:
            raise ValueError(f"layer_decay needs layer_map (timm reads it from model.group_matcher), got "
                             f"layer_decay={layer_decay!r} and no layer_map: give layer_map={{name: layer}} or "
                             f"layer_map_from_matcher(params, matcher)")
        labels, settings = paramwise_timm.param_groups_layer_decay(
            params, layer_map, weight_decay=weight_decay, no_weight_decay_list=no_weight_decay_list,
            weight_decay_exclude_1d=filter_bias_and_bn, layer_decay=layer_decay,
            min_scale=layer_decay_min_scale, no_opt_scale=layer_decay_no_opt_scale, frozen=frozen)
    else:
        labels, settings = paramwise_timm.param_groups_weight_decay(
            params, weight_decay, filter_bias_and_bn, no_weight_decay_list, frozen=frozen)
    hyperparams = {**dict(info.defaults), **kwargs}
    if info.has_momentum:
        hyperparams.setdefault("momentum", momentum)
    if not info.has_eps:
        hyperparams.pop("eps", None)
    if not info.has_betas:
        hyperparams.pop("betas", None)
    if lr is None:
        lr = inspect.signature(info.optimizer).parameters["lr"].default
    schedules = None
    if callable(lr):
        schedule, lr = lr, 1.0
        schedules = {"lr": lambda base: lambda step: base * schedule(step)}
    return paramwise_lib.paramwise_transform(info.optimizer, labels, settings, lr=lr, weight_decay=weight_decay,
                                             schedules=schedules, **hyperparams)


def create_scheduler_v2(lr: float, *, updates_per_epoch: int, **kwargs):
    """``purelr.schedules.timm.create_scheduler_v2``: ``timm.scheduler.create_scheduler_v2``'s
    arguments (``sched``, ``num_epochs``, ``warmup_epochs``, ``warmup_lr``, ``min_lr``,
    ``decay_epochs``, ``decay_rate``, ``step_on_epochs``, ...); the lr of each optimizer update of
    timm's ``train.py`` loop, for ``create_optimizer_v2(..., lr=schedule)``."""
    return timm_schedules.create_scheduler_v2(lr, updates_per_epoch=updates_per_epoch, **kwargs)


def scheduler_kwargs(args: Mapping[str, Any]) -> dict:
    """Twin of ``timm.scheduler.scheduler_kwargs``: ``train.py`` argument names (``epochs``,
    ``lr_cycle_mul``, ``sched_on_updates``, ...) to ``create_scheduler_v2``'s, with its defaults
    (``warmup_epochs=5``, ``epochs=100``, ...) for names not given."""
    kwargs = {name: args.get(arg, default) for arg, (name, default) in SCHEDULER_ARGS.items()}
    kwargs["step_on_epochs"] = not validate.flag("timm.sched_on_updates", args.get("sched_on_updates", False))
    return kwargs


def optimizer_kwargs(args: Mapping[str, Any]) -> dict:
    """Twin of ``timm.optim.optimizer_kwargs``: ``opt_eps`` -> ``eps``, ``opt_betas`` -> ``betas``,
    ``opt_args`` merged; plus purelr's ``group_matcher`` turned into ``layer_map`` by the caller."""
    kwargs = {name: args[name] for name in ("opt", "lr", "weight_decay", "momentum") if name in args}
    renamed = dict(opt_eps="eps", opt_betas="betas", layer_decay="layer_decay",
                   layer_decay_min_scale="layer_decay_min_scale",
                   layer_decay_no_opt_scale="layer_decay_no_opt_scale", opt_foreach="foreach",
                   filter_bias_and_bn="filter_bias_and_bn", no_weight_decay_list="no_weight_decay_list")
    kwargs.update((new, args[old]) for old, new in renamed.items() if args.get(old) is not None)
    kwargs.update(validate.mapping("timm.opt_args", args.get("opt_args") or {}))
    return kwargs


def build_timm(args: Mapping[str, Any], params, *, updates_per_epoch: int | None, layer_map=None,
               frozen=None) -> optax.GradientTransformation:
    """The optimizer and lr schedule timm's ``train.py`` makes from its arguments ``args`` (the
    ``timm=dict(...)`` entry of a config): ``create_optimizer_v2(**optimizer_kwargs(args))`` with
    ``lr`` following ``create_scheduler_v2(**scheduler_kwargs(args))`` unless ``sched`` is ``None``
    (timm's ``--sched`` default is 'cosine'). ``group_matcher`` in ``args`` gives the layer map."""
    if not isinstance(args, Mapping):
        raise TypeError(f"timm must be a dict of timm train.py arguments, got {args!r}")
    unknown = sorted(set(args) - set(OPTIMIZER_ARGS) - set(SCHEDULER_ARGS) - {"sched_on_updates"})
    if unknown:
        raise ValueError(f"timm: unknown keys {unknown}; known: {sorted({*OPTIMIZER_ARGS, *SCHEDULER_ARGS, 'sched_on_updates'})}")
    kwargs = optimizer_kwargs(args)
    if "lr" not in kwargs or kwargs["lr"] is None:
        raise ValueError("timm.lr is missing: give the base learning rate (timm's train.py derives it "
                         "from lr_base and the batch size; give the result)")
    for name in ("lr", "weight_decay"):
        if name in kwargs:
            validate.nonnegative(f"timm.{name}", kwargs[name])
    if args.get("group_matcher") is not None:
        if layer_map is not None:
            raise ValueError("timm.group_matcher and layer_map are both given: give one")
        layer_map = layer_map_from_matcher(params, args["group_matcher"])
    if args.get("sched", "cosine") is not None:
        if updates_per_epoch is None:
            raise ValueError(f"timm.sched = {args.get('sched', 'cosine')!r} needs epoch_len (updates per epoch)")
        kwargs["lr"] = create_scheduler_v2(kwargs["lr"], updates_per_epoch=updates_per_epoch,
                                           **scheduler_kwargs(args))
    return create_optimizer_v2(params, layer_map=layer_map, frozen=frozen, **kwargs)
