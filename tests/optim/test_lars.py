"""Parity of purelr.optim.lars with timm 1.0.31's Lars (torch_reference's side-by-side runs): four
flag combinations by default (timm's lars, larc, nlars, nlarc), every combination nightly."""

import pytest
from timm.optim import Lars

from purelr.optim.lars import lars
from tests.optim import torch_reference as ref


def draw(rng):
    return dict(
        lr=ref.loguniform(rng, 1e-2, 1.0),
        momentum=float(rng.choice([0.0, rng.uniform(0.5, 0.95)])),
        dampening=float(rng.choice([0.0, rng.uniform(0.0, 0.5)])),
        weight_decay=float(rng.choice([0.0, ref.loguniform(rng, 1e-4, 1e-1)])),
        trust_coeff=ref.loguniform(rng, 1e-3, 1e-1),
        eps=ref.loguniform(rng, 1e-10, 1e-6),
    )


def draw_nesterov(rng):
    return dict(draw(rng), momentum=rng.uniform(0.5, 0.95), dampening=0.0)


CONFIGS = ref.chosen(
    [dict(), dict(trust_clip=True, always_adapt=True)], draw, per_combination=8, seed=190
) + ref.chosen(
    [dict(nesterov=True, always_adapt=True), dict(nesterov=True, trust_clip=True)],
    draw_nesterov,
    per_combination=8,
    seed=192,
)
ALL_FLAGS = dict(trust_clip=[False, True], always_adapt=[False, True])


def test_matches_timm(precision):
    ref.check_family(lars, Lars, CONFIGS)


@pytest.mark.nightly
def test_every_flag_combination_matches_timm(precision):
    ref.check_family(
        lars,
        Lars,
        ref.configurations(dict(ALL_FLAGS, nesterov=[False]), draw, per_combination=6, seed=195)
        + ref.configurations(dict(ALL_FLAGS, nesterov=[True]), draw_nesterov, per_combination=6, seed=196),
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        dict(lr=0.1, momentum=0.9, weight_decay=1e-3, trust_clip=True),
        dict(lr=0.5, momentum=0.9, nesterov=True, weight_decay=1e-2),
    ],
)
def test_defaults_match_timm(precision, kwargs):
    ref.check_defaults(lars, Lars, **kwargs)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("lr", dict(lr=-1.0)),
        ("momentum", dict(momentum=-0.9)),
        ("weight_decay", dict(weight_decay=-1e-2)),
        ("momentum", dict(nesterov=True, momentum=0.0)),
        ("dampening", dict(nesterov=True, momentum=0.9, dampening=0.1)),
    ],
)
def test_rejects_what_timm_rejects(name, kwargs):
    ref.check_rejects(lars, Lars, name, **kwargs)
