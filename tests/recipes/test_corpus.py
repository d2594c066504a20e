"""The OpenMMLab config corpora (``tests/corpus.py``: MMDetection 2.28.2 and 3.3.0, MMSegmentation
0.30.0 and 1.2.2, MMClassification 0.25.0, MMPretrain 1.2.0 and its pure-Python configs, MMPose
1.3.2) read and built by purelr, side by side with the originals.

Every top-level config that the original loader reads (MMCV 1.7.2's ``Config`` for the MMCV-era
trees, MMEngine 0.10.7's for the others) is read by ``purelr.load_config`` without trust, and the
keys purelr uses must be equal. Each distinct recipe (configs sharing optimizer, schedule and run
keys are built once) is then built, its lr and momentum curves (``epoch_len=EPOCH_LEN``) compared
with MMCV's hooks / MMEngine's schedulers stepped as their runners step them, under x64 to 1e-12
relative. A recipe lands in one category: ``equal``, ``no optimizer`` (test and deploy configs),
``original fails`` (the original runner
cannot build it either), ``equal once ... is removed`` (a ``custom_keys`` entry holding a key the
original silently ignores, ``wd_mult`` for ``decay_mult``: an error in purelr, as issue 15 decided;
with the key removed, as the error advises, the curves equal the original's on the config as
written), or a failure. The default run takes every ``SAMPLE``-th config; the
nightly run takes them all. ``python -m tests.recipes.test_corpus`` prints the counts.
"""

from __future__ import annotations

import collections
import contextlib
import io
import json
import re
import warnings

import jax
import numpy as np
import pytest

from purelr.cli.compare import reference_curves
from purelr.cli.curves import config_curves
from purelr.recipes.config import load_config
from purelr.recipes.pyconfig import Imported
from tests import corpus as corpora
from tests import original_hooks
from tests.parity import SCHEDULE_RTOL, UNIT_ROUNDOFF, assert_schedule_matches, rounding_floor

KEYS = (
    "optimizer",
    "optimizer_config",
    "lr_config",
    "momentum_config",
    "runner",
    "total_epochs",
    "total_iters",
    "optim_wrapper",
    "param_scheduler",
    "train_cfg",
    "auto_scale_lr",
    "fp16",
    "strategy",
)
EPOCH_LEN = 7
WORLD_SIZE = 8
"""For ``auto_scale_lr=dict(enable=True)`` (the ``8xb32`` of the zoo's config names; any value
would do: the reference is stepped from purelr's scaled base lr, and the scaling itself is tested
against MMEngine's ``Runner.scale_lr`` in test_config_language.py)."""
LONG_EPOCH_LEN = 100
"""For configs whose schedulers begin after ``EPOCH_LEN``-long epochs end the run (MMPretrain's
ShuffleNet: a PolyLR from iteration 5000 of a 300-epoch run), which MMEngine refuses too."""
SAMPLE = 40
RECURSION_EXACT = 20000


def plain(value):
    """Config values as the originals' ``to_dict`` give them: imported names as dotted strings."""
    if isinstance(value, Imported):
        return value.name
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if type(value) in (list, tuple):
        return type(value)(plain(item) for item in value)
    return value


