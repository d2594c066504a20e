"""purelr.optim.novograd against timm 1.0.31's ``timm.optim.NvNovoGrad``, side by side
(torch_reference). Each configuration carries ``max_lr_snapshot`` (timm's group key for corrected
weight decay), given to the twin under the same name. The default run takes timm's ``novograd`` flags in
both precisions; every flag combination runs nightly."""

import pytest
from timm.optim import NvNovoGrad

from purelr.optim.novograd import novograd
from tests.optim import torch_reference as ref

make = novograd


def draw(rng):
    lr = ref.loguniform(rng, 1e-4, 1e-2)
    return dict(
        lr=lr,
        max_lr_snapshot=lr,
        betas=(rng.uniform(0.0, 0.98), rng.uniform(0.5, 0.999)),
        eps=float(rng.choice([1e-8, ref.loguniform(rng, 1e-10, 1e-4)])),
        weight_decay=float(rng.choice([0.0, ref.loguniform(rng, 1e-4, 1e-1)])),
    )


FLAGS = dict(grad_averaging=[False, True], amsgrad=[False, True], decoupled_decay=[False, True])
CONFIGS = ref.configurations(FLAGS, draw, per_combination=4, seed=40) + ref.configurations(
    dict(decoupled_decay=[True], corrected_weight_decay=[True]), draw, per_combination=4, seed=41
)
REGISTERED = [c for c in CONFIGS if not any(c.get(flag) for flag in (*FLAGS, "corrected_weight_decay"))]


def test_registered_flags_match_timm(precision):
    ref.check_family(make, NvNovoGrad, REGISTERED)


@pytest.mark.nightly
def test_matches_timm(precision):
    ref.check_family(make, NvNovoGrad, CONFIGS)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        pytest.param(dict(weight_decay=1e-2, amsgrad=True, grad_averaging=True), marks=pytest.mark.nightly),
        pytest.param(
            dict(weight_decay=1e-2, decoupled_decay=True, corrected_weight_decay=True), marks=pytest.mark.nightly
        ),
    ],
)
def test_defaults_match_timm(precision, kwargs):
    ref.check_defaults(novograd, NvNovoGrad, **kwargs)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("lr", dict(lr=-1e-3)),
        ("eps", dict(eps=-1e-6)),
        ("betas[0]", dict(betas=(1.0, 0.98))),
        ("betas[1]", dict(betas=(0.95, 1.2))),
    ],
)
def test_rejects_what_timm_rejects(name, kwargs):
    ref.check_rejects(novograd, NvNovoGrad, name, **kwargs)


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="weight_decay.*-0.1"):
        novograd(weight_decay=-0.1)
