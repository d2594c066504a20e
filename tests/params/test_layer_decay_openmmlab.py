"""``purelr.params.layer_decay_openmmlab`` against the real constructors: MMPretrain 1.2.0's
LearningRateDecayOptimWrapperConstructor, MMSegmentation 1.2.2's LearningRateDecayOptimizerConstructor /
LayerDecayOptimizerConstructor / ForceDefaultOptimWrapperConstructor, MMDetection 3.3.0's
LearningRateDecayOptimizerConstructor and MMPose 1.3.2's LayerDecayOptimWrapperConstructor /
ForceDefaultOptimWrapperConstructor, built on the torch models of ``layer_decay_models`` (random
sizes and settings). Every parameter's lr and weight decay equal the original's exactly; then 100
updates of ``purelr.build`` (AdamW, a warmup and a cosine with ``eta_min``) equal the real
OptimWrapper stepped with MMEngine's schedulers (x64, 1e-10).

MMSegmentation 0.30.0's and MMDetection 2.28.2's constructors (``mmseg.core.optimizers``,
``mmdet.core.optimizers``, for MMCV's runner) cannot be installed next to these: their files
differ from the 1.x ones in the registry, the base class and the logging lines only, so the twin
and these tests serve both.
"""

import copy
import warnings

import jax
import numpy as np
import optax
import pytest
import torch

import purelr
from purelr.params import layer_decay_openmmlab as twin
from purelr.params.module_kinds import dotted_names
from purelr.params.paramwise import group_hyperparams
from tests.bad_inputs import assert_rejects
from tests.optim.torch_reference import torch_dtype
from tests.params import layer_decay_models as lm
from tests.params import models
from tests.parity import OPTIMIZER_RTOL, relative_error, trajectory_floor
from tests.recipes.twins import to_flax

LR, WEIGHT_DECAY = 0.01, 0.05


def originals():
    from mmdet.engine.optimizers import LearningRateDecayOptimizerConstructor as MMDetDecay
    from mmpose.engine.optim_wrappers import ForceDefaultOptimWrapperConstructor as MMPoseForce
    from mmpose.engine.optim_wrappers import LayerDecayOptimWrapperConstructor as MMPoseDecay
    from mmpretrain.engine.optimizers import LearningRateDecayOptimWrapperConstructor as MMPretrainDecay
    from mmseg.engine.optimizers import ForceDefaultOptimWrapperConstructor as MMSegForce
    from mmseg.engine.optimizers import LayerDecayOptimizerConstructor as MMSegLayer
    from mmseg.engine.optimizers import LearningRateDecayOptimizerConstructor as MMSegDecay

    return {
        "mmpretrain": [MMPretrainDecay],
        "mmseg": [MMSegDecay, MMDetDecay],
        "mmseg_layer": [MMSegLayer],
        "mmpose": [MMPoseDecay],
        "force": [MMSegForce, MMPoseForce],
    }


NAMES = {
    "mmpretrain": "LearningRateDecayOptimWrapperConstructor",
    "mmseg": "LearningRateDecayOptimizerConstructor",
    "mmseg_layer": "LayerDecayOptimizerConstructor",
    "mmpose": "LayerDecayOptimWrapperConstructor",
    "force": "ForceDefaultOptimWrapperConstructor",
}


