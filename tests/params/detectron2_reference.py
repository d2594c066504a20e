"""detectron2's ``get_default_optimizer_params`` re-stated on a torch model, for the tests.

detectron2 has no wheel here: this follows ``detectron2/solver/build.py`` at
facebookresearch/detectron2@02b5c4e295e990042a714712c21dc79b731e8833 (written for purelr, not
copied): per parameter of ``model.named_modules()`` (``requires_grad`` ones, each once) the
defaults (``lr`` = ``base_lr``, ``weight_decay``), ``weight_decay_norm`` in torch's norm modules,
``lr *= lr_factor_func(name)``, then ``overrides[parameter's own name]`` (``bias_lr_factor`` and
``weight_decay_bias`` are an override of ``"bias"``); equal settings share one group. Names are the
flax twin's (``models.flax_name``: torch's ``weight`` is ``kernel`` or ``scale``), as purelr's are.
"""

from collections import defaultdict

import torch

from tests.params import models

NORMS = (
    torch.nn.BatchNorm1d,
    torch.nn.BatchNorm2d,
    torch.nn.BatchNorm3d,
    torch.nn.SyncBatchNorm,
    torch.nn.GroupNorm,
    torch.nn.InstanceNorm1d,
    torch.nn.InstanceNorm2d,
    torch.nn.InstanceNorm3d,
    torch.nn.LayerNorm,
    torch.nn.LocalResponseNorm,
)


def settings(
    model,
    base_lr=None,
    weight_decay=None,
    weight_decay_norm=None,
    bias_lr_factor=1.0,
    weight_decay_bias=None,
    lr_factor_func=None,
    overrides=None,
):
    """``{flax name: {'lr', 'weight_decay' (where set)}}`` of the trainable parameters, in order."""
    overrides = dict(overrides or {})
    bias = {}
    if bias_lr_factor is not None and bias_lr_factor != 1.0:
        bias["lr"] = base_lr * bias_lr_factor
    if weight_decay_bias is not None:
        bias["weight_decay"] = weight_decay_bias
    if bias:
        overrides["bias"] = bias
    defaults = {k: v for k, v in (("lr", base_lr), ("weight_decay", weight_decay)) if v is not None}
    found, seen = {}, set()
    for module_name, module in model.named_modules():
        for leaf, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            name = f"{module_name}.{leaf}" if module_name else leaf
            group = dict(defaults)
            if isinstance(module, NORMS) and weight_decay_norm is not None:
                group["weight_decay"] = weight_decay_norm
            flax_name = models.flax_name(model, name)
            if lr_factor_func is not None:
                group["lr"] *= lr_factor_func(flax_name)
            group.update(overrides.get(flax_name.rpartition(".")[2], {}))  # torch's weight: kernel / scale
            found[flax_name] = group
    return found


def groups(found: dict, tensors: dict) -> list:
    """torch param groups of ``settings``' result: equal settings merged, in order of first use;
    each also named (``"name"``) with the label purelr gives the same settings."""
    merged = defaultdict(list)
    for name, group in found.items():
        merged[tuple(group.items())].append(tensors[name])
    return [{"params": params, "name": label(dict(key)), **dict(key)} for key, params in merged.items()]


def label(settings: dict) -> str:
    """purelr.params.detectron2's label of a group: its sorted settings, or ``"default"``."""
    return ",".join(f"{key}={value!r}" for key, value in sorted(settings.items())) or "default"
