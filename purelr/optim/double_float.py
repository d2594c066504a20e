"""Scalars carried as float64 in float32 programs: a value held as an unevaluated sum ``hi + lo`` of
two float32 numbers (double-float arithmetic, Dekker 1971; the error-free TwoSum and TwoProduct),
about 48 significant bits.

The originals of Prodigy and D-Adaptation keep ``d`` and their running sums as Python floats
(float64) while the model is float32: each tensor is reduced in float32 and ``.item()``-ed, and
everything after that (sums over tensors and steps, ``d / d0``, the ``alpha`` handed to the next
tensor op) is float64 arithmetic. Without x64 JAX has no float64, so the float32 twins do that
arithmetic on ``Wide`` pairs and round to float32 (``Wide.f32``) exactly where torch hands a
Python float to a float32 tensor op. With float64 params ``lo`` stays 0 and every operation is the
plain float64 one (the float64 twins are unchanged).

XLA keeps the order of floating-point operations (no reassociation), which the error-free
transformations rely on; its fused multiply-adds are harmless here, as every product whose
rounding would matter is exact (``_two_prod``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

_HIGH_BITS = 0xFFFFF000  # a float32's sign, exponent and first 11 stored mantissa bits
_HIGH_BITS_64 = 0xFFFFFFFFF8000000  # a float64's sign, exponent and first 25 stored mantissa bits


def _two_sum(a, b):
    s = a + b
    v = s - a
    return s, (a - (s - v)) + (b - v)


def _fast_two_sum(a, b):  # |a| >= |b|
    s = a + b
    return s, b - (s - a)


def _halves(a):
    """``a = hi + lo``, each of at most 12 significant bits (cut by masking, not Veltkamp's
    multiplication: XLA's CPU and GPU backends fuse ``a * b + c`` into one multiply-add, which
    would change a product the error terms need rounded)."""
    hi = jax.lax.bitcast_convert_type(jax.lax.bitcast_convert_type(a, jnp.uint32) & np.uint32(_HIGH_BITS), a.dtype)
    return hi, a - hi


def _split(a):
    """``_halves`` for either dtype: float64 cut after 26 significant bits (the low half has at
    most 27, so of the four products of halves only ``lo * lo`` may round, by 2**-106 of the
    product)."""
    if jnp.result_type(a) != jnp.float64:
        return _halves(a)
    bits = jax.lax.bitcast_convert_type(a, jnp.uint64) & np.uint64(_HIGH_BITS_64)
    hi = jax.lax.bitcast_convert_type(bits, a.dtype)
    return hi, a - hi


def fma(a, b, c):
    """``a * b + c`` elementwise, rounded once: the fused multiply-add of torch's CPU kernels
    (``x.add_(y, alpha=a)`` is ``fma(y, a, x)``, ``x.addcmul_(y, z, value=a)`` is ``fma(a * y, z,
    x)``, measured on torch 2.13 for float32 and float64, vectorized and not). XLA has no such
    operation and fuses at will, so the product's rounding error comes from products of halves
    (``_split``, Dekker's TwoProduct, each step exact) and joins the error of ``p + c``
    (``_two_sum``): rounded once, save where that last sum of errors rounds across half a unit of
    the result."""
    a, b, c = jnp.broadcast_arrays(*(jnp.asarray(x, jnp.result_type(a, b, c)) for x in (a, b, c)))
    ah, al = _split(a)
    bh, bh_lo = _split(b)
    p = a * b
    product_error = ((ah * bh - p) + ah * bh_lo + al * bh) + al * bh_lo
    total, sum_error = _two_sum(p, c)
    return jnp.where(jnp.isfinite(p), total + (sum_error + product_error), p + c)


def _two_prod(a, b) -> Wide:
    """``a * b`` exactly, as the sum of four products of halves, each exact (so a fused
    multiply-add of any of them rounds as the separate operations do)."""
    ah, al = _halves(a)
    bh, bl = _halves(b)
    exact = Wide(ah * bh, jnp.zeros_like(a)) + ah * bl + al * bh + al * bl
    p = a * b
    return where(jnp.isfinite(p), exact, Wide(p, jnp.zeros_like(p)))


def _finite(hi, lo):
    """``(hi, lo)`` with ``lo`` 0 where ``hi`` is not finite (an infinite ``growth_rate``)."""
    return Wide(hi, jnp.where(jnp.isfinite(hi), lo, jnp.zeros_like(lo)))


class Wide(NamedTuple):
    """``hi + lo``, ``|lo| <= ulp(hi) / 2``; arithmetic with ``Wide``s, arrays and Python numbers."""

    hi: Any
    lo: Any

    @property
    def plain(self) -> bool:
        return jnp.result_type(self.hi) == jnp.float64

    def f32(self):
        """The value rounded to the params' dtype, as torch rounds a Python float ``alpha``."""
        return self.hi

    def __add__(self, other):
        other = like(other, self)
        if self.plain:
            return Wide(self.hi + other.hi, self.lo)
        s, e = _two_sum(self.hi, other.hi)
        t, f = _two_sum(self.lo, other.lo)
        s, e = _fast_two_sum(s, e + t)
        return _finite(*_fast_two_sum(s, e + f))

    def __radd__(self, other):
        return self + other

    def __neg__(self):
        return Wide(-self.hi, -self.lo)

    def __sub__(self, other):
        return self + (-like(other, self))

    def __rsub__(self, other):
        return like(other, self) - self

    def __mul__(self, other):
        other = like(other, self)
        if self.plain:
            return Wide(self.hi * other.hi, self.lo)
        p = _two_prod(self.hi, other.hi)
        product = _finite(*_fast_two_sum(p.hi, p.lo + (self.hi * other.lo + self.lo * other.hi)))
        return where(jnp.isfinite(p.hi), product, p)  # inf * finite: inf, not inf + nan

    def __rmul__(self, other):
        return self * other

    def __truediv__(self, other):
        other = like(other, self)
        if self.plain:
            return Wide(self.hi / other.hi, self.lo)
        q1 = self.hi / other.hi
        r = self - other * q1
        q2 = r.hi / other.hi
        r = r - other * q2
        q = Wide(*_fast_two_sum(q1, q2))
        return _finite(*(q + r.hi / other.hi))

    def __rtruediv__(self, other):
        return like(other, self) / self

    def __gt__(self, other):
        other = like(other, self)
        return (self.hi > other.hi) | ((self.hi == other.hi) & (self.lo > other.lo))

    def __lt__(self, other):
        return like(other, self) > self

    def __eq__(self, other):
        other = like(other, self)
        return (self.hi == other.hi) & (self.lo == other.lo)

    def __pow__(self, n):
        """``self ** n`` for a traced integer ``0 <= n < 2**31`` (``beta2 ** (k + 1)``): repeated
        squaring, as exact as the products."""
        n = jnp.asarray(n)

        def bit(i, carry):
            result, power = carry
            return where((n >> i) & 1 == 1, result * power, result), power * power

        return jax.lax.fori_loop(0, 31, bit, (like(1.0, self), self))[0]

    def stored(self) -> Wide:
        """The pair with ``lo`` rounded to a multiple of ``2**-28`` of ``hi``'s unit in the last
        place: ``hi + lo`` is then a float64 number, so a state kept this way goes to a Python float
        (torch's ``param_groups``) and back exactly."""
        if self.plain:
            return self
        power = jax.lax.bitcast_convert_type(
            jax.lax.bitcast_convert_type(self.hi, jnp.uint32) & np.uint32(0x7F800000), jnp.float32
        )  # 2 ** exponent of hi
        quantum = power * np.float32(2.0**-51)
        ok = (quantum > 0) & jnp.isfinite(self.hi)
        safe = jnp.where(ok, quantum, jnp.ones_like(quantum))
        return Wide(self.hi, jnp.where(ok, jnp.round(self.lo / safe) * safe, self.lo))

    def sqrt(self):
        if self.plain:
            return Wide(jnp.sqrt(self.hi), self.lo)
        s = jnp.sqrt(self.hi)
        positive = s > 0
        safe = jnp.where(positive, s, jnp.ones_like(s))
        correction = (self - _two_prod(safe, safe)).hi / (2 * safe)
        return _finite(*_fast_two_sum(s, jnp.where(positive, correction, jnp.zeros_like(s))))


def dtype_of(dtype):
    """The dtype of a ``Wide``'s halves for params of ``dtype``: float64 stays, else float32."""
    return jnp.float64 if jnp.dtype(dtype) == jnp.float64 else jnp.float32


def constant(value: float, dtype) -> Wide:
    """A Python float split into its nearest ``dtype`` number and the rest.

    The halves enter the program behind an optimization barrier: XLA folds constants through sums
    (``(a + c) - c`` to ``a``), which would undo the error terms."""
    if jnp.dtype(dtype) == jnp.float64:
        return Wide(jnp.asarray(value, jnp.float64), jnp.zeros((), jnp.float64))
    hi = np.float32(value)
    lo = np.float32(float(value) - float(hi)) if np.isfinite(hi) else np.float32(0.0)
    return Wide(*jax.lax.optimization_barrier((jnp.asarray(hi), jnp.asarray(lo))))


def like(value, other: Wide) -> Wide:
    """``value`` (a ``Wide``, an array: its value exactly, a Python number: split) as a ``Wide`` of
    ``other``'s dtype."""
    if isinstance(value, Wide):
        return value
    dtype = jnp.result_type(other.hi)
    if isinstance(value, (int, float)):
        return constant(float(value), dtype)
    value = jnp.asarray(value, dtype)
    return Wide(value, jnp.zeros_like(value))


def of(value, dtype) -> Wide:
    """``like`` for a ``dtype`` (``dtype_of`` the params' dtype)."""
    return like(value, Wide(jnp.zeros((), dtype_of(dtype)), None))


def hyper(raw, value, dtype) -> Wide:
    """A hyperparameter as the original's Python float: the number given to the constructor split
    (``raw``), or a schedule's value (``value``, already in the params' precision) as it is."""
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return constant(float(raw), dtype_of(dtype))
    return of(value, dtype)


def where(condition, a: Wide, b: Wide) -> Wide:
    return Wide(jnp.where(condition, a.hi, b.hi), jnp.where(condition, a.lo, b.lo))


def larger(a: Wide, b: Wide) -> Wide:
    """Python's ``max(a, b)``: ``b`` only where ``b > a`` (a NaN ``b`` leaves ``a``)."""
    return where(b > a, b, a)


def smaller(a: Wide, b: Wide) -> Wide:
    """Python's ``min(a, b)``: ``b`` only where ``b < a`` (a NaN ``b`` leaves ``a``)."""
    return where(b < a, b, a)


def total(terms) -> Wide | None:
    """``terms[0] + terms[1] + ...`` in order, ``None`` for no terms."""
    result = None
    for term in terms:
        result = term if result is None else result + term
    return result
