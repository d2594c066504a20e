"""Dotted leaf names of a params tree, and the kind of module that owns each leaf, read from flax.

A leaf's dotted name joins its tree path with ``.``: ``backbone.layer1.0.conv1.kernel``. A leading
``params`` collection (linen's ``variables['params']``) and nnx's trailing ``.value`` are dropped;
flax's leaf names (``kernel``, ``bias``, ``scale``) are kept. Its module path is the name without
the last component (``''`` for a leaf at the root).

Module kinds are ``{module path: kind}``, the kind being one of:

- ``"norm"``: BatchNorm, LayerNorm, GroupNorm, InstanceNorm, RMSNorm (MMCV's ``_BatchNorm``,
  ``_InstanceNorm``, ``GroupNorm``, ``LayerNorm``; RMSNorm added);
- ``"dwconv"``: a 2-D convolution with ``feature_group_count == in_features`` (MMCV: a
  ``torch.nn.Conv2d`` with ``in_channels == groups``); ``"conv"``: any other 2-D convolution;
- ``"dcn"``: a deformable convolution (mmcv.ops ``DeformConv2d``); flax has none, so add your own
  module's path by hand: ``{**module_kinds(model, x), "neck.dcn": "dcn"}``.
"""

from __future__ import annotations

import jax

NORM, CONV, DWCONV, DCN = "norm", "conv", "dwconv", "dcn"
KINDS = (NORM, CONV, DWCONV, DCN)


def _key(entry) -> str:
    for attr in ("key", "idx", "name"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def dotted_names(tree) -> list[str]:
    """The dotted name of every leaf of ``tree``, in ``jax.tree.leaves`` order."""
    names = []
    for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]:
        keys = [_key(entry) for entry in path]
        if keys and isinstance(path[-1], jax.tree_util.GetAttrKey) and keys[-1] == "value":
            keys = keys[:-1]
        if keys[:1] == ["params"]:
            keys = keys[1:]
        names.append(".".join(keys))
    return names


def param_names(params) -> list[str]:
    """``dotted_names`` of a params tree, which must hold at least one leaf (torch: "optimizer got
    an empty parameter list")."""
    names = dotted_names(params)
    if not names:
        raise ValueError(
            f"params must hold at least one array (torch: optimizer got an empty parameter list), got {params!r}"
        )
    return names


def module_path(name: str) -> str:
    """``a.b.kernel`` -> ``a.b``; ``bias`` -> ``''``."""
    return name.rpartition(".")[0]


def module_kinds(model, *init_args, rngs=None, **init_kwargs) -> dict[str, str]:
    """``{module path: kind}`` of a flax model: a linen module with its ``init`` inputs (traced
    with ``jax.eval_shape``, nothing computed; ``rngs`` defaults to ``jax.random.key(0)``), or an
    nnx module (no inputs). Modules of no listed kind are left out.
    """
    from flax import linen, nnx

    if isinstance(model, nnx.Module):
        return _nnx_kinds(model, nnx)
    if not isinstance(model, linen.Module):
        raise TypeError(f"model must be a flax linen or nnx module, got {model!r}")
    return _linen_kinds(model, init_args, init_kwargs, rngs)


def _linen_kinds(model, init_args, init_kwargs, rngs):
    from flax import linen as nn

    norms = tuple(
        getattr(nn, n) for n in ("BatchNorm", "LayerNorm", "GroupNorm", "InstanceNorm", "RMSNorm") if hasattr(nn, n)
    )
    kinds = {}

    def record(next_fun, args, kwargs, context):
        module = context.module
        if context.method_name == "__call__":
            path = ".".join(str(part) for part in module.path)
            if isinstance(module, norms):
                kinds[path] = NORM
            elif (
                isinstance(module, nn.Conv) and not isinstance(module.kernel_size, int) and len(module.kernel_size) == 2
            ):
                depthwise = module.feature_group_count == args[0].shape[-1]
                kinds[path] = DWCONV if depthwise else CONV
        return next_fun(*args, **kwargs)

    rngs = jax.random.key(0) if rngs is None else rngs
    with nn.intercept_methods(record):
        jax.eval_shape(lambda: model.init(rngs, *init_args, **init_kwargs))
    return kinds


def _nnx_kinds(model, nnx):
    norms = tuple(
        getattr(nnx, n) for n in ("BatchNorm", "LayerNorm", "GroupNorm", "InstanceNorm", "RMSNorm") if hasattr(nnx, n)
    )
    kinds = {}
    for path, node in nnx.iter_graph(model):
        name = ".".join(str(part) for part in path)
        if isinstance(node, norms):
            kinds[name] = NORM
        elif isinstance(node, nnx.Conv) and not isinstance(node.kernel_size, int) and len(node.kernel_size) == 2:
            kinds[name] = DWCONV if node.feature_group_count == node.in_features else CONV
    return kinds
