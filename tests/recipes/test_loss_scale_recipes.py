"""Float16 recipes built by ``purelr.build`` side by side with the originals that run them:
MMEngine's ``AmpOptimWrapper`` and MMCV 1.7.2's ``Fp16OptimizerHook`` /
``GradientCumulativeFp16OptimizerHook`` (with torch >= 1.6 both scale with torch's GradScaler),
on the twins of tests/recipes/twins.py (float64, a loss whose gradients carry overflows at a few
iterations: an infinity or a NaN in one parameter).

Shims, CPU only: both originals import ``torch.cuda.amp.GradScaler``, which disables itself
without CUDA ('GradScaler is enabled, but CUDA is not available. Disabling.'), and
``AmpOptimWrapper`` asserts that CUDA is available. The test gives them torch's CPU GradScaler
(``torch.amp.GradScaler('cpu')``, the same arithmetic: ``_amp_update_scale_``'s CPU kernel) and a
CUDA check that says yes; nothing else of theirs changes. The optimizer settings are the real
configs' (named below); the runs are shortened to ``epoch_len * max_epochs`` iterations.
"""

import copy
import functools

import jax
import numpy as np
import pytest
import torch

import purelr
from purelr.training.loss_scale import loss_scale
from tests.parity import OPTIMIZER_RTOL, relative_error, trajectory_floor
from tests.recipes import twins

MODEL = "resnet"
EPOCH_LEN = 3
SCHEDULE_1X = dict(policy="step", warmup="linear", warmup_iters=5, warmup_ratio=0.001, step=[3, 5])
MMCV_RUNNER = dict(type="EpochBasedRunner", max_epochs=6)
MMENGINE_SCHEDULERS = [
    dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=5),
    dict(type="MultiStepLR", begin=0, end=6, by_epoch=True, milestones=[3, 5], gamma=0.1),
]
MMENGINE_LOOP = dict(type="EpochBasedTrainLoop", max_epochs=6)
FAST_GROWTH = dict(init_scale=512.0, growth_interval=2)  # to see the scale grow within the run

SGD_MMDET = dict(type="SGD", lr=0.01, momentum=0.9, weight_decay=0.0001)
SGD_MMSEG = dict(type="SGD", lr=0.01, momentum=0.9, weight_decay=0.0005)
MMENGINE_CONFIGS = {
    # mmdet 3.3.0 lad/lad_r101-paa-r50_fpn_2xb8_coco_1x.py (loss_scale: 'dynamic', the default)
    "mmdet3-lad-amp": dict(type="AmpOptimWrapper", optimizer=SGD_MMDET),
    # mmsegmentation 1.2.2 deeplabv3/deeplabv3_r101-d8_4xb2-amp-80k_cityscapes-512x1024.py
    "mmseg1-deeplabv3-amp": dict(type="AmpOptimWrapper", loss_scale=512.0, optimizer=SGD_MMSEG),
    # mmpretrain 1.2.0 beit/beit_beit-base-p16_8xb256-amp-coslr-300e_in1k.py (its clip_grad and
    # AdamW; the scaler's growth hurried by a dict loss_scale, accumulation added)
    "mmpretrain-beit-amp": dict(
        type="AmpOptimWrapper",
        loss_scale=FAST_GROWTH,
        clip_grad=dict(max_norm=3.0),
        accumulative_counts=2,
        optimizer=dict(type="AdamW", lr=0.0015, betas=(0.9, 0.999), weight_decay=0.05),
    ),
    # mmpose 1.3.2 td-hm_hrnet-w32_fp16-8xb64-210e_coco-256x192.py (bfloat16: MMEngine scales anyway)
    "mmpose-hrnet-fp16": dict(
        type="AmpOptimWrapper", loss_scale="dynamic", dtype="bfloat16", optimizer=dict(type="Adam", lr=0.0005)
    ),
}
MMCV_CONFIGS = {
    # mmdet 2.28.2 retinanet/retinanet_r50_fpn_fp16_1x_coco.py: fp16 beside a plain optimizer_config
    "mmdet2-retinanet-fp16": dict(
        optimizer=SGD_MMDET,
        fp16=dict(loss_scale=512.0),
        optimizer_config=dict(grad_clip=dict(max_norm=35, norm_type=2)),
    ),
    # mmsegmentation 0.30.0 deeplabv3/deeplabv3_r101-d8_fp16_512x1024_80k_cityscapes.py: the hook
    # named, fp16 = dict() a placeholder
    "mmseg0-deeplabv3-fp16": dict(
        optimizer=SGD_MMSEG, fp16=dict(), optimizer_config=dict(type="Fp16OptimizerHook", loss_scale=512.0)
    ),
    # mmdet 2.28.2 fcos/fcos_r50_caffe_fpn_gn-head_fp16_1x_bs8x8_coco.py (dynamic, clipped, paramwise)
    "mmdet2-fcos-fp16": dict(
        optimizer=dict(SGD_MMDET, lr=0.04, paramwise_cfg=dict(bias_lr_mult=2.0, bias_decay_mult=0.0)),
        fp16=dict(loss_scale="dynamic"),
        optimizer_config=dict(grad_clip=dict(max_norm=35, norm_type=2)),
    ),
    # mmsegmentation 0.30.0 beit/upernet_beit-large_fp16_8x1_640x640_160k_ade20k.py's hook (its
    # AdamW; the scaler's growth hurried as above)
    "mmseg0-beit-cumulative-fp16": dict(
        optimizer=dict(type="AdamW", lr=3e-5, betas=(0.9, 0.999), weight_decay=0.05),
        fp16=dict(),
        optimizer_config=dict(type="GradientCumulativeFp16OptimizerHook", cumulative_iters=2, loss_scale=FAST_GROWTH),
    ),
}
OVERFLOWS = {2: np.inf, 7: np.nan, 8: -np.inf, 13: np.inf}  # iteration: the value put in one gradient


