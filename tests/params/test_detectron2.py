"""``purelr.params.detectron2.get_default_optimizer_params`` against detectron2's rule re-stated on
the torch twins (``tests/params/detectron2_reference.py``, from ``detectron2/solver/build.py`` at
facebookresearch/detectron2@02b5c4e2): random arguments (norm and bias weight decay, bias lr factor,
an lr factor per name, overrides, frozen modules) on the small ResNet (BatchNorm, GroupNorm) and
ViT (LayerNorm); every leaf's lr and weight decay must be the same numbers."""

import jax
import numpy as np
import pytest

from purelr.params import detectron2
from purelr.params.module_kinds import dotted_names
from tests.params import detectron2_reference as reference
from tests.params.reference import MODELS, flax_params, kinds

CASES = 24
FROZEN = {"resnet": ["layer1.0", "conv1"], "vit": ["embed", "blocks.0.attn"]}


def random_arguments(rng, model):
    args = dict(base_lr=None if rng.random() < 0.2 else float(rng.choice([0.02, rng.uniform(0.001, 0.1)])))
    for key in ("weight_decay", "weight_decay_norm", "weight_decay_bias"):
        if rng.random() < 0.6:
            args[key] = float(rng.choice([0.0, 1e-4, rng.uniform(0, 0.1)]))
    if rng.random() < 0.5 and args["base_lr"] is not None:
        args["bias_lr_factor"] = float(rng.uniform(0.5, 2))
    if rng.random() < 0.4 and args["base_lr"] is not None:
        prefix = "layer" if model == "resnet" else "blocks"
        args["lr_factor_func"] = lambda name: 0.5 if name.startswith(prefix) else 1.25
    if rng.random() < 0.4:
        args["overrides"] = {str(rng.choice(["kernel", "scale", "pos_embed"])): {"weight_decay": 0.0, "lr": 0.003}}
        if "bias_lr_factor" not in args and "weight_decay_bias" not in args and rng.random() < 0.5:
            args["overrides"]["bias"] = {"lr": 0.05}
    frozen = [str(p) for p in FROZEN[model] if rng.random() < 0.3]
    return args, frozen


@pytest.mark.parametrize("model", ["resnet", "vit"])
def test_random_arguments_match_detectron2(model):
    rng = np.random.default_rng(["resnet", "vit"].index(model))
    params = flax_params(model)
    for case in range(CASES):
        args, frozen = random_arguments(rng, model)
        torch_model = MODELS[model][2]
        for name, param in torch_model.named_parameters():
            param.requires_grad_(not any(name == p or name.startswith(p + ".") for p in frozen))
        expected = reference.settings(torch_model, **args)
        selector = (lambda name, leaf: any(name.startswith(p + ".") for p in frozen)) if frozen else None
        labels, settings = detectron2.get_default_optimizer_params(
            params, **args, module_kinds=kinds(model), frozen=selector
        )
        for name, label in zip(dotted_names(params), jax.tree.leaves(labels)):
            if name not in expected:
                assert label == "frozen", (case, name, label)
            else:
                assert dict(settings[label].options) == expected[name], (case, args, name, settings[label])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(bias_lr_factor=2.0), "bias_lr_factor = 2.0 needs base_lr"),
        (dict(lr_factor_func=lambda name: 1.0), "lr_factor_func needs base_lr"),
        (dict(base_lr=0.1, weight_decay_bias=0.0, overrides={"bias": {"lr": 0.1}}), "conflicts with"),
        (dict(overrides={"bias": {"momentum": 0.1}}), "unknown key 'momentum'"),
        (dict(weight_decay_norm=-1.0), "weight_decay_norm must be >= 0"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        detectron2.get_default_optimizer_params(flax_params("resnet"), **kwargs)
