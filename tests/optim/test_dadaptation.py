"""Parity of purelr.optim.dadaptation with dadaptation 3.2's DAdaptAdam, DAdaptSGD, DAdaptAdaGrad,
DAdaptAdan and DAdaptLion (``global_reference``: each configuration one original optimizer with
two param groups, 100 updates)."""

import dadaptation
import pytest

from purelr.optim import dadaptation as twins
from tests.optim import global_reference as glob
from tests.optim import torch_reference as ref


def common(rng):
    return dict(
        lr=float(rng.choice([1.0, ref.loguniform(rng, 0.1, 3.0)])),
        d0=ref.loguniform(rng, 1e-7, 1e-4),
    )


def draw_adam(rng):
    return dict(
        common(rng),
        betas=(rng.uniform(0.0, 0.95), rng.uniform(0.9, 0.9999)),
        eps=ref.loguniform(rng, 1e-10, 1e-6),
        weight_decay=float(rng.choice([0.0, ref.loguniform(rng, 1e-4, 0.1)])),
        growth_rate=float(rng.choice([float("inf"), rng.uniform(1.01, 1.2)])),
        groups=dict(
            hidden=dict(weight_decay=ref.loguniform(rng, 1e-4, 0.1), layer_scale=rng.uniform(0.5, 2.0)),
            out=dict(eps=ref.loguniform(rng, 1e-9, 1e-6)),
        ),
    )


def draw_sgd(rng):
    return dict(
        common(rng),
        momentum=float(rng.choice([0.0, rng.uniform(0.0, 0.95)])),
        weight_decay=float(rng.choice([0.0, ref.loguniform(rng, 1e-4, 0.1)])),
        growth_rate=float(rng.choice([float("inf"), rng.uniform(1.01, 1.2)])),
    )


def draw_adagrad(rng):
    return dict(
        common(rng),
        momentum=float(rng.choice([0.0, rng.uniform(0.0, 0.95)])),
        eps=ref.loguniform(rng, 1e-8, 1e-4),
        weight_decay=float(rng.choice([0.0, ref.loguniform(rng, 1e-4, 0.1)])),
        growth_rate=float(rng.choice([float("inf"), rng.uniform(1.01, 1.2)])),
        groups=dict(
            hidden=dict(weight_decay=ref.loguniform(rng, 1e-4, 0.1)), out=dict(eps=ref.loguniform(rng, 1e-8, 1e-4))
        ),
    )


def draw_adan(rng):
    return dict(
        common(rng),
        betas=(rng.uniform(0.9, 0.99), rng.uniform(0.8, 0.99), rng.uniform(0.9, 0.999)),
        eps=ref.loguniform(rng, 1e-10, 1e-6),
        weight_decay=float(rng.choice([0.0, ref.loguniform(rng, 1e-4, 0.1)])),
        growth_rate=float(rng.choice([float("inf"), rng.uniform(1.01, 1.2)])),
        groups=dict(
            hidden=dict(weight_decay=ref.loguniform(rng, 1e-4, 0.1)), out=dict(eps=ref.loguniform(rng, 1e-9, 1e-6))
        ),
    )


def draw_lion(rng):
    return dict(
        lr=ref.loguniform(rng, 1e-3, 0.1),  # Lion's sign steps of d * lr: larger ones oscillate chaotically
        d0=ref.loguniform(rng, 1e-7, 1e-4),
        betas=(rng.uniform(0.0, 0.95), rng.uniform(0.9, 0.9999)),
        weight_decay=float(rng.choice([0.0, ref.loguniform(rng, 1e-4, 0.1)])),
        groups=dict(hidden=dict(weight_decay=ref.loguniform(rng, 1e-4, 0.1))),
    )


FAMILIES = dict(
    adam=(
        twins.dadapt_adam,
        dadaptation.DAdaptAdam,
        draw_adam,
        [dict(), dict(decouple=True, use_bias_correction=True), dict(groups=dict(out=dict(lr=0.0)))],
    ),
    sgd=(twins.dadapt_sgd, dadaptation.DAdaptSGD, draw_sgd, [dict(), dict(groups=dict(hidden=dict(lr=0.0)))]),
    adagrad=(twins.dadapt_adagrad, dadaptation.DAdaptAdaGrad, draw_adagrad, [dict()]),
    adan=(twins.dadapt_adan, dadaptation.DAdaptAdan, draw_adan, [dict(), dict(no_prox=True)]),
    lion=(twins.dadapt_lion, dadaptation.DAdaptLion, draw_lion, [dict()]),
)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_matches_dadaptation(precision, family):
    make, original, draw, flags = FAMILIES[family]
    glob.check(make, original, glob.draw_configs(draw, flags, per_combination=-(-10 // len(flags)), seed=210))
