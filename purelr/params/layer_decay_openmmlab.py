"""The layer-wise lr decay constructors of OpenMMLab's model zoos, as label pytrees.

Each constructor returns ``(labels, settings)`` like ``purelr.params.paramwise.paramwise_labels``
and is registered under its OpenMMLab name (``constructor='LayerDecayOptimizerConstructor'`` in an
MMEngine ``optim_wrapper`` or an MMCV ``optimizer``). A leaf at layer depth ``i`` of ``n`` gets

    lr_mult = rate ** (n - 1 - i)        (the group's base lr: lr * lr_mult)

from which MMCV's and MMEngine's schedulers scale, as they scale the group's ``initial_lr`` (not
timm's ``lr_scale`` after scheduling: ``purelr.params.timm``'s layer decay differs there and in its
depths). Depths are read from the dotted flax names, which follow the torch model's module names
(``backbone.layers.3.attn.qkv.kernel``, ``backbone.stages.2.5.dwconv.kernel``), and the backbone
from the names under ``backbone.`` (the originals read ``type(model.backbone).__name__`` or call
``model.get_layer_depth``). A name whose layer index is not an integer raises naming it.

- ``learning_rate_decay_optimizer_constructor``: ``mmseg.engine.optimizers.
  LearningRateDecayOptimizerConstructor`` (MMSegmentation 1.2.2; 0.30.0's ``mmseg.core.optimizers``
  and MMDetection 3.3.0's / 2.28.2's copies have the same arithmetic, MMDetection's for ConvNeXt
  only). ``paramwise_cfg``: ``num_layers`` ``N``, ``decay_rate``, ``decay_type``; ``n = N + 2``.
  ConvNeXt (``backbone.downsample_layers`` / ``backbone.stages``), ``layer_wise``: downsample
  ``0, 2, 3, N`` by stage, stage blocks ``1, 2, 3 + block // 3, N`` by stage; ``stage_wise``:
  downsample 0, stage ``s`` at ``s + 1``, the rest ``N + 1``. ViT (BEiT, MAE: ``backbone.layers``),
  ``layer_wise`` / ``layer_wise_vit``: ``backbone.cls_token``, ``mask_token``, ``pos_embed``,
  ``patch_embed`` at 0, ``backbone.layers.j`` at ``j + 1``, the rest ``N + 1``. Weight decay 0 for
  1-D leaves and ``*.bias``, the base otherwise. The other ``paramwise_cfg`` keys are ignored.
- ``layer_decay_optimizer_constructor``: MMSegmentation's ``LayerDecayOptimizerConstructor``: the
  above with ``layer_decay_rate`` as ``decay_rate`` and ``decay_type='layer_wise_vit'``.
- ``layer_decay_optim_wrapper_constructor``: MMPose 1.3.2's ``mmpose.engine.optim_wrappers.
  LayerDecayOptimWrapperConstructor``: the ViT depths with ``num_layers`` and
  ``layer_decay_rate``; weight decay 0 also for names containing ``pos_embed``.
- ``learning_rate_decay_optim_wrapper_constructor``: MMPretrain 1.2.0's ``mmpretrain.engine.
  optimizers.LearningRateDecayOptimWrapperConstructor`` with the ``get_layer_depth`` of MMPretrain's
  classifiers (``backbone.`` prefix) and backbones (``mmpretrain_layer_depth``); ``layer_decay_rate``
  (default 1). Weight decay (with a base weight decay only), first that applies: the longest
  ``custom_keys`` key in the name (its ``decay_mult``; its other entries go to the group, ``lr`` and
  ``lr_mult`` excepted), ``norm_decay_mult`` in a norm layer, ``bias_decay_mult`` for ``bias``,
  ``flat_decay_mult`` for 1-D leaves.
- ``force_default_optim_wrapper_constructor``: ``ForceDefaultOptimWrapperConstructor``
  (MMSegmentation 1.2.2, MMPose 1.3.2): MMEngine's paramwise rules, with
  ``force_default_settings=True`` applied over a custom key's settings.
"""

from __future__ import annotations

