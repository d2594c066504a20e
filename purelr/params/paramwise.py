"""MMCV/MMEngine ``paramwise_cfg`` as a label pytree for ``optax.multi_transform``.

Twins of MMCV 1.7's ``DefaultOptimizerConstructor`` (``style="mmcv"``) and MMEngine's
``DefaultOptimWrapperConstructor`` (``style="mmengine"``). For a leaf named ``name`` (dotted, see
``purelr.params.module_kinds``) in module ``m`` whose parent module is ``parent``:

1. frozen (torch's ``requires_grad=False``): label ``"frozen"``, never updated;
2. custom_keys: the longest key contained in ``name`` (ties: alphabetical first; a leaf at the
   root is matched as ``"." + name``) gives ``lr_mult`` and ``decay_mult`` (default 1) and skips
   every rule below; MMEngine also passes the key's other entries (``momentum``, even ``lr``) to
   the group as they are;
3. lr: a ``bias`` not in a norm layer or in a child of a DCN gets ``bias_lr_mult``; a conv inside
   a DCN whose path contains ``conv_offset`` gets ``dcn_offset_lr_mult``;
4. weight decay (only with a base ``weight_decay``), first rule that applies:
   MMCV: norm -> ``norm_decay_mult``; dwconv -> ``dwconv_decay_mult``; bias (not in a DCN child)
   -> ``bias_decay_mult``.
   MMEngine, each rule only when its key is given: norm; bias (not in a DCN child); dwconv;
   1-D leaf (not in a DCN child) -> ``flat_decay_mult``.

Leaves with the same ``ParamSetting`` share one label. Custom keys are matched against flax names
(``kernel``/``scale`` where torch says ``weight``). ``bypass_duplicate`` is accepted and has no
effect: a pytree holds each array once. As in MMEngine, ``flat_decay_mult`` without a base
``weight_decay`` is accepted and does nothing. Frozen leaves are ``"frozen"`` in both styles (MMCV
keeps them in a group without gradients, MMEngine leaves them out: neither updates them).
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Mapping, NamedTuple

import jax
import optax

from purelr.params import groups as groups_lib
from purelr.params import module_kinds as kinds_lib
from purelr.schedules import validate

MULT_KEYS = ("bias_lr_mult", "bias_decay_mult", "norm_decay_mult", "dwconv_decay_mult", "dcn_offset_lr_mult")
KNOWN_KEYS = {
    "mmcv": ("custom_keys", "bypass_duplicate") + MULT_KEYS,
    "mmengine": ("custom_keys", "bypass_duplicate", "flat_decay_mult") + MULT_KEYS,
}
DECAY_KEYS = ("bias_decay_mult", "norm_decay_mult", "dwconv_decay_mult")
CUSTOM_KEYS = ("lr_mult", "decay_mult")
GROUP_MARKS = ("fix_lr",)
"""MMEngine ``custom_keys`` entries that mark a group for a hook instead of setting an optimizer
argument: ``fix_lr=True``, whose lr MMPretrain's ``SimSiamHook`` resets (``fixed_lr`` of
``paramwise_transform``)."""


class ParamSetting(NamedTuple):
    """One label's setting: ``lr = lr_scale * schedule(base_lr * lr_mult)`` (``lr_scale`` is
    timm's), ``weight_decay = base_weight_decay * decay_mult``; ``options`` are MMEngine's extra
    group entries as sorted ``(name, value)`` pairs (an ``lr`` or ``weight_decay`` there replaces
    the product)."""

    lr_mult: float = 1.0
    decay_mult: float = 1.0
    frozen: bool = False
    lr_scale: float = 1.0
    options: tuple = ()
    fix_lr: bool = False


def label_of(setting: ParamSetting) -> str:
    """A readable label: ``"frozen"``, ``"default"`` or the fields that differ from the default."""
    if setting.frozen:
        return "frozen"
    parts = [
        f"{field}={value!r}"
        for field, value, default in zip(setting._fields, setting, ParamSetting())
        if value != default
    ]
    return ",".join(parts) or "default"


def check_cfg(paramwise_cfg, *, style: str, weight_decay, optimizer: Callable | None = None) -> dict:
    """Validates a ``paramwise_cfg``; raises naming the key and value (MMCV's ``_validate_cfg``
    plus unknown keys, negative or non-finite multipliers and non-numbers).

    Keys starting with ``_`` are config-language markers, ignored as the constructors ignore every
    key they do not read (the twins configs of MMClassification 0.x and MMPretrain write ``_delete``
    for ``_delete_``). A custom_keys entry holds ``lr_mult`` and ``decay_mult`` (MMCV); MMEngine passes its other
    entries to the parameter group, so there any argument of the optimizer is accepted and, given
    ``optimizer`` (``**group_arguments -> transformation``), checked by building it.
    """
    validate.one_of("style", style, tuple(KNOWN_KEYS))
    if weight_decay is not None:
        validate.nonnegative("weight_decay", weight_decay)
    cfg = {} if paramwise_cfg is None else paramwise_cfg
    if not isinstance(cfg, Mapping):
        raise TypeError(f"paramwise_cfg must be None or a dict, got {cfg!r}")
    for key, value in cfg.items():
        if key.startswith("_"):
            continue  # a config-language marker (MMCV's and MMClassification's twins configs carry `_delete`)
        if key not in KNOWN_KEYS[style]:
            raise ValueError(
                f"unknown paramwise_cfg key {key!r} (= {value!r}); known keys for {style}: "
                f"{list(KNOWN_KEYS[style])}{validate.close_to(key, KNOWN_KEYS[style])}"
            )
        if key.endswith("_mult"):
            validate.nonnegative(f"paramwise_cfg.{key}", value)
            if key in DECAY_KEYS and weight_decay is None:
                raise ValueError(
                    f"paramwise_cfg.{key} = {value!r} needs a base weight_decay (MMCV: base_wd should not be None)"
                )
    validate.flag("paramwise_cfg.bypass_duplicate", cfg.get("bypass_duplicate", False))
    custom = cfg.get("custom_keys", {})
    if not isinstance(custom, Mapping):
        raise TypeError(f"paramwise_cfg.custom_keys must be a dict, got {custom!r}")
    for key, entry in custom.items():
        _check_custom_key(key, entry, style, weight_decay, optimizer)
    return dict(cfg)


def _check_custom_key(key, entry, style, weight_decay, optimizer):
    where = f"paramwise_cfg.custom_keys[{key!r}]"
    if not isinstance(key, str):
        raise TypeError(f"paramwise_cfg.custom_keys keys must be strings (parts of parameter names), got {key!r}")
    if not isinstance(entry, Mapping):
        raise TypeError(f"{where} must be a dict, got {entry!r}")
    if style == "mmcv":
        validate.known_keys(
            where,
            entry,
            CUSTOM_KEYS,
            note=(
                " (MMCV's constructor reads only these and ignores the rest: remove the key to get MMCV's behaviour)"
            ),
        )
    else:
        for mark in GROUP_MARKS:
            if mark in entry:
                validate.flag(f"{where}.{mark}", entry[mark])
        if optimizer is not None:
            checked_call(optimizer, where, entry, ignored=CUSTOM_KEYS + GROUP_MARKS)
    for mult in CUSTOM_KEYS:
        if mult in entry:
            validate.nonnegative(f"{where}.{mult}", entry[mult])
    if "decay_mult" in entry and weight_decay is None:
        raise ValueError(f"{where}.decay_mult = {entry['decay_mult']!r} needs a base weight_decay")


def argument_names(function: Callable) -> tuple[str, ...] | None:
    """The keyword arguments ``function`` takes (``None`` when it takes any: ``**kwargs``)."""
    parameters = inspect.signature(function).parameters.values()
    if any(p.kind == p.VAR_KEYWORD for p in parameters):
        return None
    return tuple(p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


def checked_call(optimizer: Callable, where: str, arguments: Mapping, ignored=()):
    """``optimizer(**arguments)`` less the ``ignored`` keys; a key that is neither ignored nor an
    argument of the optimizer, or a value the optimizer refuses, raises naming ``where`` (a config
    key such as ``optimizer``) as well as the argument and value."""
    accepted = argument_names(optimizer)
    if accepted is not None:
        validate.known_keys(where, arguments, (*ignored, *accepted))
    try:
        return optimizer(**{k: v for k, v in arguments.items() if k not in ignored})
    except (TypeError, ValueError) as error:
        raise type(error)(f"{where}: {error}") from error


def _hashable(value):
    return tuple(map(_hashable, value)) if isinstance(value, (list, tuple)) else value


def _setting(cfg, style, has_decay, name, ndim, kind, parent_kind, force_default=False) -> ParamSetting:
    custom = cfg.get("custom_keys", {})
    target = name if "." in name else "." + name
    for key in sorted(sorted(custom), key=len, reverse=True):
        if key in target:
            entry = custom[key]
            options: tuple = ()
            if style == "mmengine":
                options = tuple(
                    sorted((k, _hashable(v)) for k, v in entry.items() if k not in CUSTOM_KEYS + GROUP_MARKS)
                )
            setting = ParamSetting(
                float(entry.get("lr_mult", 1.0)),
                float(entry.get("decay_mult", 1.0)) if has_decay else 1.0,
                options=options,
                fix_lr=bool(entry.get("fix_lr", False)),
            )
            return _forced(setting, cfg, style, has_decay, name, ndim, kind, parent_kind) if force_default else setting
    return _forced(ParamSetting(), cfg, style, has_decay, name, ndim, kind, parent_kind)


def _forced(setting, cfg, style, has_decay, name, ndim, kind, parent_kind) -> ParamSetting:
    """``setting`` with the multipliers of the rules that apply to the leaf (bias, DCN offset,
    norm, dwconv, 1-D) put in place of its own, and the option the rule sets dropped."""
    mmcv = style == "mmcv"
    get = lambda key: cfg.get(key, 1.0 if mmcv else None)
    norm, dwconv, in_dcn = kind == kinds_lib.NORM, kind == kinds_lib.DWCONV, parent_kind == kinds_lib.DCN
    bias = name.rpartition(".")[2] == "bias"
    offset = "conv_offset" in kinds_lib.module_path(name) and in_dcn and kind in (kinds_lib.CONV, kinds_lib.DWCONV)
    rules = [(bias and not (norm or in_dcn), "bias_lr_mult"), (offset, "dcn_offset_lr_mult")]
    for applies, key in rules:
        if applies and get(key) is not None:
            setting = setting._replace(lr_mult=float(get(key)), options=_without(setting.options, "lr"))
    if mmcv:
        decay_rules = [
            (norm, "norm_decay_mult"),
            (dwconv, "dwconv_decay_mult"),
            (bias and not in_dcn, "bias_decay_mult"),
        ]
    else:
        decay_rules = [
            (norm, "norm_decay_mult"),
            (bias and not in_dcn, "bias_decay_mult"),
            (dwconv, "dwconv_decay_mult"),
            (ndim == 1 and not in_dcn, "flat_decay_mult"),
        ]
    for applies, key in decay_rules if has_decay else ():
        if applies and get(key) is not None:
            return setting._replace(decay_mult=float(get(key)), options=_without(setting.options, "weight_decay"))
    return setting


def _without(options: tuple, name: str) -> tuple:
    return tuple((k, v) for k, v in options if k != name)


def paramwise_labels(
    params,
    paramwise_cfg,
    *,
    weight_decay,
    module_kinds=None,
    frozen=None,
    style: str = "mmcv",
    optimizer: Callable | None = None,
    force_default: bool = False,
) -> tuple[Any, dict[str, ParamSetting]]:
    """``(labels, settings)``: a label per leaf (a pytree like ``params``) and ``{label: setting}``.

    ``weight_decay``: the optimizer's base weight decay, or ``None`` when it has none (then every
    decay rule is off and a ``decay_mult`` is an error, as in MMCV). ``module_kinds``:
    ``{module path: kind}`` (``purelr.params.module_kinds.module_kinds(model, ...)``); without it only the
    name rules apply. ``frozen``: a selector (``purelr.params.groups``) of the leaves torch would have
    with ``requires_grad=False``. ``optimizer``: ``**group_arguments -> transformation`` with the
    base arguments bound, to check MMEngine's custom_keys entries (``check_cfg``). ``force_default``:
    the rules of step 3 and 4 also apply to a leaf a custom key matched, over its settings
    (``ForceDefaultOptimWrapperConstructor``'s ``force_default_settings``).
    """
    cfg = check_cfg(paramwise_cfg, style=style, weight_decay=weight_decay, optimizer=optimizer)
    names = kinds_lib.param_names(params)
    kinds = dict(validate.mapping("module_kinds", {} if module_kinds is None else module_kinds))
    for path, kind in kinds.items():
        validate.one_of(f"module_kinds[{path!r}]", kind, kinds_lib.KINDS)
        if not any(name.startswith(path + ".") or path == "" for name in names):
            raise ValueError(f"module_kinds[{path!r}] = {kind!r}: no parameter lies under {path!r}")
    is_frozen = [False] * len(names) if frozen is None else groups_lib.selected(frozen, params, "frozen")
    labels, settings = [], {}
    for name, leaf, cold in zip(names, jax.tree.leaves(params), is_frozen):
        module = kinds_lib.module_path(name)
        parent = kinds_lib.module_path(module) if module else None
        setting = (
            ParamSetting(frozen=True)
            if cold
            else _setting(
                cfg,
                style,
                weight_decay is not None,
                name,
                len(jax.numpy.shape(leaf)),
                kinds.get(module),
                kinds.get(parent),
                force_default,
            )
        )
        label = label_of(setting)
        settings[label] = setting
        labels.append(label)
    return jax.tree.unflatten(jax.tree.structure(params), labels), settings


def group_hyperparams(setting: ParamSetting, *, lr, weight_decay=None, **hyperparams) -> dict:
    """The optimizer arguments of one label (schedules not yet applied): ``lr * lr_mult``,
    ``weight_decay * decay_mult`` (left to the optimizer's default when ``None``), the options."""
    options = dict(setting.options)
    group = dict(hyperparams, lr=lr * setting.lr_mult)
    if weight_decay is not None:
        group["weight_decay"] = weight_decay * setting.decay_mult
    group.update(options)
    return group


def paramwise_transform(
    optimizer: Callable,
    labels,
    settings: Mapping[str, ParamSetting],
    *,
    lr,
    weight_decay=None,
    schedules: Mapping[str, Callable] | None = None,
    fixed_lr=None,
    **hyperparams,
) -> optax.GradientTransformation:
    """``optax.multi_transform`` of ``optimizer(**group_hyperparams(setting, ...))`` per label, with
    each ``schedules[name]`` (``base -> schedule``) started from the label's own base value and the
    lr multiplied by ``lr_scale`` after scheduling (timm's ``lr_scale``); frozen labels get zeros.
    ``fixed_lr``: the lr of the ``fix_lr`` labels, which no schedule moves (``fixed``)."""
    lr = validate.nonnegative("lr", lr)
    weight_decay = None if weight_decay is None else validate.nonnegative("weight_decay", weight_decay)
    transforms = {}
    for label, setting in settings.items():
        group, label_schedules = fixed(
            setting, group_hyperparams(setting, lr=lr, weight_decay=weight_decay, **hyperparams), schedules, fixed_lr
        )
        transforms[label] = groups_lib.group_transform(
            _scaled(optimizer, setting.lr_scale), group, label_schedules, frozen=setting.frozen
        )
    return optax.multi_transform(transforms, groups_lib.by_name(labels))


def fixed(setting: ParamSetting, group: dict, schedules: Mapping[str, Callable] | None, fixed_lr):
    """``(group, schedules)`` of one label: for a ``fix_lr`` label with a ``fixed_lr`` (MMPretrain's
    ``SimSiamHook(fix_pred_lr=True, lr=fixed_lr)``, which sets the lr of those groups before each
    epoch, or each iteration, after the schedulers have moved it) that lr and no lr schedule."""
    if not (setting.fix_lr and fixed_lr is not None):
        return group, schedules
    return dict(group, lr=fixed_lr), {name: f for name, f in (schedules or {}).items() if name != "lr"}


def _scaled(optimizer, lr_scale):
    if lr_scale == 1.0:
        return optimizer

    def make(lr, **hyperparams):
        scaled = (lambda step: lr_scale * lr(step)) if callable(lr) else lr_scale * lr
        return optimizer(lr=scaled, **hyperparams)

    return make


def paramwise(
    optimizer: Callable,
    params,
    paramwise_cfg,
    *,
    lr,
    weight_decay=None,
    schedules: Mapping[str, Callable] | None = None,
    module_kinds=None,
    frozen=None,
    style: str = "mmcv",
    **hyperparams,
) -> optax.GradientTransformation:
    """The optimizer MMCV's ``DefaultOptimizerConstructor`` (or MMEngine's
    ``DefaultOptimWrapperConstructor``) builds: ``paramwise_labels`` then ``paramwise_transform``.

    Example: ``paramwise(purelr.optim.sgd, params, dict(norm_decay_mult=0.0), lr=0.02,
    weight_decay=1e-4, momentum=0.9, module_kinds=module_kinds(model, x),
    schedules=dict(lr=functools.partial(purelr.schedules.torch.multistep_lr, milestones=[8, 11])))``.
    """
    bound = functools.partial(
        optimizer, lr=lr, **hyperparams, **({} if weight_decay is None else {"weight_decay": weight_decay})
    )
    labels, settings = paramwise_labels(
        params,
        paramwise_cfg,
        weight_decay=weight_decay,
        module_kinds=module_kinds,
        frozen=frozen,
        style=style,
        optimizer=bound,
    )
    return paramwise_transform(
        optimizer, labels, settings, lr=lr, weight_decay=weight_decay, schedules=schedules, **hyperparams
    )
