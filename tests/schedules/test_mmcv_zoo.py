"""The MMCV 1.x ``lr_config`` policies the model zoos register, against their original files:
MMDetection 2.28.2's ``YOLOXLrUpdaterHook`` (mmdet/core/hook/yolox_lrupdater_hook.py) and
MMClassification 0.25.0's ``CosineAnnealingCooldownLrUpdaterHook`` (mmcls/core/hook/lr_updater.py),
each loaded alone from its pinned wheel (``tests/original_hooks.py``) and driven by MMCV 1.7.2's
runner loop (``tests/mmcv_runner.py``), every iteration compared with ``lr_config``'s curve,
eager and jitted.
"""

import functools

import numpy as np
import pytest

from purelr.schedules.mmcv import lr_config
from tests import mmcv_runner, original_hooks
from tests.parity import SCHEDULE_RTOL, rounding_floor
from tests.schedules.test_mmcv import _lengths, _reference, _target, assert_curve_matches

CONFIGS_PER_POLICY = 30


def _run(rng, by_epoch, warmup_by_epoch):
    """(epoch_len, max_epochs, max_iters, runner); MMCV's IterBasedRunner never converts a warmup
    counted in epochs (``before_train_epoch`` is not called), so those run epoch-based."""
    if not by_epoch and not warmup_by_epoch and rng.random() < 0.3:
        epoch_len = int(rng.integers(1, 40))
        return epoch_len, None, int(rng.integers(1, 600)), "iter"
    epoch_len = int(rng.integers(1, 40))
    max_epochs = int(rng.integers(1, max(2, 600 // epoch_len)))
    return epoch_len, max_epochs, epoch_len * max_epochs, "epoch"


def _warmup(rng, cfg):
    kind = rng.choice([None, "constant", "linear", "exp"])
    if kind is not None:
        cfg.update(warmup=str(kind), warmup_ratio=float(rng.choice([1.0, rng.uniform(0.001, 1.0)])))


def random_yolox(rng):
    """A YOLOX config as MMDetection's (by_epoch=False, warmup counted in epochs) and around it."""
    by_epoch = bool(rng.random() < 0.3)
    cfg = dict(policy="YOLOX", by_epoch=by_epoch)
    _warmup(rng, cfg)
    warmup_by_epoch = bool(rng.random() < 0.5)
    run = _run(rng, by_epoch, warmup_by_epoch)
    epoch_len, max_epochs, max_iters, runner = run
    if warmup_by_epoch:
        cfg.update(warmup_by_epoch=True, warmup_iters=int(rng.integers(1, max_epochs + 1)))
        warm = cfg["warmup_iters"] * epoch_len
    else:
        cfg["warmup_iters"] = int(rng.integers(1, max_iters + 2)) if "warmup" in cfg or rng.random() < 0.5 else 0
        warm = cfg["warmup_iters"]
    cfg["num_last_epochs"] = int(rng.integers(0, (max_epochs or max_iters // epoch_len + 1) + 1))
    base = float(10 ** rng.uniform(-4, 0))
    _target(rng, cfg, base, "lr")
    total = max_epochs if by_epoch else max_iters
    if total - warm - epoch_len * cfg["num_last_epochs"] == 0:  # MMDetection divides by zero
        cfg["num_last_epochs"] += 1
    return cfg, base, run


def random_cooldown(rng):
    by_epoch = bool(rng.random() < 0.7)
    cfg = dict(policy="CosineAnnealingCooldown", by_epoch=by_epoch)
    _warmup(rng, cfg)
    warmup_by_epoch = "warmup" in cfg and rng.random() < 0.4
    run = _run(rng, by_epoch, warmup_by_epoch)
    epoch_len, max_epochs, max_iters, runner = run
    if "warmup" in cfg:
        cfg["warmup_by_epoch"] = warmup_by_epoch
        cfg["warmup_iters"] = int(rng.integers(1, (max_epochs + 1 if warmup_by_epoch else max_iters + 2)))
    total = max_epochs if by_epoch else max_iters
    cool = int(rng.integers(0, total + 3))
    cfg.update(cool_down_time=cool if cool != total else cool + 1, cool_down_ratio=float(rng.uniform(0.01, 1.0)))
    base = float(10 ** rng.uniform(-4, 0))
    _target(rng, cfg, base, "lr")
    return cfg, base, run


DRAWS = {"YOLOX": random_yolox, "CosineAnnealingCooldown": random_cooldown}


@functools.lru_cache(maxsize=None)
def case(policy, index):
    original_hooks.register()
    rng = np.random.default_rng([19, list(DRAWS).index(policy), index])
    cfg, base, run = DRAWS[policy](rng)
    lr, _ = _reference(mmcv_runner.make_optimizer(base), run, lr_cfg=cfg)
    return cfg, base, run, lr


@pytest.mark.parametrize("policy", sorted(DRAWS))
def test_matches_the_original_hook_random(policy, precision):
    """Floor: 8 float64 rounding units of the peak, as ``test_mmcv.test_lr_config_matches_mmcv_random``
    (both hooks anneal with ``end + 0.5 * (start - end) * (cos + 1)``, by cancellation near the end)."""
    for index in range(CONFIGS_PER_POLICY):
        cfg, base, run, expected = case(policy, index)
        assert_curve_matches(
            lr_config(cfg, base, **_lengths(run)),
            expected,
            precision,
            f"{cfg} base={base} run={run}",
            floor=rounding_floor(SCHEDULE_RTOL[precision], 8),
        )


def test_random_configs_cover_every_branch():
    cases = [case(policy, index) for policy in DRAWS for index in range(CONFIGS_PER_POLICY)]
    yolox = [(cfg, run) for cfg, _, run, _ in cases if cfg["policy"] == "YOLOX"]
    assert {run[3] for _, run in yolox} == {"epoch", "iter"}
    assert {cfg["by_epoch"] for cfg, _ in yolox} == {True, False}
    assert {cfg.get("warmup") for cfg, _ in yolox} == {None, "constant", "linear", "exp"}
    assert any(cfg.get("warmup_by_epoch") for cfg, _ in yolox) and any(cfg["num_last_epochs"] == 0 for cfg, _ in yolox)
    cooldown = [(cfg, run) for cfg, _, run, _ in cases if cfg["policy"] != "YOLOX"]
    # a cool-down longer than the run, none at all, and one that starts inside it
    assert any(cfg["cool_down_time"] == 0 for cfg, _ in cooldown)
    assert any(cfg["cool_down_time"] > (run[1] if cfg["by_epoch"] else run[2]) for cfg, run in cooldown)


MMDETECTION_YOLOX_S = dict(
    policy="YOLOX",
    warmup="exp",
    by_epoch=False,
    warmup_by_epoch=True,
    warmup_ratio=1,
    warmup_iters=5,
    num_last_epochs=15,
    min_lr_ratio=0.05,
)
MMCLS_T2T_VIT = dict(
    policy="CosineAnnealingCooldown",
    min_lr=1e-5,
    cool_down_time=10,
    cool_down_ratio=0.1,
    by_epoch=True,
    warmup_by_epoch=True,
    warmup="linear",
    warmup_iters=10,
    warmup_ratio=1e-6,
)


@pytest.mark.parametrize(
    "cfg, base, max_epochs",
    [(MMDETECTION_YOLOX_S, 0.01, 300), (MMCLS_T2T_VIT, 5e-4, 310)],
    ids=["yolox_s_8x8_300e_coco", "t2t-vit-t-14_8xb64_in1k"],
)
def test_the_zoo_recipes(cfg, base, max_epochs, precision):
    """The configs as the model zoos ship them: YOLOX-S's 300 epochs (5 of warmup, 15 flat at the
    end), T2T-ViT's 310 (10 of warmup, 10 of cool-down), 3 iterations an epoch."""
    original_hooks.register()
    expected, _ = mmcv_runner.run_epoch_based(
        mmcv_runner.make_optimizer(base), epoch_len=3, max_epochs=max_epochs, lr_cfg=cfg
    )
    assert_curve_matches(
        lr_config(cfg, base, epoch_len=3, max_epochs=max_epochs),
        expected,
        precision,
        str(cfg),
        floor=rounding_floor(SCHEDULE_RTOL[precision], 8),
    )


@pytest.mark.parametrize(
    "cfg, lengths, message",
    [
        (
            dict(policy="YOLOX", min_lr=0.0, by_epoch=False),
            dict(epoch_len=2, max_iters=10),
            "num_last_epochs is required",
        ),
        (
            dict(policy="YOLOX", num_last_epochs=1, by_epoch=False),
            dict(epoch_len=2, max_iters=10),
            "min_lr and min_lr_ratio",
        ),
        (dict(policy="YOLOX", num_last_epochs=1, min_lr=0.0, by_epoch=False), dict(max_iters=10), "needs epoch_len"),
        (dict(policy="YOLOX", num_last_epochs=-1, min_lr=0.0), dict(epoch_len=2, max_epochs=3), "num_last_epochs"),
        (
            dict(
                policy="YOLOX",
                num_last_epochs=1,
                min_lr=0.0,
                warmup="exp",
                warmup_iters=2,
                warmup_by_epoch=True,
                by_epoch=False,
            ),
            dict(epoch_len=2, max_epochs=3),
            "divides by it",
        ),
        (
            dict(policy="CosineAnnealingCooldown", min_lr=0.0, cool_down_time=4),
            dict(epoch_len=2, max_epochs=4),
            "cool_down_time must differ",
        ),
        (
            dict(policy="CosineAnnealingCooldown", min_lr=0.0, min_lr_ratio=0.1),
            dict(epoch_len=2, max_epochs=4),
            "exactly one of min_lr",
        ),
        (
            dict(policy="CosineAnnealingCooldown", min_lr=0.0, cool_down_time=1.5),
            dict(epoch_len=2, max_epochs=4),
            "cool_down_time",
        ),
    ],
)
def test_rejects_bad_input(cfg, lengths, message):
    with pytest.raises((ValueError, TypeError), match=message):
        lr_config(cfg, 0.1, **lengths)
