"""purelr.optim.adabelief against timm 1.0.31's ``timm.optim.AdaBelief``, side by side
(torch_reference). ``beta2`` is drawn down to 0.5 so that the rectified update starts with
SGD steps (``rho_t < 5``) for a few steps. The default run takes the flags of timm's registered
``adabelief`` (``rectify=False``) and ``radabelief`` in both precisions; every flag combination
runs nightly."""

import pytest
from timm.optim import AdaBelief

from purelr.optim.adabelief import adabelief
from tests.bad_inputs import assert_rejects
from tests.optim import torch_reference as ref


def draw(rng):
    return dict(
        lr=ref.loguniform(rng, 1e-4, 1e-2),
        betas=(rng.uniform(0.0, 0.95), float(rng.choice([0.999, rng.uniform(0.5, 0.9999)]))),
        eps=float(rng.choice([1e-16, ref.loguniform(rng, 1e-12, 1e-6)])),
        weight_decay=float(rng.choice([0.0, ref.loguniform(rng, 1e-4, 1e-1)])),
    )


FLAGS = dict(
    rectify=[False, True],
    decoupled_decay=[False, True],
    amsgrad=[False, True],
    fixed_decay=[False, True],
    degenerated_to_sgd=[False, True],
)
CONFIGS = ref.configurations(FLAGS, draw, per_combination=2, seed=33)
REGISTERED = [
    c for c in CONFIGS if c["decoupled_decay"] and not (c["amsgrad"] or c["fixed_decay"]) and c["degenerated_to_sgd"]
]


def test_registered_flags_match_timm(precision):
    ref.check_family(adabelief, AdaBelief, REGISTERED)


@pytest.mark.nightly
def test_matches_timm(precision):
    ref.check_family(adabelief, AdaBelief, CONFIGS)


@pytest.mark.parametrize(
    "kwargs", [{}, pytest.param(dict(rectify=False, weight_decay=1e-2, amsgrad=True), marks=pytest.mark.nightly)]
)
def test_defaults_match_timm(precision, kwargs):
    ref.check_defaults(adabelief, AdaBelief, **kwargs)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("lr", dict(lr=-1e-3)),
        ("eps", dict(eps=-1e-16)),
        ("betas[0]", dict(betas=(1.0, 0.999))),
        ("betas[1]", dict(betas=(0.9, 1.0))),
    ],
)
def test_rejects_what_timm_rejects(name, kwargs):
    ref.check_rejects(adabelief, AdaBelief, name, **kwargs)


@pytest.mark.parametrize(
    "kwargs, needles",
    [
        (dict(weight_decay=-0.1), ("weight_decay", "-0.1")),
        (dict(lr=float("nan")), ("lr", "nan")),
        (dict(foreach="yes"), ("foreach", "'yes'")),
    ],
)
def test_rejects_bad_input(kwargs, needles):
    assert_rejects(lambda: adabelief(**kwargs), (ValueError, TypeError), *needles)
