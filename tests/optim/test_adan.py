"""purelr.optim.adan against timm 1.0.31's ``timm.optim.Adan``, side by side (torch_reference).
The default run takes the flags of timm's ``adan`` (``no_prox=False``) in both precisions; every
flag combination (``adanw``'s ``no_prox``, ``caution``) runs nightly."""

import pytest
from timm.optim import Adan

from purelr.optim.adan import adan
from tests.optim import torch_reference as ref


def draw(rng):
    return dict(
        lr=ref.loguniform(rng, 1e-4, 1e-2),
        betas=(rng.uniform(0.0, 0.99), rng.uniform(0.0, 0.99), rng.uniform(0.9, 0.9999)),
        eps=float(rng.choice([1e-8, ref.loguniform(rng, 1e-10, 1e-4)])),
        weight_decay=float(rng.choice([0.0, ref.loguniform(rng, 1e-4, 1e-1)])),
    )


CONFIGS = ref.configurations(dict(no_prox=[False, True], caution=[False, True]), draw, per_combination=8, seed=35)


def test_registered_flags_match_timm(precision):
    ref.check_family(adan, Adan, [c for c in CONFIGS if not (c["no_prox"] or c["caution"])])


@pytest.mark.nightly
def test_matches_timm(precision):
    ref.check_family(adan, Adan, CONFIGS)


@pytest.mark.parametrize(
    "kwargs", [{}, pytest.param(dict(no_prox=True, caution=True, weight_decay=2e-2), marks=pytest.mark.nightly)]
)
def test_defaults_match_timm(precision, kwargs):
    ref.check_defaults(adan, Adan, **kwargs)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("lr", dict(lr=-1e-3)),
        ("eps", dict(eps=-1e-8)),
        ("betas[0]", dict(betas=(1.0, 0.92, 0.99))),
        ("betas[1]", dict(betas=(0.98, -0.1, 0.99))),
        ("betas[2]", dict(betas=(0.98, 0.92, 1.5))),
    ],
)
def test_rejects_what_timm_rejects(name, kwargs):
    ref.check_rejects(adan, Adan, name, **kwargs)


def test_rejects_bad_input():
    with pytest.raises(TypeError, match=r"betas must be a triple.*\(0.9, 0.99\)"):
        adan(betas=(0.9, 0.99))
    with pytest.raises(ValueError, match="weight_decay.*-0.1"):
        adan(weight_decay=-0.1)
