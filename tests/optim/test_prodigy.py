"""Parity of purelr.optim.prodigy with prodigyopt 1.1.2's Prodigy (``global_reference``: each
configuration one original optimizer with two param groups, 100 updates), and a sharded run.

What the twin follows: torch's tensor ops in the params' dtype, ``add_(x, alpha=a)`` and
``addcmul_`` each one fused multiply-add as torch's CPU kernels compute them
(``double_float.fma``), ``addcdiv_`` as separate roundings; each tensor's reduction (``torch.dot``,
``s.abs().sum()``) in the params' dtype, in XLA's order; and what the original does in Python
floats (``d``, ``dlr``, the sums over tensors and steps, each ``alpha`` before torch rounds it) in
float64, or double-float pairs for float32 params (``purelr.optim.double_float``), the scalars
compared as ``hi + lo``. Measured step by step in float32 (the quadratic, whose gradient both sides
round alike): the buffers, ``d`` and the params are bit-identical until the first difference in a
``torch.dot``, ``d_numerator`` at the second update, under one rounding unit.

What it cannot follow, and the bounds: the order inside those reductions (``torch.dot`` is MKL's
``sdot``: sixteen lanes on AVX-512, another order for 3 or 6 entries, alignment-dependent; another
BLAS or CPU sums in yet another order; ``sum`` is torch's vectorized cascade), so a dot that
cancels at some update (``<g, p0 - p>`` once ``p`` nears the target) puts ``d_numerator``, and with
it ``d`` and everything ``d`` scales, tens to hundreds of units apart. Measured over 200 fresh
draws per flag set (seeds 7000-7005, 9000-9005), in units of the issue's 1e-5: float32 worst 14
(``s``), 4.8, 1.9, 3.4, 1.9 and 0.28 for ``FLAGS[:6]``, 0-3 % of the draws over 1; the original
itself with ``torch.dot`` summed in another order (``torch.sum(a * b)``) departs from its own run
by up to 72, 1.3, 2.9, 2.7, 2.5 and 0.30, as often. So float32 sweeps are held to
``RTOL_DOT_ORDER``, 1e-3 (the only float32 bound above the issue's; every other tensor op of the
float32 twin is exact). ``beta1 = 0`` (``FLAGS[-1]``) is not swept in float32: without momentum the
params oscillate about the target, ``s`` cancels to a fraction of its terms, and over 300 draws the
twin measured up to 113 (``s``; 23 draws over 1), the reordered original up to 15 (19 over 1); it
was held to 5e-4 before on the belief that the dot order alone explained it, while most of the
difference was the flag set's ``0.99`` reaching the original as a float64 (``draw_configs`` now
rounds fixed numbers too). Float64 runs at the issue's 1e-10: the tanh MLP's gradients differ
between the frameworks by rounding from the first update, and at ``lr >= 1`` (the old draw: lr 1 or
0.1-3) the dynamics amplify that exponentially: ``safeguard_warmup, slice_p=3, beta3=0.95, lr=1.62,
growth_rate=1.2`` (seed 5003) is 5 units of a leaf's peak apart at update 1, 44 at update 30, 1.9e4
at 40 and 1e8 at 50, and the original started one rounding unit off in one param entry departs from
its own run alike (0.08, 13, 6e3, 2.6e7); 2-4 of 100 such draws per flag set failed, up to 2e4
times the bound. ``draw`` therefore takes ``lr`` in 0.1-0.5 and ``beta1`` in 0.1-0.95 (``beta1 < 0.1``
is as sensitive in float32): over 100 fresh draws per flag set (seeds 7000-7006) the float64
worst is 0.40 of 1e-10 (``beta1 = 0``), 0.10 or less for every other flag set. The defaults
(``lr=1``) are checked by ``test_constants_match_prodigyopt``.

``fsdp_in_use`` (its sums rounded through a float32 tensor, and ``d``, ``d_max``, ``d_numerator``
float32 tensors from then on, followed by the twin) is held to the same bounds. ``UNITS`` raise the
floors of buffers that sum terms growing with ``d`` and cancelling (``s``, ``exp_avg``: known to
units of their largest terms, not of themselves) and of ``d_numerator`` (a sum of ``<g, p0 - p>``
of either sign).
"""

import datetime

import pytest
from prodigyopt import Prodigy

from purelr.optim.prodigy import prodigy
from tests import last_json_line
from tests.optim import global_reference as glob
from tests.optim import torch_reference as ref


def draw(rng):
    return dict(
        lr=ref.loguniform(rng, 0.1, 0.5),
        betas=(rng.uniform(0.1, 0.95), rng.uniform(0.9, 0.9999)),
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
    dict(fsdp_in_use=True, growth_rate=1.05, decouple=False),
    dict(fsdp_in_use=True, betas=(0.0, 0.99)),
]
UNITS = dict(  # measured under x64 (seed 211: exp_avg 1.6e-10 relative at 2e-4 of its peak, d_numerator 144)
    s=dict(x64=16384, f32=256),  # sums of d-scaled terms that cancel
    exp_avg=dict(x64=16384, f32=128),  # weight_decay=0.05 at lr=1: large steps
    d_numerator=dict(x64=2048),
)
RTOL_DOT_ORDER = dict(f32=1e-3)  # float32: torch.dot's summation order (the module docstring); float64 untouched
FAMILIES = dict(prodigy=(prodigy, Prodigy, draw, FLAGS))


def test_matches_prodigyopt(precision):
    configs = glob.draw_configs(draw, FLAGS[:1], per_combination=10, seed=211)
    glob.check(prodigy, Prodigy, configs, UNITS, RTOL_DOT_ORDER)


@pytest.mark.nightly
def test_every_option_matches_prodigyopt(precision):
    """Fresh draws each night (the seed is the date), 6 per flag set: 42 configurations under x64,
    36 in float32 (``beta1 = 0`` is not swept in float32: the module docstring)."""
    seed = int(datetime.date.today().strftime("%Y%m%d"))
    flags = FLAGS if precision == "x64" else FLAGS[:-1]
    glob.check(prodigy, Prodigy, glob.draw_configs(draw, flags, per_combination=6, seed=seed), UNITS, RTOL_DOT_ORDER)


@pytest.mark.parametrize(
    "config",
    [
        dict(),  # the original's defaults
        dict(betas=(0.0, 0.999), weight_decay=0.01, decouple=False),  # no exp_avg kept
        dict(weight_decay=0.05, groups=dict(out=dict(lr=0.0, weight_decay=0.0))),
    ],
)
def test_constants_match_prodigyopt(precision, config):
    glob.check_constants(prodigy, Prodigy, config, UNITS)


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
    glob.check_given_gradients(prodigy, Prodigy, config, zero_steps=2, units=UNITS)


def test_rejects_a_bad_torch_layout():
    import jax.numpy as jnp

    with pytest.raises(ValueError, match="torch_layout must be a tree of functions or a function of the params, got 3"):
        prodigy(torch_layout=3)
    with pytest.raises(ValueError, match=r"torch_layout must give one function or None per param \(2\)"):
        prodigy(torch_layout={"a": None}).init({"a": jnp.ones(2), "b": jnp.ones(2)})
