"""purelr.optim.adopt against timm 1.0.31's ``timm.optim.Adopt``, side by side (torch_reference).
Each configuration carries ``max_lr_snapshot`` (timm's group key for corrected weight decay, the
constructor's lr), given to the twin under the same name. The default run takes timm's ``adopt`` flags in
both precisions; every flag combination (``adoptw``'s ``decoupled``, ``adoptc``'s corrected
decay, ``caution``, ``maximize``) runs nightly."""

import pytest
from timm.optim import Adopt

from purelr.optim.adopt import adopt
from tests.optim import torch_reference as ref

make = adopt


def draw(rng):
    lr = ref.loguniform(rng, 1e-4, 1e-2)
    return dict(
        lr=lr,
        max_lr_snapshot=lr,
        betas=(rng.uniform(0.0, 0.95), rng.uniform(0.5, 0.9999)),
        eps=float(rng.choice([1e-6, ref.loguniform(rng, 1e-10, 1e-3)])),
        clip_exp=float(rng.choice([0.333, rng.uniform(0.1, 1.0)])),
        weight_decay=float(rng.choice([0.0, ref.loguniform(rng, 1e-4, 1e-1)])),
    )


FLAGS = dict(decoupled=[False, True], caution=[False, True], maximize=[False, True])
CONFIGS = ref.configurations(FLAGS, draw, per_combination=4, seed=37) + ref.configurations(
    dict(decoupled=[True], corrected_weight_decay=[True]), draw, per_combination=8, seed=38
)
REGISTERED = [c for c in CONFIGS if not any(c.get(flag) for flag in (*FLAGS, "corrected_weight_decay"))]


def test_registered_flags_match_timm(precision):
    ref.check_family(make, Adopt, REGISTERED)


@pytest.mark.nightly
def test_matches_timm(precision):
    ref.check_family(make, Adopt, CONFIGS)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        pytest.param(dict(clip_exp=None, weight_decay=1e-2), marks=pytest.mark.nightly),
        pytest.param(
            dict(decoupled=True, corrected_weight_decay=True, weight_decay=0.1, caution=True), marks=pytest.mark.nightly
        ),
    ],
)
def test_defaults_match_timm(precision, kwargs):
    ref.check_defaults(adopt, Adopt, **kwargs)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("lr", dict(lr=-1e-3)),
        ("eps", dict(eps=-1e-6)),
        ("betas[0]", dict(betas=(1.0, 0.9999))),
        ("betas[1]", dict(betas=(0.9, 1.0))),
        ("weight_decay", dict(weight_decay=-0.1)),
    ],
)
def test_rejects_what_timm_rejects(name, kwargs):
    ref.check_rejects(adopt, Adopt, name, **kwargs)


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="needs max_lr_snapshot"):
        adopt(lr=lambda step: 1e-3, decoupled=True, corrected_weight_decay=True)
    with pytest.raises(ValueError, match="max_lr_snapshot.*0.0"):
        adopt(lr=0.0, corrected_weight_decay=True)
    with pytest.raises(ValueError, match="clip_exp.*nan"):
        adopt(clip_exp=float("nan"))
