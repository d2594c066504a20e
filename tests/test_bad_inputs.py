"""Bad inputs to the public functions outside ``purelr.optim``: one table, one row per input.

Each row calls a public function with a wrong value, type or missing key and requires the stated
exception, raised by purelr's own check before anything is traced (the innermost frame of the
traceback is purelr's, not jax's, numpy's or Python's), with a message that names the argument or
config key and the value (``tests.bad_inputs.assert_rejects``). The optimizers' own arguments are
tabled in ``tests/optim``; here they appear only as config keys read by ``purelr.build``.

Documented acceptances (torch or the original accepts them, so purelr does too; each has a test at
the end): ``grad_clip.max_norm=inf`` (torch's clip_grad_norm_ with an infinite bound never clips),
MMEngine's ``flat_decay_mult`` without a base weight decay, a custom_keys entry of MMEngine carrying
any argument of the optimizer.
"""

import copy
import os

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import purelr
from purelr import optim
from purelr.params import module_kinds as kinds_lib
from purelr.params import paramwise as paramwise_lib
from purelr.params import timm as timm_groups
from purelr.recipes import registry
from purelr.recipes import timm as timm_recipes
from purelr.schedules import mmcv as mmcv_schedules
from purelr.schedules import mmengine as mmengine_schedules
from purelr.schedules import timm as timm_schedules
from purelr.schedules import torch as torch_schedules
from purelr.training import accumulate as accumulate_lib
from purelr.training import from_torch as from_torch_lib
from purelr.training import loss_scale as loss_scale_lib
from tests.bad_inputs import assert_purelr_rejects, assert_rejects

INF, NAN = float("inf"), float("nan")

PARAMS = {
    "backbone": {
        "conv": {"kernel": jnp.zeros((3, 3, 3, 4)), "bias": jnp.zeros(4)},
        "bn": {"scale": jnp.ones(4), "bias": jnp.zeros(4)},
    },
    "head": {"kernel": jnp.zeros((4, 2)), "bias": jnp.zeros(2)},
}
KINDS = {"backbone.conv": "conv", "backbone.bn": "norm"}

MMCV = dict(
    optimizer=dict(type="SGD", lr=0.01, momentum=0.9, weight_decay=1e-4),
    optimizer_config=dict(grad_clip=dict(max_norm=35, norm_type=2)),
    lr_config=dict(policy="step", warmup="linear", warmup_iters=5, warmup_ratio=0.001, step=[8, 11]),
    runner=dict(type="EpochBasedRunner", max_epochs=12),
)
MMENGINE = dict(
    optim_wrapper=dict(
        type="OptimWrapper",
        clip_grad=dict(max_norm=35, norm_type=2),
        optimizer=dict(type="SGD", lr=0.01, momentum=0.9, weight_decay=1e-4),
    ),
    param_scheduler=[
        dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=5),
        dict(type="MultiStepLR", by_epoch=True, begin=0, end=12, milestones=[8, 11]),
    ],
    train_cfg=dict(type="EpochBasedTrainLoop", max_epochs=12),
)
TIMM = dict(opt="adamw", lr=5e-4, weight_decay=0.05, sched="cosine", epochs=10, warmup_epochs=1)
DROP = object()


def edited(base: dict, edits: dict) -> dict:
    """``base`` deep-copied with ``{"a.b.0.c": value}`` set (``DROP`` removes the key)."""
    cfg = copy.deepcopy(base)
    for path, value in edits.items():
        *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
        node = cfg
        for part in parents:
            node = node[part]
        if value is DROP:
            del node[last]
        else:
            node[last] = value
    return cfg


def mmcv(edits, **kwargs):
    kwargs = {"epoch_len": 10, "module_kinds": KINDS, **kwargs}
    return lambda: purelr.build(edited(MMCV, edits), PARAMS, **kwargs)


def mmengine(edits, **kwargs):
    kwargs = {"epoch_len": 10, "module_kinds": KINDS, **kwargs}
    return lambda: purelr.build(edited(MMENGINE, edits), PARAMS, **kwargs)


def timm_build(edits, **kwargs):
    kwargs = {"epoch_len": 10, **kwargs}
    return lambda: purelr.build(dict(timm=edited(TIMM, edits)), PARAMS, **kwargs)


def lr_config(cfg, base=0.01, **lengths):
    lengths = lengths or {"epoch_len": 10, "max_epochs": 12}
    return lambda: mmcv_schedules.lr_config(cfg, base, **lengths)


def momentum_config(cfg, base=0.9, **lengths):
    lengths = lengths or {"epoch_len": 10, "max_epochs": 12}
    return lambda: mmcv_schedules.momentum_config(cfg, base, **lengths)


def param_scheduler(cfgs, base=0.01, **lengths):
    lengths = lengths or {"epoch_len": 10, "max_epochs": 12}
    return lambda: mmengine_schedules.param_scheduler(cfgs, base, **lengths)


def call(function, *args, **kwargs):
    return lambda: function(*args, **kwargs)


CASES = []


def case(name, thunk, exception, *needles):
    CASES.append(pytest.param(thunk, exception, needles, id=name))


# --- purelr.build, MMDetection 2.x (MMCV) configs -------------------------------------------------
case("mmcv-lr-str", mmcv({"optimizer.lr": "0.01"}), TypeError, "optimizer.lr", "'0.01'")
case("mmcv-lr-negative", mmcv({"optimizer.lr": -0.1}), ValueError, "optimizer.lr", "-0.1")
case("mmcv-lr-nan", mmcv({"optimizer.lr": NAN}), ValueError, "optimizer.lr", "nan")
case("mmcv-lr-inf", mmcv({"optimizer.lr": INF}), ValueError, "optimizer.lr", "inf")
case("mmcv-lr-none", mmcv({"optimizer.lr": None}), TypeError, "optimizer.lr", "None")
case("mmcv-lr-missing", mmcv({"optimizer.lr": DROP}), ValueError, "optimizer.lr", "missing")
case("mmcv-lr-list", mmcv({"optimizer.lr": [0.01]}), TypeError, "optimizer.lr", "[0.01]")
case("mmcv-momentum-str", mmcv({"optimizer.momentum": "0.9"}), TypeError, "momentum", "'0.9'")
case("mmcv-momentum-negative", mmcv({"optimizer.momentum": -0.9}), ValueError, "momentum", "-0.9")
case(
    "mmcv-weight-decay-negative",
    mmcv({"optimizer.weight_decay": -1e-4}),
    ValueError,
    "optimizer.weight_decay",
    "-0.0001",
)
case("mmcv-weight-decay-str", mmcv({"optimizer.weight_decay": "1e-4"}), TypeError, "optimizer.weight_decay", "'1e-4'")
case("mmcv-weight-decay-inf", mmcv({"optimizer.weight_decay": INF}), ValueError, "optimizer.weight_decay", "inf")
case(
    "mmcv-optimizer-typo-key",
    mmcv({"optimizer.momentm": 0.9}),
    ValueError,
    "optimizer",
    "'momentm'",
    "0.9",
    "did you mean ['momentum']",
)
case("mmcv-optimizer-type-typo", mmcv({"optimizer.type": "SDG"}), ValueError, "optimizer.type", "'SDG'", "SGD")
case("mmcv-optimizer-type-none", mmcv({"optimizer.type": None}), ValueError, "optimizer.type", "None")
case("mmcv-optimizer-type-missing", mmcv({"optimizer.type": DROP}), ValueError, "optimizer", "type")
case("mmcv-optimizer-not-dict", mmcv({"optimizer": "SGD"}), ValueError, "optimizer", "'SGD'")
case("mmcv-optimizer-none", mmcv({"optimizer": None}), ValueError, "optimizer", "None")
case(
    "mmcv-sgd-nesterov-no-momentum",
    mmcv({"optimizer.momentum": 0.0, "optimizer.nesterov": True}),
    ValueError,
    "optimizer",
    "Nesterov",
    "momentum=0.0",
)
case(
    "mmcv-adam-betas-bad",
    mmcv({"optimizer.type": "Adam", "optimizer.momentum": DROP, "optimizer.betas": (1.5, 0.999)}),
    ValueError,
    "optimizer",
    "betas",
    "1.5",
)
case(
    "mmcv-constructor-typo",
    mmcv({"optimizer.constructor": "DefaultOptimizerConstrutor"}),
    ValueError,
    "constructor",
    "'DefaultOptimizerConstrutor'",
    "DefaultOptimizerConstructor",
)
case(
    "mmcv-custom-lr-mult-negative",
    mmcv({"optimizer.paramwise_cfg": dict(custom_keys={"head": dict(lr_mult=-1)})}),
    ValueError,
    "paramwise_cfg.custom_keys['head'].lr_mult must be >= 0, got -1",
)
case(
    "mmcv-custom-decay-mult-negative",
    mmcv({"optimizer.paramwise_cfg": dict(custom_keys={"head": dict(decay_mult=-1)})}),
    ValueError,
    "paramwise_cfg.custom_keys['head'].decay_mult must be >= 0, got -1",
)
for _value, _needle, _exc in (
    (INF, "inf", ValueError),
    (NAN, "nan", ValueError),
    ("0.1", "'0.1'", TypeError),
    (None, "None", TypeError),
):
    for _mult in ("lr_mult", "decay_mult"):
        case(
            f"mmcv-custom-{_mult}-{_needle}",
            mmcv({"optimizer.paramwise_cfg": dict(custom_keys={"head": {_mult: _value}})}),
            _exc,
            f"paramwise_cfg.custom_keys['head'].{_mult}",
            _needle,
        )
