"""purelr.optim.adamp against timm 1.0.31's ``timm.optim.AdamP``, side by side (torch_reference).

``delta`` is drawn up to 5 as well as near timm's 0.1, so that both the projected branch (channel
or layer view) and the plain one occur on the MLP's kernels. The default run takes the flags timm
registers ``adamp`` with (``nesterov``) in both precisions; every flag combination runs nightly."""

import pytest
from timm.optim import AdamP

from purelr.optim.adamp import adamp
from tests.bad_inputs import assert_rejects
from tests.optim import torch_reference as ref


def draw(rng):
    return dict(
        lr=ref.loguniform(rng, 1e-4, 1e-2),
        betas=(rng.uniform(0.0, 0.95), rng.uniform(0.9, 0.9999)),
        eps=float(rng.choice([1e-8, ref.loguniform(rng, 1e-10, 1e-3)])),
        weight_decay=float(rng.choice([0.0, ref.loguniform(rng, 1e-4, 1e-1)])),
        delta=float(rng.choice([0.1, rng.uniform(0.05, 5.0)])),
        wd_ratio=rng.uniform(0.0, 1.0),
    )


CONFIGS = ref.configurations(dict(nesterov=[False, True], caution=[False, True]), draw, per_combination=8, seed=31)


def test_registered_flags_match_timm(precision):
    ref.check_family(adamp, AdamP, [c for c in CONFIGS if c["nesterov"] and not c["caution"]])


@pytest.mark.nightly
def test_matches_timm(precision):
    ref.check_family(adamp, AdamP, CONFIGS)


@pytest.mark.parametrize(
    "kwargs",
    [{}, pytest.param(dict(nesterov=True, caution=True, weight_decay=1e-2, delta=3.0), marks=pytest.mark.nightly)],
)
def test_defaults_match_timm(precision, kwargs):
    ref.check_defaults(adamp, AdamP, **kwargs)


@pytest.mark.parametrize(
    "kwargs, needles",
    [
        (dict(lr=-1e-3), ("lr", "-0.001")),
        (dict(eps=float("nan")), ("eps", "nan")),
        (dict(betas=(1.0, 0.999)), ("betas[0]", "1.0")),
        (dict(betas=(0.9, -0.5)), ("betas[1]", "-0.5")),
        (dict(weight_decay=-0.1), ("weight_decay", "-0.1")),
        (dict(delta=float("inf")), ("delta", "inf")),
        (dict(wd_ratio=-1.0), ("wd_ratio", "-1.0")),
        (dict(layout="tf"), ("layout", "'tf'")),
    ],
)
def test_rejects_bad_input(kwargs, needles):
    assert_rejects(lambda: adamp(**kwargs), ValueError, *needles)