def draw(rng, family, small=False):
    """``(model, paramwise_cfg, frozen prefixes, original index)`` for one random case (``small``:
    a ConvNeXt's third stage of 4 blocks, not enough to reach every layer id; ViTs of 1 or 2 layers)."""
    rate = float(rng.choice([0.5, 0.65, 0.75, 0.9, 1.0]))
    keys = [".bias", ".ln", "norm", "cls_token", "pos_embed", ".gamma", "head", "layers.1", "relative_position"]
    mult = lambda: float(rng.choice([0.0, 0.5, 2.0]))
    if family == "mmpretrain":
        kind = str(rng.choice(list(lm.BUILDERS)))
        size = {
            "VisionTransformer": int(rng.integers(1, 3 if small else 5)),
            "ResNet": [1, 4, 6, 1] if small else [1, *lm_resnet_depths(rng), 1],
        }.get(kind, [int(rng.integers(1, 4)) for _ in range(3)] + [int(rng.integers(1, 3))])
        if kind == "ConvNeXt" and rng.random() < 0.4:
            size[2] = 10  # max_layer_id 12
        model = lm.torch_model(kind, size, neck=kind == "MixMIMTransformer" and rng.random() < 0.5)
        cfg = {"layer_decay_rate": rate}
        for key in ("norm_decay_mult", "bias_decay_mult", "flat_decay_mult"):
            if rng.random() < 0.5:
                cfg[key] = mult()
        if rng.random() < 0.6:
            chosen = rng.choice(keys, size=int(rng.integers(1, 4)), replace=False)
            cfg["custom_keys"] = {
                str(k): {"decay_mult": mult(), **({"lr_mult": 3.0} if rng.random() < 0.3 else {})} for k in chosen
            }
    elif family == "force":
        kind = str(rng.choice(["VisionTransformer", "ConvNeXt", "ResNet"]))
        model = lm.torch_model(kind, {"VisionTransformer": 2, "ConvNeXt": [1, 1, 2, 1], "ResNet": [1, 4, 6, 1]}[kind])
        cfg = {
            k: mult()
            for k in ("bias_lr_mult", "bias_decay_mult", "norm_decay_mult", "dwconv_decay_mult", "flat_decay_mult")
            if rng.random() < 0.5
        }
        chosen = rng.choice(keys, size=int(rng.integers(1, 4)), replace=False)
        cfg["custom_keys"] = {str(k): {"lr_mult": mult(), "decay_mult": mult()} for k in chosen}
        cfg["force_default_settings"] = bool(rng.random() < 0.7)
    else:
        stage_wise = family == "mmseg" and rng.random() < 0.4
        kind = "ConvNeXt" if stage_wise or (family == "mmseg" and rng.random() < 0.5) else "VisionTransformer"
        num_layers = int(rng.choice([6, 12])) if kind == "ConvNeXt" else int(rng.integers(1, 3 if small else 5))
        size = [1, 2, 4 if small else 3 * (num_layers - 3), 1] if kind == "ConvNeXt" else num_layers
        class_name = str(rng.choice(lm.SEGMENTATION_CLASSES[kind]))
        model = lm.torch_model(kind, size, class_name)
        cfg = {"num_layers": num_layers}
        if family == "mmseg":
            cfg.update(
                decay_rate=rate,
                decay_type="stage_wise" if stage_wise else str(rng.choice(["layer_wise", "layer_wise_vit"])),
            )
        else:
            cfg.update(layer_decay_rate=rate)
    names = [n for n, _ in model.named_parameters()]
    frozen = [str(p) for p in rng.choice(names, size=2, replace=False) if rng.random() < 0.3]
    mmdet = family == "mmseg" and kind == "ConvNeXt" and rng.random() < 0.5  # MMDetection's copy: ConvNeXt only
    return model, cfg, frozen, int(mmdet)


def lm_resnet_depths(rng):
    return list(rng.choice([(4, 6), (4, 23), (8, 36)]))


def torch_groups(family, model, paramwise_cfg, frozen, which=0, optimizer="AdamW"):
    """``{flax name: (lr, weight_decay) or 'frozen'}`` from the real constructor, and the wrapper."""
    from mmengine.logging import MMLogger

    MMLogger.get_current_instance().setLevel("ERROR")
    for name, param in model.named_parameters():
        param.requires_grad_(name not in frozen)
    wrapper_cfg = dict(type="OptimWrapper", optimizer=dict(type=optimizer, lr=LR, weight_decay=WEIGHT_DECAY))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wrapper = originals()[family][which](wrapper_cfg, copy.deepcopy(paramwise_cfg))(model)
    group_of = {id(p): group for group in wrapper.optimizer.param_groups for p in group["params"]}
    out = {}
    for name, param in model.named_parameters():
        group = group_of.get(id(param)) if param.requires_grad else None
        out[models.flax_name(model, name)] = "frozen" if group is None else (group["lr"], group["weight_decay"])
    return out, wrapper


