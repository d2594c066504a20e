"""purelr.optim.laprop against timm 1.0.31's ``timm.optim.LaProp``, side by side (torch_reference).
Each configuration carries ``max_lr_snapshot`` (timm's group key for corrected weight decay),
given to the twin under the same name. The default run takes timm's ``laprop`` flags in both
precisions; ``caution`` and ``lapropc``'s corrected decay run nightly."""

import pytest
from timm.optim import LaProp

from purelr.optim.laprop import laprop
from tests.optim import torch_reference as ref

make = laprop


def draw(rng):
    lr = ref.loguniform(rng, 1e-4, 1e-2)
    return dict(
        lr=lr,
        max_lr_snapshot=lr,
        betas=(rng.uniform(0.0, 0.95), rng.uniform(0.5, 0.9999)),
        eps=float(rng.choice([1e-15, ref.loguniform(rng, 1e-12, 1e-4)])),
        weight_decay=float(rng.choice([0.0, ref.loguniform(rng, 1e-4, 1e-1)])),
    )


CONFIGS = ref.configurations(
    dict(caution=[False, True], corrected_weight_decay=[False, True]), draw, per_combination=8, seed=39
)


def test_registered_flags_match_timm(precision):
    ref.check_family(make, LaProp, [c for c in CONFIGS if not (c["caution"] or c["corrected_weight_decay"])])


@pytest.mark.nightly
def test_matches_timm(precision):
    ref.check_family(make, LaProp, CONFIGS)


@pytest.mark.parametrize(
    "kwargs",
    [{}, pytest.param(dict(weight_decay=1e-2, caution=True, corrected_weight_decay=True), marks=pytest.mark.nightly)],
)
def test_defaults_match_timm(precision, kwargs):
    ref.check_defaults(laprop, LaProp, **kwargs)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("lr", dict(lr=-1e-3)),
        ("eps", dict(eps=-1e-6)),
        ("betas[0]", dict(betas=(1.0, 0.999))),
        ("betas[1]", dict(betas=(0.9, -0.1))),
    ],
)
def test_rejects_what_timm_rejects(name, kwargs):
    ref.check_rejects(laprop, LaProp, name, **kwargs)


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="weight_decay.*-0.1"):
        laprop(weight_decay=-0.1)
    with pytest.raises(ValueError, match="needs max_lr_snapshot"):
        laprop(lr=lambda step: 1e-3, corrected_weight_decay=True)