def _with_overflows(problem):
    @functools.lru_cache(maxsize=None)
    def patched(name, steps, seed):
        torch_names, flax_names, initial, gradients = problem(name, steps, seed)
        gradients = [g.copy() for g in gradients]
        for k, value in OVERFLOWS.items():
            gradients[k % len(gradients)][k].flat[0] = value
        return torch_names, flax_names, initial, gradients

    return patched


@pytest.fixture
def cpu_amp(monkeypatch):
    from mmcv.runner.hooks import optimizer as mmcv_hooks
    from mmengine.optim.optimizer import amp_optimizer_wrapper

    cpu_scaler = functools.partial(torch.amp.GradScaler, "cpu")
    monkeypatch.setattr(mmcv_hooks, "GradScaler", cpu_scaler)
    monkeypatch.setattr(amp_optimizer_wrapper, "GradScaler", cpu_scaler)
    monkeypatch.setattr(amp_optimizer_wrapper, "is_cuda_available", lambda: True)
    monkeypatch.setattr(twins, "problem", _with_overflows(twins.problem))


def mmcv_hook_config(cfg):
    """What MMDetection 2.x's ``train_detector`` registers: ``Fp16OptimizerHook(**optimizer_config,
    **fp16)`` when the config has ``fp16`` and a plain hook; the hook as written otherwise."""
    cfg = copy.deepcopy(cfg)
    fp16 = cfg.pop("fp16", None)
    if fp16 is not None and "type" not in cfg["optimizer_config"]:
        cfg["optimizer_config"] = dict(type="Fp16OptimizerHook", **cfg["optimizer_config"], **fp16)
    return cfg


def check(style, name):
    if style == "mmengine":
        cfg = dict(optim_wrapper=MMENGINE_CONFIGS[name], param_scheduler=MMENGINE_SCHEDULERS, train_cfg=MMENGINE_LOOP)
        reference_cfg, run = cfg, twins.run_mmengine
    else:
        cfg = dict(MMCV_CONFIGS[name], lr_config=SCHEDULE_1X, runner=MMCV_RUNNER)
        reference_cfg, run = mmcv_hook_config(cfg), twins.run_mmcv
    steps = EPOCH_LEN * 6
    expected = run(copy.deepcopy(reference_cfg), MODEL, steps, 0, epoch_len=EPOCH_LEN)
    twins.warm(MODEL)
    with jax.enable_x64(True):
        actual = twins.run_purelr(cfg, MODEL, steps, 0, epoch_len=EPOCH_LEN)
    worst = 0.0
    for leaf, value in expected.items():
        assert np.all(np.isfinite(value)), f"{name} {leaf}: an overflowing step was not skipped"
        error = relative_error(actual[leaf], value, floor=trajectory_floor())
        assert error <= OPTIMIZER_RTOL["x64"], f"{name} {leaf}: {error:.3g}"
        worst = max(worst, error)
    return worst


DEFAULT = {
    "mmengine": ("mmpretrain-beit-amp", "mmseg1-deeplabv3-amp"),
    "mmcv": ("mmdet2-retinanet-fp16", "mmseg0-beit-cumulative-fp16"),
}
"""The configs of the default run (accumulation, clipping, static and growing scales, both ways of
asking MMCV for float16); the nightly run takes the others."""


@pytest.mark.usefixtures("cpu_amp")
@pytest.mark.parametrize("style, name", [(style, name) for style, names in DEFAULT.items() for name in names])
def test_amp_configs_train_as_the_originals(style, name):
    print(f"{name}: worst relative error {check(style, name):.3g}")


@pytest.mark.nightly
@pytest.mark.usefixtures("cpu_amp")
@pytest.mark.parametrize(
    "style, name",
    [
        (style, name)
        for style, configs in (("mmengine", MMENGINE_CONFIGS), ("mmcv", MMCV_CONFIGS))
        for name in sorted(configs)
        if name not in DEFAULT[style]
    ],
)
def test_more_amp_configs_train_as_the_originals(style, name):
    print(f"{name}: worst relative error {check(style, name):.3g}")


def test_the_built_scale_follows_the_config():
    params = {"w": jax.numpy.ones(2)}
    cases = {
        512.0: dict(optimizer=SGD_MMDET, fp16=dict(), runner=MMCV_RUNNER),
        2.0**16: dict(optim_wrapper=dict(type="AmpOptimWrapper", optimizer=SGD_MMDET), train_cfg=MMENGINE_LOOP),
        1.0: dict(
            optim_wrapper=dict(type="AmpOptimWrapper", loss_scale=dict(enabled=False), optimizer=SGD_MMDET),
            train_cfg=MMENGINE_LOOP,
        ),
        2.0**12: dict(
            optim_wrapper=dict(type="DeepSpeedOptimWrapper", optimizer=SGD_MMDET),
            train_cfg=MMENGINE_LOOP,
            strategy=dict(type="DeepSpeedStrategy", fp16=dict(enabled=True, initial_scale_power=12)),
        ),
    }
    for scale, cfg in cases.items():
        assert float(loss_scale(purelr.build(cfg, params, epoch_len=EPOCH_LEN).init(params))) == scale, cfg
    plain = dict(optim_wrapper=dict(optimizer=SGD_MMDET), train_cfg=MMENGINE_LOOP, fp16=dict(loss_scale=512.0))
    assert (
        float(loss_scale(purelr.build(plain, params, epoch_len=EPOCH_LEN).init(params))) == 1.0
    )  # Runner ignores fp16
