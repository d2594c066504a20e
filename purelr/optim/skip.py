"""Opt-in skipping of updates whose gradients are not finite."""

from __future__ import annotations

import optax

NEVER_GIVE_UP = 2**31 - 1


def skip_nonfinite(inner: optax.GradientTransformation) -> optax.GradientTransformation:
    """Skips every update whose gradients hold a NaN or an infinity, as torch's ``GradScaler``
    skips ``optimizer.step()``: the update is zero and ``inner``'s state (its count, so its
    schedules, and its buffers) stays as it was.

    This is ``optax.apply_if_finite(inner, max_consecutive_errors=2**31 - 1)``: optax's version
    gives up after ``max_consecutive_errors`` non-finite steps in a row and then applies the
    non-finite update; here it never gives up. The state is optax's ``ApplyIfFiniteState``
    (``notfinite_count``, ``last_finite``, ``total_notfinite`` for logging, and ``inner_state``).
    """
    return optax.apply_if_finite(inner, max_consecutive_errors=NEVER_GIVE_UP)
