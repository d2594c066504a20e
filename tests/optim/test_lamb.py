"""Parity of purelr.optim.lamb with timm 1.0.31's Lamb (torch_reference's side-by-side runs, one
optimizer per configuration: Lamb reads ``max_grad_norm`` from its constructor, for all its groups):
four flag combinations by default, every combination nightly."""

import pytest
from timm.optim import Lamb

from purelr.optim.lamb import lamb
from tests.optim import torch_reference as ref


def draw(rng):
    lr = ref.loguniform(rng, 1e-4, 1e-2)
    return dict(
        lr=lr,
        max_lr_snapshot=lr,
        betas=(rng.uniform(0.0, 0.95), rng.uniform(0.9, 0.9999)),
        eps=float(rng.choice([1e-6, ref.loguniform(rng, 1e-10, 1e-3)])),
        weight_decay=float(rng.choice([0.0, ref.loguniform(rng, 1e-4, 1e-1)])),
        max_grad_norm=ref.loguniform(rng, 0.05, 5.0),
    )


def draw_unclipped(rng):
    return {k: v for k, v in draw(rng).items() if k != "max_grad_norm"}


KEYS = ("max_grad_norm",)
CONFIGS = ref.chosen(
    [
        dict(),  # timm's defaults: bias correction, grad averaging, max_grad_norm (drawn)
        dict(trust_clip=True, always_adapt=True, caution=True, grad_averaging=False),
        dict(decoupled_decay=True, corrected_weight_decay=True, bias_correction=False, trust_clip=True),
    ],
    draw,
    per_combination=8,
    seed=180,
) + ref.chosen(
    [
        dict(max_grad_norm=None, decoupled_decay=True, always_adapt=True, caution=True),
    ],
    draw_unclipped,
    per_combination=8,
    seed=185,
)
ALL_FLAGS = dict(
    bias_correction=[False, True],
    grad_averaging=[False, True],
    trust_clip=[False, True],
    always_adapt=[False, True],
    caution=[False, True],
    decoupled_decay=[False, True],
    corrected_weight_decay=[False, True],
)


def test_matches_timm(precision):
    ref.check_family(lamb, Lamb, CONFIGS, constructor_keys=KEYS)


@pytest.mark.nightly
def test_every_flag_combination_matches_timm(precision):
    ref.check_family(
        lamb, Lamb, ref.configurations(ALL_FLAGS, draw, per_combination=2, seed=186), constructor_keys=KEYS
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        dict(lr=1e-2, weight_decay=0.0, always_adapt=True, max_grad_norm=None),
        dict(
            lr=1e-2,
            trust_clip=True,
            decoupled_decay=True,
            corrected_weight_decay=True,
            max_grad_norm=0.1,
            max_lr_snapshot=1e-2,
        ),
    ],
)
def test_defaults_match_timm(precision, kwargs):
    ref.check_defaults(lamb, Lamb, KEYS, **kwargs)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("lr", dict(lr=-1.0)),
        ("eps", dict(eps=-1e-8)),
        ("weight_decay", dict(weight_decay=-1e-2)),
        ("lr", dict(lr=0.0, corrected_weight_decay=True)),
    ],
)
def test_rejects_what_timm_rejects(name, kwargs):
    ref.check_rejects(lamb, Lamb, name, **kwargs)
