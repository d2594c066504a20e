"""``purelr.build`` against MMCV 1.7.2 and MMEngine 0.10.7 end to end (tests/recipes/twins.py).

Random whole configs (optimizer type and hyperparameters, paramwise_cfg, frozen modules, gradient
clipping, lr warmup and schedules, momentum schedules, gradient accumulation with its remainder
rule; epoch- and iteration-based loops), 12 per style a run (100 more with ``-m nightly``): after every iteration of the run the
parameters of both sides agree to 1e-10 (float64, relative to the parameter's scale).
"""

import copy

import jax
import numpy as np
import pytest

from tests.parity import OPTIMIZER_RTOL, relative_error, trajectory_floor
from tests.recipes import twins
from tests.schedules.test_mmcv import _policy_params, _warmup
from tests.schedules.test_mmengine import random_scheduler

CONFIGS_PER_STYLE = 12
BLOCKS = 3
NIGHTLY_CONFIGS = 100
OPTIMIZERS = ["SGD", "SGD", "Adam", "AdamW", "RMSprop", "Adamax", "NAdam", "RAdam", "Adagrad", "Adadelta"]
MMCV_POLICIES = [
    "step",
    "Fixed",
    "CosineAnnealing",
    "Poly",
    "Exp",
    "FlatCosineAnnealing",
    "CosineRestart",
    "OneCycle",
    "Cyclic",
]
CUSTOM_KEYS = {
    "resnet": ["layer1", "layer2.1", "neck", "fc", "bn"],
    "vit": ["blocks.0", "norm", "pos_embed", "head", "attn"],
}
FROZEN = {"resnet": ["layer1.0", "conv1"], "vit": ["embed", "blocks.0.attn"]}


def random_optimizer(rng, seed):
    kind = OPTIMIZERS[seed % len(OPTIMIZERS)]  # every type in every run
    cfg = dict(type=kind, lr=float(10 ** rng.uniform(-3, -1.3)))
    if rng.random() < 0.7:
        cfg["weight_decay"] = float(10 ** rng.uniform(-5, -2))
    if kind == "SGD":
        cfg["momentum"] = float(rng.uniform(0.5, 0.95)) if rng.random() < 0.8 else 0.0
        cfg["nesterov"] = bool(cfg["momentum"] and rng.random() < 0.4)
    elif kind == "RMSprop":
        cfg["momentum"] = float(rng.uniform(0.1, 0.9))
        cfg["centered"] = bool(rng.random() < 0.4)
    elif kind in ("Adam", "AdamW", "NAdam", "RAdam", "Adamax"):
        cfg["betas"] = (float(rng.uniform(0.8, 0.95)), float(rng.uniform(0.95, 0.999)))
        if kind in ("Adam", "AdamW") and rng.random() < 0.3:
            cfg["amsgrad"] = True
    return cfg


def random_paramwise(rng, style, model, has_decay):
    cfg = {}
    for key, low, high in (
        ("bias_lr_mult", 0.5, 3.0),
        ("dcn_offset_lr_mult", 0.1, 1.0),
        ("bias_decay_mult", 0.0, 1.0),
        ("norm_decay_mult", 0.0, 1.0),
        ("dwconv_decay_mult", 0.0, 1.0),
        ("flat_decay_mult", 0.0, 1.0),
    ):
        if key.endswith("decay_mult") and not has_decay or key == "flat_decay_mult" and style == "mmcv":
            continue
        if rng.random() < 0.35:
            cfg[key] = float(rng.choice([0.0, rng.uniform(low, high)]))
    if rng.random() < 0.5:
        keys = rng.choice(CUSTOM_KEYS[model], size=int(rng.integers(1, 3)), replace=False)
        cfg["custom_keys"] = {
            str(k): dict(
                lr_mult=float(rng.uniform(0.1, 2.0)),
                **(dict(decay_mult=float(rng.uniform(0, 2))) if has_decay and rng.random() < 0.5 else {}),
            )
            for k in keys
        }
    return cfg


def random_clip(rng, style):
    if rng.random() < 0.4:
        return None
    if style == "mmengine" and rng.random() < 0.3:
        return dict(type="value", clip_value=float(rng.uniform(0.3, 2.0)))
    return dict(max_norm=float(rng.uniform(1.0, 20.0)), norm_type=float(rng.choice([2.0, 2.0, 1.0, np.inf])))


def run_shape(rng, iter_loop):
    epoch_len = int(rng.integers(2, 6))
    epochs = int(rng.integers(2, 6))
    return epoch_len, epochs, epoch_len * epochs