def purelr_groups(family, model, paramwise_cfg, frozen):
    params, kinds = lm.flax_twin(model)
    frozen_flax = [models.flax_name(model, n) for n in frozen]
    constructor = twin.CONSTRUCTORS[NAMES[family]]
    labels, settings = constructor(
        params,
        dict(lr=LR, weight_decay=WEIGHT_DECAY),
        copy.deepcopy(paramwise_cfg),
        module_kinds=kinds,
        frozen=frozen_flax or None,
    )
    out = {}
    for name, label in zip(dotted_names(params), jax.tree.leaves(labels)):
        setting = settings[label]
        group = {} if setting.frozen else group_hyperparams(setting, lr=LR, weight_decay=WEIGHT_DECAY)
        out[name] = "frozen" if setting.frozen else (group["lr"], group["weight_decay"])
    return out


def check_settings(family, seed):
    rng = np.random.default_rng(seed)
    model, cfg, frozen, which = draw(rng, family)
    expected, _ = torch_groups(family, model, cfg, frozen, which)
    actual = purelr_groups(family, model, cfg, frozen)
    assert actual.keys() == expected.keys()
    wrong = {k: (actual[k], expected[k]) for k in expected if actual[k] != expected[k]}
    assert not wrong, f"{family} seed {seed} {type(model.backbone).__name__} {cfg} frozen={frozen}: {wrong}"


@pytest.mark.parametrize("family", list(NAMES))
def test_every_parameter_gets_the_originals_lr_and_weight_decay(family):
    for seed in range(40):
        check_settings(family, seed)


SCHEDULERS = [
    dict(type="LinearLR", start_factor=0.01, by_epoch=False, begin=0, end=20),
    dict(type="CosineAnnealingLR", T_max=80, eta_min=1e-4, by_epoch=False, begin=20, end=100),
]
STEPS, CURVATURE = 100, 0.1


def torch_trajectory(wrapper, model, gradients, frozen):
    import mmengine.optim.scheduler  # noqa: F401
    from mmengine.registry import PARAM_SCHEDULERS

    schedulers = [PARAM_SCHEDULERS.build(dict(s), default_args=dict(optimizer=wrapper)) for s in SCHEDULERS]
    params = list(model.parameters())
    for k in range(STEPS):
        loss = sum((torch.from_numpy(g[k]) * p + CURVATURE / 2 * p * p).sum() for p, g in zip(params, gradients))
        wrapper.update_params(loss)
        for scheduler in schedulers:
            scheduler.step()
    return {models.flax_name(model, n): to_flax(p.detach().numpy()) for n, p in model.named_parameters()}


def purelr_trajectory(cfg, model, initial, gradients, frozen):
    params, kinds = lm.flax_twin(model)
    names = [models.flax_name(model, n) for n, _ in model.named_parameters()]
    order = {n: i for i, n in enumerate(names)}
    leaves = dotted_names(params)
    tree = lambda arrays: jax.tree.unflatten(
        jax.tree.structure(params), [jax.numpy.asarray(to_flax(arrays[order[n]])) for n in leaves]
    )
    tx = purelr.build(
        cfg, tree(initial), module_kinds=kinds, frozen=[models.flax_name(model, n) for n in frozen] or None
    )

    @jax.jit
    def run(p, grads):
        def step(carry, g):
            p, state = carry
            updates, state = tx.update(jax.tree.map(lambda gk, pk: gk + CURVATURE * pk, g, p), state, p)
            return (optax.apply_updates(p, updates), state), None

        return jax.lax.scan(step, (p, tx.init(p)), grads)[0][0]

    per_step = [tree([g[k] for g in gradients]) for k in range(STEPS)]
    final = run(tree(initial), jax.tree.map(lambda *steps: jax.numpy.stack(steps), *per_step))
    return dict(zip(leaves, map(np.asarray, jax.tree.leaves(final))))


def started(rng, model, dtype):
    """``(initial values, gradients per update)`` drawn in ``dtype``, the model set to the first."""
    initial = [rng.normal(0, 0.5, tuple(p.shape)).astype(dtype) for p in model.parameters()]
    gradients = [rng.normal(0, 1.0, (STEPS,) + tuple(p.shape)).astype(dtype) for p in model.parameters()]
    with torch.no_grad():
        for p, value in zip(model.parameters(), initial):
            p.copy_(torch.from_numpy(value))
    return initial, gradients