import math
import re
from typing import Callable, Mapping

import jax.numpy as jnp

from purelr.params import paramwise as paramwise_lib
from purelr.params.module_kinds import NORM, module_path
from purelr.params.paramwise import ParamSetting, label_of
from purelr.params.timm import _result, _trainable
from purelr.schedules import validate

DECAY_TYPES = ("layer_wise", "layer_wise_vit", "stage_wise")
PREFIX = "backbone."


def _index(name: str, position: int, what: str) -> int:
    part = name.split(".")[position] if len(name.split(".")) > position else ""
    if not part.isdigit():
        raise ValueError(
            f"parameter {name!r}: no {what} index at position {position} of its dotted "
            f"name (found {part!r}): the layer-decay constructor cannot place it"
        )
    return int(part)


def _rate(where: str, value) -> float:
    return validate.in_range(where, value, 0.0, 1.0, low_open=True)


def _counts(names, pattern: str) -> list[int]:
    """Blocks per stage: ``1 + max(j)`` over the names matching ``pattern`` (groups: stage, block)."""
    found: dict[int, int] = {}
    for name in names:
        match = re.match(pattern, name)
        if match:
            stage, block = int(match.group(1)), int(match.group(2) or 0)
            found[stage] = max(found.get(stage, 0), block + 1)
    return [found.get(stage, 0) for stage in range(max(found) + 1)] if found else []


def _backbone(names, backbones: Mapping[str, str], where: str) -> str:
    for kind, pattern in backbones.items():
        if any(re.match(pattern, name) for name in names):
            return kind
    raise ValueError(
        f"{where}: cannot tell the backbone from the parameter names: none matches "
        f"{dict(backbones)} (the original reads the model's backbone class)"
    )


def _labelled(params, frozen, setting_of: Callable[[str, int], ParamSetting]):
    labels, settings = [], {}
    for name, ndim, cold in zip(*_trainable(params, frozen)):
        setting = ParamSetting(frozen=True) if cold else setting_of(name, ndim)
        label = label_of(setting)
        settings[label] = setting
        labels.append(label)
    return _result(params, labels, settings)


def _known(where: str, cfg, own: tuple) -> dict:
    """``cfg`` as a dict, checked: a constructor's ``own`` keys and MMEngine's default ones (the
    originals accept those; MMPretrain's reads the ``*_decay_mult`` and ``custom_keys``, the others
    ignore them); any other key raises naming it."""
    cfg = dict(validate.mapping(where, {} if cfg is None else cfg))
    keys = own + paramwise_lib.KNOWN_KEYS["mmengine"]
    validate.known_keys(where, {k: v for k, v in cfg.items() if not k.startswith("_")}, keys)
    return cfg


# ----------------------------------------------------------------- MMSegmentation / MMDetection

SEGMENTATION_BACKBONES = {
    "ConvNeXt": r"backbone\.(downsample_layers|stages)\.",
    "ViT": r"backbone\.(layers\.|patch_embed)",
}


def segmentation_layer_id(name: str, num_layers: int, decay_type: str, backbone: str) -> int:
    """The layer id MMSegmentation's ``get_layer_id_for_convnext`` / ``get_stage_id_for_convnext``
    / ``get_layer_id_for_vit`` give ``name``; ``num_layers`` is the config's ``N``."""
    stem = ("backbone.cls_token", "backbone.mask_token", "backbone.pos_embed")
    if backbone == "ViT":
        if decay_type == "stage_wise":
            raise ValueError(
                "paramwise_cfg.decay_type = 'stage_wise' is for ConvNeXt backbones "
                "(the original raises NotImplementedError for BEiT / MAE)"
            )
        if name in stem or name.startswith("backbone.patch_embed"):
            return 0
        return _index(name, 2, "layer") + 1 if name.startswith("backbone.layers") else num_layers + 1
    if name in stem:
        return 0
    downsample, stages = name.startswith("backbone.downsample_layers"), name.startswith("backbone.stages")
    if decay_type == "stage_wise":
        return 0 if downsample else _index(name, 2, "stage") + 1 if stages else num_layers + 1
    if not (downsample or stages):
        return num_layers + 1
    stage = _index(name, 2, "stage")
    if stage > 3:
        raise ValueError(f"parameter {name!r}: ConvNeXt has stages 0 to 3, got stage {stage}")
    if stage == 3:
        return num_layers
    if downsample:
        return (0, 2, 3)[stage]
    return (1, 2)[stage] if stage < 2 else 3 + _index(name, 3, "block") // 3


