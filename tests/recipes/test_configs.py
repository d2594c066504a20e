"""The configs shipped in purelr/configs: each builds and steps; RetinaNet 1x in MMCV and MMEngine
form gives MMCV 1.7.2's LrUpdaterHook curve (MMEngine's warmup reaches the full lr one iteration
earlier, tests/schedules/test_retinanet.py); the timm recipes give timm's scheduler's curve."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import purelr
from purelr import configs
from purelr.recipes.build import read_recipe
from tests.params import reference
from tests.parity import OPTIMIZER_RTOL, assert_schedule_matches, relative_error, trajectory_floor
from tests.recipes import twins
from tests.schedules.test_mmcv import retinanet_reference

EPOCH_LEN = 100  # the 500-iteration warmup ends before the first milestone (epoch 8)
MODEL_OF = {"timm_vit_finetune_layer_decay.py": "vit"}


def test_configs_are_shipped():
    assert configs.names() == [
        "faster_rcnn_r50_fpn_1x_clip_mmcv.py",
        "onecycle_mmcv.py",
        "retinanet_r50_fpn_1x_mmcv.py",
        "retinanet_r50_fpn_1x_mmengine.py",
        "timm_resnet50_cosine.py",
        "timm_vit_finetune_layer_decay.py",
    ]
    with pytest.raises(ValueError, match="no shipped config 'nope.py'"):
        configs.path_of("nope.py")


@pytest.mark.parametrize("name", configs.names())
def test_every_shipped_config_builds_and_steps(name):
    model = MODEL_OF.get(name, "resnet")
    params = reference.flax_params(model)
    tx = purelr.build(configs.path_of(name), params, epoch_len=EPOCH_LEN, module_kinds=reference.kinds(model))
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)
    assert all(bool(jnp.all(jnp.isfinite(u))) for u in jax.tree.leaves(updates))
    assert any(bool(jnp.any(u != 0)) for u in jax.tree.leaves(updates))


def test_retinanet_1x_both_forms_give_mmcv_curve(precision):
    expected = retinanet_reference(EPOCH_LEN)
    steps = jnp.arange(12 * EPOCH_LEN)
    mmcv = read_recipe(configs.path_of("retinanet_r50_fpn_1x_mmcv.py"), epoch_len=EPOCH_LEN)
    mmengine = read_recipe(configs.path_of("retinanet_r50_fpn_1x_mmengine.py"), epoch_len=EPOCH_LEN)
    assert mmcv.hyperparams == mmengine.hyperparams == dict(lr=0.01, momentum=0.9, weight_decay=0.0001)
    assert_schedule_matches(np.asarray(mmcv.schedules["lr"](0.01)(steps)), expected, precision, context="mmcv")
    curve = np.asarray(mmengine.schedules["lr"](0.01)(steps))
    assert_schedule_matches(curve[500:], expected[500:], precision, context="mmengine after warmup")
    stretched = 0.01 * (0.001 + 0.999 * np.minimum(np.arange(500) / 499, 1.0))
    assert_schedule_matches(curve[:500], stretched, precision, context="mmengine warmup")


def test_retinanet_1x_steps_as_mmcv_runner():
    """The MMCV form of the shipped RetinaNet config over 2 short epochs on the ResNet twin, against
    MMCV's runner (the config with its run shortened: the warmup then spans both epochs)."""
    cfg = purelr.load_config(configs.path_of("retinanet_r50_fpn_1x_mmcv.py"))
    cfg["runner"] = dict(type="EpochBasedRunner", max_epochs=2)
    cfg["lr_config"] = dict(cfg["lr_config"], warmup_iters=5, step=[1])
    expected = twins.run_mmcv(cfg, "resnet", 8, 0, epoch_len=4)
    twins.warm("resnet")
    with jax.enable_x64(True):
        actual = twins.run_purelr(cfg, "resnet", 8, 0, epoch_len=4)
    for name, value in expected.items():
        assert relative_error(actual[name], value, floor=trajectory_floor()) <= OPTIMIZER_RTOL["x64"], name


def test_timm_vit_recipe_layer_scales_and_curve():
    cfg = purelr.load_config(configs.path_of("timm_vit_finetune_layer_decay.py"))
    params = reference.flax_params("vit")
    layers = purelr.recipes.timm.layer_map_from_matcher(params, cfg["timm"]["group_matcher"])
    assert layers["cls_token"] == 0 and layers["blocks.1.mlp.fc1.kernel"] == 2 and layers["norm.scale"] == 2
    assert layers["head.kernel"] == 3
    tx = purelr.build(cfg, params, epoch_len=10)
    state = tx.init(params)
    _, state = tx.update(jax.tree.map(jnp.ones_like, params), state, params)
    lrs = {label: float(h["lr"]) for label, h in purelr.params.groups.hyperparams_in_force(state).items()}
    assert lrs["layer_3_decay"] == pytest.approx(1e-6) and lrs["layer_0_no_decay"] == pytest.approx(1e-6 * 0.65**3)
