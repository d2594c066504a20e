"""The Hugging Face Trainer's weight-decay rule (``Trainer.get_decay_parameter_names``, transformers
5.24.0) on flax dotted names.

The Trainer makes two groups: the parameters in ``get_decay_parameter_names(model)`` with
``weight_decay=args.weight_decay``, the others with 0. A parameter is left out of decay when a module
on its path is a ``torch.nn.LayerNorm``, or when its lower-cased dotted name contains ``bias``,
``layernorm`` or ``rmsnorm``, has a component ``norm``, or a component ending in ``_norm`` (the
regular expressions ``FORBIDDEN_NAME_PATTERNS``, searched in the name as transformers searches
each suffix of it). On flax names (``encoder.layer.0.attention.output.LayerNorm.scale``) the name
rules apply as they are; the layer-type rule needs the paths of the model's flax ``LayerNorm``
modules: ``layer_norm_modules(model, ...)``.
"""

from __future__ import annotations

import re

import jax

from purelr.params import groups as groups_lib
from purelr.params.module_kinds import param_names
from purelr.params.paramwise import ParamSetting

FORBIDDEN_NAME_PATTERNS = (r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)")
_FORBIDDEN = [re.compile(pattern) for pattern in FORBIDDEN_NAME_PATTERNS]


def layer_norm_modules(model, *init_args, rngs=None, **init_kwargs) -> list[str]:
    """The module paths of a flax model's ``LayerNorm`` layers (linen with its ``init`` inputs,
    traced with ``jax.eval_shape``; nnx as it is): the flax counterpart of the ``torch.nn.LayerNorm``
    instances that ``get_decay_parameter_names`` excludes. Other norms (RMSNorm, BatchNorm,
    GroupNorm) are not ``nn.LayerNorm`` in torch either."""
    from flax import linen, nnx

    if isinstance(model, nnx.Module):
        return [
            ".".join(str(part) for part in path)
            for path, node in nnx.iter_graph(model)
            if isinstance(node, nnx.LayerNorm)
        ]
    if not isinstance(model, linen.Module):
        raise TypeError(f"model must be a flax linen or nnx module, got {model!r}")
    paths = []

    def record(next_fun, args, kwargs, context):
        if context.method_name == "__call__" and isinstance(context.module, linen.LayerNorm):
            paths.append(".".join(str(part) for part in context.module.path))
        return next_fun(*args, **kwargs)

    with linen.intercept_methods(record):
        jax.eval_shape(lambda: model.init(jax.random.key(0) if rngs is None else rngs, *init_args, **init_kwargs))
    return sorted(set(paths))


def decay_parameter_names(params, layer_norms=()) -> list[str]:
    """Twin of ``Trainer.get_decay_parameter_names``: the dotted names of the leaves that get weight
    decay. ``layer_norms``: a selector (``purelr.params.groups``; a list of module paths, as
    ``layer_norm_modules`` gives) of the leaves inside ``LayerNorm`` layers."""
    names = param_names(params)
    in_norm = groups_lib.selected(list(layer_norms), params, "layer_norms") if layer_norms else [False] * len(names)
    return [
        name
        for name, norm in zip(names, in_norm)
        if not norm and not any(pattern.search(name.lower()) for pattern in _FORBIDDEN)
    ]


def param_groups(params, weight_decay: float = 0.0, layer_norms=(), *, frozen=None):
    """``(labels, settings)`` of the Trainer's two groups (``purelr.params.paramwise`` style):
    ``"decay"`` for ``decay_parameter_names``, ``"no_decay"`` (``decay_mult=0``) for the rest,
    ``"frozen"`` for the ``frozen`` selector (parameters with ``requires_grad=False``, which the
    Trainer leaves out of both groups)."""
    decayed = set(decay_parameter_names(params, layer_norms))
    names = param_names(params)
    cold = groups_lib.selected(frozen, params, "frozen") if frozen is not None else [False] * len(names)
    labels = [
        "frozen" if ice else "decay" if name in decayed and weight_decay else "no_decay"
        for name, ice in zip(names, cold)
    ]
    settings = {"decay": ParamSetting(), "no_decay": ParamSetting(decay_mult=0.0), "frozen": ParamSetting(frozen=True)}
    return jax.tree.unflatten(jax.tree.structure(params), labels), {label: settings[label] for label in set(labels)}