def learning_rate_decay_optimizer_constructor(
    params, optimizer_cfg: Mapping, paramwise_cfg, *, module_kinds=None, frozen=None, backbone: str | None = None
):
    """MMSegmentation's / MMDetection's ``LearningRateDecayOptimizerConstructor`` (module
    docstring). ``backbone``: ``"ConvNeXt"`` or ``"ViT"`` (BEiT, MAE); read from the names when
    None. ``module_kinds`` is not read (accepted as every constructor's)."""
    del module_kinds
    cfg = _known("paramwise_cfg", paramwise_cfg, ("num_layers", "decay_rate", "decay_type"))
    for key in ("num_layers", "decay_rate"):
        if key not in cfg:
            raise ValueError(f"paramwise_cfg.{key} is missing: the constructor needs it")
    num_layers = validate.positive_int("paramwise_cfg.num_layers", cfg["num_layers"])
    rate = _rate("paramwise_cfg.decay_rate", cfg["decay_rate"])
    decay_type = validate.one_of("paramwise_cfg.decay_type", cfg.get("decay_type", "layer_wise"), DECAY_TYPES)
    weight_decay = optimizer_cfg.get("weight_decay")
    if weight_decay is None:
        raise ValueError(
            "optimizer.weight_decay is missing: the layer-decay constructor gives its "
            "decay groups the base weight decay"
        )
    validate.nonnegative("optimizer.weight_decay", weight_decay)
    names = _trainable(params, frozen)[0]
    if backbone is None:
        backbone = _backbone(names, SEGMENTATION_BACKBONES, "LearningRateDecayOptimizerConstructor")
    validate.one_of("backbone", backbone, tuple(SEGMENTATION_BACKBONES))
    depths = num_layers + 2

    def setting_of(name, ndim):
        no_decay = ndim == 1 or name.endswith(".bias") or name in ("pos_embed", "cls_token")
        layer = segmentation_layer_id(name, num_layers, decay_type, backbone)
        return ParamSetting(lr_mult=rate ** (depths - layer - 1), decay_mult=0.0 if no_decay else 1.0)

    return _labelled(params, frozen, setting_of)


def layer_decay_optimizer_constructor(params, optimizer_cfg: Mapping, paramwise_cfg, **context):
    """MMSegmentation's ``LayerDecayOptimizerConstructor``: ``layer_decay_rate`` is the
    ``decay_rate`` and ``decay_type`` is ``'layer_wise_vit'`` whatever the config says."""
    cfg = _known("paramwise_cfg", paramwise_cfg, ("num_layers", "layer_decay_rate", "decay_type"))
    if "layer_decay_rate" not in cfg:
        raise ValueError("paramwise_cfg.layer_decay_rate is missing: the constructor needs it")
    cfg["decay_rate"] = cfg.pop("layer_decay_rate")
    cfg["decay_type"] = "layer_wise_vit"
    return learning_rate_decay_optimizer_constructor(params, optimizer_cfg, cfg, **context)