case(
    "mmcv-custom-typo",
    mmcv({"optimizer.paramwise_cfg": dict(custom_keys={"head": dict(lr_mul=0.1)})}),
    ValueError,
    "paramwise_cfg.custom_keys['head']",
    "lr_mul",
    "0.1",
    "lr_mult",
    "decay_mult",
)
case(
    "mmcv-custom-momentum",
    mmcv({"optimizer.paramwise_cfg": dict(custom_keys={"head": dict(momentum=0.5)})}),
    ValueError,
    "paramwise_cfg.custom_keys['head']",
    "momentum",
    "0.5",
    "lr_mult",
)
case(
    "mmcv-custom-not-dict",
    mmcv({"optimizer.paramwise_cfg": dict(custom_keys=["head"])}),
    TypeError,
    "paramwise_cfg.custom_keys",
    "['head']",
)
case(
    "mmcv-custom-entry-not-dict",
    mmcv({"optimizer.paramwise_cfg": dict(custom_keys={"head": 0.1})}),
    TypeError,
    "paramwise_cfg.custom_keys['head']",
    "0.1",
)
case(
    "mmcv-custom-key-not-str",
    mmcv({"optimizer.paramwise_cfg": dict(custom_keys={3: dict(lr_mult=0.1)})}),
    TypeError,
    "paramwise_cfg.custom_keys",
    "3",
)
case(
    "mmcv-custom-decay-no-wd",
    mmcv({"optimizer.weight_decay": DROP, "optimizer.paramwise_cfg": dict(custom_keys={"head": dict(decay_mult=0.1)})}),
    ValueError,
    "paramwise_cfg.custom_keys['head'].decay_mult",
    "0.1",
    "weight_decay",
)
case(
    "mmcv-paramwise-unknown-key",
    mmcv({"optimizer.paramwise_cfg": dict(norm_decay=0.0)}),
    ValueError,
    "paramwise_cfg",
    "'norm_decay'",
    "0.0",
    "norm_decay_mult",
)
case(
    "mmcv-paramwise-flat-decay",
    mmcv({"optimizer.paramwise_cfg": dict(flat_decay_mult=0.0)}),
    ValueError,
    "paramwise_cfg",
    "'flat_decay_mult'",
    "mmcv",
)
case(
    "mmcv-paramwise-not-dict",
    mmcv({"optimizer.paramwise_cfg": [("norm_decay_mult", 0.0)]}),
    TypeError,
    "paramwise_cfg",
    "norm_decay_mult",
)
case(
    "mmcv-norm-decay-no-wd",
    mmcv({"optimizer.weight_decay": DROP, "optimizer.paramwise_cfg": dict(norm_decay_mult=0.0)}),
    ValueError,
    "paramwise_cfg.norm_decay_mult",
    "0.0",
    "weight_decay",
)
case(
    "mmcv-bypass-duplicate-str",
    mmcv({"optimizer.paramwise_cfg": dict(bypass_duplicate="yes")}),
    TypeError,
    "paramwise_cfg.bypass_duplicate",
    "'yes'",
)
for _mult in paramwise_lib.MULT_KEYS:
    for _value, _needle, _exc in (
        (-1, "-1", ValueError),
        (INF, "inf", ValueError),
        (NAN, "nan", ValueError),
        ("1", "'1'", TypeError),
    ):
        case(
            f"mmcv-{_mult}-{_needle}",
            mmcv({"optimizer.paramwise_cfg": {_mult: _value}}),
            _exc,
            f"paramwise_cfg.{_mult}",
            _needle,
        )
case(
    "mmcv-grad-clip-max-norm-negative",
    mmcv({"optimizer_config.grad_clip.max_norm": -1}),
    ValueError,
    "optimizer_config.grad_clip.max_norm",
    "-1",
)
case(
    "mmcv-grad-clip-max-norm-str",
    mmcv({"optimizer_config.grad_clip.max_norm": "35"}),
    TypeError,
    "optimizer_config.grad_clip.max_norm",
    "'35'",
)
case(
    "mmcv-grad-clip-max-norm-missing",
    mmcv({"optimizer_config.grad_clip.max_norm": DROP}),
    ValueError,
    "optimizer_config.grad_clip.max_norm",
    "missing",
)
case(
    "mmcv-grad-clip-norm-type-str",
    mmcv({"optimizer_config.grad_clip.norm_type": "l2"}),
    TypeError,
    "optimizer_config.grad_clip.norm_type",
    "'l2'",
)
case(
    "mmcv-grad-clip-norm-type-nan",
    mmcv({"optimizer_config.grad_clip.norm_type": NAN}),
    ValueError,
    "optimizer_config.grad_clip.norm_type",
    "nan",
)
case(
    "mmcv-grad-clip-unknown-key",
    mmcv({"optimizer_config.grad_clip.max_nrom": 35}),
    ValueError,
    "optimizer_config.grad_clip",
    "max_nrom",
    "max_norm",
)
case(
    "mmcv-grad-clip-not-dict", mmcv({"optimizer_config.grad_clip": 35}), ValueError, "optimizer_config.grad_clip", "35"
)
case(
    "mmcv-optimizer-config-type",
    mmcv({"optimizer_config.type": "GradientCumulativeHook"}),
    ValueError,
    "optimizer_config.type",
    "'GradientCumulativeHook'",
    "GradientCumulativeOptimizerHook",
)
case(
    "mmcv-optimizer-config-unknown",
    mmcv({"optimizer_config.grad_clp": None}),
    ValueError,
    "optimizer_config",
    "grad_clp",
)
case("mmcv-optimizer-config-not-dict", mmcv({"optimizer_config": 35}), TypeError, "optimizer_config", "35")
for _value, _needle, _exc in (
    (0, "0", ValueError),
    (-2, "-2", ValueError),
    (2.5, "2.5", ValueError),
    ("4", "'4'", TypeError),
):
    case(
        f"mmcv-cumulative-iters-{_needle}",
        mmcv({"optimizer_config.type": "GradientCumulativeOptimizerHook", "optimizer_config.cumulative_iters": _value}),
        _exc,
        "optimizer_config.cumulative_iters",
        _needle,
    )
case("mmcv-max-epochs-zero", mmcv({"runner.max_epochs": 0}), ValueError, "runner.max_epochs", "0")
case("mmcv-max-epochs-str", mmcv({"runner.max_epochs": "12"}), TypeError, "runner.max_epochs", "'12'")
case(
    "mmcv-max-iters-negative",
    mmcv({"runner": dict(type="IterBasedRunner", max_iters=-5), "lr_config.by_epoch": False}),
    ValueError,
    "runner.max_iters",
    "-5",
)
case(
    "mmcv-runner-type-typo",
    mmcv({"runner.type": "EpochBaseRunner"}),
    ValueError,
    "runner.type",
    "'EpochBaseRunner'",
    "EpochBasedRunner",
)
case(
    "mmcv-runner-both-lengths", mmcv({"runner.max_iters": 120}), ValueError, "runner", "max_epochs", "max_iters", "120"
)
case("mmcv-runner-unknown-key", mmcv({"runner.max_epoch": 12}), ValueError, "runner", "max_epoch")
case("mmcv-runner-not-dict", mmcv({"runner": 12}), TypeError, "runner", "12")
case("mmcv-epoch-len-zero", mmcv({}, epoch_len=0), ValueError, "epoch_len", "0")
case("mmcv-epoch-len-str", mmcv({}, epoch_len="10"), TypeError, "epoch_len", "'10'")
case("mmcv-epoch-len-missing", mmcv({}, epoch_len=None), ValueError, "epoch_len", "None")
case("mmcv-policy-typo", mmcv({"lr_config.policy": "stpe"}), ValueError, "lr_config.policy", "'stpe'", "Step")
case("mmcv-policy-missing", mmcv({"lr_config.policy": DROP}), ValueError, "lr_config.policy", "None")
case("mmcv-lr-config-not-dict", mmcv({"lr_config": "step"}), TypeError, "lr_config", "'step'")
case("mmcv-step-unsorted", mmcv({"lr_config.step": [11, 8]}), ValueError, "lr_config.step", "[11, 8]")
case("mmcv-step-negative", mmcv({"lr_config.step": [-1, 8]}), ValueError, "lr_config.step[0]", "-1")
case("mmcv-step-str", mmcv({"lr_config.step": "8"}), TypeError, "lr_config.step", "'8'")
case("mmcv-step-zero-int", mmcv({"lr_config.step": 0}), ValueError, "lr_config.step", "0")
case("mmcv-step-missing", mmcv({"lr_config.step": DROP}), TypeError, "lr_config.step", "required")
case("mmcv-gamma-negative", mmcv({"lr_config.gamma": -0.1}), ValueError, "lr_config.gamma", "-0.1")
case("mmcv-gamma-str", mmcv({"lr_config.gamma": "0.1"}), TypeError, "lr_config.gamma", "'0.1'")
case("mmcv-gamma-inf", mmcv({"lr_config.gamma": INF}), ValueError, "lr_config.gamma", "inf")
case("mmcv-warmup-typo", mmcv({"lr_config.warmup": "lineer"}), ValueError, "lr_config.warmup", "'lineer'", "linear")
case("mmcv-warmup-iters-negative", mmcv({"lr_config.warmup_iters": -5}), ValueError, "lr_config.warmup_iters", "-5")
case("mmcv-warmup-ratio-zero", mmcv({"lr_config.warmup_ratio": 0}), ValueError, "lr_config.warmup_ratio", "0")
case("mmcv-warmup-ratio-big", mmcv({"lr_config.warmup_ratio": 2}), ValueError, "lr_config.warmup_ratio", "2")
case("mmcv-by-epoch-str", mmcv({"lr_config.by_epoch": "yes"}), TypeError, "lr_config.by_epoch", "'yes'")
case("mmcv-lr-config-unknown-key", mmcv({"lr_config.gama": 0.5}), TypeError, "lr_config", "gama")
case(
    "mmcv-momentum-policy-typo",
    mmcv({"momentum_config": dict(policy="cosin", min_momentum_ratio=0.9)}),
    ValueError,
    "momentum_config.policy",
    "'cosin'",
)
case(
    "mmcv-momentum-no-momentum",
    mmcv({"optimizer.momentum": DROP, "momentum_config": dict(policy="CosineAnnealing", min_momentum=0.9)}),
    ValueError,
    "momentum",
    "optimizer.momentum",
)
case("mmcv-config-not-dict", call(purelr.build, ["optimizer"], PARAMS), TypeError, "config", "['optimizer']")
case("mmcv-config-no-optimizer", call(purelr.build, dict(lr_config=None), PARAMS), ValueError, "optimizer", "lr_config")
case(
    "mmcv-module-kinds-bad-kind",
    mmcv({}, module_kinds={"backbone.bn": "batchnorm"}),
    ValueError,
    "module_kinds['backbone.bn']",
    "'batchnorm'",
    "norm",
)
case(
    "mmcv-module-kinds-no-such-path",
    mmcv({}, module_kinds={"neck": "norm"}),
    ValueError,
    "module_kinds['neck']",
    "'norm'",
)
case("mmcv-frozen-no-match", mmcv({}, frozen="neck"), ValueError, "frozen", "'neck'")
case(
    "mmcv-custom-imports-missing",
    mmcv({"custom_imports": dict(imports=["no_such_module_xyz"])}),
    ImportError,
    "custom_imports.imports",
    "'no_such_module_xyz'",
)
case(
    "mmcv-custom-imports-typo",
    mmcv({"custom_imports": dict(imports=[], allow_failed=True)}),
    ValueError,
    "custom_imports",
    "allow_failed",
)
case("mmcv-custom-imports-int", mmcv({"custom_imports": dict(imports=3)}), TypeError, "custom_imports.imports", "3")
case(
    "mmcv-empty-params",
    call(purelr.build, MMCV, {"head": {}}, epoch_len=10),
    ValueError,
    "params",
    "{'head': {}}",
    "empty parameter list",
)
case("mmcv-params-none", call(purelr.build, MMCV, None, epoch_len=10), ValueError, "params", "None")
case("register-name-int", call(registry.register_optimizer, 3), TypeError, "register_optimizer", "3")
case("mmcv-custom-imports-not-dict", mmcv({"custom_imports": ["os"]}), ValueError, "custom_imports", "['os']")