def mmcv_config(seed):
    rng = np.random.default_rng([61, seed])
    model = "resnet" if seed % 2 == 0 else "vit"
    optimizer = random_optimizer(rng, seed)
    optimizer["paramwise_cfg"] = random_paramwise(rng, "mmcv", model, "weight_decay" in optimizer)
    iter_based = rng.random() < 0.3
    epoch_len, epochs, steps = run_shape(rng, iter_based)
    policy = str(rng.choice(MMCV_POLICIES))
    by_epoch = not iter_based and policy not in ("OneCycle", "Cyclic") and bool(rng.random() < 0.6)
    lr_cfg = dict(policy=policy, by_epoch=by_epoch)
    _warmup(rng, lr_cfg, steps, None if iter_based else epochs, 0.001)
    _policy_params(
        rng, policy if policy != "step" else "Step", lr_cfg, optimizer["lr"], epochs if by_epoch else steps, steps
    )
    cfg = dict(
        optimizer=optimizer,
        lr_config=lr_cfg,
        runner=dict(type="IterBasedRunner", max_iters=steps)
        if iter_based
        else dict(type="EpochBasedRunner", max_epochs=epochs),
    )
    hook = {}
    clip = random_clip(rng, "mmcv")
    if clip:
        hook["grad_clip"] = clip
    if seed % 3 == 2:
        hook.update(type="GradientCumulativeOptimizerHook", cumulative_iters=int(rng.integers(2, 4)))
    cfg["optimizer_config"] = hook
    momentum_key = "momentum" if optimizer.get("momentum") else "betas" if "betas" in optimizer else None
    if momentum_key and policy not in ("OneCycle", "Cyclic") and rng.random() < 0.5:
        momentum_policy = str(rng.choice(["Step", "CosineAnnealing", "LinearAnnealing"]))
        momentum_cfg = dict(policy=momentum_policy, by_epoch=by_epoch)
        if momentum_policy == "Step":
            momentum_cfg.update(step=[int(rng.integers(1, epochs if by_epoch else steps))], gamma=0.9)
        else:
            momentum_cfg["min_momentum_ratio"] = float(rng.uniform(0.5, 1.0))
        cfg["momentum_config"] = momentum_cfg
    frozen = list(FROZEN[model][:1]) if rng.random() < 0.25 else []
    return cfg, model, epoch_len, steps, frozen


def mmengine_config(seed):
    rng = np.random.default_rng([62, seed])
    model = "resnet" if seed % 2 == 0 else "vit"
    optimizer = random_optimizer(rng, seed)
    wrapper = dict(
        type="OptimWrapper",
        optimizer=optimizer,
        paramwise_cfg=random_paramwise(rng, "mmengine", model, "weight_decay" in optimizer),
    )
    clip = random_clip(rng, "mmengine")
    if clip:
        wrapper["clip_grad"] = clip
    if seed % 3 == 2:
        wrapper["accumulative_counts"] = int(rng.integers(2, 4))
    loop = "iter" if rng.random() < 0.3 else "epoch"
    epoch_len, epochs, steps = run_shape(rng, loop == "iter")
    families = [
        "Constant",
        "CosineAnnealing",
        "Exponential",
        "Linear",
        "MultiStep",
        "Step",
        "Poly",
        "CosineRestart",
        "OneCycle",
    ]
    schedulers = [
        random_scheduler(rng, str(rng.choice(families)), "LR", epochs, epoch_len, loop)
        for _ in range(int(rng.integers(1, 3)))
    ]
    momentum = optimizer.get("momentum") or "betas" in optimizer
    if momentum and rng.random() < 0.4:
        schedulers.append(random_scheduler(rng, str(rng.choice(families[:-1])), "Momentum", epochs, epoch_len, loop))
    cfg = dict(
        optim_wrapper=wrapper,
        param_scheduler=schedulers,
        train_cfg=dict(type="IterBasedTrainLoop", max_iters=steps)
        if loop == "iter"
        else dict(type="EpochBasedTrainLoop", max_epochs=epochs),
    )
    frozen = list(FROZEN[model][:1]) if rng.random() < 0.25 else []
    return cfg, model, epoch_len, steps, frozen


def check(style, seed):
    make, run = (mmcv_config, twins.run_mmcv) if style == "mmcv" else (mmengine_config, twins.run_mmengine)
    cfg, model, epoch_len, steps, frozen = make(seed)
    expected = run(copy.deepcopy(cfg), model, steps, seed, epoch_len=epoch_len, frozen=frozen)
    twins.warm(model)
    with jax.enable_x64(True):
        actual = twins.run_purelr(cfg, model, steps, seed, epoch_len=epoch_len, frozen=frozen)
    worst = 0.0
    for name, value in expected.items():
        error = relative_error(actual[name], value, floor=trajectory_floor())
        assert error <= OPTIMIZER_RTOL["x64"], f"{style} seed {seed} {name}: {error:.3g}\n{cfg}"
        worst = max(worst, error)
    return worst


@pytest.mark.parametrize("block", range(BLOCKS))
@pytest.mark.parametrize("style", ["mmcv", "mmengine"])
def test_random_configs_match_the_original(style, block):
    per_block = CONFIGS_PER_STYLE // BLOCKS
    worst = max(check(style, seed) for seed in range(block * per_block, (block + 1) * per_block))
    print(f"{style} block {block}: max relative error {worst:.3g}")


@pytest.mark.nightly
@pytest.mark.parametrize("style", ["mmcv", "mmengine"])
def test_more_random_configs_match_the_original(style):
    for seed in range(CONFIGS_PER_STYLE, CONFIGS_PER_STYLE + NIGHTLY_CONFIGS):
        check(style, seed)
