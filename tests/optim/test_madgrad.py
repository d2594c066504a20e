"""purelr.optim.madgrad against timm 1.0.31's ``timm.optim.MADGRAD``, side by side (torch_reference).
Random momenta are drawn in (0, 1) (timm keeps ``x0`` only for a momentum that is not 0: with a
momentum of 0 the twin's ``x0`` buffer would hold the params where timm has none); momentum 0
runs with constants in ``test_defaults_match_timm``. The default run takes ``decoupled_decay=False``
(timm's ``madgrad``) in both precisions; ``madgradw``'s flag runs nightly."""

import pytest
from timm.optim import MADGRAD

from purelr.optim.madgrad import madgrad
from tests.bad_inputs import assert_rejects
from tests.optim import torch_reference as ref


def draw(rng):
    return dict(
        lr=ref.loguniform(rng, 1e-4, 1e-2),
        momentum=rng.uniform(0.05, 0.95),
        weight_decay=float(rng.choice([0.0, ref.loguniform(rng, 1e-4, 1e-1)])),
        eps=float(rng.choice([1e-6, ref.loguniform(rng, 1e-8, 1e-4)])),
    )


CONFIGS = ref.configurations(dict(decoupled_decay=[False, True]), draw, per_combination=16, seed=34)


def test_registered_flags_match_timm(precision):
    ref.check_family(madgrad, MADGRAD, [c for c in CONFIGS if not c["decoupled_decay"]])


@pytest.mark.nightly
def test_matches_timm(precision):
    ref.check_family(madgrad, MADGRAD, CONFIGS)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        dict(momentum=0.0, weight_decay=1e-3),
        pytest.param(dict(decoupled_decay=True, weight_decay=1e-2), marks=pytest.mark.nightly),
    ],
)
def test_defaults_match_timm(precision, kwargs):
    ref.check_defaults(madgrad, MADGRAD, **kwargs)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("lr", dict(lr=0.0)),
        ("lr", dict(lr=-1e-3)),
        ("momentum", dict(momentum=1.0)),
        ("momentum", dict(momentum=-0.1)),
        ("weight_decay", dict(weight_decay=-1e-4)),
        ("eps", dict(eps=-1.0)),
    ],
)
def test_rejects_what_timm_rejects(name, kwargs):
    ref.check_rejects(madgrad, MADGRAD, name, **kwargs)


@pytest.mark.parametrize(
    "kwargs, needles", [(dict(lr=float("inf")), ("lr", "inf")), (dict(eps=float("nan")), ("eps", "nan"))]
)
def test_rejects_bad_input(kwargs, needles):
    assert_rejects(lambda: madgrad(**kwargs), ValueError, *needles)