# --- purelr.build, MMEngine configs ----------------------------------------------------------------
case("mme-lr-str", mmengine({"optim_wrapper.optimizer.lr": "0.01"}), TypeError, "optim_wrapper.optimizer.lr", "'0.01'")
case("mme-lr-negative", mmengine({"optim_wrapper.optimizer.lr": -1}), ValueError, "optim_wrapper.optimizer.lr", "-1")
case(
    "mme-weight-decay-negative",
    mmengine({"optim_wrapper.optimizer.weight_decay": -1}),
    ValueError,
    "optim_wrapper.optimizer.weight_decay",
    "-1",
)
case(
    "mme-optimizer-missing", mmengine({"optim_wrapper.optimizer": DROP}), ValueError, "optim_wrapper.optimizer", "None"
)
case(
    "mme-optimizer-type-typo",
    mmengine({"optim_wrapper.optimizer.type": "AdamW_"}),
    ValueError,
    "optim_wrapper.optimizer.type",
    "'AdamW_'",
    "AdamW",
)
case(
    "mme-wrapper-type",
    mmengine({"optim_wrapper.type": "AmpOptimWraper"}),
    ValueError,
    "optim_wrapper.type",
    "'AmpOptimWraper'",
)
# loss scaling (issue 18): AmpOptimWrapper / Fp16OptimizerHook / fp16 / DeepSpeed's fp16, and the twins
_AMP = {"optim_wrapper.type": "AmpOptimWrapper"}
for _name, _value, _exc, _needles in (
    ("unknown-string", "dymanic", ValueError, ("optim_wrapper.loss_scale", "'dymanic'", "dynamic")),
    ("int", 512, TypeError, ("optim_wrapper.loss_scale", "512")),
    ("zero", 0.0, ValueError, ("optim_wrapper.loss_scale", "0.0")),
    ("negative", -512.0, ValueError, ("optim_wrapper.loss_scale", "-512.0")),
    ("growth-one", dict(growth_factor=1.0), ValueError, ("optim_wrapper.loss_scale.growth_factor", "1.0")),
    ("backoff-one", dict(backoff_factor=1.0), ValueError, ("optim_wrapper.loss_scale.backoff_factor", "1.0")),
    ("backoff-zero", dict(backoff_factor=0.0), ValueError, ("optim_wrapper.loss_scale.backoff_factor", "0.0")),
    ("interval-zero", dict(growth_interval=0), ValueError, ("optim_wrapper.loss_scale.growth_interval", "0")),
    ("unknown-key", dict(init_scal=2.0), ValueError, ("optim_wrapper.loss_scale", "init_scal")),
):
    case(f"mme-amp-loss-scale-{_name}", mmengine({**_AMP, "optim_wrapper.loss_scale": _value}), _exc, *_needles)
case("mme-amp-dtype", mmengine({**_AMP, "optim_wrapper.dtype": "half"}), ValueError, "optim_wrapper.dtype", "'half'")
case("mme-amp-fsdp", mmengine({**_AMP, "optim_wrapper.use_fsdp": True}), ValueError, "optim_wrapper.use_fsdp")
_DS = {"optim_wrapper.type": "DeepSpeedOptimWrapper"}
case(
    "mme-deepspeed-window",
    mmengine({**_DS, "strategy": dict(fp16=dict(enabled=True, loss_scale_window=0))}),
    ValueError,
    "strategy.fp16.loss_scale_window",
    "0",
)
case(
    "mme-deepspeed-hysteresis",
    mmengine({**_DS, "strategy": dict(fp16=dict(enabled=True, hysteresis=0))}),
    ValueError,
    "strategy.fp16.hysteresis",
    "0",
)
case(
    "mme-deepspeed-loss-scale",
    mmengine({**_DS, "strategy": dict(fp16=dict(enabled=True, loss_scale=-1))}),
    ValueError,
    "strategy.fp16.loss_scale",
    "-1",
)
case(
    "mme-deepspeed-clipping",
    mmengine({**_DS, "strategy": dict(gradient_clipping=1.0)}),
    ValueError,
    "strategy.gradient_clipping",
    "1.0",
)
case(
    "mme-deepspeed-wrapper-clip",
    mmengine({**_DS, "optim_wrapper.clip_grad": dict(max_norm=1.0)}),
    ValueError,
    "DeepSpeedOptimWrapper",
    "clip_grad",
)
case("mmcv-fp16-loss-scale-int", mmcv({"fp16": dict(loss_scale=512)}), TypeError, "fp16.loss_scale", "512")
case("mmcv-fp16-loss-scale-typo", mmcv({"fp16": dict(loss_scale="dynamc")}), ValueError, "fp16.loss_scale", "'dynamc'")
case("mmcv-fp16-unknown-key", mmcv({"fp16": dict(los_scale=512.0)}), ValueError, "fp16", "los_scale")
case(
    "mmcv-fp16-hook-loss-scale",
    mmcv({"optimizer_config": dict(type="Fp16OptimizerHook", loss_scale=-1.0)}),
    ValueError,
    "optimizer_config.loss_scale",
    "-1.0",
)
case(
    "mmcv-fp16-disagree",
    mmcv({"optimizer_config": dict(type="Fp16OptimizerHook", loss_scale=512.0), "fp16": dict(loss_scale="dynamic")}),
    ValueError,
    "fp16.loss_scale",
    "512.0",
)
case(
    "mmcv-fp16-cumulative-plain-hook",
    mmcv({"optimizer_config": dict(type="GradientCumulativeOptimizerHook", cumulative_iters=2), "fp16": dict()}),
    ValueError,
    "fp16",
    "GradientCumulativeOptimizerHook",
)
for _name, _call, _needles in (
    ("growth-factor", lambda: loss_scale_lib.grad_scaler(growth_factor=0.5), ("growth_factor", "0.5")),
    ("backoff-factor", lambda: loss_scale_lib.grad_scaler(backoff_factor=1.5), ("backoff_factor", "1.5")),
    ("growth-interval", lambda: loss_scale_lib.grad_scaler(growth_interval=0), ("growth_interval", "0")),
    ("init-scale", lambda: loss_scale_lib.grad_scaler(init_scale=0.0), ("init_scale", "0.0")),
    ("mmcv-mode", lambda: loss_scale_lib.mmcv_loss_scaler(mode="dynamc"), ("mode", "'dynamc'")),
    ("mmcv-window", lambda: loss_scale_lib.mmcv_loss_scaler(scale_window=0), ("scale_window", "0")),
    ("deepspeed-min-scale", lambda: loss_scale_lib.dynamic_loss_scaler(min_scale=0), ("min_scale", "0")),
    ("deepspeed-delayed-shift", lambda: loss_scale_lib.dynamic_loss_scaler(delayed_shift=0), ("delayed_shift", "0")),
    ("deepspeed-static", lambda: loss_scale_lib.static_loss_scaler(-2.0), ("scale", "-2.0")),
):
    case(f"loss-scale-{_name}", _call, ValueError, *_needles)
