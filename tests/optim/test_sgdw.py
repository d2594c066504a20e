"""Parity of purelr.optim.sgdw with timm 1.0.31's SGDW (torch_reference's side-by-side runs): four
flag combinations by default, every combination nightly."""

import pytest
from timm.optim import SGDW

from purelr.optim.sgdw import sgdw
from tests.optim import torch_reference as ref


def draw(rng):
    lr = ref.loguniform(rng, 1e-3, 0.1)
    return dict(
        lr=lr,
        max_lr_snapshot=lr,
        momentum=float(rng.choice([0.0, rng.uniform(0.5, 0.95)])),
        dampening=float(rng.choice([0.0, rng.uniform(0.0, 0.5)])),
        weight_decay=float(rng.choice([0.0, ref.loguniform(rng, 1e-4, 1e-1)])),
    )


def draw_nesterov(rng):
    return dict(draw(rng), momentum=rng.uniform(0.5, 0.95), dampening=0.0)


CONFIGS = ref.chosen(
    [dict(maximize=True), dict(caution=True, corrected_weight_decay=True)], draw, per_combination=8, seed=210
) + ref.chosen(
    [dict(nesterov=True), dict(nesterov=True, caution=True, maximize=True)], draw_nesterov, per_combination=8, seed=212
)
ALL_FLAGS = dict(caution=[False, True], corrected_weight_decay=[False, True], maximize=[False, True])


def test_matches_timm(precision):
    ref.check_family(sgdw, SGDW, CONFIGS)


@pytest.mark.nightly
def test_every_flag_combination_matches_timm(precision):
    ref.check_family(
        sgdw,
        SGDW,
        ref.configurations(dict(ALL_FLAGS, nesterov=[False]), draw, per_combination=4, seed=215)
        + ref.configurations(dict(ALL_FLAGS, nesterov=[True]), draw_nesterov, per_combination=4, seed=216),
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2, caution=True),
        dict(lr=1e-3, momentum=0.9, dampening=0.1, weight_decay=1e-3, corrected_weight_decay=True),
    ],
)
def test_defaults_match_timm(precision, kwargs):
    ref.check_defaults(sgdw, SGDW, **kwargs)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("lr", dict(lr=-0.1)),
        ("momentum", dict(momentum=-0.5)),
        ("weight_decay", dict(weight_decay=-1e-4)),
        ("momentum", dict(nesterov=True, momentum=0.0)),
        ("dampening", dict(nesterov=True, momentum=0.9, dampening=0.1)),
        ("lr", dict(lr=0.0, corrected_weight_decay=True)),
    ],
)
def test_rejects_what_timm_rejects(name, kwargs):
    ref.check_rejects(sgdw, SGDW, name, **kwargs)
