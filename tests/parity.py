"""Comparison helpers for the side-by-side parity tests.

Tolerances (DESIGN.md): schedules 1e-12 relative under x64 and 1e-6 in float32; optimizer
trajectories 1e-10 and 1e-5. A value compared is ``|purelr - reference| / max(|reference|, floor)``:
the floor is ``tolerance``-sized relative to the curve's scale (its largest magnitude), so values
that are zero, or that the reference itself computes by cancellation (``1 + cos`` next to its
minimum), are compared absolutely at that scale.
"""

import jax
import jax.numpy as jnp
import numpy as np

SCHEDULE_RTOL = {"x64": 1e-12, "f32": 1e-6}
OPTIMIZER_RTOL = {"x64": 1e-10, "f32": 1e-5}


def relative_error(actual, expected, scale=None):
    """Largest ``|actual - expected| / max(|expected|, scale)``, elementwise, as a float."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    if scale is None:
        scale = float(np.max(np.abs(expected))) if expected.size else 1.0
    denominator = np.maximum(np.abs(expected), scale)
    denominator = np.where(denominator == 0, 1.0, denominator)
    both_nan = np.isnan(actual) & np.isnan(expected)
    error = np.where(both_nan, 0.0, np.abs(actual - expected) / denominator)
    return float(np.max(error)) if error.size else 0.0


def assert_schedule_matches(actual, expected, precision, *, context="", rtol=None):
    """Schedules: 1e-12 relative (x64) / 1e-6 (f32), floored at that fraction of the curve's scale.

    ``rtol`` overrides the bound; a test that loosens it says why.
    """
    actual = np.asarray(actual)
    expected_dtype = np.float64 if precision == "x64" else np.float32
    assert actual.dtype == expected_dtype, f"{context}: dtype {actual.dtype}, expected {expected_dtype}"
    rtol = SCHEDULE_RTOL[precision] if rtol is None else rtol
    error = relative_error(actual, expected)
    if not error <= rtol:
        worst = int(np.nanargmax(np.abs(actual.astype(np.float64) - np.asarray(expected))))
        raise AssertionError(
            f"{context}: relative error {error:.3g} > {rtol:g} (worst at index {worst}: "
            f"purelr {actual.flat[worst]!r}, reference {np.asarray(expected).flat[worst]!r})"
        )
    return error


def float_mode():
    return "x64" if jax.config.jax_enable_x64 else "f32"


def jitted(schedule, steps):
    """``schedule`` along the path users run, ``jax.jit(jax.vmap(schedule))``, over ``steps``, as numpy.

    Under ``jit`` XLA folds constants (a division by one becomes a multiply-add with its
    reciprocal), so the jitted values can differ from the eager ones: parity tests compare both.
    """
    return np.asarray(jax.jit(jax.vmap(schedule))(jnp.asarray(steps)))