case(
    "loss-scaled-scaler",
    lambda: loss_scale_lib.loss_scaled(optim.sgd(0.1), "dynamic"),
    TypeError,
    "scaler",
    "'dynamic'",
)
case("mme-wrapper-not-dict", mmengine({"optim_wrapper": "OptimWrapper"}), TypeError, "optim_wrapper", "'OptimWrapper'")
case("mme-wrapper-unknown-key", mmengine({"optim_wrapper.clip_gard": None}), ValueError, "optim_wrapper", "clip_gard")
for _value, _needle, _exc in ((0, "0", ValueError), (-1, "-1", ValueError), ("2", "'2'", TypeError)):
    case(
        f"mme-accumulative-counts-{_needle}",
        mmengine({"optim_wrapper.accumulative_counts": _value}),
        _exc,
        "optim_wrapper.accumulative_counts",
        _needle,
    )
case(
    "mme-clip-type-typo",
    mmengine({"optim_wrapper.clip_grad": dict(type="vlaue", clip_value=1)}),
    ValueError,
    "optim_wrapper.clip_grad.type",
    "'vlaue'",
    "value",
)
case(
    "mme-clip-value-negative",
    mmengine({"optim_wrapper.clip_grad": dict(type="value", clip_value=-1)}),
    ValueError,
    "optim_wrapper.clip_grad.clip_value",
    "-1",
)
case(
    "mme-clip-value-missing",
    mmengine({"optim_wrapper.clip_grad": dict(type="value")}),
    ValueError,
    "optim_wrapper.clip_grad.clip_value",
    "missing",
)
case(
    "mme-clip-value-unknown-key",
    mmengine({"optim_wrapper.clip_grad": dict(type="value", clip_value=1, max_norm=2)}),
    ValueError,
    "optim_wrapper.clip_grad",
    "max_norm",
    "clip_value",
)
case(
    "mme-clip-norm-negative",
    mmengine({"optim_wrapper.clip_grad.max_norm": -35}),
    ValueError,
    "optim_wrapper.clip_grad.max_norm",
    "-35",
)
case(
    "mme-flat-decay-mult-negative",
    mmengine({"optim_wrapper.paramwise_cfg": dict(flat_decay_mult=-1)}),
    ValueError,
    "paramwise_cfg.flat_decay_mult",
    "-1",
)
case(
    "mme-flat-decay-mult-nan",
    mmengine({"optim_wrapper.paramwise_cfg": dict(flat_decay_mult=NAN)}),
    ValueError,
    "paramwise_cfg.flat_decay_mult",
    "nan",
)
case(
    "mme-norm-decay-mult-negative",
    mmengine({"optim_wrapper.paramwise_cfg": dict(norm_decay_mult=-1)}),
    ValueError,
    "paramwise_cfg.norm_decay_mult must be >= 0, got -1",
)
case(
    "mme-custom-lr-mult-negative",
    mmengine({"optim_wrapper.paramwise_cfg": dict(custom_keys={"head": dict(lr_mult=-1)})}),
    ValueError,
    "paramwise_cfg.custom_keys['head'].lr_mult must be >= 0, got -1",
)
case(
    "mme-custom-typo",
    mmengine({"optim_wrapper.paramwise_cfg": dict(custom_keys={"head": dict(lr_mul=0.1)})}),
    ValueError,
    "paramwise_cfg.custom_keys['head']",
    "lr_mul",
    "0.1",
    "lr_mult",
    "momentum",
)
case(
    "mme-custom-option-bad",
    mmengine({"optim_wrapper.paramwise_cfg": dict(custom_keys={"head": dict(momentum=-1)})}),
    ValueError,
    "paramwise_cfg.custom_keys['head']",
    "momentum",
    "-1",
)
case(
    "mme-custom-lr-str",
    mmengine({"optim_wrapper.paramwise_cfg": dict(custom_keys={"head": dict(lr="0.1")})}),
    TypeError,
    "paramwise_cfg.custom_keys['head']",
    "lr",
    "'0.1'",
)
case(
    "mme-paramwise-unknown",
    mmengine({"optim_wrapper.paramwise_cfg": dict(bias_lr=0.1)}),
    ValueError,
    "paramwise_cfg",
    "'bias_lr'",
    "bias_lr_mult",
)
case(
    "mme-scheduler-type-typo",
    mmengine({"param_scheduler.1.type": "MultiStepLr"}),
    ValueError,
    "param_scheduler[1].type",
    "'MultiStepLr'",
    "MultiStepLR",
)
case(
    "mme-scheduler-not-dict",
    mmengine({"param_scheduler.1": "MultiStepLR"}),
    TypeError,
    "param_scheduler",
    "'MultiStepLR'",
)
case(
    "mme-scheduler-milestones-unsorted",
    mmengine({"param_scheduler.1.milestones": [11, 8]}),
    ValueError,
    "milestones",
    "[11, 8]",
)
case("mme-scheduler-gamma-negative", mmengine({"param_scheduler.1.gamma": -0.1}), ValueError, "gamma", "-0.1")
case(
    "mme-scheduler-begin-after-end",
    mmengine({"param_scheduler.1.begin": 12, "param_scheduler.1.end": 3}),
    ValueError,
    "param_scheduler[1]",
    "begin",
    "12",
)
case(
    "mme-scheduler-start-factor-zero",
    mmengine({"param_scheduler.0.start_factor": 0}),
    ValueError,
    "param_scheduler[0].start_factor",
    "0",
)
case(
    "mme-scheduler-by-epoch-str",
    mmengine({"param_scheduler.0.by_epoch": "no"}),
    TypeError,
    "param_scheduler[0].by_epoch",
    "'no'",
)
case(
    "mme-scheduler-unknown-key",
    mmengine({"param_scheduler.1.milestone": [8]}),
    TypeError,
    "param_scheduler[1]",
    "milestone",
)
case("mme-max-epochs-zero", mmengine({"train_cfg.max_epochs": 0}), ValueError, "train_cfg.max_epochs", "0")
case("mme-max-epochs-float", mmengine({"train_cfg.max_epochs": 1.5}), ValueError, "train_cfg.max_epochs", "1.5")
case(
    "mme-train-loop-typo",
    mmengine({"train_cfg.type": "EpochBasedTrainLop"}),
    ValueError,
    "train_cfg.type",
    "'EpochBasedTrainLop'",
    "EpochBasedTrainLoop",
)
case("mme-train-cfg-not-dict", mmengine({"train_cfg": 12}), TypeError, "train_cfg", "12")
case(
    "mme-constructor-typo",
    mmengine({"optim_wrapper.constructor": "LayerDecay"}),
    ValueError,
    "constructor",
    "'LayerDecay'",
)

