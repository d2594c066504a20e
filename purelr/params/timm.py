"""timm's ``param_groups_weight_decay`` and ``param_groups_layer_decay`` as label pytrees.

Both return ``(labels, settings)`` like ``purelr.params.paramwise.paramwise_labels``; build the optimizer
with ``paramwise_transform(optimizer, labels, settings, lr=..., weight_decay=weight_decay)`` (the
settings' ``decay_mult`` is 0 or 1 of that ``weight_decay``). Patterns in
``no_weight_decay_list`` are ``fnmatch`` patterns on dotted names, as in timm.
"""

from __future__ import annotations

import fnmatch
from typing import Callable, Collection, Mapping

import jax

from purelr.params import groups as groups_lib
from purelr.params.module_kinds import param_names
from purelr.params.paramwise import ParamSetting
from purelr.schedules import validate


def _matches(name, patterns) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in patterns)


def _trainable(params, frozen):
    names = param_names(params)
    cold = [False] * len(names) if frozen is None else groups_lib.selected(frozen, params, "frozen")
    return names, [jax.numpy.ndim(leaf) for leaf in jax.tree.leaves(params)], cold


def _result(params, labels, settings):
    return jax.tree.unflatten(jax.tree.structure(params), labels), settings


def param_groups_weight_decay(
    params,
    weight_decay=1e-5,
    weight_decay_exclude_1d: bool = True,
    no_weight_decay_list: Collection[str] = (),
    *,
    frozen=None,
):
    """Twin of ``timm.optim.param_groups_weight_decay``: label ``"no_decay"`` (weight decay 0) for
    leaves with ``ndim <= 1`` or named ``*.bias`` (when ``weight_decay_exclude_1d``) or matching
    ``no_weight_decay_list``, and for every leaf when ``weight_decay`` is 0 or None; ``"decay"``
    otherwise; ``"frozen"`` for the ``frozen`` selector (timm leaves those out)."""
    if weight_decay is not None:
        validate.nonnegative("weight_decay", weight_decay)
    no_weight_decay_list = validate.strings("no_weight_decay_list", no_weight_decay_list)
    labels, settings = [], {}
    for name, ndim, cold in zip(*_trainable(params, frozen)):
        if cold:
            label, setting = "frozen", ParamSetting(frozen=True)
        elif (
            not weight_decay
            or (weight_decay_exclude_1d and (ndim <= 1 or name.endswith(".bias")))
            or _matches(name, no_weight_decay_list)
        ):
            label, setting = "no_decay", ParamSetting(decay_mult=0.0)
        else:
            label, setting = "decay", ParamSetting()
        labels.append(label)
        settings[label] = setting
    return _result(params, labels, settings)


def param_groups_layer_decay(
    params,
    layer_map: Mapping[str, int] | Callable[[str], int | None],
    weight_decay=0.05,
    no_weight_decay_list: Collection[str] = (),
    weight_decay_exclude_1d: bool = True,
    layer_decay=0.75,
    min_scale=0.0,
    no_opt_scale=None,
    *,
    frozen=None,
):
    """Twin of ``timm.optim.param_groups_layer_decay`` with a user-given layer map (timm reads it
    from ``model.group_matcher``): ``{dotted name: layer id}`` or ``name -> layer id or None``.

    With ``L = max(layer ids)``, a leaf of layer ``i`` (``L`` when unmapped) gets
    ``lr_scale = max(min_scale, layer_decay ** (L - i))`` and label ``f"layer_{i}_decay"`` or
    ``f"layer_{i}_no_decay"`` (``ndim <= 1`` when ``weight_decay_exclude_1d``, or matching
    ``no_weight_decay_list``), as timm's group names; a scale below ``no_opt_scale`` freezes it.
    timm's schedulers multiply each group's scheduled lr by ``lr_scale``: so does
    ``paramwise_transform``.
    """
    validate.nonnegative("weight_decay", weight_decay)
    no_weight_decay_list = validate.strings("no_weight_decay_list", no_weight_decay_list)
    layer_decay = validate.nonnegative("layer_decay", layer_decay)
    min_scale = validate.nonnegative("min_scale", min_scale)
    if no_opt_scale is not None:
        validate.nonnegative("no_opt_scale", no_opt_scale)
    names, ndims, cold = _trainable(params, frozen)
    if callable(layer_map):
        layers = {name: layer_map(name) for name in names}
        layer_map = {name: layer for name, layer in layers.items() if layer is not None}
    if not isinstance(layer_map, Mapping):
        raise TypeError(f"layer_map must be a dict {{name: layer}} or a function name -> layer, got {layer_map!r}")
    unknown = sorted(set(layer_map) - set(names))
    if unknown:
        raise ValueError(f"layer_map names parameters that do not exist: {unknown}")
    if not layer_map:
        raise ValueError(f"layer_map maps no parameter to a layer, got {layer_map!r}")
    layer_map = {name: validate.nonnegative_int(f"layer_map[{name!r}]", layer) for name, layer in layer_map.items()}
    layer_max = max(layer_map.values())
    labels, settings = [], {}
    for name, ndim, is_cold in zip(names, ndims, cold):
        layer = layer_map.get(name, layer_max)
        scale = max(min_scale, layer_decay ** (layer_max - layer))
        if is_cold or (no_opt_scale and scale < no_opt_scale):
            label, setting = "frozen", ParamSetting(frozen=True)
        else:
            no_decay = (weight_decay_exclude_1d and ndim <= 1) or _matches(name, no_weight_decay_list)
            label = f"layer_{layer}_{'no_decay' if no_decay else 'decay'}"
            setting = ParamSetting(decay_mult=0.0 if no_decay else 1.0, lr_scale=scale)
        labels.append(label)
        settings[label] = setting
    return _result(params, labels, settings)
