"""Comparison helpers for the side-by-side parity tests.

Tolerances (DESIGN.md): schedules 1e-12 relative under x64 and 1e-6 in float32; optimizer
trajectories 1e-10 and 1e-5. A value compared is ``|purelr - reference| / max(|reference|,
floor * peak)``, ``peak`` being the largest magnitude of the reference values compared together
(a curve, a leaf). The floor only keeps zeros (and XLA's flushed subnormals) from dividing by
zero: ``FLOOR`` is 1e-9 of the peak under x64 and 1e-5 in float32, so an lr 1e-4 of the peak is
held to the full relative tolerance, and below the floor the allowance (1e-21 / 1e-11 of the
peak) is far under one rounding unit of the peak (1.1e-16 / 6e-8).

Measured (every schedule test, the optimizer tests): closed-form references need no floor at
all; the values that do are those a side forms by cancellation or recursion at the peak's
scale, known to a few rounding units ``u`` of the peak, i.e. to ``u / rtol`` of the peak
relative to the tolerance (x64 schedules: 1.1e-16 / 1e-12 = 1.1e-4). A test that compares such
values states its floor with ``rounding_floor`` and says which formula cancels: torch's
``eta_min + (base - eta_min) * (1 + cos) / 2`` near its minimum measured 1.1 units of the peak,
MMCV's ``annealing_cos`` 0.1, MMEngine's chained recursion 0.32, optimizer trajectories 0.5
(float64) and 33 (float32, both sides float32) units (DEVELOPERS.md has the table).
"""

import jax
import jax.numpy as jnp
import numpy as np

SCHEDULE_RTOL = {"x64": 1e-12, "f32": 1e-6}
OPTIMIZER_RTOL = {"x64": 1e-10, "f32": 1e-5}
FLOOR = {"x64": 1e-9, "f32": 1e-5}
UNIT_ROUNDOFF = {"x64": 2.0**-53, "f32": 2.0**-24}


TRAJECTORY_UNITS = {"x64": 16, "f32": 64}
"""The floor of optimizer trajectories, in rounding units of a leaf's peak (measured 0.5 float64
and 33 float32 units: ``tests/optim/torch_reference.compare``)."""


def trajectory_floor(precision="x64"):
    """``rounding_floor`` of an optimizer trajectory in ``precision``: ``TRAJECTORY_UNITS``."""
    return rounding_floor(OPTIMIZER_RTOL[precision], TRAJECTORY_UNITS[precision], precision)


def rounding_floor(rtol, units, reference="x64"):
    """``units * u / rtol``, ``u`` the unit roundoff of the ``reference``'s precision: the floor at
    which ``units`` rounding units of the peak equal the tolerance, for values that the reference
    computes by cancellation or recursion at the peak's scale (known to that many units of the
    peak, not of themselves)."""
    return units * UNIT_ROUNDOFF[reference] / rtol


def relative_error(actual, expected, peak=None, floor=None):
    """Largest ``|actual - expected| / max(|expected|, floor * peak)``, elementwise, as a float.

    ``peak`` defaults to ``max |expected|``. The floor is ``FLOOR`` of the lower of the two
    precisions (float32 when either side is float32 or narrower, else float64), or ``floor`` where
    a test states a larger one.
    """
    error = relative_errors(actual, expected, peak, floor)
    return float(np.max(error)) if error.size else 0.0


def relative_errors(actual, expected, peak=None, floor=None):
    """The elementwise errors of ``relative_error`` (0 where both sides are NaN)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    least = FLOOR["f32" if min(_float_bits(actual), _float_bits(expected)) <= 32 else "x64"]
    floor = least if floor is None else max(floor, least)
    dtype = np.complex128 if np.iscomplexobj(actual) or np.iscomplexobj(expected) else np.float64
    actual, expected = actual.astype(dtype), expected.astype(dtype)
    if peak is None:
        peak = float(np.max(np.abs(expected))) if expected.size else 1.0
    denominator = np.maximum(np.abs(expected), floor * peak)
    denominator = np.where(denominator == 0, 1.0, denominator)
    both_nan = np.isnan(actual) & np.isnan(expected)
    return np.where(both_nan, 0.0, np.abs(actual - expected) / denominator)


def _float_bits(array):
    """Bits of one real component (complex64: 32); 64 for integers and booleans (exact)."""
    kind, size = array.dtype.kind, array.dtype.itemsize
    return 64 if kind in "biu" else 4 * size if kind == "c" else 8 * size


def assert_schedule_matches(actual, expected, precision, *, context="", rtol=None, floor=None):
    """Schedules: 1e-12 relative (x64) / 1e-6 (f32), down to ``FLOOR`` of the curve's peak.

    ``rtol`` overrides the bound (a number, or one per value) and ``floor`` raises the floor; a test
    that loosens either says why.
    """
    actual, expected = np.asarray(actual), np.asarray(expected)
    expected_dtype = np.float64 if precision == "x64" else np.float32
    assert actual.dtype == expected_dtype, f"{context}: dtype {actual.dtype}, expected {expected_dtype}"
    rtol = np.broadcast_to(SCHEDULE_RTOL[precision] if rtol is None else rtol, np.shape(expected))
    errors = relative_errors(actual, expected, floor=floor)
    excess = np.where(np.isnan(errors), np.inf, errors / rtol)
    if excess.size and not np.max(excess) <= 1:
        worst = int(np.argmax(excess))
        raise AssertionError(
            f"{context}: relative error {errors.flat[worst]:.3g} > {rtol.flat[worst]:g} (worst at index {worst}: "
            f"purelr {actual.flat[worst]!r}, reference {expected.flat[worst]!r})"
        )
    return float(np.max(errors)) if errors.size else 0.0


def float_mode():
    return "x64" if jax.config.jax_enable_x64 else "f32"


def jitted(schedule, steps):
    """``schedule`` along the path users run, ``jax.jit(jax.vmap(schedule))``, over ``steps``, as numpy.

    Under ``jit`` XLA folds constants (a division by one becomes a multiply-add with its
    reciprocal), so the jitted values can differ from the eager ones: parity tests compare both.
    """
    return np.asarray(jax.jit(jax.vmap(schedule))(jnp.asarray(steps)))