# --- timm: create_optimizer_v2, create_scheduler_v2, build(dict(timm=...)) -------------------------
case("timm-opt-typo", call(timm_recipes.create_optimizer_v2, PARAMS, "adamx", 0.1), ValueError, "'adamx'", "adamax")
case("timm-opt-not-str", call(timm_recipes.create_optimizer_v2, PARAMS, 3, 0.1), TypeError, "opt", "3")
case(
    "timm-opt-unknown",
    call(timm_recipes.create_optimizer_v2, PARAMS, "shampoo", 0.1),
    ValueError,
    "'shampoo'",
    "adamw",
)
case("timm-lr-str", call(timm_recipes.create_optimizer_v2, PARAMS, "adamw", "0.1"), TypeError, "lr", "'0.1'")
case("timm-lr-negative", call(timm_recipes.create_optimizer_v2, PARAMS, "adamw", -0.1), ValueError, "lr", "-0.1")
case("timm-lr-nan", call(timm_recipes.create_optimizer_v2, PARAMS, "adamw", NAN), ValueError, "lr", "nan")
case(
    "timm-weight-decay-negative",
    call(timm_recipes.create_optimizer_v2, PARAMS, "adamw", 0.1, -0.05),
    ValueError,
    "weight_decay",
    "-0.05",
)
case(
    "timm-weight-decay-str",
    call(timm_recipes.create_optimizer_v2, PARAMS, "adamw", 0.1, "0.05"),
    TypeError,
    "weight_decay",
    "'0.05'",
)
case(
    "timm-momentum-negative",
    call(timm_recipes.create_optimizer_v2, PARAMS, "sgd", 0.1, momentum=-0.9),
    ValueError,
    "momentum",
    "-0.9",
)
case(
    "timm-layer-decay-no-map",
    call(timm_recipes.create_optimizer_v2, PARAMS, "adamw", 0.1, layer_decay=0.7),
    ValueError,
    "layer_decay",
    "0.7",
    "layer_map",
)
case(
    "timm-layer-decay-negative",
    call(timm_recipes.create_optimizer_v2, PARAMS, "adamw", 0.1, layer_decay=-0.7, layer_map={"head.kernel": 1}),
    ValueError,
    "layer_decay",
    "-0.7",
)
case(
    "timm-layer-decay-str",
    call(timm_recipes.create_optimizer_v2, PARAMS, "adamw", 0.1, layer_decay="0.7", layer_map={"head.kernel": 1}),
    TypeError,
    "layer_decay",
    "'0.7'",
)
case(
    "timm-layer-decay-min-scale",
    call(
        timm_recipes.create_optimizer_v2,
        PARAMS,
        "adamw",
        0.1,
        layer_decay=0.7,
        layer_decay_min_scale=-1,
        layer_map={"head.kernel": 1},
    ),
    ValueError,
    "min_scale",
    "-1",
)
case(
    "timm-layer-map-unknown",
    call(timm_recipes.create_optimizer_v2, PARAMS, "adamw", 0.1, layer_decay=0.7, layer_map={"head.weight": 1}),
    ValueError,
    "layer_map",
    "head.weight",
)
case(
    "timm-layer-map-str-layer",
    call(timm_recipes.create_optimizer_v2, PARAMS, "adamw", 0.1, layer_decay=0.7, layer_map={"head.kernel": "1"}),
    TypeError,
    "layer_map['head.kernel']",
    "'1'",
)
case(
    "timm-no-wd-list-str",
    call(timm_recipes.create_optimizer_v2, PARAMS, "adamw", 0.1, weight_decay=0.05, no_weight_decay_list="head.*"),
    TypeError,
    "no_weight_decay_list",
    "'head.*'",
)
case(
    "timm-unknown-kwarg",
    call(timm_recipes.create_optimizer_v2, PARAMS, "adamw", 0.1, betass=(0.9, 0.99)),
    TypeError,
    "betass",
)
case(
    "timm-betas-bad",
    call(timm_recipes.create_optimizer_v2, PARAMS, "adamw", 0.1, betas=(0.9, 1.5)),
    ValueError,
    "betas",
    "1.5",
)
case(
    "timm-sched-typo",
    call(timm_recipes.create_scheduler_v2, 0.1, sched="cosin", updates_per_epoch=10),
    ValueError,
    "sched",
    "'cosin'",
    "cosine",
)
case(
    "timm-sched-plateau",
    call(timm_recipes.create_scheduler_v2, 0.1, sched="plateau", updates_per_epoch=10),
    ValueError,
    "sched",
    "'plateau'",
)
case(
    "timm-sched-updates-zero",
    call(timm_recipes.create_scheduler_v2, 0.1, updates_per_epoch=0),
    ValueError,
    "updates_per_epoch",
    "0",
)
case(
    "timm-sched-base-inf",
    call(timm_recipes.create_scheduler_v2, INF, updates_per_epoch=10),
    ValueError,
    "base_lr",
    "inf",
)
case(
    "timm-sched-base-str", call(timm_recipes.create_scheduler_v2, "0.1", updates_per_epoch=10), TypeError, "lr", "'0.1'"
)
case(
    "timm-sched-epochs-zero",
    call(timm_recipes.create_scheduler_v2, 0.1, num_epochs=0, updates_per_epoch=10),
    ValueError,
    "num_epochs",
    "0",
)
case(
    "timm-sched-warmup-negative",
    call(timm_recipes.create_scheduler_v2, 0.1, warmup_epochs=-1, updates_per_epoch=10),
    ValueError,
    "warmup_epochs",
    "-1",
)
case(
    "timm-sched-min-lr-negative",
    call(timm_recipes.create_scheduler_v2, 0.1, min_lr=-1e-5, updates_per_epoch=10),
    ValueError,
    "min_lr",
    "-1e-05",
)
case(
    "timm-sched-decay-rate-negative",
    call(timm_recipes.create_scheduler_v2, 0.1, sched="step", decay_rate=-0.1, updates_per_epoch=10),
    ValueError,
    "decay_rate",
    "-0.1",
)
case(
    "timm-sched-decay-epochs-zero",
    call(timm_recipes.create_scheduler_v2, 0.1, sched="step", decay_epochs=0, updates_per_epoch=10),
    ValueError,
    "decay_t",
    "0",
)
case(
    "timm-sched-milestones-str",
    call(timm_recipes.create_scheduler_v2, 0.1, sched="multistep", decay_milestones="30", updates_per_epoch=10),
    TypeError,
    "decay_milestones",
    "'30'",
    "list",
)
case(
    "timm-sched-unknown-kwarg",
    call(timm_recipes.create_scheduler_v2, 0.1, warmup_epoch=3, updates_per_epoch=10),
    TypeError,
    "warmup_epoch",
)
case("timm-build-unknown-key", timm_build({"lr_nose": 0.1}), ValueError, "timm", "lr_nose", "lr_noise")
case("timm-build-lr-missing", timm_build({"lr": DROP}), ValueError, "timm.lr", "missing")
case("timm-build-lr-str", timm_build({"lr": "5e-4"}), TypeError, "timm.lr", "'5e-4'")
case("timm-build-lr-negative", timm_build({"lr": -5e-4}), ValueError, "timm.lr", "-0.0005")
case("timm-build-weight-decay-negative", timm_build({"weight_decay": -1}), ValueError, "timm.weight_decay", "-1")
case("timm-build-no-epoch-len", timm_build({}, epoch_len=None), ValueError, "timm.sched", "epoch_len")
case("timm-build-sched-typo", timm_build({"sched": "cosin"}), ValueError, "sched", "'cosin'", "cosine")
case("timm-build-epochs-zero", timm_build({"epochs": 0}), ValueError, "epochs", "0")
case("timm-build-opt-typo", timm_build({"opt": "adamww"}), ValueError, "'adamww'", "adamw")
case(
    "timm-build-not-dict",
    call(purelr.build, dict(timm=["adamw"]), PARAMS, epoch_len=10),
    TypeError,
    "timm",
    "['adamw']",
)
case(
    "timm-build-matcher-bad-regex",
    timm_build({"layer_decay": 0.7, "group_matcher": dict(blocks=r"^head(")}),
    ValueError,
    "group_matcher",
    "'^head('",
)
case(
    "timm-build-matcher-not-dict",
    timm_build({"layer_decay": 0.7, "group_matcher": r"^head"}),
    TypeError,
    "group_matcher",
    "'^head'",
)
case(
    "timm-build-matcher-and-map",
    timm_build({"layer_decay": 0.7, "group_matcher": dict(head=r"^head")}, layer_map={"head.kernel": 0}),
    ValueError,
    "group_matcher",
    "layer_map",
)
case("timm-build-opt-args-typo", timm_build({"opt_args": dict(amsgrd=True)}), TypeError, "amsgrd")

case(
    "timm-filter-bias-str",
    call(timm_recipes.create_optimizer_v2, PARAMS, "sgd", 0.1, filter_bias_and_bn="no"),
    TypeError,
    "filter_bias_and_bn",
    "'no'",
)
case(
    "timm-build-sched-on-updates-str",
    timm_build({"sched_on_updates": "yes"}),
    TypeError,
    "timm.sched_on_updates",
    "'yes'",
)
case(
    "timm-build-opt-args-not-dict",
    timm_build({"opt_args": [("amsgrad", True)]}),
    TypeError,
    "timm.opt_args",
    "[('amsgrad', True)]",
)
case(
    "timm-matcher-spec-int",
    call(timm_recipes.layer_map_from_matcher, PARAMS, dict(head=3)),
    ValueError,
    "group_matcher['head']",
    "3",
)
case(
    "timm-empty-params",
    call(timm_recipes.create_optimizer_v2, {}, "sgd", 0.1),
    ValueError,
    "params",
    "{}",
    "empty parameter list",
)

# --- purelr.params.timm ----------------------------------------------------------------------------
case(
    "params-timm-wd-negative",
    call(timm_groups.param_groups_weight_decay, PARAMS, -1e-5),
    ValueError,
    "weight_decay",
    "-1e-05",
)
case(
    "params-timm-wd-str",
    call(timm_groups.param_groups_weight_decay, PARAMS, "1e-5"),
    TypeError,
    "weight_decay",
    "'1e-5'",
)
case(
    "params-timm-no-wd-list-str",
    call(timm_groups.param_groups_weight_decay, PARAMS, 1e-5, True, "bias"),
    TypeError,
    "no_weight_decay_list",
    "'bias'",
)
case(
    "params-timm-layer-decay-nan",
    call(timm_groups.param_groups_layer_decay, PARAMS, {"head.kernel": 1}, layer_decay=NAN),
    ValueError,
    "layer_decay",
    "nan",
)
case(
    "params-timm-min-scale-str",
    call(timm_groups.param_groups_layer_decay, PARAMS, {"head.kernel": 1}, min_scale="0"),
    TypeError,
    "min_scale",
    "'0'",
)
case(
    "params-timm-no-opt-scale-negative",
    call(timm_groups.param_groups_layer_decay, PARAMS, {"head.kernel": 1}, no_opt_scale=-1),
    ValueError,
    "no_opt_scale",
    "-1",
)
case(
    "params-timm-layer-map-empty", call(timm_groups.param_groups_layer_decay, PARAMS, {}), ValueError, "layer_map", "{}"
)
case(
    "params-timm-layer-map-negative",
    call(timm_groups.param_groups_layer_decay, PARAMS, {"head.kernel": -1}),
    ValueError,
    "layer_map['head.kernel']",
    "-1",
)
case(
    "params-timm-layer-map-type",
    call(timm_groups.param_groups_layer_decay, PARAMS, [("head.kernel", 1)]),
    TypeError,
    "layer_map",
    "[('head.kernel', 1)]",
)

