"""Parity of purelr.optim.adamw_legacy with timm 1.0.31's AdamWLegacy (torch_reference's side-by-side
runs, every configuration a param group of one timm optimizer): the flag combinations of timm's
``adamwlegacy``, ``adamc``, ``cadamw`` and ``cadamc`` names plus AMSGrad and RMS clipping by default,
every combination nightly."""

import pytest
from timm.optim.adamw import AdamWLegacy

from purelr.optim.adamw_legacy import adamw_legacy
from tests.optim import torch_reference as ref
from tests.optim.test_nadamw import draw, draw_clipped

CONFIGS = ref.chosen(
    [dict(), dict(caution=True, corrected_weight_decay=True), dict(amsgrad=True, maximize=True)],
    draw,
    per_combination=8,
    seed=230,
) + ref.chosen([dict(caution=True, amsgrad=True)], draw_clipped, per_combination=8, seed=233)
ALL_FLAGS = dict(
    amsgrad=[False, True], caution=[False, True], corrected_weight_decay=[False, True], maximize=[False, True]
)


def test_matches_timm(precision):
    ref.check_family(adamw_legacy, AdamWLegacy, CONFIGS)


@pytest.mark.nightly
def test_every_flag_combination_matches_timm(precision):
    ref.check_family(
        adamw_legacy,
        AdamWLegacy,
        ref.configurations(ALL_FLAGS, draw, per_combination=3, seed=235)
        + ref.configurations(ALL_FLAGS, draw_clipped, per_combination=2, seed=236),
    )


@pytest.mark.parametrize("kwargs", [{}, dict(weight_decay=0.05, caution=True, amsgrad=True)])
def test_defaults_match_timm(precision, kwargs):
    ref.check_defaults(adamw_legacy, AdamWLegacy, **kwargs)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("lr", dict(lr=-1e-3)),
        ("eps", dict(eps=-1.0)),
        ("betas[0]", dict(betas=(1.0, 0.999))),
        ("betas[1]", dict(betas=(0.9, 1.5))),
        ("lr", dict(lr=0.0, corrected_weight_decay=True)),
    ],
)
def test_rejects_what_timm_rejects(name, kwargs):
    ref.check_rejects(adamw_legacy, AdamWLegacy, name, **kwargs)
