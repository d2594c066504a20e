"""Parity of purelr.optim.nadam_legacy with timm 1.0.31's NAdamLegacy (torch_reference's side-by-side
runs, every configuration a param group of one timm optimizer). RAdamLegacy is not twinned: it steps
in float32 whatever the param's dtype, and a float32 twin attempted here stayed 1e-7 to 1e-6 off
under x64 (an operation order not found), so ``radamlegacy`` is refused with that reason."""

import pytest
from timm.optim.nadam import NAdamLegacy

from purelr.optim.nadam_legacy import nadam_legacy
from tests.optim import torch_reference as ref
from tests.optim.test_adam import draw


def draw_nadam(rng):
    return dict(draw(rng), schedule_decay=ref.loguniform(rng, 1e-3, 1e-2))


TWINS = {"nadam_legacy": (nadam_legacy, NAdamLegacy, draw_nadam)}


@pytest.mark.parametrize("name", list(TWINS))
def test_matches_timm(name, precision):
    make, original, draw_fn = TWINS[name]
    ref.check_family(make, original, ref.configurations({}, draw_fn, per_combination=12, seed=250))


@pytest.mark.nightly
@pytest.mark.parametrize("name", list(TWINS))
def test_thirty_configurations_match_timm(name, precision):
    make, original, draw_fn = TWINS[name]
    ref.check_family(make, original, ref.configurations({}, draw_fn, per_combination=30, seed=251))


@pytest.mark.parametrize("name", list(TWINS))
def test_defaults_match_timm(name, precision):
    make, original, _ = TWINS[name]
    ref.check_defaults(make, original)


def test_rejects_what_timm_rejects():
    ref.check_rejects(nadam_legacy, NAdamLegacy, "lr", lr=-1e-3)
