"""Parity of purelr.optim.lion with timm 1.0.31's Lion (torch_reference's side-by-side runs): four
flag combinations by default, every combination nightly."""

import pytest
from timm.optim import Lion

from purelr.optim.lion import lion
from tests.optim import torch_reference as ref


def draw(rng):
    lr = ref.loguniform(rng, 1e-5, 1e-3)
    return dict(
        lr=lr,
        max_lr_snapshot=lr,
        betas=(rng.uniform(0.0, 0.95), rng.uniform(0.9, 0.999)),
        weight_decay=float(rng.choice([0.0, ref.loguniform(rng, 1e-3, 1.0)])),
    )


CONFIGS = ref.chosen(
    [
        dict(),
        dict(caution=True, maximize=True),
        dict(corrected_weight_decay=True),
        dict(caution=True, corrected_weight_decay=True),
    ],
    draw,
    per_combination=8,
    seed=200,
)
ALL_FLAGS = dict(caution=[False, True], corrected_weight_decay=[False, True], maximize=[False, True])


def test_matches_timm(precision):
    ref.check_family(lion, Lion, CONFIGS)


@pytest.mark.nightly
def test_every_flag_combination_matches_timm(precision):
    ref.check_family(lion, Lion, ref.configurations(ALL_FLAGS, draw, per_combination=6, seed=205))


@pytest.mark.parametrize("kwargs", [{}, dict(weight_decay=0.1, caution=True, betas=(0.95, 0.98))])
def test_defaults_match_timm(precision, kwargs):
    ref.check_defaults(lion, Lion, **kwargs)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("lr", dict(lr=-1.0)),
        ("betas[0]", dict(betas=(1.0, 0.99))),
        ("betas[1]", dict(betas=(0.9, -0.1))),
        ("lr", dict(lr=0.0, corrected_weight_decay=True)),
    ],
)
def test_rejects_what_timm_rejects(name, kwargs):
    ref.check_rejects(lion, Lion, name, **kwargs)