def layer_decay_optim_wrapper_constructor(
    params, optimizer_cfg: Mapping, paramwise_cfg, *, module_kinds=None, frozen=None
):
    """MMPose's ``LayerDecayOptimWrapperConstructor`` (ViTPose): the ViT depths of
    ``num_layers``, weight decay 0 for 1-D leaves, ``*.bias`` and names containing ``pos_embed``."""
    del module_kinds
    cfg = _known("paramwise_cfg", paramwise_cfg, ("num_layers", "layer_decay_rate"))
    for key in ("num_layers", "layer_decay_rate"):
        if key not in cfg:
            raise ValueError(f"paramwise_cfg.{key} is missing: the constructor needs it")
    num_layers = validate.positive_int("paramwise_cfg.num_layers", cfg["num_layers"])
    rate = _rate("paramwise_cfg.layer_decay_rate", cfg["layer_decay_rate"])
    if optimizer_cfg.get("weight_decay") is None:
        raise ValueError(
            "optimizer.weight_decay is missing: the layer-decay constructor gives its "
            "decay groups the base weight decay"
        )

    def setting_of(name, ndim):
        no_decay = ndim == 1 or name.endswith(".bias") or "pos_embed" in name
        layer = segmentation_layer_id(name, num_layers, "layer_wise", "ViT")
        return ParamSetting(lr_mult=rate ** (num_layers + 1 - layer), decay_mult=0.0 if no_decay else 1.0)

    return _labelled(params, frozen, setting_of)


# ----------------------------------------------------------------- MMPretrain


def _vit_depth(name, num_layers):
    """``VisionTransformer`` / ``BEiTViT`` / ``ViTSAM.get_layer_depth``."""
    n = num_layers + 2
    if not name.startswith(PREFIX):
        return n - 1, n
    rest = name[len(PREFIX) :]
    if rest in ("cls_token", "pos_embed") or rest.startswith("patch_embed"):
        return 0, n
    return (_index(name, 2, "layer") + 1, n) if rest.startswith("layers") else (n - 1, n)


def _block_depth(name, depths, ends):
    """The depth of ``backbone.<stages>.<s>.<block>...``: blocks of earlier stages plus ``block + 1``,
    or all blocks up to stage ``s`` for its downsampling (``ends``)."""
    stage, parts = _index(name, 2, "stage"), name.split(".")
    if len(parts) > 4 and parts[4] in ends:
        return sum(depths[: stage + 1])
    return sum(depths[:stage]) + _index(name, 4, "block") + 1


def _swin_depth(name, depths):
    """``SwinTransformer.get_layer_depth``."""
    n, rest = sum(depths) + 2, name[len(PREFIX) :]
    if not name.startswith(PREFIX):
        return n - 1, n
    if rest.startswith("patch_embed"):
        return 0, n
    return (_block_depth(name, depths, ("reduction", "norm")), n) if rest.startswith("stages") else (n - 1, n)


def _mixmim_depth(name, depths):
    """``MixMIMTransformer.get_layer_depth``: a ``neck`` at ``n - 2``, the stem by substring."""
    n, rest = sum(depths) + 2, name[len(PREFIX) :]
    if not name.startswith(PREFIX):
        return (n - 2 if name.startswith("neck") else n - 1), n
    if any(stem in rest for stem in ("patch_embed", "absolute_pos_embed", "pos_embed")):
        return 0, n
    if rest.startswith("layers"):
        return _block_depth(name, depths, ("downsample", "reduction", "norm")), n
    return n - 2, n


def _convnext_depth(name, depths):
    """``ConvNeXt.get_layer_depth``."""
    top = 12 if depths[-2] > 9 else 6
    rest = name[len(PREFIX) :]
    if not name.startswith(PREFIX):
        return top + 1, top + 2
    if rest.startswith("downsample_layers"):
        stage = _index(name, 2, "stage")
        return (0 if stage == 0 else stage + 1 if stage in (1, 2) else top), top + 2
    if rest.startswith("stages"):
        stage = _index(name, 2, "stage")
        layer = stage + 1 if stage < 2 else 3 + _index(name, 3, "block") // 3 if stage == 2 else top
        return layer, top + 2
    return top + 1, top + 2


RESNET_BLOCKS = {(4, 6): (2, 3), (4, 23): (2, 3), (8, 36): (4, 4), (24, 36): (4, 4), (30, 48): (5, 6)}


