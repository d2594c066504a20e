"""Argument checks shared by every schedule family.

Each check takes the argument's full name (``"step_size"``, ``"lr_config.step"``) and raises a
``ValueError``/``TypeError`` that names it and the value as given, before anything is traced.
Numbers are never NaN; ``nonnegative`` and ``positive`` (base values, factors, periods) are also
finite unless ``finite=False`` (``real`` allows infinity: ``norm_type=inf`` is a norm).
"""

from __future__ import annotations

import difflib
import math
import numbers
from typing import Collection, Mapping, Sequence

MAX_STEP = 2**31 - 1


def integer(name: str, value, *, minimum: int | None = None) -> int:
    """``value`` as a Python int, rejecting bools, non-integral floats and values below ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if isinstance(value, numbers.Integral):
        as_int = int(value)
    elif float(value).is_integer():
        as_int = int(math.trunc(value))
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


def finite(name: str, value) -> float:
    """``value`` as a Python float, neither NaN nor infinite."""
    number = real(name, value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return number


def _number(name: str, value, finite_only: bool) -> float:
    return finite(name, value) if finite_only else real(name, value)


def nonnegative(name: str, value, *, finite: bool = True) -> float:
    number = _number(name, value, finite)
    if number < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return number


def positive(name: str, value, *, finite: bool = True) -> float:
    number = _number(name, value, finite)
    if number <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return number


def in_range(name: str, value, low: float, high: float, *, low_open=False, high_open=False) -> float:
    """``value`` within ``[low, high]``, ends excluded where ``low_open`` / ``high_open``."""
    number = real(name, value)
    below = number <= low if low_open else number < low
    above = number >= high if high_open else number > high
    if below or above:
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return number


def close_to(value, known: Collection[str]) -> str:
    """``"; did you mean [...]?"`` naming the known names close to ``value``, or ``""``."""
    close = difflib.get_close_matches(str(value), [str(k) for k in known], n=3, cutoff=0.6)
    return f"; did you mean {close}?" if close else ""


def one_of(name: str, value, allowed: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}{close_to(value, allowed)}")
    return value


def mapping(name: str, value) -> Mapping:
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a dict, got {value!r}")
    return value


def known_keys(name: str, value: Mapping, known: Collection[str], note: str = "") -> Mapping:
    """``value`` (a dict) whose keys are all in ``known``; an unknown key raises, naming the
    closest known keys and all of them, then ``note``."""
    for key, entry in mapping(name, value).items():
        if key not in known:
            raise ValueError(
                f"{name}: unknown key {key!r} (= {entry!r}); known keys: {sorted(known)}{close_to(key, known)}{note}"
            )
    return value


def strings(name: str, values) -> tuple[str, ...]:
    """A list of strings (a single string is refused: it would be read letter by letter)."""
    if (
        isinstance(values, (str, bytes))
        or not isinstance(values, Collection)
        or not all(isinstance(v, str) for v in values)
    ):
        raise TypeError(f"{name} must be a list of strings, got {values!r}")
    return tuple(values)


def flag(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
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


def transformation(name: str, value):
    """An ``optax.GradientTransformation`` (anything with ``init`` and ``update`` functions)."""
    if not (callable(getattr(value, "init", None)) and callable(getattr(value, "update", None))):
        raise TypeError(f"{name} must be an optax.GradientTransformation, got {value!r}")
    return value