def check_trajectory(family, seed, precision):
    """100 AdamW updates with a warmup and a cosine of one random case, in ``precision`` (torch in
    the same dtype, its scalar state too); the worst relative error."""
    x64 = precision == "x64"
    rng = np.random.default_rng(100 + seed)
    model, cfg, frozen, which = draw(rng, family, small=True)
    model = model.double() if x64 else model.float()
    initial, gradients = started(rng, model, np.float64 if x64 else np.float32)
    with torch_dtype(x64):
        _, wrapper = torch_groups(family, model, cfg, frozen, which)
        expected = torch_trajectory(wrapper, model, gradients, frozen)
    config = dict(
        optim_wrapper=dict(
            type="OptimWrapper",
            optimizer=dict(type="AdamW", lr=LR, weight_decay=WEIGHT_DECAY),
            constructor=NAMES[family],
            paramwise_cfg=cfg,
        ),
        param_scheduler=SCHEDULERS,
        train_cfg=dict(type="IterBasedTrainLoop", max_iters=STEPS),
    )
    actual = purelr_trajectory(config, model, initial, gradients, frozen)
    worst = 0.0
    for name, value in expected.items():
        error = relative_error(actual[name], value, floor=trajectory_floor(precision))
        assert error <= OPTIMIZER_RTOL[precision], f"{family} {precision} seed {seed} {name}: {error:.3g} {cfg}"
        worst = max(worst, error)
    return worst


@pytest.mark.parametrize("family", list(NAMES))
def test_trajectories_equal_the_real_optim_wrapper(family, precision):
    print(f"{family} {precision}: worst relative error {check_trajectory(family, 0, precision):.3g}")


@pytest.mark.nightly
@pytest.mark.parametrize("family", list(NAMES))
def test_more_trajectories_equal_the_real_optim_wrapper(family, precision):
    worst = max(check_trajectory(family, seed, precision) for seed in range(1, 6))
    print(f"{family} {precision}: worst relative error {worst:.3g}")


MMCV_LR_CONFIG = dict(
    policy="poly", power=1.0, min_lr=1e-4, by_epoch=False, warmup="linear", warmup_iters=20, warmup_ratio=0.01
)


def mmcv_era_optimizer(family, model, paramwise_cfg):
    """MMSegmentation 0.30.0's / MMDetection 2.28.2's constructor: MMCV's DefaultOptimizerConstructor
    with the 1.x class's ``add_params`` (the files differ in their logging lines only), given the
    ``paramwise_cfg`` as the 1.x ``LayerDecayOptimizerConstructor.__init__`` rewrites it (0.30.0's
    does the same)."""
    from mmcv.runner import DefaultOptimizerConstructor

    cfg = copy.deepcopy(paramwise_cfg)
    decay, layer = originals()["mmseg"][0], originals()["mmseg_layer"][0]
    if family == "mmseg_layer":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            layer(dict(type="OptimWrapper", optimizer=dict(type="AdamW", lr=LR, weight_decay=WEIGHT_DECAY)), cfg)
    era = type(decay.__name__, (DefaultOptimizerConstructor,), {"add_params": decay.add_params})
    return era(dict(type="AdamW", lr=LR, weight_decay=WEIGHT_DECAY), cfg)(model)


@pytest.mark.parametrize("family", ["mmseg", "mmseg_layer"])
def test_mmcv_configs_equal_the_mmcv_era_constructor_and_hooks(family):
    """``optimizer=dict(..., constructor=..., paramwise_cfg=...)`` with a poly ``lr_config`` under
    an IterBasedRunner (MMSegmentation 0.30.0's BEiT / ConvNeXt recipes), 100 updates, x64."""
    import types

    from mmcv.runner.hooks import HOOKS
    from mmcv.utils import build_from_cfg

    rng = np.random.default_rng(7)
    model, cfg, frozen, _ = draw(rng, family, small=True)
    cfg[{"mmseg": "decay_rate", "mmseg_layer": "layer_decay_rate"}[family]] = 0.8
    model = model.double()
    initial, gradients = started(rng, model, np.float64)
    for name, param in model.named_parameters():
        param.requires_grad_(name not in frozen)
    with torch_dtype(True):
        optimizer = mmcv_era_optimizer(family, model, cfg)
        hook_cfg = {k: v for k, v in MMCV_LR_CONFIG.items() if k != "policy"}
        hook = build_from_cfg(dict(hook_cfg, type="PolyLrUpdaterHook"), HOOKS)
        runner = types.SimpleNamespace(
            optimizer=optimizer,
            iter=0,
            epoch=0,
            inner_iter=0,
            max_iters=STEPS,
            max_epochs=None,
            data_loader=range(STEPS),
        )
        hook.before_run(runner)
        for k in range(STEPS):
            runner.iter = runner.inner_iter = k
            hook.before_train_iter(runner)
            optimizer.zero_grad()
            sum(
                (torch.from_numpy(g[k]) * p + CURVATURE / 2 * p * p).sum()
                for p, g in zip(model.parameters(), gradients)
            ).backward()
            optimizer.step()
    expected = {models.flax_name(model, n): to_flax(p.detach().numpy()) for n, p in model.named_parameters()}
    config = dict(
        optimizer=dict(type="AdamW", lr=LR, weight_decay=WEIGHT_DECAY, constructor=NAMES[family], paramwise_cfg=cfg),
        optimizer_config=dict(),
        lr_config=MMCV_LR_CONFIG,
        runner=dict(type="IterBasedRunner", max_iters=STEPS),
    )
    with jax.enable_x64(True):
        actual = purelr_trajectory(config, model, initial, gradients, frozen)
    for name, value in expected.items():
        error = relative_error(actual[name], value, floor=trajectory_floor())
        assert error <= OPTIMIZER_RTOL["x64"], f"{family} {name}: {error:.3g} {cfg}"


