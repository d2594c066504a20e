"""purelr.optim.sgdp against timm 1.0.31's ``timm.optim.SGDP``, side by side (torch_reference).

``delta`` is drawn up to 5 as well as near timm's 0.1 (both branches of the projection occur). The
default run takes the flags timm registers ``sgdp`` with (``nesterov``) in both precisions; every
flag combination runs nightly.

float32, jitted: XLA:CPU fuses ``momentum * buf + g`` and ``param * (1 - lr * wd * ratio / (1 -
momentum)) - lr * d`` into fused multiply-adds where torch rounds each product: a rounding unit
of the param now and then (one twin configuration run eagerly is 9.9e-7 off torch, jitted
1.2e-5). The momentum buffer, a running sum of the quadratic's gradients ``c * (param - target)``
taken near the optimum, carries those units of the param into a buffer 20 times smaller than the
param. So in float32 buffers are compared at a scale of at least ``BUFFER_FLOOR`` of their
param's peak (16 float32 rounding units at the 1e-5 bound)."""

import pytest
from timm.optim import SGDP

from purelr.optim.sgdp import sgdp
from tests.bad_inputs import assert_rejects
from tests.optim import torch_reference as ref


def draw(rng):
    return dict(lr=ref.loguniform(rng, 1e-3, 5e-2), momentum=rng.uniform(0.05, 0.95),
                dampening=float(rng.choice([0.0, rng.uniform(0.0, 0.5)])),
                weight_decay=float(rng.choice([0.0, ref.loguniform(rng, 1e-4, 1e-1)])),
                eps=float(rng.choice([1e-8, ref.loguniform(rng, 1e-10, 1e-3)])),
                delta=float(rng.choice([0.1, rng.uniform(0.05, 5.0)])), wd_ratio=rng.uniform(0.0, 1.0))


BUFFER_FLOOR = {"x64": 0.0, "f32": 16 * 2.0 ** -24 / 1e-5}
CONFIGS = ref.configurations(dict(nesterov=[False, True], caution=[False, True]), draw,
                             per_combination=8, seed=32)


def test_registered_flags_match_timm(precision):
    ref.check_family(sgdp, SGDP, [c for c in CONFIGS if c["nesterov"] and not c["caution"]],
                     buffer_floor=BUFFER_FLOOR[precision])


@pytest.mark.nightly
def test_matches_timm(precision):
    ref.check_family(sgdp, SGDP, CONFIGS, buffer_floor=BUFFER_FLOOR[precision])


@pytest.mark.parametrize("kwargs", [dict(lr=1e-2), pytest.param(dict(lr=1e-2, momentum=0.9, nesterov=True, caution=True, weight_decay=1e-2,
                                                                      delta=3.0), marks=pytest.mark.nightly)])
def test_defaults_match_timm(precision, kwargs):
    ref.check_defaults(sgdp, SGDP, **kwargs)


@pytest.mark.parametrize("kwargs, needles", [
    (dict(lr=-1e-3), ("lr", "-0.001")), (dict(lr=float("inf")), ("lr", "inf")),
    (dict(lr=0.1, momentum=-0.9), ("momentum", "-0.9")), (dict(lr=0.1, weight_decay=-0.1), ("weight_decay", "-0.1")),
    (dict(lr=0.1, eps=-1.0), ("eps", "-1.0")), (dict(lr=0.1, delta=float("nan")), ("delta", "nan")),
    (dict(lr=0.1, wd_ratio=-1.0), ("wd_ratio", "-1.0")), (dict(lr=0.1, layout="tf"), ("layout", "'tf'")),
])
def test_rejects_bad_input(kwargs, needles):
    assert_rejects(lambda: sgdp(**kwargs), ValueError, *needles)
