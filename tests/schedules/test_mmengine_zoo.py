"""Parity of `purelr.schedules.mmengine.param_scheduler` with the schedulers the model zoos register
in MMEngine's registry, imported from the installed packages (``tests/conftest.py`` stubs their
package ``__init__``s): MMDetection 3.3.0's ``QuadraticWarmupLR``, ``QuadraticWarmupMomentum`` and
``QuadraticWarmupParamScheduler``, MMPretrain 1.2.0's ``CosineAnnealingWeightDecay`` and
MMSegmentation 1.2.2's ``PolyLRRatio``, alone and in random lists with MMEngine's own schedulers of
the same parameter (``lr``, ``momentum``, Adam's ``betas[0]``, ``weight_decay``), built and stepped
as MMEngine's runner does (``purelr.references.mmengine``).
"""

import functools

import numpy as np
import pytest
from mmdet.engine.schedulers import QuadraticWarmupLR
from mmpretrain.engine.schedulers import CosineAnnealingWeightDecay
from mmseg.engine.schedulers import PolyLRRatio

from purelr.references.mmengine import run as reference
from purelr.references.mmengine import scoped
from purelr.schedules import mmengine as pm
from tests.parity import SCHEDULE_RTOL, assert_schedule_matches, jitted, rounding_floor
from tests.schedules.test_mmengine import FAMILIES, assert_curves_match, random_scheduler

ZOO = [
    "QuadraticWarmupLR",
    "QuadraticWarmupMomentum",
    "QuadraticWarmupParamScheduler",
    "CosineAnnealingWeightDecay",
    "PolyLRRatio",
]
CASES_PER_TYPE = 6
NIGHTLY_CASES_PER_TYPE = 40


def test_the_reference_builds_the_zoo_classes():
    assert [scoped(kind) for kind in ("QuadraticWarmupLR", "CosineAnnealingWeightDecay", "PolyLRRatio", "StepLR")] == [
        "mmdet.QuadraticWarmupLR",
        "mmpretrain.CosineAnnealingWeightDecay",
        "mmseg.PolyLRRatio",
        "StepLR",
    ]
    assert QuadraticWarmupLR.__module__.startswith("mmdet") and PolyLRRatio.__module__.startswith("mmseg")
    assert CosineAnnealingWeightDecay.__module__.startswith("mmpretrain")


def zoo_scheduler(rng, kind, horizon_epochs, epoch_len, loop, seed):
    """A random ``kind`` config: begin/end in its own unit (epochs when by_epoch); a PolyLRRatio
    has an ``eta_min_ratio`` for even seeds."""
    cfg = random_scheduler(
        rng,
        "CosineAnnealing" if kind == "CosineAnnealingWeightDecay" else "Poly",
        "LR",
        horizon_epochs,
        epoch_len,
        loop,
    )
    cfg["type"] = kind
    if kind.startswith("QuadraticWarmup"):
        cfg = {k: v for k, v in cfg.items() if k in ("type", "by_epoch", "convert_to_iter_based", "begin", "end")}
        if "end" not in cfg:  # MMDetection refuses the default end=INF; a train loop's end is fine
            cfg["end"] = cfg.get("begin", 0) + int(rng.integers(1, 6))
    elif kind == "PolyLRRatio" and seed % 2 == 0:
        cfg["eta_min_ratio"] = float(rng.uniform(0, 0.5))
    return cfg