def _vit_tree(num_layers=2):
    return lm.flax_twin(lm.torch_model("VisionTransformer", num_layers, "BEiT"))[0]


BASE = dict(lr=LR, weight_decay=WEIGHT_DECAY)
BAD = [
    (
        "mmseg",
        dict(num_layers=2, decay_rate=0.9, decay_type="layerwise"),
        ValueError,
        ("paramwise_cfg.decay_type", "'layerwise'", "layer_wise"),
    ),
    ("mmseg", dict(num_layers=2, decay_rate=0.0), ValueError, ("paramwise_cfg.decay_rate", "0.0")),
    ("mmseg", dict(num_layers=2, decay_rate=1.5), ValueError, ("paramwise_cfg.decay_rate", "1.5")),
    ("mmseg", dict(num_layers=2), ValueError, ("paramwise_cfg.decay_rate", "missing")),
    ("mmseg", dict(num_layers=0, decay_rate=0.9), ValueError, ("paramwise_cfg.num_layers", "0")),
    (
        "mmseg",
        dict(num_layers=2, decay_rate=0.9, decay_type="stage_wise"),
        ValueError,
        ("decay_type", "stage_wise", "ConvNeXt"),
    ),
    ("mmseg", dict(num_layers=2, decay_rate=0.9, decay_rat=0.8), ValueError, ("paramwise_cfg", "decay_rat")),
    (
        "mmseg_layer",
        dict(num_layers=2, decay_rate=0.9),
        ValueError,
        ("paramwise_cfg", "'decay_rate'", "layer_decay_rate"),
    ),
    ("mmseg_layer", dict(num_layers=2), ValueError, ("paramwise_cfg.layer_decay_rate", "missing")),
    ("mmpose", dict(num_layers=2, layer_decay_rate=-0.5), ValueError, ("paramwise_cfg.layer_decay_rate", "-0.5")),
    ("mmpretrain", dict(layer_decay_rate=2.0), ValueError, ("paramwise_cfg.layer_decay_rate", "2.0")),
    (
        "mmpretrain",
        dict(layer_decay_rate=0.5, norm_decay_mult=-1.0),
        ValueError,
        ("paramwise_cfg.norm_decay_mult", "-1"),
    ),
    ("force", dict(force_default_settings="yes"), TypeError, ("paramwise_cfg.force_default_settings", "'yes'")),
]


@pytest.mark.parametrize("family, cfg, exception, needles", BAD)
def test_bad_settings_are_refused_naming_the_key(family, cfg, exception, needles):
    call = lambda: twin.CONSTRUCTORS[NAMES[family]](_vit_tree(), BASE, cfg)
    assert_rejects(call, exception, *needles)


