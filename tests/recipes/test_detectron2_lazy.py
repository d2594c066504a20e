"""detectron2 LazyConfig recipes (``purelr.recipes.detectron2_lazy``) against torch, driven as
``tools/lazyconfig_train_net.py`` drives them: ``instantiate(cfg.optimizer)`` (torch's SGD / AdamW
on ``get_default_optimizer_params``'s groups, re-stated in ``tests/params/detectron2_reference.py``),
``LRMultiplier`` over ``instantiate(cfg.lr_multiplier)`` (fvcore's real schedulers, detectron2's
``WarmupParamScheduler`` re-stated in ``purelr.references.detectron2``) and ``train.max_iter``.

Recipes (facebookresearch/detectron2@02b5c4e2): ViTDet's ``projects/ViTDet/configs/COCO/
mask_rcnn_vitdet_b_100ep.py`` (AdamW of ``configs/common/optim.py``, layer-wise lr decay 0.7 by
``get_vit_lr_decay_rate`` of ``detectron2/modeling/backbone/vit.py`` re-stated for the ViT twin's
names, no decay of ``pos_embed``) and ``configs/new_baselines/mask_rcnn_R_50_FPN_100ep_LSJ.py``
(SGD lr 0.1, weight decay 4e-5, no decay of norms), each as published (100 updates of warmup) and
shortened to 100 iterations (milestones and warmup scaled, so the decays fall inside); and an
Adam recipe with a composite cosine. 100 updates, float64, 1e-10.
"""

import jax
import jax.numpy as jnp
import pytest
import torch
from fvcore.common import param_scheduler as fvcore_classes

from purelr.references import detectron2 as reference
from tests.params import detectron2_reference, models
from tests.params.reference import MODELS, flax_params, kinds
from tests.recipes.test_detectron2 import (
    _named,
    assert_same,
    purelr_run,
    start_and_grads,
    tiny,
    torch_steps,
    torch_tensors,
    torch_tiny,
)

VIT_LAYERS, VIT_DECAY = models.DEPTH, 0.7


def vit_lr_decay_rate(name):
    """``get_vit_lr_decay_rate(name, lr_decay_rate=0.7, num_layers=DEPTH)`` for the ViT twin's
    names: the embedding and ``pos_embed`` are layer 0, ``blocks.i`` layer ``i + 1``, the rest
    ``num_layers + 1``; the factor is ``rate ** (num_layers + 1 - layer)``."""
    layer = VIT_LAYERS + 1
    if name.startswith(("pos_embed", "embed", "cls_token")):
        layer = 0
    elif name.startswith("blocks."):
        layer = int(name.split(".")[1]) + 1
    return VIT_DECAY ** (VIT_LAYERS + 1 - layer)


def warmup_multistep(max_iter, milestones, warmup_iters, warmup_factor):
    return dict(
        _target_="detectron2.solver.WarmupParamScheduler",
        warmup_length=warmup_iters / max_iter,
        warmup_factor=warmup_factor,
        scheduler=dict(
            _target_="fvcore.common.param_scheduler.MultiStepParamScheduler",
            values=[1.0, 0.1, 0.01],
            milestones=milestones,
            num_updates=max_iter,
        ),
    )


VITDET_OPTIMIZER = dict(
    _target_="torch.optim.AdamW",
    lr=1e-4,
    betas=(0.9, 0.999),
    weight_decay=0.1,
    params=dict(
        base_lr="${..lr}",
        weight_decay_norm=0.0,
        lr_factor_func=vit_lr_decay_rate,
        overrides={"pos_embed": {"weight_decay": 0.0}},
    ),
)
LSJ_OPTIMIZER = dict(
    _target_="torch.optim.SGD", lr=0.1, momentum=0.9, weight_decay=4e-5, params=dict(weight_decay_norm=0.0)
)
RECIPES = {
    "vitdet_b_100ep": (
        "vit",
        dict(
            optimizer=VITDET_OPTIMIZER,
            train=dict(max_iter=184375),
            lr_multiplier=warmup_multistep(184375, [163889, 177546], 250, 0.001),
        ),
    ),
    "vitdet_b_100ep_short": (
        "vit",
        dict(
            optimizer=VITDET_OPTIMIZER,
            train=dict(max_iter=100),
            lr_multiplier=warmup_multistep(100, [89, 96], 3, 0.001),
        ),
    ),
    "lsj_100ep": (
        "tiny",
        dict(
            optimizer=LSJ_OPTIMIZER,
            train=dict(max_iter=184375),
            lr_multiplier=warmup_multistep(184375, [163889, 177546], 500, 0.067),
        ),
    ),
    "lsj_100ep_short": (
        "tiny",
        dict(
            optimizer=LSJ_OPTIMIZER, train=dict(max_iter=100), lr_multiplier=warmup_multistep(100, [89, 96], 10, 0.067)
        ),
    ),
    "adam_composite_cosine": (
        "tiny",
        dict(
            optimizer=dict(
                _target_="torch.optim.Adam",
                lr=3e-3,
                betas=[0.8, 0.99],
                weight_decay=1e-3,
                params=dict(base_lr=3e-3, bias_lr_factor=2.0, weight_decay_bias=0.0),
            ),
            train=dict(max_iter=120),
            lr_multiplier=dict(
                _target_="CompositeParamScheduler",
                lengths=[0.3, 0.7],
                interval_scaling=["rescaled", "fixed"],
                schedulers=[
                    dict(_target_="LinearParamScheduler", start_value=0.01, end_value=1.0),
                    dict(_target_="CosineParamScheduler", start_value=1.0, end_value=0.05),
                ],
            ),
        ),
    ),
}