def reference_config(corpus, path):
    """The config as the original loader reads it, or None where the original cannot read it."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            if corpus.loader == "mmcv":
                from mmcv import Config

                return Config.fromfile(path, import_custom_modules=False)._cfg_dict.to_dict()
            from mmengine.config import Config

            return Config.fromfile(path, import_custom_modules=False).to_dict()
        except Exception:  # a config whose bases are not in the tree (another package's), ...
            return None


def category(corpus, path) -> str:
    """What purelr makes of one config, compared with the original (raises where they differ)."""
    reference = reference_config(corpus, path)
    if reference is None:
        return "original cannot load"
    cfg = load_config(path)
    ours = {key: plain(cfg.get(key)) for key in KEYS}
    assert ours == {key: reference.get(key) for key in KEYS}, path
    if cfg.get("optimizer") is None and cfg.get("optim_wrapper") is None:
        return "no optimizer"
    if "ipu_model_cfg" in (cfg.get("runner") or {}):  # MMClassification's IPU recipes
        return "original fails: an IPU runner's ipu_model_cfg (EpochBasedRunner / IterBasedRunner refuse it off IPUs)"
    wrapper = cfg.get("optim_wrapper")
    if wrapper is not None and "optimizer" not in wrapper:
        return "original fails: optim_wrapper has no optimizer"
    if wrapper is not None and "_delete_" in json.dumps(plain(wrapper)):
        return "original fails: a _delete_ left in optim_wrapper (pure-Python configs do not merge)"
    removed = []
    while True:
        try:
            curves = _curves(cfg)
            break
        except ValueError as error:
            if "only one of type and by_epoch" in str(error):  # Runner.build_train_loop raises RuntimeError
                return "original fails: train_cfg has both type and by_epoch"
            if re.search(r"param_scheduler\[\d+\]\.factor must be in \(0\.0, 1\.0\]", str(error)):
                return "original fails: a ConstantLR factor outside [0, 1] (ConstantParamScheduler raises)"
            refused = re.search(r"custom_keys\[('[^']+')\]: unknown key '(\w+)'", str(error))
            if refused is None or len(removed) > 8:
                raise
            entry, key = refused.group(1).strip("'"), refused.group(2)
            cfg = _without_custom_key(plain(cfg), entry, key)
            removed.append(f"custom_keys[{entry!r}].{key}")
    against = "mmengine" if "optim_wrapper" in cfg else "mmcv"
    # imported scheduler classes by the name MMEngine's registry knows (mmengine.optim.scheduler[.lr_scheduler].X)
    reference_cfg = json.loads(re.sub(r'"mmengine\.optim\.scheduler\.(?:\w+\.)*', '"', json.dumps(plain(cfg))))
    expected = reference_curves(reference_cfg, curves, against)
    for key, values in curves.values.items():
        # floor: 8 float64 units of the peak: MMCV's warmups and MMEngine's recursions cancel there
        # (measured 0.3 units: a linear warmup's first value, 1e-6 of the peak, poolformer)
        assert_schedule_matches(
            values,
            expected.values[key],
            "x64",
            context=f"{path} {key}",
            floor=rounding_floor(SCHEDULE_RTOL["x64"], 8),
            rtol=recursion_rtol(len(values)),
        )
    if removed:
        return f"equal once {', '.join(sorted(set(removed)))} (refused: a key the original ignores) is removed"
    return "equal"


def recursion_rtol(length: int):
    """1e-12 for the first ``RECURSION_EXACT`` iterations, then ``n`` units of float64 roundoff at
    iteration ``n``: MMEngine's schedulers step their value by a chained recursion, one rounding a
    step, which drifts from the closed form over a long run. MMSegmentation's 160k-iteration PolyLR
    (segmenter, setr: ``(lr - eta_min) * (1 - 1 / (T - n + 1)) ** power + eta_min``) is 1.31e-12
    off its exact value (mpmath) at iteration 142615, 5900 units; purelr's closed form is 0.5 unit
    off there. MMSegmentation 1.2.2's BEiT (PolyLR to ``eta_min=0`` over 158,500 iterations from a
    layer-decay group's base lr): 1.9e-12 at iteration 151,911."""
    n = np.arange(length)
    return np.where(
        n < RECURSION_EXACT, SCHEDULE_RTOL["x64"], np.maximum(SCHEDULE_RTOL["x64"], n * UNIT_ROUNDOFF["x64"])
    )


def _curves(cfg):
    with jax.enable_x64(True):
        try:
            return config_curves(cfg, epoch_len=EPOCH_LEN, world_size=WORLD_SIZE)
        except ValueError as error:
            if "must be larger than begin" not in str(error):
                raise
            return config_curves(cfg, epoch_len=LONG_EPOCH_LEN, world_size=WORLD_SIZE)


def _without_custom_key(tree, entry: str, key: str):
    """``tree`` with ``key`` dropped from every ``custom_keys[entry]``: what purelr's error tells a
    user to do with a key the original ignores (MMCV's constructor reads only ``lr_mult`` and
    ``decay_mult``)."""
    if isinstance(tree, dict):
        out = {k: _without_custom_key(v, entry, key) for k, v in tree.items()}
        custom = out.get("custom_keys")
        if isinstance(custom, dict) and isinstance(custom.get(entry), dict):
            custom[entry] = {k: v for k, v in custom[entry].items() if k != key}
        return out
    if isinstance(tree, list):
        return [_without_custom_key(v, entry, key) for v in tree]
    return tree


def recipes(corpus, every: int):
    """``(path, signature)`` of every ``every``-th top-level config of ``corpus``."""
    top = corpora.root(corpus)
    return [f"{top}/{relative}" for relative in corpora.configs(corpus)[::every]]


def run(every: int) -> dict:
    """``{corpus: Counter(category)}``; configs with the same recipe keys are built once."""
    original_hooks.register()  # MMCV-era lr_config policies of MMDetection 2.x and MMClassification 0.x
    counts = {}
    for corpus in corpora.CORPORA:
        seen: dict = {}
        counts[corpus.name] = collections.Counter()
        for path in recipes(corpus, every):
            signature = json.dumps({k: plain(v) for k, v in _keys(path).items()}, sort_keys=True, default=repr)
            if signature not in seen:
                try:
                    seen[signature] = category(corpus, path)
                except Exception as error:  # reported with the others, then failed in _check
                    seen[signature] = f"failed: {path}: {type(error).__name__}: {str(error)[:300]}"
            counts[corpus.name][seen[signature]] += 1
    return counts


