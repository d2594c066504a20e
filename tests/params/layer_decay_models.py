"""Torch models named as OpenMMLab's backbones name their parameters (a ViT, a ConvNeXt, a Swin, a
MixMIM, a ResNet; ``backbone.`` plus a ``head``), each carrying the ``get_layer_depth`` that
MMPretrain 1.2.0 gives the real backbone and its classifier (the methods' own code, read from the
installed files: importing ``mmpretrain.models`` needs torchvision and mmcv 2.x), and their flax
twins: trees with the same dotted names in flax's layout (``kernel`` / ``scale``) and the module
kinds of the norm layers (``flax_twin``), and for the ViT a linen model of its own
(``FlaxViTClassifier``) whose tree and ``module_kinds`` come from flax."""

import ast
import functools
import math
import os
import typing

import flax.linen as nn
import jax
import jax.numpy as jnp
import torch

from tests.params import models
from tests.recipes.twins import to_flax

WIDTH = 4
BACKBONE_FILES = {
    "VisionTransformer": "vision_transformer",
    "ConvNeXt": "convnext",
    "SwinTransformer": "swin_transformer",
    "MixMIMTransformer": "mixmim",
    "ResNet": "resnet",
}


@functools.lru_cache(maxsize=None)
def original_method(relative_file: str, class_name: str, method: str = "get_layer_depth"):
    """The function ``class_name.method`` of ``mmpretrain/<relative_file>``, compiled from its source."""
    import mmpretrain

    path = os.path.join(mmpretrain.__path__[0], relative_file)
    with open(path) as file:
        tree = ast.parse(file.read())
    cls = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == class_name)
    function = next(node for node in cls.body if isinstance(node, ast.FunctionDef) and node.name == method)
    namespace = {"math": math, **vars(typing)}
    exec(compile(ast.Module(body=[function], type_ignores=[]), path, "exec"), namespace)
    return namespace[method]


def _linear(module, name):
    setattr(module, name, torch.nn.Linear(WIDTH, WIDTH))


def _norm(module, name):
    setattr(module, name, torch.nn.LayerNorm(WIDTH))


def _attention_block(norm, extra, shape):
    """A block with a norm layer ``norm``, ``attn.qkv`` and a bare parameter at ``extra``."""
    block = torch.nn.Module()
    _norm(block, norm)
    block.attn = torch.nn.Module()
    _linear(block.attn, "qkv")
    owner, _, leaf = extra.rpartition(".")
    (block.get_submodule(owner) if owner else block).register_parameter(leaf, torch.nn.Parameter(torch.zeros(shape)))
    return block


def _vit(num_layers):
    backbone = torch.nn.Module()
    backbone.cls_token = torch.nn.Parameter(torch.zeros(1, 1, WIDTH))
    backbone.pos_embed = torch.nn.Parameter(torch.zeros(1, 3, WIDTH))
    backbone.patch_embed = torch.nn.Module()
    backbone.patch_embed.projection = torch.nn.Conv2d(3, WIDTH, 2)
    backbone.layers = torch.nn.ModuleList(_attention_block("ln1", "gamma_1", (WIDTH,)) for _ in range(num_layers))
    _norm(backbone, "ln1")
    backbone.num_layers = num_layers
    return backbone


def _convnext(depths):
    backbone = torch.nn.Module()
    backbone.downsample_layers = torch.nn.ModuleList(
        torch.nn.Sequential(torch.nn.LayerNorm(WIDTH), torch.nn.Conv2d(WIDTH, WIDTH, 2)) for _ in depths
    )
    backbone.stages = torch.nn.ModuleList()
    for depth in depths:
        stage = torch.nn.Sequential()
        for _ in range(depth):
            block = torch.nn.Module()
            block.depthwise_conv = torch.nn.Conv2d(WIDTH, WIDTH, 3, groups=WIDTH)
            _norm(block, "norm")
            _linear(block, "pointwise_conv1")
            block.gamma = torch.nn.Parameter(torch.zeros(WIDTH))
            stage.append(block)
        backbone.stages.append(stage)
    _norm(backbone, "norm3")
    backbone.depths = list(depths)
    return backbone


def _swin(depths, stages="stages", stem="absolute_pos_embed"):
    backbone = torch.nn.Module()
    setattr(backbone, stem, torch.nn.Parameter(torch.zeros(1, 2, WIDTH)))
    backbone.patch_embed = torch.nn.Module()
    backbone.patch_embed.projection = torch.nn.Conv2d(3, WIDTH, 2)
    setattr(backbone, stages, torch.nn.ModuleList())
    for i, depth in enumerate(depths):
        stage = torch.nn.Module()
        stage.blocks = torch.nn.ModuleList(
            _attention_block("norm1", "attn.relative_position_bias_table", (3, 2)) for _ in range(depth)
        )
        if i < len(depths) - 1:
            stage.downsample = torch.nn.Module()
            _norm(stage.downsample, "norm")
            _linear(stage.downsample, "reduction")
        getattr(backbone, stages).append(stage)
    _norm(backbone, "norm3")
    backbone.depths = list(depths)
    return backbone