# --- purelr.params.paramwise / module_kinds directly -----------------------------------------------
case(
    "paramwise-style-typo",
    call(paramwise_lib.paramwise_labels, PARAMS, {}, weight_decay=1e-4, style="mmcv2"),
    ValueError,
    "style",
    "'mmcv2'",
    "mmcv",
)
case(
    "paramwise-weight-decay-str",
    call(paramwise_lib.paramwise_labels, PARAMS, {}, weight_decay="1e-4"),
    TypeError,
    "weight_decay",
    "'1e-4'",
)
case(
    "paramwise-module-kinds-not-dict",
    call(paramwise_lib.paramwise_labels, PARAMS, {}, weight_decay=1e-4, module_kinds=["backbone.bn"]),
    TypeError,
    "module_kinds",
    "['backbone.bn']",
)
case(
    "paramwise-direct-lr-str", call(paramwise_lib.paramwise, optim.sgd, PARAMS, {}, lr="0.1"), TypeError, "lr", "'0.1'"
)
case("module-kinds-not-flax", call(kinds_lib.module_kinds, "resnet50"), TypeError, "model", "'resnet50'")

# --- schedules: torch --------------------------------------------------------------------------------
for _value, _needle, _exc in (
    (INF, "inf", ValueError),
    (-INF, "-inf", ValueError),
    (NAN, "nan", ValueError),
    (-0.1, "-0.1", ValueError),
    ("0.1", "'0.1'", TypeError),
    (None, "None", TypeError),
):
    case(f"torch-step-lr-base-{_needle}", call(torch_schedules.step_lr, _value, 3), _exc, "base_lr", _needle)
case("torch-cosine-base-inf", call(torch_schedules.cosine_annealing_lr, INF, 10), ValueError, "base_lr", "inf")
case("torch-exponential-base-inf", call(torch_schedules.exponential_lr, INF, 0.9), ValueError, "base_lr", "inf")
case("torch-lambda-base-inf", call(torch_schedules.lambda_lr, INF, lambda s: 1.0), ValueError, "base_lr", "inf")
case("torch-swa-initial-inf", call(torch_schedules.swa_lr, INF, 0.05), ValueError, "initial_lr", "inf")
case("torch-swa-swa-lr-inf", call(torch_schedules.swa_lr, 0.1, INF), ValueError, "swa_lr", "inf")
case("torch-cyclic-max-inf", call(torch_schedules.cyclic_lr, 0.1, INF), ValueError, "max_lr", "inf")
case("torch-one-cycle-max-inf", call(torch_schedules.one_cycle_lr, INF, 100), ValueError, "max_lr", "inf")
for _value, _needle, _exc in (
    (0, "0", ValueError),
    (-3, "-3", ValueError),
    (1.5, "1.5", ValueError),
    ("3", "'3'", TypeError),
    (True, "True", TypeError),
    (2**31, "2147483648", ValueError),
):
    case(f"torch-step-size-{_needle}", call(torch_schedules.step_lr, 0.1, _value), _exc, "step_size", _needle)
case("torch-step-gamma-negative", call(torch_schedules.step_lr, 0.1, 3, -0.1), ValueError, "gamma", "-0.1")
case("torch-step-gamma-inf", call(torch_schedules.step_lr, 0.1, 3, INF), ValueError, "gamma", "inf")
case("torch-step-gamma-nan", call(torch_schedules.step_lr, 0.1, 3, NAN), ValueError, "gamma", "nan")
case("torch-multistep-unsorted", call(torch_schedules.multistep_lr, 0.1, [5, 2]), ValueError, "milestones", "[5, 2]")
case("torch-multistep-negative", call(torch_schedules.multistep_lr, 0.1, [-1, 2]), ValueError, "milestones[0]", "-1")
case("torch-multistep-int", call(torch_schedules.multistep_lr, 0.1, 5), TypeError, "milestones", "5")
case("torch-multistep-str", call(torch_schedules.multistep_lr, 0.1, "5"), TypeError, "milestones", "'5'")
case("torch-multistep-float", call(torch_schedules.multistep_lr, 0.1, [2.5]), ValueError, "milestones[0]", "2.5")
case("torch-constant-factor-big", call(torch_schedules.constant_lr, 0.1, factor=2), ValueError, "factor", "2")
case("torch-linear-start-zero", call(torch_schedules.linear_lr, 0.1, start_factor=0), ValueError, "start_factor", "0")
case("torch-linear-total-zero", call(torch_schedules.linear_lr, 0.1, total_iters=0), ValueError, "total_iters", "0")
case("torch-exponential-gamma-negative", call(torch_schedules.exponential_lr, 0.1, -0.5), ValueError, "gamma", "-0.5")
case("torch-polynomial-power-negative", call(torch_schedules.polynomial_lr, 0.1, power=-1), ValueError, "power", "-1")
case("torch-cosine-t-max-zero", call(torch_schedules.cosine_annealing_lr, 0.1, 0), ValueError, "T_max", "0")
case("torch-cosine-eta-min-inf", call(torch_schedules.cosine_annealing_lr, 0.1, 10, INF), ValueError, "eta_min", "inf")
case("torch-restarts-t0-zero", call(torch_schedules.cosine_annealing_warm_restarts, 0.1, 0), ValueError, "T_0", "0")
case(
    "torch-restarts-tmult-float",
    call(torch_schedules.cosine_annealing_warm_restarts, 0.1, 5, 1.5),
    ValueError,
    "T_mult",
    "1.5",
)
case(
    "torch-cyclic-mode-typo",
    call(torch_schedules.cyclic_lr, 0.1, 1.0, mode="triangle"),
    ValueError,
    "mode",
    "'triangle'",
    "triangular",
)
case(
    "torch-cyclic-step-up-zero",
    call(torch_schedules.cyclic_lr, 0.1, 1.0, step_size_up=0),
    ValueError,
    "step_size_up",
    "0",
)
case(
    "torch-one-cycle-strategy",
    call(torch_schedules.one_cycle_lr, 0.1, 100, anneal_strategy="cosine"),
    ValueError,
    "anneal_strategy",
    "'cosine'",
    "cos",
)
case("torch-one-cycle-pct", call(torch_schedules.one_cycle_lr, 0.1, 100, pct_start=1.5), ValueError, "pct_start", "1.5")
case(
    "torch-one-cycle-no-length",
    call(torch_schedules.one_cycle_lr, 0.1),
    ValueError,
    "total_steps",
    "steps_per_epoch",
    "got none",
)
case(
    "torch-one-cycle-div-zero",
    call(torch_schedules.one_cycle_lr, 0.1, 100, div_factor=0),
    ValueError,
    "div_factor",
    "0",
)
case("torch-lambda-not-callable", call(torch_schedules.lambda_lr, 0.1, 0.95), TypeError, "lr_lambda", "0.95")
case(
    "torch-sequential-milestones",
    call(torch_schedules.sequential_lr, [torch_schedules.step_lr(0.1, 3), torch_schedules.step_lr(0.1, 3)], [2, 4]),
    ValueError,
    "milestones",
    "2 milestones for 2 schedules",
)
case(
    "torch-chained-empty",
    call(torch_schedules.chained_scheduler, []),
    ValueError,
    "chained_scheduler",
    "schedule",
    "[]",
)
case(
    "torch-swa-strategy",
    call(torch_schedules.swa_lr, 0.1, 0.05, anneal_strategy="cosine"),
    ValueError,
    "anneal_strategy",
    "'cosine'",
)