def random_case(seed, kind):
    """(cfgs, base, iters, lengths, what the reference reads): ``kind`` among 0-2 MMEngine schedulers."""
    rng = np.random.default_rng([19, ZOO.index(kind), seed])
    epoch_len = int(rng.integers(1, 30))
    epochs = int(rng.integers(1, 10))
    loop = rng.choice(["epoch", "epoch", "iter", None])
    param = dict(
        QuadraticWarmupLR="lr",
        PolyLRRatio="lr",
        CosineAnnealingWeightDecay="weight_decay",
        QuadraticWarmupMomentum=str(rng.choice(["momentum", "adam"])),
        QuadraticWarmupParamScheduler=str(rng.choice(["lr", "weight_decay"])),
    )[kind]
    suffix = {"lr": "LR", "momentum": "Momentum", "adam": "Momentum"}.get(param, "ParamScheduler")
    families = [f for f in FAMILIES if f != "OneCycle"] if param != "lr" else FAMILIES
    cfgs = [zoo_scheduler(rng, kind, epochs, epoch_len, loop, seed)]
    for _ in range(int(rng.integers(0, 3))):
        cfg = random_scheduler(rng, str(rng.choice(families)), suffix, epochs, epoch_len, loop)
        if suffix == "ParamScheduler":
            cfg["param_name"] = param
        cfgs.insert(int(rng.integers(0, len(cfgs) + 1)), cfg)
    if kind == "QuadraticWarmupParamScheduler":
        cfgs[[c["type"] for c in cfgs].index(kind)]["param_name"] = param
    lengths = dict(epoch_len=epoch_len)
    if loop == "epoch":
        lengths["max_epochs"] = epochs
    elif loop == "iter":
        lengths["max_iters"] = epochs * epoch_len
    iters = epochs * epoch_len + int(rng.integers(0, 2 * epoch_len))
    if param in ("momentum", "adam"):
        base = float(rng.uniform(0.5, 0.99))
    elif param == "weight_decay":
        base = 0.0 if seed % 3 == 0 else float(10 ** rng.uniform(-5, -1))  # a group with decay_mult=0
    else:
        base = float(rng.uniform(0.001, 0.5))
    reads = dict(
        momentum=param == "momentum", adam=param == "adam", param="weight_decay" if param == "weight_decay" else None
    )
    return cfgs, base, iters, lengths, reads


@functools.lru_cache(maxsize=None)
def case(seed, kind):
    cfgs, base, iters, lengths, reads = random_case(seed, kind)
    return cfgs, base, iters, lengths, reference(cfgs, base, iters=iters, **lengths, **reads)


@pytest.mark.parametrize("kind", ZOO)
def test_random_lists(kind, precision):
    check_random_lists(kind, precision, range(CASES_PER_TYPE))


@pytest.mark.nightly
@pytest.mark.parametrize("kind", ZOO)
def test_more_random_lists(kind, precision):
    check_random_lists(kind, precision, range(CASES_PER_TYPE, NIGHTLY_CASES_PER_TYPE))


def check_random_lists(kind, precision, seeds):
    """Jitted (``jax.jit(jax.vmap(schedule))``). Floor and bound as ``test_mmengine.test_random_lists``:
    8 float64 units of the peak, and 4 float32 units with a 3e-6 bound where the float32 twin
    replays MMEngine's chained recursions (``eta_min + ratio * (v - eta_min)`` cancels next to a
    QuadraticWarmup's first values, measured 2.4 units, QuadraticWarmupMomentum seed 4; the
    warmup itself adds ``base * (2 t + 1) / T ** 2`` every step: measured 1.5e-6 in float32,
    QuadraticWarmupParamScheduler; x64 1.8e-13)."""
    floor = rounding_floor(SCHEDULE_RTOL[precision], 8 if precision == "x64" else 4, reference=precision)
    worst = 0.0
    for seed in seeds:
        cfgs, base, iters, lengths, expected = case(seed, kind)
        values = jitted(pm.param_scheduler(cfgs, base, **lengths), np.arange(iters))
        worst = max(
            worst,
            assert_schedule_matches(
                values,
                expected,
                precision,
                floor=floor,
                rtol=3e-6 if precision == "f32" else None,
                context=f"seed {seed}: {cfgs} base={base} {lengths}",
            ),
        )
    print(f"{kind}: max relative error ({precision}) {worst:.3g}")


