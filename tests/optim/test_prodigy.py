"""Parity of purelr.optim.prodigy with prodigyopt 1.1.2's Prodigy (``global_reference``: each
configuration one original optimizer with two param groups, 100 updates), and a sharded run.

Bounds (``UNITS``, rounding units of a leaf's peak, ``global_reference.compare``): Prodigy's
``s`` adds ``(d / d0) * dlr * g`` at each update, terms that grow with ``d`` by up to 1e5 over
the run and cancel where a gradient changes sign, so its small entries are known to units of the
largest terms, not of themselves; ``d_numerator`` is such a sum too (of ``<g, p0 - p>``, which
cancel), compared as a scalar. Both sides run the same float32 tensor arithmetic, but the
original keeps ``d`` and its sums in Python floats (float64) where the float32 twin keeps them
in float32. ``d_numerator`` multiplies the dot products by ``d / d0`` (up to 1e6): its float32
terms, rounded by torch and XLA in their own orders, cancel to a sum known to ~5e-5 (measured
with the defaults, ``d0 = 1e-6``: ``d_numerator`` 5e-5, ``d`` 1.7e-5 after 100 updates), and every
step scales with ``d``: the defaults' run (``lr=1``, ``d`` grows to 0.43: large steps) ends with
params 1.2e-4 off, and the moments, averages of gradients that are differences (param minus
target) and so carry the params' error relative to the distance left, 2.4e-4 of their peak
(the random sweeps: ``d`` 7.7e-6, ``s`` 964 units). The float32 runs are held to ``RTOL`` (3e-4)
instead of 1e-5 and the moments to 16384 units (1e-3) of their peak; the float64 runs to 1e-10
with the floors of ``UNITS``.
"""

import pytest
from prodigyopt import Prodigy

from purelr.optim.prodigy import prodigy
from tests import last_json_line
from tests.optim import global_reference as glob
from tests.optim import torch_reference as ref


def draw(rng):
    return dict(
        lr=float(rng.choice([1.0, ref.loguniform(rng, 0.1, 3.0)])),
        betas=(rng.uniform(0.0, 0.95), rng.uniform(0.9, 0.9999)),
        eps=ref.loguniform(rng, 1e-10, 1e-6),
        weight_decay=float(rng.choice([0.0, ref.loguniform(rng, 1e-4, 0.1)])),
        d0=ref.loguniform(rng, 1e-7, 1e-4),
        d_coef=rng.uniform(0.5, 2.0),
        growth_rate=float(rng.choice([float("inf"), rng.uniform(1.01, 1.2)])),
        groups=dict(
            hidden=dict(weight_decay=float(rng.choice([0.0, ref.loguniform(rng, 1e-4, 0.1)]))),
            out=dict(eps=ref.loguniform(rng, 1e-9, 1e-6)),
        ),
    )


FLAGS = [
    dict(use_bias_correction=True, slice_p=2),
    dict(),
    dict(decouple=False, use_bias_correction=True),
    dict(safeguard_warmup=True, slice_p=3, beta3=0.95),
    dict(groups=dict(hidden=dict(lr=0.0))),
    dict(fsdp_in_use=True, betas=(0.0, 0.99)),
]
UNITS = dict(  # measured (f32 with RTOL; x64 within the default floor but one config's exp_avg)
    s=dict(x64=16384, f32=16384),  # f32 sweeps 964, the defaults' run 1.1 x 16384
    exp_avg=dict(x64=16384, f32=16384),  # x64 1.6e-10 relative at 2e-4 of the peak (seed 211); f32 4.7 x 256
    exp_avg_sq=dict(f32=512),  # f32 145
    d=dict(f32=512),  # f32 129 (7.7e-6): d is a ratio of the float32 sums
    d_max=dict(f32=512),  # f32 129
    d_numerator=dict(x64=2048, f32=2048),  # x64 144, f32 500
)
RTOL = dict(f32=3e-4)
FAMILIES = dict(prodigy=(prodigy, Prodigy, draw, FLAGS))


def test_matches_prodigyopt(precision):
    glob.check(prodigy, Prodigy, glob.draw_configs(draw, FLAGS[:1], per_combination=10, seed=211), UNITS, RTOL)


@pytest.mark.nightly
def test_every_option_matches_prodigyopt(precision):
    glob.check(prodigy, Prodigy, glob.draw_configs(draw, FLAGS, per_combination=6, seed=212), UNITS, RTOL)


@pytest.mark.parametrize(
    "config",
    [
        dict(),  # the original's defaults
        dict(betas=(0.0, 0.999), weight_decay=0.01, decouple=False),  # no exp_avg kept
        dict(weight_decay=0.05, groups=dict(out=dict(lr=0.0, weight_decay=0.0))),
    ],
)
def test_constants_match_prodigyopt(precision, config):
    glob.check_constants(prodigy, Prodigy, config, UNITS, RTOL)


@pytest.mark.parametrize(
    "name, kwargs",
    [("lr", dict(lr=0.0)), ("eps", dict(eps=0.0)), ("d0", dict(d0=-1.0)), ("betas[1]", dict(betas=(0.9, 1.0)))],
)
def test_rejects_what_prodigyopt_rejects(name, kwargs):
    ref.check_rejects(prodigy, Prodigy, name, **kwargs)


def test_sharded_run_matches_one_device():
    """Params sharded over 8 host devices (4 of 5 leaves split, the state with them) against one
    device, 60 float64 updates: the sums are global reductions, so only their order differs
    (measured: params 1e-12, ``d`` 2e-16 relative); per-device sums would change ``d`` itself."""
    result = last_json_line(["tests.optim.sharded_prodigy"], devices=8)
    assert result["devices"] == 8 and result["split_params"] == 4 and result["split_state_leaves"] >= 8, result
    assert result["params"] <= 1e-10 and result["d"] <= 1e-12, result


@pytest.mark.parametrize("config", [dict(weight_decay=0.01), dict(weight_decay=0.01, fsdp_in_use=True)])
def test_zero_gradients_match_prodigyopt(precision, config):
    """All-zero gradients first: the original returns before its ``d`` update while every ``s``
    is 0, unless ``fsdp_in_use`` (then ``d_hat = 0 / 0`` is NaN, and ``d`` stays: Python's
    ``max(d, nan)`` keeps ``d``, and so does the twin: ``global_groups.larger``)."""
    glob.check_given_gradients(prodigy, Prodigy, config, zero_steps=2, units=UNITS, rtol=RTOL)