# --- schedules: mmcv lr_config / momentum_config --------------------------------------------------------
case("lr-config-base-inf", lr_config(dict(policy="step", step=[8]), INF), ValueError, "lr_config", "inf")
case("lr-config-base-nan", lr_config(dict(policy="step", step=[8]), NAN), ValueError, "lr_config", "nan")
case("lr-config-base-str", lr_config(dict(policy="step", step=[8]), "0.1"), TypeError, "lr_config", "'0.1'")
case(
    "momentum-config-base-inf",
    momentum_config(dict(policy="CosineAnnealing", min_momentum=0.9), INF),
    ValueError,
    "momentum_config",
    "inf",
)
case(
    "lr-config-policy-typo",
    lr_config(dict(policy="CosineAnealing", min_lr=0)),
    ValueError,
    "lr_config.policy",
    "'CosineAnealing'",
    "CosineAnnealing",
)
case("lr-config-policy-not-str", lr_config(dict(policy=3)), ValueError, "lr_config.policy", "3")
case("lr-config-step-zero", lr_config(dict(policy="step", step=0)), ValueError, "lr_config.step", "0")
case("lr-config-step-float", lr_config(dict(policy="step", step=[2.5])), ValueError, "lr_config.step[0]", "2.5")
case(
    "lr-config-min-lr-str", lr_config(dict(policy="CosineAnnealing", min_lr="0")), TypeError, "lr_config.min_lr", "'0'"
)
case(
    "lr-config-min-lr-inf", lr_config(dict(policy="CosineAnnealing", min_lr=INF)), ValueError, "lr_config.min_lr", "inf"
)
case(
    "lr-config-min-lr-both",
    lr_config(dict(policy="CosineAnnealing", min_lr=0, min_lr_ratio=0.1)),
    ValueError,
    "min_lr",
    "min_lr_ratio",
)
case("lr-config-power-str", lr_config(dict(policy="poly", power="1")), TypeError, "lr_config.power", "'1'")
case("lr-config-exp-gamma-negative", lr_config(dict(policy="exp", gamma=-0.9)), ValueError, "lr_config.gamma", "-0.9")
case(
    "lr-config-restart-periods",
    lr_config(dict(policy="CosineRestart", periods=[0, 5], restart_weights=[1, 1], min_lr=0)),
    ValueError,
    "lr_config.periods",
    "0",
)
case(
    "lr-config-restart-weights-len",
    lr_config(dict(policy="CosineRestart", periods=[5, 5], restart_weights=[1], min_lr=0)),
    ValueError,
    "restart_weights",
    "[1.0]",
)
case(
    "lr-config-cyclic-by-epoch",
    lr_config(dict(policy="cyclic", by_epoch=True)),
    ValueError,
    "lr_config.by_epoch",
    "Cyclic",
)
case("lr-config-onecycle-max-lr", lr_config(dict(policy="OneCycle", max_lr=-1)), ValueError, "lr_config.max_lr", "-1")
case(
    "lr-config-warmup-iters-missing",
    lr_config(dict(policy="step", step=[8], warmup="linear")),
    ValueError,
    "lr_config.warmup_iters",
    "0",
)
case(
    "lr-config-epoch-len-zero",
    lr_config(dict(policy="step", step=[8]), epoch_len=0, max_epochs=12),
    ValueError,
    "epoch_len",
    "0",
)
case(
    "lr-config-lengths-disagree",
    lr_config(dict(policy="step", step=[8]), epoch_len=10, max_epochs=12, max_iters=100),
    ValueError,
    "max_iters",
    "120",
    "100",
)
case(
    "momentum-config-policy-typo",
    momentum_config(dict(policy="onecycle")),
    ValueError,
    "momentum_config.policy",
    "'onecycle'",
    "OneCycle",
)
case(
    "momentum-config-unknown-key",
    momentum_config(dict(policy="CosineAnnealing", min_momentum=0.9, gamma=1)),
    TypeError,
    "momentum_config",
    "gamma",
)

# --- schedules: mmengine param_scheduler ---------------------------------------------------------------
case("mme-sched-base-inf", param_scheduler([dict(type="StepLR", step_size=3)], INF), ValueError, "base_value", "inf")
case("mme-sched-base-negative", param_scheduler([dict(type="StepLR", step_size=3)], -1), ValueError, "base_value", "-1")
case(
    "mme-sched-type-typo",
    param_scheduler([dict(type="CosineAnealingLR", T_max=10)]),
    ValueError,
    "param_scheduler[0].type",
    "'CosineAnealingLR'",
    "CosineAnnealingLR",
)
case(
    "mme-sched-plateau",
    param_scheduler([dict(type="ReduceOnPlateauLR")]),
    ValueError,
    "param_scheduler[0].type",
    "'ReduceOnPlateauLR'",
)
case(
    "mme-sched-step-size-zero",
    param_scheduler([dict(type="StepLR", step_size=0)]),
    ValueError,
    "param_scheduler[0].step_size",
    "0",
)
case(
    "mme-sched-t-max-negative",
    param_scheduler([dict(type="CosineAnnealingLR", T_max=-1)]),
    ValueError,
    "param_scheduler[0].T_max",
    "-1",
)
case(
    "mme-sched-eta-min-inf",
    param_scheduler([dict(type="CosineAnnealingLR", T_max=10, eta_min=INF)]),
    ValueError,
    "param_scheduler[0].eta_min",
    "inf",
)
case(
    "mme-sched-gamma-inf",
    param_scheduler([dict(type="ExponentialLR", gamma=INF)]),
    ValueError,
    "param_scheduler[0].gamma",
    "inf",
)
case(
    "mme-sched-periods-zero",
    param_scheduler([dict(type="CosineRestartLR", periods=[0], restart_weights=[1], eta_min=0)]),
    ValueError,
    "param_scheduler[0].periods",
    "0",
)
case("mme-sched-not-list", param_scheduler("StepLR"), TypeError, "param_scheduler", "'StepLR'")
case("mme-sched-missing-arg", param_scheduler([dict(type="StepLR")]), ValueError, "param_scheduler[0]", "step_size")
case(
    "mme-sched-begin-negative",
    param_scheduler([dict(type="StepLR", step_size=3, begin=-1)]),
    ValueError,
    "param_scheduler[0].begin",
    "-1",
)

# --- schedules: timm ---------------------------------------------------------------------------------------
case("timm-step-base-inf", call(timm_schedules.step, INF, 3), ValueError, "base_lr", "inf")
case("timm-step-decay-t-zero", call(timm_schedules.step, 0.1, 0), ValueError, "decay_t", "0")
case("timm-step-decay-rate-inf", call(timm_schedules.step, 0.1, 3, INF), ValueError, "decay_rate", "inf")
case("timm-multistep-unsorted", call(timm_schedules.multistep, 0.1, [5, 2]), ValueError, "decay_t", "[5, 2]")
case("timm-cosine-t-initial-zero", call(timm_schedules.cosine, 0.1, 0), ValueError, "t_initial", "0")
case("timm-cosine-lr-min-negative", call(timm_schedules.cosine, 0.1, 10, lr_min=-1), ValueError, "lr_min", "-1")
case("timm-cosine-cycle-mul-zero", call(timm_schedules.cosine, 0.1, 10, cycle_mul=0), ValueError, "cycle_mul", "0")
case(
    "timm-cosine-warmup-lr-inf",
    call(timm_schedules.cosine, 0.1, 10, warmup_t=2, warmup_lr_init=INF),
    ValueError,
    "warmup_lr_init",
    "inf",
)
case("timm-poly-power-negative", call(timm_schedules.poly, 0.1, 10, power=-1), ValueError, "power", "-1")
case(
    "timm-wsd-decay-fn-typo", call(timm_schedules.wsd, 0.1, 10, 2, decay_fn="cubic"), ValueError, "decay_fn", "'cubic'"
)

# --- purelr.training.from_torch --------------------------------------------------------------------------


def _torch_run():
    """A torch Linear(3, 2) after one SGD (momentum) step, and an Adam state of one step."""
    import torch

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    states = []
    for optimizer in (
        torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
        torch.optim.Adam(model.parameters(), lr=0.1),
    ):
        model(torch.ones(1, 3)).sum().backward()
        optimizer.step()
        states.append(optimizer.state_dict())
    return model.state_dict(), *states


TORCH_MODEL, TORCH_OPTIMIZER, TORCH_ADAM = _torch_run()
LINEAR = {"kernel": jnp.zeros((3, 2)), "bias": jnp.zeros(2)}


def from_torch(**changes):
    kwargs = dict(
        optimizer=optim.sgd(0.1, momentum=0.9),
        params=LINEAR,
        model_state_dict=TORCH_MODEL,
        optimizer_state_dict=TORCH_OPTIMIZER,
        count=1,
    )
    kwargs.update(changes)
    return lambda: from_torch_lib.from_torch(**kwargs)


case(
    "from-torch-model-as-optimizer",
    from_torch(optimizer_state_dict=TORCH_MODEL),
    ValueError,
    "optimizer_state_dict",
    "param_groups",
    "'weight'",
)
case(
    "from-torch-optimizer-not-dict",
    from_torch(optimizer_state_dict=[1, 2]),
    TypeError,
    "optimizer_state_dict",
    "[1, 2]",
)
case(
    "from-torch-optimizer-as-model",
    from_torch(model_state_dict=TORCH_OPTIMIZER),
    ValueError,
    "model_state_dict",
    "'state'",
)
case("from-torch-model-not-dict", from_torch(model_state_dict=None), TypeError, "model_state_dict", "None")
case(
    "from-torch-shape",
    from_torch(params={"kernel": jnp.zeros((2, 3)), "bias": jnp.zeros(2)}),
    ValueError,
    "'weight'",
    "(3, 2)",
    "(2, 3)",
)
case("from-torch-unknown-name", from_torch(names={"weight": "fc.kernel"}), ValueError, "'weight'", "'fc.kernel'")
case("from-torch-missing-leaf", from_torch(params={**LINEAR, "scale": jnp.ones(2)}), ValueError, "'scale'")
case("from-torch-param-count", from_torch(param_names=["weight"]), ValueError, "2", "1", "param_names")
case("from-torch-param-names-str", from_torch(param_names="weight"), TypeError, "param_names", "'weight'")
case("from-torch-names-bad-type", from_torch(names=["weight"]), TypeError, "names", "['weight']")
case("from-torch-names-bad-entry", from_torch(names={"weight": 3}), TypeError, "names['weight']", "3")
case(
    "from-torch-count-disagrees",
    from_torch(optimizer=optim.adam(0.1), optimizer_state_dict=TORCH_ADAM, count=5),
    ValueError,
    "count=5",
    "step 1",
)
case("from-torch-count-negative", from_torch(count=-1), ValueError, "count", "-1")
case("from-torch-count-str", from_torch(count="1"), TypeError, "count", "'1'")
case("from-torch-other-optimizer", from_torch(optimizer=optim.adam(0.1)), ValueError, "'momentum_buffer'", "Adam")
case(
    "from-torch-scheduler-no-epoch",
    from_torch(scheduler_state_dict={"base_lrs": [0.1]}),
    ValueError,
    "scheduler_state_dict",
    "last_epoch",
)
case(
    "from-torch-scheduler-bad-epoch",
    from_torch(scheduler_state_dict={"last_epoch": "3"}),
    TypeError,
    "scheduler_state_dict",
    "last_epoch",
    "'3'",
)
case("from-torch-not-transformation", from_torch(optimizer="sgd"), TypeError, "optimizer", "'sgd'")
case(
    "from-torch-labels-layout",
    from_torch(labels={"kernel": "a"}),
    ValueError,
    "labels must be laid out like the params",
    "'bias'",
)
case(
    "from-torch-scaler-without-wrapper",
    from_torch(scaler_state_dict={"scale": 2.0}),
    ValueError,
    "scaler_state_dict",
    "loss_scaled",
)