def test_a_parameter_without_a_layer_index_is_refused_naming_it():
    params = {"backbone": {"layers": {"first": {"kernel": jax.numpy.zeros((2, 2))}}}}
    for family, cfg in (
        ("mmseg", dict(num_layers=2, decay_rate=0.9)),
        ("mmpose", dict(num_layers=2, layer_decay_rate=0.9)),
    ):
        assert_rejects(
            lambda: twin.CONSTRUCTORS[NAMES[family]](params, BASE, cfg),
            ValueError,
            "backbone.layers.first.kernel",
            "'first'",
            "layer",
        )
    stages = {
        "backbone": {
            "downsample_layers": {"0": {"kernel": jax.numpy.zeros((2, 2))}},
            "stages": {"4": {"0": {"kernel": jax.numpy.zeros((2, 2))}}},
        }
    }
    assert_rejects(
        lambda: twin.CONSTRUCTORS[NAMES["mmseg"]](stages, BASE, dict(num_layers=6, decay_rate=0.9)),
        ValueError,
        "backbone.stages.4.0.kernel",
        "stage 4",
    )


def test_an_unknown_backbone_and_missing_weight_decay_are_refused():
    params = {"encoder": {"kernel": jax.numpy.zeros((2, 2))}}
    assert_rejects(
        lambda: twin.CONSTRUCTORS[NAMES["mmpretrain"]](params, BASE, dict(layer_decay_rate=0.9)),
        ValueError,
        "cannot tell the backbone",
        "backbone",
    )
    assert_rejects(
        lambda: twin.CONSTRUCTORS[NAMES["mmseg"]](_vit_tree(), dict(lr=LR), dict(num_layers=2, decay_rate=0.9)),
        ValueError,
        "optimizer.weight_decay",
    )
    resnet = lm.flax_twin(lm.torch_model("ResNet", [1, 2, 2, 1]))[0]
    assert_rejects(
        lambda: twin.CONSTRUCTORS[NAMES["mmpretrain"]](resnet, BASE, dict(layer_decay_rate=0.9)),
        ValueError,
        "ResNet",
        "[1, 2, 2, 1]",
    )


def test_constructors_are_registered_under_their_openmmlab_names():
    from purelr.recipes import registry

    for name in NAMES.values():
        assert registry.lookup("constructor", name, "constructor") is twin.CONSTRUCTORS[name]


def test_curves_without_a_model_show_every_layer_depth():
    """``purelr plot`` / the corpus draw a layer-decay config's curves on ``example_vit``: one lr
    curve per depth, from ``lr * rate ** k``, ``k = 0 .. num_layers + 1``."""
    from purelr.cli.curves import config_curves

    cfg = dict(
        optim_wrapper=dict(
            type="OptimWrapper",
            optimizer=dict(type="AdamW", lr=LR, weight_decay=WEIGHT_DECAY),
            constructor="LayerDecayOptimizerConstructor",
            paramwise_cfg=dict(num_layers=3, layer_decay_rate=0.5),
        ),
        train_cfg=dict(type="IterBasedTrainLoop", max_iters=STEPS),
    )
    bases = set(config_curves(cfg).bases.values())
    assert bases == {LR * 0.5**k for k in range(5)}


@pytest.mark.parametrize("family", ["mmpretrain", "mmseg_layer", "mmpose"])
def test_a_flax_linen_vit_gets_the_settings_of_its_torch_twin(family):
    """The linen ViT's own tree and module kinds (``module_kinds``) give every leaf the lr and weight
    decay the real constructor gives the torch ViT with the same names."""
    cfg = {
        "mmpretrain": dict(
            layer_decay_rate=0.75,
            norm_decay_mult=0.0,
            flat_decay_mult=0.5,
            custom_keys={".cls_token": dict(decay_mult=0.0)},
        ),
        "mmseg_layer": dict(num_layers=3, layer_decay_rate=0.75),
        "mmpose": dict(num_layers=3, layer_decay_rate=0.75),
    }[family]
    model = lm.torch_model("VisionTransformer", 3, "BEiT")
    expected, _ = torch_groups(family, model, cfg, ())
    params, kinds = lm.flax_vit(3)
    assert sorted(dotted_names(params)) == sorted(expected)
    labels, settings = twin.CONSTRUCTORS[NAMES[family]](params, BASE, copy.deepcopy(cfg), module_kinds=kinds)
    for name, label in zip(dotted_names(params), jax.tree.leaves(labels)):
        group = group_hyperparams(settings[label], lr=LR, weight_decay=WEIGHT_DECAY)
        assert (group["lr"], group["weight_decay"]) == expected[name], name
