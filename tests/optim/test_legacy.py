"""Parity of purelr.optim.nadam_legacy and radam_legacy with timm 1.0.31's NAdamLegacy and RAdamLegacy
(torch_reference's side-by-side runs, every configuration a param group of one timm optimizer).
RAdamLegacy steps in float32 whatever the param's dtype: under x64 its float64 params move by
float32 arithmetic, which the twin rounds operation by operation as torch's CPU kernels do (fused
multiply-adds included; its ``step_size`` and ``math.sqrt`` are Python floats, float64 here too).
One operation it cannot follow: ``exp_avg_sq.sqrt()``. torch's float32 ``sqrt`` on CPU is MKL's
VML ``vsSqrt`` (perf: ``mkl_vml_kernel_sSqrt_EXHAynn``, whatever ``ATEN_CPU_CAPABILITY``), not
correctly rounded (1 ulp off on 15.7% of 100,000 random entries); on this AMD EPYC it seeds with
the ``rsqrtps`` instruction and refines in float32 without fused multiply-adds
(``s = x * y0; h = y0 / 2; e = 1/2 - s * h; s += s * e; h += h * e; s += (x - s * s) * h``):
with this CPU's ``rsqrtps`` (tabulated over all inputs in [1, 4)) that arithmetic gives torch's
result on 3,000,000 of 3,000,000 entries, with a correctly rounded seed 12.5% differ. ``rsqrtps``
is an approximation whose bits the instruction set leaves to the vendor (12 mantissa bits and the
exponent's parity index a table, which Intel's CPUs fill otherwise), and MKL picks another kernel
on other CPUs, so torch's float32 ``sqrt`` is the machine's, and a twin matching it here would
hold one CPU's table and fail elsewhere. So under x64 the original runs twice: with
``Tensor.sqrt`` made correctly rounded (through float64) the trajectories agree to the x64 bound
(bit-equal in practice: the params are float32 numbers; ``addcdiv_`` is torch's own kernel); as it
is, one ulp's difference grows along the 200 updates of the MLP (measured up to 2.4e-5 over 12
configurations), held to 1e-4."""

import jax
import pytest
import torch
from timm.optim.nadam import NAdamLegacy
from timm.optim.radam import RAdamLegacy

from purelr.optim.nadam_legacy import nadam_legacy
from purelr.optim.radam_legacy import radam_legacy
from tests.optim import torch_reference as ref
from tests.optim.test_adam import draw


def draw_nadam(rng):
    return dict(draw(rng), schedule_decay=ref.loguniform(rng, 1e-3, 1e-2))


TWINS = {"nadam_legacy": (nadam_legacy, NAdamLegacy, draw_nadam)}


@pytest.mark.parametrize("name", list(TWINS))
def test_matches_timm(name, precision):
    make, original, draw_fn = TWINS[name]
    ref.check_family(make, original, ref.configurations({}, draw_fn, per_combination=12, seed=250))


@pytest.mark.nightly
@pytest.mark.parametrize("name", list(TWINS))
def test_thirty_configurations_match_timm(name, precision):
    make, original, draw_fn = TWINS[name]
    ref.check_family(make, original, ref.configurations({}, draw_fn, per_combination=30, seed=251))


@pytest.mark.parametrize("name", list(TWINS))
def test_defaults_match_timm(name, precision):
    make, original, _ = TWINS[name]
    ref.check_defaults(make, original)


def _correct_sqrt(monkeypatch):
    sqrt = torch.Tensor.sqrt
    monkeypatch.setattr(
        torch.Tensor, "sqrt", lambda t: sqrt(t.double()).to(t.dtype) if t.dtype == torch.float32 else sqrt(t)
    )


@pytest.mark.parametrize("count, seed", [(12, 252), pytest.param(30, 253, marks=pytest.mark.nightly)])
def test_radam_legacy_matches_timm(precision, monkeypatch, count, seed):
    """Under x64 with torch's float32 ``sqrt`` correctly rounded: the x64 bound."""
    if precision == "x64":
        _correct_sqrt(monkeypatch)
    ref.check_family(radam_legacy, RAdamLegacy, ref.configurations({}, draw, per_combination=count, seed=seed))
    if precision == "x64":
        ref.check_defaults(radam_legacy, RAdamLegacy, weight_decay=0.01)


def test_radam_legacy_matches_timm_as_it_is_under_x64():
    """torch's own float32 ``sqrt``: float64 params within 1e-4 (the module docstring)."""
    with jax.enable_x64(True):
        configs = ref.configurations({}, draw, per_combination=12, seed=254)
        ref.check_family(radam_legacy, RAdamLegacy, configs, rtol=1e-4)


def test_rejects_what_timm_rejects():
    ref.check_rejects(nadam_legacy, NAdamLegacy, "lr", lr=-1e-3)


def test_radam_legacy_rejects_bad_numbers():
    """timm checks nothing; torch's Adam conditions, naming the argument."""
    for name, kwargs in [("lr", dict(lr=-1.0)), ("betas[1]", dict(betas=(0.9, 1.0))), ("eps", dict(eps=-1e-8))]:
        with pytest.raises(ValueError, match=rf"Invalid {name.replace('[', '.').replace(']', '.')}"):
            radam_legacy(**kwargs)