def to_torch(**changes):
    from purelr.training import to_torch as to_torch_lib

    kwargs = dict(
        opt_state=optim.sgd(0.1, momentum=0.9).init(LINEAR),
        params=LINEAR,
        model_state_dict=TORCH_MODEL,
        optimizer_state_dict=TORCH_OPTIMIZER,
    )
    kwargs.update(changes)
    return lambda: to_torch_lib.to_torch(**kwargs)


case(
    "to-torch-model-as-optimizer",
    to_torch(optimizer_state_dict=TORCH_MODEL),
    ValueError,
    "optimizer_state_dict",
    "'weight'",
)
case(
    "to-torch-shape",
    to_torch(params={"kernel": jnp.zeros((2, 3)), "bias": jnp.zeros(2)}),
    ValueError,
    "'weight'",
    "(2, 3)",
)
case("to-torch-no-twin", to_torch(opt_state=optax.EmptyState()), ValueError, "no purelr.optim twin state")
case("to-torch-scheduler-not-one", to_torch(scheduler="StepLR"), TypeError, "scheduler", "str")

case(
    "resume-last-epoch-str",
    call(from_torch_lib.resume_schedule, torch_schedules.step_lr(0.1, 3), "3", 2),
    TypeError,
    "last_epoch",
    "'3'",
)
case(
    "resume-last-epoch-negative",
    call(from_torch_lib.resume_schedule, torch_schedules.step_lr(0.1, 3), -5, 2),
    ValueError,
    "last_epoch",
    "-5",
)
case(
    "resume-count-float",
    call(from_torch_lib.resume_schedule, torch_schedules.step_lr(0.1, 3), 3, 2.5),
    ValueError,
    "count",
    "2.5",
)
case(
    "model-from-torch-none", call(from_torch_lib.model_from_torch, None, LINEAR), TypeError, "model_state_dict", "None"
)

# --- purelr.training.accumulate ------------------------------------------------------------------------------
SGD = optim.sgd(0.1)
for _value, _needle, _exc in (
    (0, "0", ValueError),
    (-1, "-1", ValueError),
    (1.5, "1.5", ValueError),
    ("2", "'2'", TypeError),
    (None, "None", TypeError),
):
    case(f"accumulate-every-{_needle}", call(accumulate_lib.accumulate, SGD, _value), _exc, "every", _needle)
for _value, _needle, _exc in ((0, "0", ValueError), (-10, "-10", ValueError), ("10", "'10'", TypeError)):
    case(f"accumulate-total-{_needle}", call(accumulate_lib.accumulate, SGD, 2, _value), _exc, "total", _needle)
case("accumulate-inner-not-transformation", call(accumulate_lib.accumulate, optim.sgd, 2), TypeError, "inner", "sgd")

# --- purelr.load_config ----------------------------------------------------------------------------------------


def config_file(tmp_root, name, text):
    path = os.path.join(tmp_root, name)
    with open(path, "w", encoding="utf-8") as file:
        file.write(text)
    return path


CONFIG_FILES = {
    "missing.py": None,
    "config.txt": "optimizer = dict(type='SGD', lr=0.01)\n",
    "cycle_a.py": "_base_ = 'cycle_b.py'\n",
    "cycle_b.py": "_base_ = 'cycle_a.py'\n",
    "syntax.py": "optimizer = dict(type='SGD', lr=0.01\n",
    "raises.py": "optimizer = 1 / 0\n",
    "broken.json": '{"optimizer": {"type": "SGD",}}',
    "list.json": "[1, 2]",
    "broken.yaml": "optimizer: {type: SGD\n",
    "base_int.py": "_base_ = 3\n",
    "base_missing.py": "_base_ = ['nowhere.py']\n",
    "base_one.py": "optimizer = dict(type='SGD', lr=0.01)\n",
    "base_two.py": "optimizer = dict(type='Adam', lr=0.01)\n",
    "base_clash.py": "_base_ = ['base_one.py', 'base_two.py']\n",
    "unknown_top.py": "optimizer = dict(type='SGD', lr=0.01)\nlr_confg = dict(policy='step', step=[8])\n",
}
CONFIG_CASES = [
    ("load-missing", "missing.py", "missing.py", "not found"),
    ("load-extension", "config.txt", "config.txt", "'.txt'"),
    ("load-cycle", "cycle_a.py", "cycle_a.py -> cycle_b.py -> cycle_a.py"),
    ("load-syntax", "syntax.py", "syntax.py", "parse"),
    ("load-raises", "raises.py", "raises.py", "ZeroDivisionError"),
    ("load-json", "broken.json", "broken.json", "parse"),
    ("load-json-list", "list.json", "list.json", "list"),
    ("load-yaml", "broken.yaml", "broken.yaml"),
    ("load-base-int", "base_int.py", "base_int.py", "_base_", "3"),
    ("load-base-missing", "base_missing.py", "base_missing.py", "'nowhere.py'"),
    ("load-base-clash", "base_clash.py", "base_clash.py", "['optimizer']"),
]


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("configs"))
    for name, text in CONFIG_FILES.items():
        if text is not None:
            config_file(root, name, text)
    return root


@pytest.mark.parametrize("thunk, exception, needles", CASES)
def test_rejected(thunk, exception, needles):
    assert_purelr_rejects(thunk, exception, *needles)


@pytest.mark.parametrize("name, needles", [pytest.param(c[1], c[2:], id=c[0]) for c in CONFIG_CASES])
def test_config_file_rejected(config_dir, name, needles):
    path = os.path.join(config_dir, name)
    assert_rejects(lambda: purelr.load_config(path), ValueError, *needles)
    assert_rejects(lambda: purelr.build(path, PARAMS, epoch_len=10), ValueError, *needles)


def test_config_path_type():
    assert_rejects(lambda: purelr.load_config(3), TypeError, "path", "3")


def test_unknown_top_level_key(config_dir):
    """A misspelt top-level section (``lr_confg``) would silently drop the schedule: refused."""
    path = os.path.join(config_dir, "unknown_top.py")
    assert_rejects(lambda: purelr.build(path, PARAMS, epoch_len=10), ValueError, "lr_confg", "lr_config")


def test_table_size():
    assert len(CASES) + len(CONFIG_CASES) >= 170


def test_register_twice():
    @registry.register_optimizer("bad_inputs_twice")
    def first(lr):
        return optim.sgd(lr)

    def second(lr):
        return optim.sgd(lr)

    assert_rejects(
        lambda: registry.register_optimizer("bad_inputs_twice")(second), KeyError, "'bad_inputs_twice'", "force=True"
    )


# --- documented acceptances -----------------------------------------------------------------------------------


def test_infinite_max_norm_is_accepted():
    """torch's ``clip_grad_norm_(max_norm=inf)`` never clips; a config may say so."""
    purelr.build(edited(MMCV, {"optimizer_config.grad_clip.max_norm": INF}), PARAMS, epoch_len=10, module_kinds=KINDS)
    grads = {"head": {"kernel": jnp.full((4, 2), 1e3)}}
    params = {"head": {"kernel": jnp.zeros((4, 2))}}
    clip = optim.clip_grad_norm(INF)
    updates, _ = clip.update(grads, clip.init(params))
    np.testing.assert_array_equal(updates["head"]["kernel"], grads["head"]["kernel"])


def test_zero_lr_and_multipliers_are_accepted():
    """torch accepts ``lr=0`` (and MMCV configs use ``*_mult=0`` to switch a rule's lr or decay off)."""
    cfg = edited(
        MMCV,
        {
            "optimizer.lr": 0,
            "optimizer.paramwise_cfg": dict(
                norm_decay_mult=0.0, bias_lr_mult=0, bias_decay_mult=0.0, custom_keys={"head": dict(lr_mult=0)}
            ),
        },
    )
    purelr.build(cfg, PARAMS, epoch_len=10, module_kinds=KINDS)
    torch_schedules.step_lr(0.0, 3, gamma=0.0)


def test_mmengine_flat_decay_without_weight_decay():
    """MMEngine accepts ``flat_decay_mult`` without a base weight decay and does nothing with it."""
    cfg = edited(
        MMENGINE,
        {"optim_wrapper.optimizer.weight_decay": DROP, "optim_wrapper.paramwise_cfg": dict(flat_decay_mult=0.0)},
    )
    purelr.build(cfg, PARAMS, epoch_len=10)


def test_mmengine_custom_key_option():
    """MMEngine puts a custom_keys entry's other keys into the param group: any optimizer argument."""
    cfg = edited(MMENGINE, {"optim_wrapper.paramwise_cfg": dict(custom_keys={"head": dict(momentum=0.5)})})
    purelr.build(cfg, PARAMS, epoch_len=10)
