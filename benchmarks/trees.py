"""Parameter trees the benchmarks update: ResNet-50 (torchvision's shapes, written out by hand),
a ViT-like transformer, and flat trees of a given size and leaf count.

Every tree is a flat ``{dotted name: shape}`` dict in torch's layouts (conv ``(out, in, kh, kw)``,
linear ``(out, in)``); ``in_jax_layout`` turns arrays to the layouts a JAX model keeps (flax: conv
``(kh, kw, in, out)``, dense ``(in, out)``), which the JAX cases update (see ``update``).
"""

from __future__ import annotations

import math


def resnet50(num_classes: int = 1000) -> dict[str, tuple[int, ...]]:
    """torchvision's ``resnet50()`` parameters: 161 tensors, 25,557,032 numbers."""
    shapes = {"conv1.weight": (64, 3, 7, 7), "bn1.weight": (64,), "bn1.bias": (64,)}
    inplanes = 64
    for stage, (planes, blocks) in enumerate([(64, 3), (128, 4), (256, 6), (512, 3)], start=1):
        for block in range(blocks):
            prefix = f"layer{stage}.{block}."
            convs = [(planes, inplanes, 1, 1), (planes, planes, 3, 3), (planes * 4, planes, 1, 1)]
            for i, shape in enumerate(convs, start=1):
                shapes[f"{prefix}conv{i}.weight"] = shape
                shapes[f"{prefix}bn{i}.weight"] = shapes[f"{prefix}bn{i}.bias"] = (shape[0],)
            if block == 0:
                shapes[f"{prefix}downsample.0.weight"] = (planes * 4, inplanes, 1, 1)
                shapes[f"{prefix}downsample.1.weight"] = (planes * 4,)
                shapes[f"{prefix}downsample.1.bias"] = (planes * 4,)
            inplanes = planes * 4
    shapes["fc.weight"], shapes["fc.bias"] = (num_classes, 2048), (num_classes,)
    return shapes


def transformer(
    depth: int = 12, width: int = 768, mlp_ratio: int = 4, patch: int = 16, tokens: int = 197, num_classes: int = 1000
) -> dict[str, tuple[int, ...]]:
    """A ViT-B/16-like tree (timm's names): 12 leaves a block; 152 tensors, 86.6M numbers by default."""
    shapes = {
        "cls_token": (1, 1, width),
        "pos_embed": (1, tokens, width),
        "patch_embed.proj.weight": (width, 3, patch, patch),
        "patch_embed.proj.bias": (width,),
    }
    hidden = width * mlp_ratio
    for block in range(depth):
        prefix = f"blocks.{block}."
        shapes.update(
            {
                f"{prefix}norm1.weight": (width,),
                f"{prefix}norm1.bias": (width,),
                f"{prefix}attn.qkv.weight": (3 * width, width),
                f"{prefix}attn.qkv.bias": (3 * width,),
                f"{prefix}attn.proj.weight": (width, width),
                f"{prefix}attn.proj.bias": (width,),
                f"{prefix}norm2.weight": (width,),
                f"{prefix}norm2.bias": (width,),
                f"{prefix}mlp.fc1.weight": (hidden, width),
                f"{prefix}mlp.fc1.bias": (hidden,),
                f"{prefix}mlp.fc2.weight": (width, hidden),
                f"{prefix}mlp.fc2.bias": (width,),
            }
        )
    shapes.update(
        {
            "norm.weight": (width,),
            "norm.bias": (width,),
            "head.weight": (num_classes, width),
            "head.bias": (num_classes,),
        }
    )
    return shapes


def flat(numel: int, leaves: int) -> dict[str, tuple[int, ...]]:
    """``leaves`` square-ish matrices holding ``numel`` numbers in all (the last takes the rest)."""
    each = numel // leaves
    side = max(1, math.isqrt(each))
    shapes = {f"w{i}": (side, each // side) for i in range(leaves - 1)}
    used = sum(math.prod(s) for s in shapes.values())
    shapes[f"w{leaves - 1}"] = (numel - used,)
    return shapes


def in_jax_layout(arrays: dict) -> dict:
    """The same numbers in flax's layouts: conv kernels ``(out, in, kh, kw) -> (kh, kw, in, out)``,
    dense kernels ``(out, in) -> (in, out)``; vectors unchanged."""
    order = {4: (2, 3, 1, 0), 2: (1, 0)}
    return {name: x.transpose(order[x.ndim]).copy() if x.ndim in order else x for name, x in arrays.items()}


def numel(shapes: dict[str, tuple[int, ...]]) -> int:
    return sum(math.prod(shape) for shape in shapes.values())


def module_kinds(shapes: dict[str, tuple[int, ...]]) -> dict[str, str]:
    """``{module path: "norm"}`` for the norm layers of ``resnet50`` / ``transformer``
    (``bn*``, ``norm*``, ``downsample.1``), as ``purelr.params.module_kinds`` reads them from a model."""
    modules = {name.rsplit(".", 1)[0] for name in shapes if "." in name}
    return {
        path: "norm"
        for path in sorted(modules)
        if path.rsplit(".", 1)[-1].startswith(("bn", "norm")) or path.endswith("downsample.1")
    }
