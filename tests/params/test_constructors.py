"""Every parameter's lr, weight_decay and momentum from ``purelr.params.paramwise`` equal those that
MMCV 1.7's DefaultOptimizerConstructor and MMEngine's DefaultOptimWrapperConstructor give the
torch twin, for MMDetection's paramwise configs and random ones."""

import jax
import numpy as np
import pytest

from purelr.params.module_kinds import dotted_names
from purelr.params.paramwise import group_hyperparams, paramwise_labels
from tests.params import reference

KEY_POOL = (
    "layer",
    "conv1",
    "bn1",
    "bn2",
    "dw",
    "fc",
    "layer1",
    "layer2",
    "downsample",
    "bias",
    "0.bn",
    "1.conv",
    "neck",
    "offset",
    "conv_offset",
    "dcn",
    "gn",
    "embed",
    "blocks.0",
    "blocks.1",
    "norm",
    "attn",
    "qkv",
    "mlp",
    "head",
    "pos_embed",
    "cls_token",
    ".bias",
    "0.",
    ".1.",
    "conv",
    "1",
    "o",
)
FROZEN_POOL = {
    "resnet": ("conv1", "bn1", "layer1.0", "layer2", "neck.dcn", "neck.dcn.conv_offset"),
    "vit": ("embed", "blocks.0", "blocks.1.attn", "norm", "head"),
}

MMDET_EXAMPLES = [
    dict(norm_decay_mult=0.0),
    dict(bias_lr_mult=2.0, bias_decay_mult=0.0),
    dict(norm_decay_mult=0.0, bypass_duplicate=True),
    dict(custom_keys={"backbone": dict(lr_mult=0.1, decay_mult=1.0)}),
    dict(
        custom_keys={
            "absolute_pos_embed": dict(decay_mult=0.0),
            "relative_position_bias_table": dict(decay_mult=0.0),
            "norm": dict(decay_mult=0.0),
        }
    ),
    dict(
        custom_keys={
            "backbone": dict(lr_mult=0.1),
            "sampling_offsets": dict(lr_mult=0.1),
            "reference_points": dict(lr_mult=0.1),
        }
    ),
    dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={"pos_embed": dict(decay_mult=0.0), "cls_token": dict(decay_mult=0.0)},
    ),
    dict(custom_keys={"layer1": dict(lr_mult=0, decay_mult=0), "layer": dict(lr_mult=1), "head": dict(lr_mult=0.1)}),
    dict(dcn_offset_lr_mult=0.1, bias_lr_mult=2.0),
    dict(dwconv_decay_mult=0.0, norm_decay_mult=0.0),
]
MMENGINE_EXAMPLES = [
    dict(flat_decay_mult=0.0),
    dict(norm_decay_mult=0.0, flat_decay_mult=0.5),
    dict(custom_keys={"head": dict(lr_mult=10.0, momentum=0.5)}),
]


def draw(rng, style):
    """A random optimizer config and paramwise_cfg and frozen prefixes for one of the models."""
    name = str(rng.choice(list(reference.MODELS)))
    weight_decay = None if rng.random() < 0.2 else float(rng.choice([1e-4, 5e-2]))
    mult = lambda: float(rng.choice([0.0, 0.1, 0.5, 2.0, 10.0]))
    cfg = {}
    keys = ["bias_lr_mult", "dcn_offset_lr_mult"] + (
        ["bias_decay_mult", "norm_decay_mult", "dwconv_decay_mult"] if weight_decay else []
    )
    keys += ["flat_decay_mult"] if style == "mmengine" else []
    for key in keys:
        if rng.random() < 0.5:
            cfg[key] = mult()
    if rng.random() < 0.6:
        custom = {}
        for key in rng.choice(KEY_POOL, size=rng.integers(1, 5), replace=False):
            entry = {}
            if rng.random() < 0.7:
                entry["lr_mult"] = mult()
            if weight_decay and rng.random() < 0.6:
                entry["decay_mult"] = mult()
            if style == "mmengine" and rng.random() < 0.2:
                entry["momentum"] = float(rng.choice([0.0, 0.5]))
            if style == "mmengine" and rng.random() < 0.1:
                entry["lr"] = 0.3
            custom[str(key)] = entry
        cfg["custom_keys"] = custom
    if rng.random() < 0.2:
        cfg["bypass_duplicate"] = True
    frozen = [str(p) for p in FROZEN_POOL[name] if rng.random() < 0.15]
    optimizer = dict(type="SGD", lr=0.02, momentum=0.9)
    if weight_decay is not None:
        optimizer["weight_decay"] = weight_decay
    return name, optimizer, cfg, frozen


def purelr_settings(style, name, optimizer_cfg, paramwise_cfg, frozen=()):
    params = reference.flax_params(name)
    labels, settings = paramwise_labels(
        params,
        paramwise_cfg,
        style=style,
        weight_decay=optimizer_cfg.get("weight_decay"),
        module_kinds=reference.kinds(name),
        frozen=list(frozen) or None,
    )
    out = {}
    for leaf_name, label in zip(dotted_names(params), jax.tree.leaves(labels)):
        setting = settings[label]
        if setting.frozen:
            out[leaf_name] = "frozen"
            continue
        group = group_hyperparams(
            setting,
            lr=optimizer_cfg["lr"],
            momentum=optimizer_cfg["momentum"],
            weight_decay=optimizer_cfg.get("weight_decay"),
        )
        out[leaf_name] = dict(lr=group["lr"], momentum=group["momentum"], weight_decay=group.get("weight_decay", 0.0))
    return out, len(settings)


def check(style, name, optimizer_cfg, paramwise_cfg, frozen=()):
    expected = reference.torch_settings(style, name, optimizer_cfg, paramwise_cfg, frozen)
    actual, n_labels = purelr_settings(style, name, optimizer_cfg, paramwise_cfg, frozen)
    assert actual.keys() == expected.keys()
    wrong = {k: (actual[k], expected[k]) for k in expected if actual[k] != expected[k]}
    assert not wrong, f"{style} {name} {paramwise_cfg} frozen={frozen}: {wrong}"
    return n_labels


@pytest.mark.parametrize("style", ["mmcv", "mmengine"])
@pytest.mark.parametrize("name", list(reference.MODELS))
def test_mmdetection_examples(style, name):
    examples = MMDET_EXAMPLES + (MMENGINE_EXAMPLES if style == "mmengine" else [])
    for cfg in examples:
        for weight_decay in (1e-4, None):
            uses_decay = any("decay" in key for key in cfg) or "decay_mult" in str(cfg)
            if weight_decay is None and uses_decay:
                continue
            optimizer = dict(type="SGD", lr=0.02, momentum=0.9)
            if weight_decay is not None:
                optimizer["weight_decay"] = weight_decay
            check(style, name, optimizer, cfg)


@pytest.mark.parametrize("style", ["mmcv", "mmengine"])
def test_random_configs(style):
    rng = np.random.default_rng(5 if style == "mmcv" else 6)
    for _ in range(100):
        check(style, *draw(rng, style))