def _keys(path):
    try:
        cfg = load_config(path)
    except Exception:
        return {"path": path}  # the original cannot read it either: category() says so
    return {key: cfg.get(key) for key in KEYS}


def _check(counts):
    failures = {
        name: [c for c in count if not c.startswith(("equal", "no optimizer", "original"))]
        for name, count in counts.items()
    }
    assert not any(failures.values()), failures
    assert sum(count["equal"] for count in counts.values()) > 0


def test_a_sample_of_the_corpora_reads_and_builds_as_the_originals():
    counts = run(SAMPLE)
    print(json.dumps(counts, indent=1))
    _check(counts)


@pytest.mark.nightly
def test_every_config_of_the_corpora_reads_and_builds_as_the_originals():
    counts = run(1)
    print(json.dumps(counts, indent=1))
    _check(counts)


if __name__ == "__main__":
    import sys

    import tests.conftest  # noqa: F401  (the reference libraries' import shims, as under pytest)

    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 1), indent=1))


@pytest.mark.parametrize(
    "name", ["faster_rcnn/faster_rcnn_r50_caffe_fpn_mstrain_90k_coco.py", "yolof/yolof_r50_c5_8x8_iter-1x_coco.py"]
)
def test_mmdetection_2_iteration_based_configs_decay_as_mmcv(name):
    """MMCV's IterBasedRunner defaults ``lr_config.by_epoch`` to False: ``step=[60000, 80000]`` and
    ``step=[15000, 20000]`` count iterations (MMDetection 2.28.2's configs)."""
    corpus = corpora.CORPORA[0]
    assert category(corpus, f"{corpora.root(corpus)}/{name}") == "equal"
    cfg = load_config(f"{corpora.root(corpus)}/{name}")
    with jax.enable_x64(True):
        curves = config_curves(cfg, epoch_len=EPOCH_LEN)
    lr = curves.values[next(iter(curves.values))]
    first_step = cfg["lr_config"]["step"][0]
    assert lr[first_step - 1] == pytest.approx(10 * lr[first_step], rel=1e-12)


def test_mmsegmentation_0x_total_iters_is_an_iteration_based_run():
    corpus = corpora.CORPORA[2]
    path = f"{corpora.root(corpus)}/cgnet/cgnet_512x1024_60k_cityscapes.py"
    assert category(corpus, path) == "equal"
    with jax.enable_x64(True):
        assert len(config_curves(load_config(path), epoch_len=EPOCH_LEN).steps) == 60000


ISSUE_19 = [  # one config of each tree for each part that issue 19 twinned
    ("mmdet-2.28.2", "yolox/yolox_s_8x8_300e_coco.py"),  # policy='YOLOX'
    ("mmcls-0.25.0", "t2t_vit/t2t-vit-t-14_8xb64_in1k.py"),  # CosineAnnealingCooldown
    ("mmcls-0.25.0", "resnet/resnet50_8xb256-rsb-a1-600e_in1k.py"),  # Lamb (MMCV style)
    ("mmdet-3.3.0", "yolox/yolox_s_8xb8-300e_coco.py"),  # 'mmdet.QuadraticWarmupLR'
    ("mmpose-1.3.2", "body_2d_keypoint/yoloxpose/coco/yoloxpose_s_8xb32-300e_coco-640.py"),  # QuadraticWarmupLR
    ("mmpretrain-1.2.0", "mobileone/mobileone-s0_8xb32_in1k.py"),  # CosineAnnealingParamScheduler on weight_decay
    ("mmpretrain-1.2.0", "simclr/simclr_resnet50_8xb32-coslr-200e_in1k.py"),  # LARS with lars_exclude groups
    ("mmpretrain-1.2.0", "resnet/resnet50_8xb256-rsb-a2-300e_in1k.py"),  # Lamb
    ("mmpretrain-pure-python-1.2.0", "simclr/simclr_resnet50_16xb256_coslr_200e_in1k.py"),  # LARS, imported
    ("mmpretrain-1.2.0", "simsiam/simsiam_resnet50_8xb32-coslr-100e_in1k.py"),  # SimSiamHook, fix_lr
]


@pytest.mark.parametrize("tree, name", ISSUE_19, ids=[name for _, name in ISSUE_19])
def test_issue_19_parts_build_as_the_originals(tree, name):
    """Curves of lr, momentum and (mobileone) each group's weight decay equal the originals'."""
    original_hooks.register()
    corpus = next(c for c in corpora.CORPORA if c.name == tree)
    assert category(corpus, f"{corpora.root(corpus)}/{name}") == "equal"