def _resnet(depths):
    backbone = torch.nn.Module()
    backbone.conv1 = torch.nn.Conv2d(3, WIDTH, 3, bias=False)
    backbone.bn1 = torch.nn.BatchNorm2d(WIDTH)
    for i, depth in enumerate(depths):
        stage = torch.nn.Sequential()
        for _ in range(depth):
            block = torch.nn.Module()
            block.conv1 = torch.nn.Conv2d(WIDTH, WIDTH, 1, bias=False)
            block.bn1 = torch.nn.BatchNorm2d(WIDTH)
            stage.append(block)
        setattr(backbone, f"layer{i + 1}", stage)
    backbone.stage_blocks = list(depths)
    return backbone


BUILDERS = {
    "VisionTransformer": _vit,
    "ConvNeXt": _convnext,
    "SwinTransformer": _swin,
    "MixMIMTransformer": functools.partial(_swin, stages="layers", stem="pos_embed"),
    "ResNet": _resnet,
}
SEGMENTATION_CLASSES = {"VisionTransformer": ("BEiT", "MAE"), "ConvNeXt": ("ConvNeXt",)}


def torch_model(kind: str, size, class_name: str | None = None, neck: bool = False):
    """A classifier-like model: ``backbone`` (an instance of a class named ``class_name``, for
    MMSegmentation's name test), optional ``neck``, ``head``; ``get_layer_depth`` as MMPretrain's."""
    backbone = BUILDERS[kind](size)
    backbone.__class__ = type(
        class_name or kind,
        (torch.nn.Module,),
        {"get_layer_depth": original_method(f"models/backbones/{BACKBONE_FILES[kind]}.py", kind)},
    )
    model = type(
        "ImageClassifier",
        (torch.nn.Module,),
        {"get_layer_depth": original_method("models/classifiers/image.py", "ImageClassifier")},
    )()
    model.backbone = backbone
    if neck:
        model.neck = torch.nn.Linear(WIDTH, WIDTH)
    model.head = torch.nn.Module()
    model.head.fc = torch.nn.Linear(WIDTH, 3)
    return model


def flax_twin(model):
    """``(params, module_kinds)``: zeros in flax's layout under the flax names of ``model``'s
    parameters, and ``"norm"`` / ``"dwconv"`` for its norm layers and depth-wise convs."""
    params, kinds = {}, {}
    for name, param in model.named_parameters():
        node = params
        parts = models.flax_name(model, name).split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = jnp.zeros(to_flax(param.detach().numpy()).shape)
    norms = (torch.nn.modules.batchnorm._BatchNorm, torch.nn.LayerNorm, torch.nn.GroupNorm)
    for path, module in model.named_modules():
        if isinstance(module, norms):
            kinds[path] = "norm"
        elif isinstance(module, torch.nn.Conv2d):
            kinds[path] = "dwconv" if module.groups == module.in_channels else "conv"
    return params, kinds


class FlaxAttention(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(WIDTH, name="qkv")(x)


class FlaxLayer(nn.Module):
    @nn.compact
    def __call__(self, x):
        y = FlaxAttention(name="attn")(nn.LayerNorm(name="ln1")(x))
        return x + y * self.param("gamma_1", nn.initializers.ones, (WIDTH,))


class FlaxLayers(nn.Module):
    num_layers: int

    @nn.compact
    def __call__(self, x):
        for i in range(self.num_layers):
            x = FlaxLayer(name=str(i))(x)
        return x


class FlaxPatchEmbed(nn.Module):
    @nn.compact
    def __call__(self, images):
        x = nn.Conv(WIDTH, (2, 2), strides=(2, 2), padding="VALID", name="projection")(images)
        return x.reshape(x.shape[0], -1, WIDTH)


class FlaxViTBackbone(nn.Module):
    """The flax twin of ``_vit``: the same dotted names as MMPretrain's / MMSegmentation's ViT."""

    num_layers: int

    @nn.compact
    def __call__(self, images):
        x = FlaxPatchEmbed(name="patch_embed")(images)
        cls = self.param("cls_token", nn.initializers.zeros, (1, 1, WIDTH))
        x = jnp.concatenate([jnp.broadcast_to(cls, (x.shape[0], 1, WIDTH)), x], 1)
        x = x + self.param("pos_embed", nn.initializers.zeros, (1, x.shape[1], WIDTH))
        return nn.LayerNorm(name="ln1")(FlaxLayers(self.num_layers, name="layers")(x))


class FlaxHead(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(3, name="fc")(x[:, 0])


class FlaxViTClassifier(nn.Module):
    num_layers: int

    @nn.compact
    def __call__(self, images):
        return FlaxHead(name="head")(FlaxViTBackbone(self.num_layers, name="backbone")(images))


def flax_vit(num_layers):
    """``(params, module_kinds)`` of the linen ``FlaxViTClassifier`` (two patches of 2x2 pixels)."""
    from purelr.params.module_kinds import module_kinds

    model, images = FlaxViTClassifier(num_layers), jnp.zeros((1, 2, 4, 3))
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), images))["params"]
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes), module_kinds(model, images)
