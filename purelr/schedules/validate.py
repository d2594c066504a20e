"""Argument checks shared by every schedule family.

Each check takes the argument's full name (``"step_size"``, ``"lr_config.step"``) and raises a
``ValueError``/``TypeError`` that names it and the value, before anything is traced.
"""

from __future__ import annotations

import numbers
from typing import Sequence

MAX_STEP = 2**31 - 1


def integer(name: str, value, *, minimum: int | None = None) -> int:
    """``value`` as a Python int, rejecting bools, non-integral floats and values below ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if isinstance(value, numbers.Integral):
        as_int = int(value)
    elif float(value).is_integer():
        as_int = int(value)
    else:
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and as_int < minimum:
        bound = "positive" if minimum == 1 else f">= {minimum}"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    if as_int > MAX_STEP:
        raise ValueError(f"{name} must be at most 2**31 - 1, got {value!r}")
    return as_int


def positive_int(name: str, value) -> int:
    return integer(name, value, minimum=1)


def nonnegative_int(name: str, value) -> int:
    return integer(name, value, minimum=0)


def real(name: str, value) -> float:
    """``value`` as a Python float (callables are rejected: this argument cannot be a schedule)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if value != value:
        raise ValueError(f"{name} must not be NaN, got {value!r}")
    return float(value)


def nonnegative(name: str, value) -> float:
    value = real(name, value)
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return value


def positive(name: str, value) -> float:
    value = real(name, value)
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return value


def in_range(name: str, value, low: float, high: float, *, low_open=False, high_open=False) -> float:
    """``value`` within ``[low, high]``, ends excluded where ``low_open`` / ``high_open``."""
    value = real(name, value)
    below = value <= low if low_open else value < low
    above = value >= high if high_open else value > high
    if below or above:
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return value


def one_of(name: str, value, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
    return value


def step_list(name: str, values, *, strictly: bool = True, allow_duplicates: bool = False) -> tuple[int, ...]:
    """A list of non-negative integer steps, increasing (strictly unless ``strictly=False``)."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(f"{name} must be a list of integers, got {values!r}")
    steps = tuple(integer(f"{name}[{i}]", v, minimum=0) for i, v in enumerate(values))
    for before, after in zip(steps, steps[1:]):
        if after < before or (after == before and strictly and not allow_duplicates):
            raise ValueError(f"{name} must be increasing, got {list(values)!r}")
    return steps


def function(name: str, value):
    if not callable(value):
        raise TypeError(f"{name} must be a function, got {value!r}")
    return value