def instantiate(spec):
    """fvcore's real scheduler (detectron2's warmup re-stated around it) from a lazy dict."""
    spec = dict(spec)
    name = spec.pop("_target_").rpartition(".")[2]
    if "scheduler" in spec:
        spec["scheduler"] = instantiate(spec["scheduler"])
    if "schedulers" in spec:
        spec["schedulers"] = [instantiate(s) for s in spec["schedulers"]]
    make = reference.warmup_param_scheduler if name == "WarmupParamScheduler" else getattr(fvcore_classes, name)
    return make(**spec)


def torch_lazy(cfg, model, tensors, grads):
    optimizer_cfg = dict(cfg["optimizer"])
    name = optimizer_cfg.pop("_target_").rpartition(".")[2]
    group_args = {k: (optimizer_cfg["lr"] if v == "${..lr}" else v) for k, v in optimizer_cfg.pop("params").items()}
    found = detectron2_reference.settings(model, **group_args)
    optimizer = getattr(torch.optim, name)(detectron2_reference.groups(found, tensors), **optimizer_cfg)
    scheduler = reference.LRMultiplier(optimizer, instantiate(cfg["lr_multiplier"]), cfg["train"]["max_iter"])
    return torch_steps(optimizer, scheduler, tensors, grads, torch.float64)


def _model(name):
    """``(param shapes, module kinds, torch twin)``, traced in float32."""
    with jax.enable_x64(False):
        if name == "tiny":
            return (*tiny(), torch_tiny())
        return flax_params("vit"), kinds("vit"), MODELS["vit"][2]


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_lazy_recipe(recipe):
    model, cfg = RECIPES[recipe]
    shapes, module_kinds, torch_model = _model(model)
    with jax.enable_x64(True):
        params, grads = start_and_grads(len(recipe), jnp.float64, shapes)
        ours = purelr_run(cfg, params, grads, module_kinds)
        theirs = torch_lazy(cfg, torch_model, torch_tensors(params, torch.float64), [_named(g) for g in grads])
        print(f"{recipe}: worst {assert_same(ours, theirs, 'x64', recipe):.3g}")


@pytest.mark.parametrize(
    "cfg, message",
    [
        (
            dict(
                optimizer=dict(_target_="torch.optim.LBFGS", lr=1.0),
                lr_multiplier=RECIPES["lsj_100ep"][1]["lr_multiplier"],
            ),
            "optimizer._target_ = 'torch.optim.LBFGS' is not modelled",
        ),
        (
            dict(optimizer=LSJ_OPTIMIZER, lr_multiplier=dict(_target_="WarmupPolyLR")),
            "lr_multiplier._target_ = 'WarmupPolyLR'",
        ),
        (dict(optimizer=LSJ_OPTIMIZER, lr_multiplier=dict(values=[1.0])), "lr_multiplier needs a _target_"),
        (
            dict(optimizer=LSJ_OPTIMIZER, lr_multiplier=RECIPES["lsj_100ep"][1]["lr_multiplier"], dataloader={}),
            "unknown key 'dataloader'",
        ),
    ],
)
def test_bad_lazy_config(cfg, message):
    import purelr

    with pytest.raises(ValueError, match=message):
        purelr.build(dict(detectron2=cfg), tiny()[0])
