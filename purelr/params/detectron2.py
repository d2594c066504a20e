"""detectron2's ``get_default_optimizer_params`` (``detectron2/solver/build.py``) as a label pytree.

Returns ``(labels, settings)`` like ``purelr.params.paramwise.paramwise_labels``; the settings hold
each group's lr and weight decay as absolute values (``ParamSetting.options``), as detectron2's
groups do, and the labels name them (``"lr=0.02,weight_decay=0.0"``). Build the optimizer with ``paramwise_transform(optimizer, labels, settings, lr=...,
weight_decay=...)``: a group without an ``lr`` (or ``weight_decay``) takes the optimizer's.

For each trainable leaf (in ``jax.tree.leaves`` order; detectron2 walks ``model.named_modules()``):

1. ``weight_decay`` and ``base_lr`` where given;
2. a leaf of a norm module (``module_kinds`` kind ``"norm"``, read from the flax model) gets
   ``weight_decay_norm`` where given;
3. ``lr_factor_func(dotted name)`` multiplies the lr (it needs ``base_lr``);
4. ``overrides[leaf name]`` (the leaf's own name: ``bias``, flax's ``kernel`` / ``scale`` where
   torch says ``weight``) replaces entries; ``bias_lr_factor != 1`` (lr ``base_lr * bias_lr_factor``)
   and ``weight_decay_bias`` are an override of ``"bias"``.

detectron2's norm classes are torch's BatchNorm (and SyncBatchNorm), GroupNorm, InstanceNorm,
LayerNorm and LocalResponseNorm; flax's ``RMSNorm`` is a norm here, and detectron2's own
channels-first ``detectron2.layers.LayerNorm`` is none there: leave such a module out of
``module_kinds`` to match. Frozen leaves (torch's ``requires_grad=False``, left out by detectron2)
get the label ``"frozen"``.
"""

from __future__ import annotations

from typing import Callable, Mapping

import jax

from purelr.params import groups as groups_lib
from purelr.params import module_kinds as kinds_lib
from purelr.params.paramwise import ParamSetting
from purelr.schedules import validate

HYPERPARAMS = ("lr", "weight_decay")


def get_default_optimizer_params(
    params,
    base_lr=None,
    weight_decay=None,
    weight_decay_norm=None,
    bias_lr_factor=1.0,
    weight_decay_bias=None,
    lr_factor_func: Callable[[str], float] | None = None,
    overrides: Mapping[str, Mapping[str, float]] | None = None,
    *,
    module_kinds=None,
    frozen=None,
):
    """Twin of ``detectron2.solver.get_default_optimizer_params``: ``(labels, settings)``."""
    numbers = dict(
        base_lr=base_lr,
        weight_decay=weight_decay,
        weight_decay_norm=weight_decay_norm,
        weight_decay_bias=weight_decay_bias,
    )
    for name, value in numbers.items():
        if value is not None:
            validate.nonnegative(name, value)
    overrides = {
        key: dict(validate.known_keys(f"overrides[{key!r}]", entry, HYPERPARAMS))
        for key, entry in validate.mapping("overrides", overrides or {}).items()
    }
    bias = {}
    if bias_lr_factor is not None and validate.nonnegative("bias_lr_factor", bias_lr_factor) != 1.0:
        if base_lr is None:
            raise ValueError(f"bias_lr_factor = {bias_lr_factor!r} needs base_lr")
        bias["lr"] = base_lr * bias_lr_factor
    if weight_decay_bias is not None:
        bias["weight_decay"] = weight_decay_bias
    if bias:
        if "bias" in overrides:
            raise ValueError(
                f"overrides['bias'] = {overrides['bias']!r} conflicts with bias_lr_factor / "
                f"weight_decay_bias (detectron2: conflicting overrides for 'bias')"
            )
        overrides["bias"] = bias
    if lr_factor_func is not None:
        validate.function("lr_factor_func", lr_factor_func)
        if base_lr is None:
            raise ValueError("lr_factor_func needs base_lr")
    defaults = {key: value for key, value in (("lr", base_lr), ("weight_decay", weight_decay)) if value is not None}
    names = kinds_lib.param_names(params)
    kinds = validate.mapping("module_kinds", module_kinds or {})
    cold = [False] * len(names) if frozen is None else groups_lib.selected(frozen, params, "frozen")
    labels, settings = [], {}
    for name, is_cold in zip(names, cold):
        if is_cold:
            label, setting = "frozen", ParamSetting(frozen=True)
        else:
            group = dict(defaults)
            if kinds.get(kinds_lib.module_path(name)) == kinds_lib.NORM and weight_decay_norm is not None:
                group["weight_decay"] = weight_decay_norm
            if lr_factor_func is not None:
                group["lr"] *= validate.nonnegative(f"lr_factor_func({name!r})", lr_factor_func(name))
            group.update(overrides.get(name.rpartition(".")[2], {}))
            setting = ParamSetting(options=tuple(sorted(group.items())))
            label = ",".join(f"{key}={value!r}" for key, value in setting.options) or "default"
        labels.append(label)
        settings[label] = setting
    return jax.tree.unflatten(jax.tree.structure(params), labels), settings
