"""Parity of purelr.optim.rmsprop_tf with timm 1.0.31's RMSpropTF (torch_reference's side-by-side runs):
three flag combinations by default, every combination nightly."""

import pytest
from timm.optim import RMSpropTF

from purelr.optim.rmsprop_tf import rmsprop_tf
from tests.optim import torch_reference as ref


def draw(rng):
    lr = ref.loguniform(rng, 1e-4, 1e-2)
    return dict(
        lr=lr,
        max_lr_snapshot=lr,
        alpha=rng.uniform(0.8, 0.999),
        eps=ref.loguniform(rng, 1e-10, 1e-3),
        momentum=float(rng.choice([0.0, rng.uniform(0.5, 0.9)])),
        weight_decay=float(rng.choice([0.0, ref.loguniform(rng, 1e-4, 1e-1)])),
    )


CONFIGS = ref.chosen(
    [
        dict(centered=False, decoupled_decay=False, lr_in_momentum=True, caution=False),
        dict(centered=True, decoupled_decay=True, lr_in_momentum=False, caution=True),
        dict(centered=False, decoupled_decay=True, corrected_weight_decay=True, lr_in_momentum=False, caution=True),
    ],
    draw,
    per_combination=10,
    seed=170,
)
ALL_FLAGS = dict(
    centered=[False, True],
    decoupled_decay=[False, True],
    corrected_weight_decay=[False, True],
    lr_in_momentum=[False, True],
    caution=[False, True],
)


def test_matches_timm(precision):
    ref.check_family(rmsprop_tf, RMSpropTF, CONFIGS)


@pytest.mark.nightly
def test_every_flag_combination_matches_timm(precision):
    ref.check_family(rmsprop_tf, RMSpropTF, ref.configurations(ALL_FLAGS, draw, per_combination=4, seed=175))


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        dict(momentum=0.9, weight_decay=1e-2, centered=True),
        dict(momentum=0.9, weight_decay=1e-2, decoupled_decay=True, corrected_weight_decay=True, caution=True),
    ],
)
def test_defaults_match_timm(precision, kwargs):
    ref.check_defaults(rmsprop_tf, RMSpropTF, **kwargs)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("lr", dict(lr=-1.0)),
        ("alpha", dict(alpha=-0.5)),
        ("eps", dict(eps=-1e-8)),
        ("momentum", dict(momentum=-0.9)),
        ("weight_decay", dict(weight_decay=-1e-2)),
        ("lr", dict(lr=0.0, corrected_weight_decay=True)),
    ],
)
def test_rejects_what_timm_rejects(name, kwargs):
    ref.check_rejects(rmsprop_tf, RMSpropTF, name, **kwargs)
