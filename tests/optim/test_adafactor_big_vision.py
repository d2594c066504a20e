"""Parity of purelr.optim.adafactor_big_vision with timm 1.0.31's AdafactorBigVision
(torch_reference's side-by-side runs, every configuration a param group of one optimizer;
``min_dim_size_to_factor=2``, so that the MLP's (3, 6) kernel is factored over (0, 1) and its
(6, 2) kernel over (1, 0), the biases not): the bfloat16 momentum of timm's default, float32
momentum, none, caution, clipping, unscaled and corrected weight decay.

bfloat16 momentum is compared under x64, where both sides' updates agree to a few units of 1e-16
and so round to the same bfloat16 numbers. In float32 a one-unit difference of an update now and
then rounds the other way in bfloat16 (0.4% of that entry; measured once in 8 configurations,
4.7e-5 on a param after 200 steps), so the float32 runs keep the momentum in float32 (``f32``)."""

import functools

import pytest
import torch
from timm.optim import AdafactorBigVision

from purelr.optim.adafactor_big_vision import adafactor_big_vision
from tests.optim import torch_reference as ref

make = functools.partial(adafactor_big_vision, min_dim_size_to_factor=2)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


class TimmAdafactorBigVision(AdafactorBigVision):
    """timm's class with ``min_dim_size_to_factor=2``; a group's ``momentum_dtype`` may be a name,
    as the constructor's may (timm converts the constructor's only)."""

    def __init__(self, params, min_dim_size_to_factor=2, **kwargs):
        super().__init__(params, min_dim_size_to_factor=min_dim_size_to_factor, **kwargs)
        for group in self.param_groups:
            group["momentum_dtype"] = DTYPES.get(group["momentum_dtype"], group["momentum_dtype"])


def draw(rng):
    lr = ref.loguniform(rng, 1e-3, 3e-2)
    return dict(
        lr=lr,
        max_lr_snapshot=lr,
        decay_rate=rng.uniform(0.5, 1.0),
        decay_offset=float(rng.integers(0, 20)),
        beta2_cap=rng.uniform(0.9, 0.9999),
        momentum=rng.uniform(0.5, 0.95),
        eps=ref.loguniform(rng, 1e-30, 1e-6),
        weight_decay=float(rng.choice([0.0, ref.loguniform(rng, 1e-4, 1e-2)])),
        clipping_threshold=ref.loguniform(rng, 0.3, 3.0),
    )


def draw_defaults(rng):
    return {k: v for k, v in draw(rng).items() if k not in ("eps", "clipping_threshold")}


def draw_no_momentum(rng):
    return {k: v for k, v in draw(rng).items() if k != "momentum"}


CONFIGS = (
    ref.chosen([dict()], draw_defaults, per_combination=8, seed=2101)
    + ref.chosen(
        [
            dict(momentum_dtype="float32", caution=True, unscaled_wd=True),
            dict(caution=True, corrected_weight_decay=True, unscaled_wd=True),
        ],
        draw,
        per_combination=8,
        seed=2102,
    )
    + ref.chosen([dict(momentum=None, corrected_weight_decay=True)], draw_no_momentum, per_combination=8, seed=2104)
)


def f32(config, precision):
    """``config``, its momentum in float32 for a float32 run (see the module's docstring)."""
    return config if precision == "x64" else dict({"momentum_dtype": "float32"}, **config)


def test_matches_timm(precision):
    ref.check_family(make, TimmAdafactorBigVision, [f32(config, precision) for config in CONFIGS])


@pytest.mark.parametrize("kwargs", [dict(lr=1e-2), dict(lr=1e-2, weight_decay=1e-3, momentum_dtype="float32")])
def test_defaults_match_timm(precision, kwargs):
    ref.check_defaults(make, TimmAdafactorBigVision, **f32(kwargs, precision))


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("lr", dict(lr=-1.0)),
        ("weight_decay", dict(weight_decay=-1e-2)),
        ("lr", dict(lr=0.0, corrected_weight_decay=True)),
    ],
)
def test_rejects_what_timm_rejects(name, kwargs):
    ref.check_rejects(make, TimmAdafactorBigVision, name, **kwargs)
