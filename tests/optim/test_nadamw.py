"""Parity of purelr.optim.nadamw with timm 1.0.31's NAdamW (torch_reference's side-by-side runs): four
flag combinations by default, every combination nightly."""

import pytest
from timm.optim import NAdamW

from purelr.optim.nadamw import nadamw
from tests.optim import torch_reference as ref


def draw(rng):
    lr = ref.loguniform(rng, 1e-4, 1e-2)
    return dict(
        lr=lr,
        max_lr_snapshot=lr,
        betas=(rng.uniform(0.0, 0.95), rng.uniform(0.9, 0.9999)),
        eps=float(rng.choice([1e-8, ref.loguniform(rng, 1e-10, 1e-3)])),
        weight_decay=float(rng.choice([0.0, ref.loguniform(rng, 1e-4, 1e-1)])),
    )


def draw_clipped(rng):
    return dict(draw(rng), clipping_threshold=ref.loguniform(rng, 0.3, 3.0))


CONFIGS = ref.chosen(
    [dict(), dict(caution=True, corrected_weight_decay=True, maximize=True)], draw, per_combination=8, seed=220
) + ref.chosen([dict(), dict(caution=True, maximize=True)], draw_clipped, per_combination=8, seed=222)
ALL_FLAGS = dict(caution=[False, True], corrected_weight_decay=[False, True], maximize=[False, True])


def test_matches_timm(precision):
    ref.check_family(nadamw, NAdamW, CONFIGS)


@pytest.mark.nightly
def test_every_flag_combination_matches_timm(precision):
    ref.check_family(
        nadamw,
        NAdamW,
        ref.configurations(ALL_FLAGS, draw, per_combination=4, seed=225)
        + ref.configurations(ALL_FLAGS, draw_clipped, per_combination=4, seed=226),
    )


@pytest.mark.parametrize("kwargs", [{}, dict(weight_decay=0.05, caution=True, clipping_threshold=1.0)])
def test_defaults_match_timm(precision, kwargs):
    ref.check_defaults(nadamw, NAdamW, **kwargs)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("lr", dict(lr=-1e-3)),
        ("eps", dict(eps=-1.0)),
        ("weight_decay", dict(weight_decay=-0.1)),
        ("betas[0]", dict(betas=(1.0, 0.999))),
        ("betas[1]", dict(betas=(0.9, 1.5))),
        ("lr", dict(lr=0.0, corrected_weight_decay=True)),
    ],
)
def test_rejects_what_timm_rejects(name, kwargs):
    ref.check_rejects(nadamw, NAdamW, name, **kwargs)
