"""purelr.optim.mars against timm 1.0.31's ``timm.optim.Mars``, side by side (torch_reference):
the MLP's kernels take MARS's corrected-gradient step, its biases AdamW (unless ``optimize_1d``).
The default run takes timm's ``mars`` flags in both precisions; every flag combination runs
nightly."""

import pytest
from timm.optim import Mars

from purelr.optim.mars import mars
from tests.optim import torch_reference as ref


def draw(rng):
    return dict(
        lr=ref.loguniform(rng, 1e-4, 1e-2),
        betas=(rng.uniform(0.0, 0.95), rng.uniform(0.5, 0.999)),
        betas_1d=(rng.uniform(0.0, 0.95), rng.uniform(0.5, 0.999)),
        eps=float(rng.choice([1e-8, ref.loguniform(rng, 1e-10, 1e-4)])),
        weight_decay=float(rng.choice([0.0, ref.loguniform(rng, 1e-4, 1e-1)])),
        gamma=float(rng.choice([0.025, rng.uniform(0.0, 0.5)])),
        lr_1d_factor=rng.uniform(0.1, 2.0),
    )


FLAGS = dict(mars_type=["adamw", "lion"], optimize_1d=[False, True], caution=[False, True])
CONFIGS = ref.configurations(FLAGS, draw, per_combination=4, seed=42)
REGISTERED = [c for c in CONFIGS if c["mars_type"] == "adamw" and not (c["optimize_1d"] or c["caution"])]


def test_registered_flags_match_timm(precision):
    ref.check_family(mars, Mars, REGISTERED)


@pytest.mark.nightly
def test_matches_timm(precision):
    ref.check_family(mars, Mars, CONFIGS)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        pytest.param(dict(mars_type="lion", lr=1e-4, weight_decay=1e-2, caution=True), marks=pytest.mark.nightly),
        pytest.param(dict(optimize_1d=True, betas_1d=(0.8, 0.9)), marks=pytest.mark.nightly),
    ],
)
def test_defaults_match_timm(precision, kwargs):
    ref.check_defaults(mars, Mars, **kwargs)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("lr", dict(lr=-1e-3)),
        ("eps", dict(eps=-1e-6)),
        ("betas[0]", dict(betas=(1.0, 0.99))),
        ("betas[1]", dict(betas=(0.9, 1.0))),
    ],
)
def test_rejects_what_timm_rejects(name, kwargs):
    ref.check_rejects(mars, Mars, name, **kwargs)


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="mars_type.*'sgd'"):
        mars(mars_type="sgd")
    with pytest.raises(ValueError, match=r"betas\[1\].*1.5"):
        mars(betas_1d=(0.9, 1.5))
