"""Hyperparameters that may be constants or schedules, and the values in force at an update.

Every purelr optimizer accepts a float or a schedule (``step -> value``) for each scalar
hyperparameter. At the k-th update (``count == k``, counting from 0) a schedule is read at ``k``:
the value torch's ``param_groups`` hold after ``k`` calls of ``scheduler.step()``. The values used
are kept in the optimizer state (``state.hyperparams``) so that a training loop can log them.
"""

from __future__ import annotations

import math
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from purelr.schedules import validate
from purelr.schedules.core import resolve


def in_force(hyperparams: Mapping[str, object], count: jax.Array) -> dict[str, jax.Array]:
    """``{name: value at update count}`` for constants and schedules alike."""
    return {name: resolve(value, count) for name, value in hyperparams.items()}


def initial(hyperparams: Mapping[str, object]) -> dict[str, jax.Array]:
    """The values in force at the first update, for an optimizer's ``init``."""
    return in_force(hyperparams, jnp.zeros((), jnp.int32))


def check(name: str, value, *, minimum: float | None = 0.0, maximum: float | None = None, maximum_open: bool = False):
    """Validates a constant hyperparameter (schedules pass through: they are checked when built).

    A one-element numpy or JAX array (torch's Tensor ``lr``) is read as its number. Raises
    ``ValueError`` naming the argument and the value when it is not finite, or with torch's
    condition: ``value < minimum`` or ``value > maximum`` (``>=`` when ``maximum_open``).
    """
    if callable(value):
        return value
    value = validate.real(name, number(name, value))
    if not math.isfinite(value):
        raise ValueError(f"Invalid {name}: {value!r} (must be finite)")
    if minimum is not None and value < minimum:
        raise ValueError(f"Invalid {name}: {value!r} (must be >= {minimum:g})")
    if maximum is not None and (value >= maximum if maximum_open else value > maximum):
        bound = f"< {maximum:g}" if maximum_open else f"<= {maximum:g}"
        raise ValueError(f"Invalid {name}: {value!r} (must be {bound})")
    return value


def number(name: str, value):
    """``value``, or the number a one-element numpy / JAX array holds (torch: "Tensor lr must be
    1-element"); other values are returned as they are, for the caller's own check."""
    if not isinstance(value, (np.ndarray, np.generic, jax.Array)):
        return value
    if isinstance(value, jax.core.Tracer):
        raise TypeError(
            f"{name} must be a number or a schedule, got a traced value {value!r} "
            f"(pass a schedule to vary it under jit)"
        )
    if np.size(value) != 1:
        raise ValueError(f"{name} must be a number or a 1-element array, got shape {np.shape(value)}: {value!r}")
    return np.asarray(value).reshape(()).item()
