"""purelr.optim.sgdp against timm 1.0.31's ``timm.optim.SGDP``, side by side (torch_reference).

``delta`` is drawn up to 5 as well as near timm's 0.1 (both branches of the projection occur). The
default run takes the flags timm registers ``sgdp`` with (``nesterov``) in both precisions; every
flag combination runs nightly."""

import pytest
from timm.optim import SGDP

from purelr.optim.sgdp import sgdp
from tests.bad_inputs import assert_rejects
from tests.optim import torch_reference as ref


def draw(rng):
    return dict(
        lr=ref.loguniform(rng, 1e-3, 5e-2),
        momentum=rng.uniform(0.05, 0.95),
        dampening=float(rng.choice([0.0, rng.uniform(0.0, 0.5)])),
        weight_decay=float(rng.choice([0.0, ref.loguniform(rng, 1e-4, 1e-1)])),
        eps=float(rng.choice([1e-8, ref.loguniform(rng, 1e-10, 1e-3)])),
        delta=float(rng.choice([0.1, rng.uniform(0.05, 5.0)])),
        wd_ratio=rng.uniform(0.0, 1.0),
    )


CONFIGS = ref.configurations(dict(nesterov=[False, True], caution=[False, True]), draw, per_combination=8, seed=32)


def test_registered_flags_match_timm(precision):
    ref.check_family(sgdp, SGDP, [c for c in CONFIGS if c["nesterov"] and not c["caution"]])


@pytest.mark.nightly
def test_matches_timm(precision):
    ref.check_family(sgdp, SGDP, CONFIGS)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(lr=1e-2),
        pytest.param(
            dict(lr=1e-2, momentum=0.9, nesterov=True, caution=True, weight_decay=1e-2, delta=3.0),
            marks=pytest.mark.nightly,
        ),
    ],
)
def test_defaults_match_timm(precision, kwargs):
    ref.check_defaults(sgdp, SGDP, **kwargs)


@pytest.mark.parametrize(
    "kwargs, needles",
    [
        (dict(lr=-1e-3), ("lr", "-0.001")),
        (dict(lr=float("inf")), ("lr", "inf")),
        (dict(lr=0.1, momentum=-0.9), ("momentum", "-0.9")),
        (dict(lr=0.1, weight_decay=-0.1), ("weight_decay", "-0.1")),
        (dict(lr=0.1, eps=-1.0), ("eps", "-1.0")),
        (dict(lr=0.1, delta=float("nan")), ("delta", "nan")),
        (dict(lr=0.1, wd_ratio=-1.0), ("wd_ratio", "-1.0")),
        (dict(lr=0.1, layout="tf"), ("layout", "'tf'")),
    ],
)
def test_rejects_bad_input(kwargs, needles):
    assert_rejects(lambda: sgdp(**kwargs), ValueError, *needles)