def _resnet_depth(name, depths):
    """``ResNet.get_layer_depth`` (ResNet-50/101/152/200, ECA-ResNet-269d stage depths only)."""
    if tuple(depths[1:3]) not in RESNET_BLOCKS:
        raise ValueError(
            f"MMPretrain's ResNet.get_layer_depth knows the stage depths "
            f"{sorted(RESNET_BLOCKS)} (stages 2 and 3), got {depths} (NotImplementedError)"
        )
    per2, per3 = RESNET_BLOCKS[tuple(depths[1:3])]
    n2, n3 = math.ceil(depths[1] / per2 - 1e-5), math.ceil(depths[2] / per3 - 1e-5)
    top = 2 + n2 + n3 + 1
    if not name.startswith(PREFIX):
        return top, top + 1
    if not name.startswith("backbone.layer"):
        return 0, top + 1
    stage = _index(name.replace("backbone.layer", "backbone.", 1), 1, "stage")
    block = _index(name, 2, "block")
    layer = {1: 1, 2: 2 + block // per2, 3: 2 + n2 + block // per3}.get(stage, 2 + n2 + n3)
    return layer, top + 1


PRETRAIN_BACKBONES = {
    "ConvNeXt": r"backbone\.downsample_layers\.",
    "SwinTransformer": r"backbone\.stages\.\d+\.blocks\.",
    "MixMIMTransformer": r"backbone\.layers\.\d+\.blocks\.",
    "VisionTransformer": r"backbone\.layers\.\d+\.",
    "ResNet": r"backbone\.layer\d+\.\d+\.",
}


def mmpretrain_layer_depth(names, backbone: str | None = None) -> Callable[[str], tuple[int, int]]:
    """``name -> (depth, number of depths)``: MMPretrain's ``ImageClassifier.get_layer_depth``
    with its backbone's (``backbone``, or told from ``names``: ``PRETRAIN_BACKBONES``), the
    backbone's depths counted from the names (blocks per stage, layers)."""
    names = list(names)
    if backbone is None:
        backbone = _backbone(names, PRETRAIN_BACKBONES, "LearningRateDecayOptimWrapperConstructor")
    validate.one_of("backbone", backbone, tuple(PRETRAIN_BACKBONES))
    if backbone == "VisionTransformer":
        num_layers = len(_counts(names, r"backbone\.layers\.(\d+)\.()"))
        return lambda name: _vit_depth(name, num_layers)
    pattern, depth = {
        "ConvNeXt": (r"backbone\.stages\.(\d+)\.(\d+)\.", _convnext_depth),
        "SwinTransformer": (r"backbone\.stages\.(\d+)\.blocks\.(\d+)\.", _swin_depth),
        "MixMIMTransformer": (r"backbone\.layers\.(\d+)\.blocks\.(\d+)\.", _mixmim_depth),
        "ResNet": (r"backbone\.layer(\d+)\.(\d+)\.", _resnet_depth),
    }[backbone]
    counts = _counts(names, pattern)
    if backbone == "ResNet":
        counts = counts[1:]  # layer1 is stage 0
    return lambda name: depth(name, counts)


def learning_rate_decay_optim_wrapper_constructor(
    params,
    optimizer_cfg: Mapping,
    paramwise_cfg,
    *,
    module_kinds=None,
    frozen=None,
    get_layer_depth: Callable | None = None,
):
    """MMPretrain's ``LearningRateDecayOptimWrapperConstructor`` (module docstring).
    ``get_layer_depth``: ``name -> (depth, number of depths)``, the model's; by default
    ``mmpretrain_layer_depth`` of the names."""
    cfg = _known("paramwise_cfg", paramwise_cfg, ("layer_decay_rate",))
    rate = _rate("paramwise_cfg.layer_decay_rate", cfg.get("layer_decay_rate", 1.0))
    weight_decay = optimizer_cfg.get("weight_decay")
    paramwise_lib.check_cfg(
        {k: v for k, v in cfg.items() if k != "layer_decay_rate"}, style="mmengine", weight_decay=weight_decay
    )
    custom = cfg.get("custom_keys", {})
    kinds = dict(module_kinds or {})
    names = _trainable(params, frozen)[0]
    depth_of = get_layer_depth or mmpretrain_layer_depth(names)

    def setting_of(name, ndim):
        depth, depths = depth_of(name)
        lr_mult, decay_mult = rate ** (depths - depth - 1), 1.0
        options: tuple = ()
        if weight_decay is None:
            return ParamSetting(lr_mult)
        key = next((k for k in sorted(sorted(custom), key=len, reverse=True) if k in name), None)
        rules = [
            (kinds.get(module_path(name)) == NORM, "norm_decay_mult"),
            (name.rpartition(".")[2] == "bias", "bias_decay_mult"),
            (ndim == 1, "flat_decay_mult"),
        ]
        if key is not None:
            decay_mult = float(custom[key].get("decay_mult", 1.0))
            options = tuple(
                sorted(
                    (k, paramwise_lib._hashable(v))
                    for k, v in custom[key].items()
                    if k not in ("decay_mult", "lr_mult", "lr")
                )
            )
        else:
            decay_mult = next((float(cfg[k]) for applies, k in rules if applies and cfg.get(k) is not None), 1.0)
        return ParamSetting(lr_mult, decay_mult, options=options)

    return _labelled(params, frozen, setting_of)


# ----------------------------------------------------------------- ForceDefault


def force_default_optim_wrapper_constructor(
    params, optimizer_cfg: Mapping, paramwise_cfg, *, module_kinds=None, frozen=None
):
    """MMSegmentation's / MMPose's ``ForceDefaultOptimWrapperConstructor``: MMEngine's
    ``DefaultOptimWrapperConstructor``, and with ``paramwise_cfg.force_default_settings=True`` the
    bias / DCN / norm / dwconv / 1-D rules applied over a matching custom key's lr and decay."""
    cfg = dict(validate.mapping("paramwise_cfg", {} if paramwise_cfg is None else paramwise_cfg))
    force = validate.flag("paramwise_cfg.force_default_settings", cfg.pop("force_default_settings", False))
    return paramwise_lib.paramwise_labels(
        params,
        cfg,
        weight_decay=optimizer_cfg.get("weight_decay"),
        module_kinds=module_kinds,
        frozen=frozen,
        style="mmengine",
        force_default=force,
    )


# ----------------------------------------------------------------- curves without a model


def example_vit(paramwise_cfg, num_layers: int = 12):
    """A ViT-like tree with every depth of ``num_layers`` layers (``paramwise_cfg.num_layers``
    when given), decayed and 1-D leaves in each, and a leaf per custom key: for drawing a config's
    curves without its model (``purelr.cli.curves``)."""
    cfg = paramwise_cfg or {}
    num_layers = validate.positive_int("paramwise_cfg.num_layers", cfg.get("num_layers", num_layers))
    dense = lambda: {"kernel": jnp.zeros((2, 2)), "bias": jnp.zeros(2)}
    backbone = {
        "patch_embed": dense(),
        "layers": {str(i): dense() for i in range(num_layers)},
        "norm": {"scale": jnp.zeros(2)},
    }
    if cfg.get("decay_type") == "stage_wise":
        backbone = {
            "downsample_layers": {str(i): dense() for i in range(4)},
            "stages": {str(i): {"0": dense()} for i in range(4)},
        }
    params = {"backbone": backbone, "head": dense()}
    for i, key in enumerate(sorted(cfg.get("custom_keys", {}))):
        params[f"custom{i}"] = {key.strip(".") or "key": dense()}
    return params, {}


CONSTRUCTORS = {
    "LearningRateDecayOptimizerConstructor": learning_rate_decay_optimizer_constructor,
    "LayerDecayOptimizerConstructor": layer_decay_optimizer_constructor,
    "LayerDecayOptimWrapperConstructor": layer_decay_optim_wrapper_constructor,
    "LearningRateDecayOptimWrapperConstructor": learning_rate_decay_optim_wrapper_constructor,
    "ForceDefaultOptimWrapperConstructor": force_default_optim_wrapper_constructor,
}
"""The constructors OpenMMLab's model zoos register, by their registered names."""

for _constructor in CONSTRUCTORS.values():
    if _constructor is not force_default_optim_wrapper_constructor:
        setattr(_constructor, "example_params", example_vit)
