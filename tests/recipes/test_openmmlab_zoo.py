"""``purelr.build`` against MMEngine 0.10.7 end to end (tests/recipes/twins.py) on recipes made of
the parts the model zoos register: MMPretrain's LARS (``lars_exclude`` groups from
``custom_keys``), Lamb and Adan (their gradient clipping over every group), schedulers of weight
decay (``CosineAnnealingWeightDecay``, generic ``*ParamScheduler(param_name='weight_decay')``,
groups whose ``decay_mult`` makes their base 0), MMDetection's QuadraticWarmup and MMSegmentation's
PolyLRRatio. The real ``DefaultOptimWrapperConstructor`` builds MMPretrain's optimizer classes
(``mmpretrain.LARS``) and the schedulers are built and stepped as the runner does: after every
iteration both sides' parameters agree to 1e-10 (float64, relative to the parameter's scale).
"""

import copy

import jax
import numpy as np
import pytest

from tests.parity import OPTIMIZER_RTOL, relative_error, trajectory_floor
from tests.recipes import twins

EXCLUDED = {"resnet": ["bn", "bias", "downsample.1"], "vit": ["norm", "bias", "pos_embed"]}


def optimizer_cfg(rng, kind):
    if kind == "LARS":
        return dict(
            type="LARS",
            lr=float(10 ** rng.uniform(-1.5, -0.3)),
            momentum=0.9,
            weight_decay=float(10 ** rng.uniform(-6, -3)),
            eta=float(10 ** rng.uniform(-3, -1.5)),
            nesterov=bool(rng.random() < 0.3),
        )
    if kind == "Lamb":
        return dict(
            type="Lamb",
            lr=float(10 ** rng.uniform(-3, -2)),
            weight_decay=float(10 ** rng.uniform(-3, -1.3)),
            betas=(0.9, float(rng.uniform(0.95, 0.999))),
            max_grad_norm=float(rng.uniform(1.0, 20.0)),
            trust_clip=bool(rng.random() < 0.3),
        )
    cfg = dict(
        type="Adan",
        lr=float(10 ** rng.uniform(-3, -2)),
        weight_decay=float(10 ** rng.uniform(-3, -1.3)),
        no_prox=bool(rng.random() < 0.5),
        foreach=bool(rng.random() < 0.5),
    )
    if rng.random() < 0.7:
        cfg["max_grad_norm"] = float(rng.uniform(1.0, 20.0))
    return cfg


def config(seed):
    rng = np.random.default_rng([1919, seed])
    kind = ["LARS", "Lamb", "Adan"][seed % 3]
    model = "resnet" if seed % 2 == 0 else "vit"
    optimizer = optimizer_cfg(rng, kind)
    keys = {
        key: dict(decay_mult=0.0, **(dict(lars_exclude=True) if kind == "LARS" else {}))
        for key in EXCLUDED[model][: int(rng.integers(1, 4))]
    }
    epoch_len, epochs = int(rng.integers(2, 5)), int(rng.integers(3, 6))
    warmup = int(rng.integers(1, epochs))
    schedulers = [
        dict(type="QuadraticWarmupLR", by_epoch=True, begin=0, end=warmup, convert_to_iter_based=True),
        dict(
            type="PolyLRRatio",
            eta_min_ratio=float(rng.uniform(0, 0.3)),
            power=float(rng.uniform(0.5, 2)),
            by_epoch=False,
            begin=warmup * epoch_len,
            end=epochs * epoch_len,
        )
        if rng.random() < 0.5
        else dict(
            type="CosineAnnealingLR",
            by_epoch=True,
            begin=warmup,
            end=epochs,
            eta_min=0.0,
            convert_to_iter_based=bool(rng.random() < 0.5),
        ),
        dict(
            type="CosineAnnealingWeightDecay",
            eta_min=float(rng.uniform(0.0, 0.2)),
            by_epoch=True,
            begin=0,
            end=epochs,
            convert_to_iter_based=True,
        )
        if rng.random() < 0.5
        else dict(
            type=str(rng.choice(["CosineAnnealingParamScheduler", "QuadraticWarmupParamScheduler"])),
            param_name="weight_decay",
            by_epoch=False,
            begin=0,
            end=epochs * epoch_len,
        ),
    ]
    cfg = dict(
        optim_wrapper=dict(type="OptimWrapper", optimizer=optimizer, paramwise_cfg=dict(custom_keys=keys)),
        param_scheduler=schedulers,
        train_cfg=dict(type="EpochBasedTrainLoop", max_epochs=epochs),
    )
    return cfg, model, epoch_len, epochs * epoch_len


@pytest.mark.parametrize("seed", range(3))
def test_zoo_recipes_match_mmengine(seed):
    """One recipe of each optimizer (three more each nightly)."""
    check(seed)


@pytest.mark.nightly
@pytest.mark.parametrize("seed", range(3, 12))
def test_more_zoo_recipes_match_mmengine(seed):
    check(seed)


def check(seed):
    cfg, model, epoch_len, steps = config(seed)
    expected = twins.run_mmengine(copy.deepcopy(cfg), model, steps, seed, epoch_len=epoch_len)
    twins.warm(model)
    with jax.enable_x64(True):
        actual = twins.run_purelr(cfg, model, steps, seed, epoch_len=epoch_len)
    worst = 0.0
    for name, value in expected.items():
        error = relative_error(actual[name], value, floor=trajectory_floor())
        assert error <= OPTIMIZER_RTOL["x64"], f"seed {seed} {name}: {error:.3g}\n{cfg}"
        worst = max(worst, error)
    print(f"seed {seed} ({cfg['optim_wrapper']['optimizer']['type']}, {model}): max relative error {worst:.3g}")


def test_a_weight_decay_scheduler_needs_the_optimizers_weight_decay():
    import purelr

    params = {"w": np.zeros(3)}
    cfg = dict(
        optim_wrapper=dict(optimizer=dict(type="Adagrad", lr=0.1)),
        param_scheduler=[dict(type="CosineAnnealingParamScheduler", param_name="rho", end=3)],
        train_cfg=dict(max_iters=3),
    )
    with pytest.raises(ValueError, match=r"param_scheduler\[0\] schedules 'rho', which optimizer 'Adagrad' does not"):
        purelr.build(cfg, params, epoch_len=1)
    cfg["param_scheduler"][0]["param_name"] = "lr_decay"  # an argument: scheduled from its default, 0
    purelr.build(cfg, params, epoch_len=1)