def test_random_lists_cover_the_cases():
    cases = {kind: [case(seed, kind) for seed in range(CASES_PER_TYPE)] for kind in ZOO}
    assert any(base == 0 for _, base, *_ in cases["CosineAnnealingWeightDecay"])  # stays 0
    assert any(
        base > 0 and any(c.get("eta_min", 0) > 0 for c in cfgs)
        for cfgs, base, *_ in cases["CosineAnnealingWeightDecay"]
    )
    assert any(len(cfgs) > 1 for cfgs, *_ in cases["QuadraticWarmupLR"])
    assert any(
        c.get("convert_to_iter_based")
        for kind in ZOO[:3]
        for cfgs, *_ in cases[kind]
        for c in cfgs
        if c["type"] == kind
    )
    assert any(
        "eta_min_ratio" not in c for cfgs, *_ in cases["PolyLRRatio"] for c in cfgs if c["type"] == "PolyLRRatio"
    )


ZOO_RECIPES = {
    # MMDetection 3.3.0's yolox_s_8xb8-300e_coco: 5 epochs of quadratic warmup counted in iterations,
    # cosine to epoch 285, then a constant lr for the last 15 (RTMDet's is a LinearLR warmup instead)
    "yolox_s": (
        [
            dict(type="QuadraticWarmupLR", by_epoch=True, begin=0, end=5, convert_to_iter_based=True),
            dict(
                type="CosineAnnealingLR",
                eta_min=0.01 * 0.05,
                begin=5,
                T_max=285,
                end=285,
                by_epoch=True,
                convert_to_iter_based=True,
            ),
            dict(type="ConstantLR", by_epoch=True, factor=1, begin=285, end=300),
        ],
        0.01,
        dict(max_epochs=300),
    ),
    # MMPretrain 1.2.0's SparK: weight decay annealed from 0.04 to 0.2 over 800 epochs, in iterations
    "spark_weight_decay": (
        [
            dict(
                type="CosineAnnealingWeightDecay",
                eta_min=0.2,
                T_max=800,
                by_epoch=True,
                begin=0,
                end=800,
                convert_to_iter_based=True,
            )
        ],
        0.04,
        dict(max_epochs=800),
    ),
    # MMSegmentation 1.2.2's schedule_25k (scaled down 100 times)
    "schedule_25k": (
        [
            dict(type="LinearLR", start_factor=3e-2, begin=0, end=120, by_epoch=False),
            dict(type="PolyLRRatio", eta_min_ratio=3e-2, power=0.9, begin=120, end=240, by_epoch=False),
            dict(type="ConstantLR", by_epoch=False, factor=1, begin=240, end=250),
        ],
        0.001,
        dict(max_iters=250),
    ),
}


@pytest.mark.parametrize("name", sorted(ZOO_RECIPES))
def test_the_zoo_recipes(name, precision):
    cfgs, base, lengths = ZOO_RECIPES[name]
    epoch_len = 2
    iters = lengths.get("max_iters") or lengths["max_epochs"] * epoch_len
    param = "weight_decay" if "weight_decay" in name else None
    expected = reference(cfgs, base, epoch_len=epoch_len, iters=iters, param=param, **lengths)
    assert_curves_match(
        cfgs,
        base,
        iters,
        expected,
        precision,
        name,
        epoch_len=epoch_len,
        floor=rounding_floor(SCHEDULE_RTOL[precision], 8),
        **lengths,
    )


@pytest.mark.parametrize(
    "cfgs, message",
    [
        ([dict(type="QuadraticWarmupLR", by_epoch=False)], "end must be set"),
        ([dict(type="QuadraticWarmupLR", end=3, T_max=2)], "T_max is not an argument of QuadraticWarmupLR"),
        ([dict(type="QuadraticWarmupParamScheduler", end=3)], "param_name must name the parameter"),
        ([dict(type="CosineAnnealingWeightDecay", end=3, param_name="lr")], "param_name is not an argument"),
        ([dict(type="PolyLRRatio", end=3, eta_min_ratio=-0.5)], "eta_min_ratio"),
        ([dict(type="CosineAnnealingWeightDecay", end=3, eta_min=0.1, eta_min_ratio=0.1)], "not both"),
    ],
)
def test_bad_input(cfgs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        pm.param_scheduler(cfgs, 0.1, epoch_len=3)
