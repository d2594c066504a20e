"""Blockwise-quantized optimizer state as torchao 0.18 keeps it (``torchao.optim.subclass_8bit``,
``subclass_4bit`` and ``subclass_fp8``).

A float32 buffer ``x`` is cut into blocks of ``block_size`` consecutive entries (in row-major
order); each block keeps one float32 ``scale`` and one code per entry::

    scale = max(max(|x_block|), 1e-12)            # 8-bit and 4-bit: scaled into [-1, 1]
    code  = the entry of qmap nearest to x / scale (ties up)
    x'    = qmap[code] * scale

    scale = max(max(|x_block|), 1e-12) / 448      # fp8: float8_e4m3fn's largest finite value
    code  = float8_e4m3fn(x / scale)              # round to nearest even
    x'    = float32(code) * scale

The code maps (``qmap``) are those of "8-bit Optimizers via Block-wise Quantization" (Dettmers et
al., 2021) and "Memory Efficient Optimizers with 4-bit States" (Li et al., 2023), as torchao
builds them: the dynamic map (``dynamic_map``) for 8-bit buffers and the signed 4-bit buffer, and
16 linear steps without zero (``1/16, 2/16, ..., 1``) for the unsigned 4-bit buffer. 4-bit codes
are stored two per byte (the first of each pair in the high half), flattened.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from purelr.schedules.core import divided

FORMATS = ("8bit", "4bit", "fp8")
FP8_MAX = 448.0  # torch.finfo(torch.float8_e4m3fn).max


class QuantizedBuffer(NamedTuple):
    """One quantized buffer: ``codes`` (uint8 in the buffer's shape for 8-bit; uint8 holding two
    codes a byte, flattened, for 4-bit; float8_e4m3fn in the buffer's shape for fp8) and one
    float32 ``scale`` per block."""

    codes: jax.Array
    scale: jax.Array


def _linspace(start: float, end: float, steps: int) -> np.ndarray:
    """``torch.linspace(start, end, steps)`` in float32: the first half counted from ``start``, the
    second from ``end``, in double precision, then rounded. torch's CPU kernel rounds its vector
    lanes in float32 (what it gives depends on the machine's vector width): a few entries of
    torchao's 8-bit maps come out one float32 ulp (6e-8) from these."""
    i = np.arange(steps)
    step = (end - start) / (steps - 1)
    return np.where(i < steps // 2, start + step * i, end - step * (steps - i - 1)).astype(np.float32)


def dynamic_map(signed: bool = True, max_exponent_bits: int = 7, total_bits: int = 8) -> np.ndarray:
    """The dynamic quantization map (float32, ascending, ``2 ** total_bits`` entries) of
    ``torchao.optim.quant_utils.create_dynamic_map``: for each exponent ``e`` of
    ``10 ** -(max_exponent_bits - 1), ..., 10 ** 0``, the midpoints of a linear grid on
    ``[0.1, 1]`` (``2 ** i + 1`` points signed, ``2 ** (i + 1) + 1`` unsigned, ``i`` counting the
    exponents) scaled by ``10 ** e``, mirrored when signed, then 0 and 1."""
    # torchao counts the sign bit for unsigned maps too (total_bits - 1 in both cases)
    non_sign_bits = total_bits - 1
    values: list[np.ndarray] = []
    extra = 2 ** (non_sign_bits - max_exponent_bits) - 1
    for i in range(max_exponent_bits):
        points = 2 ** (i + non_sign_bits - max_exponent_bits + (0 if signed else 1)) + 1
        values += _scaled_midpoints(points, 10 ** (-(max_exponent_bits - 1) + i), signed)
    if extra > 0:
        values += _scaled_midpoints(extra + 1, 10 ** (-(max_exponent_bits - 1) + max_exponent_bits - 1), signed)
    data = np.concatenate([*values, np.array([0.0, 1.0], np.float32)])
    if len(data) != 2**total_bits:
        raise ValueError(f"a dynamic map of {total_bits} bits needs {2**total_bits} values, got {len(data)}")
    return np.sort(data)


def _scaled_midpoints(points: int, factor: float, signed: bool) -> list[np.ndarray]:
    grid = _linspace(0.1, 1.0, points)
    middles = (grid[:-1] + grid[1:]) / np.float32(2.0)
    scaled = [np.float32(factor) * middles]
    return scaled + [np.float32(-factor) * middles] if signed else scaled


def qmap(fmt: str, signed: bool) -> np.ndarray:
    """torchao's code map of an ``"8bit"`` or ``"4bit"`` buffer (``signed`` for ``exp_avg``)."""
    if fmt == "8bit":
        return dynamic_map(signed)
    if signed:
        return dynamic_map(True, 3, 4)
    return _linspace(0.0, 1.0, 17)[1:]


def quantizes(shape: tuple[int, ...], block_size: int) -> bool:
    """torchao quantizes a buffer of at least 4096 entries that its blocks cut evenly (as
    bitsandbytes); smaller buffers stay plain, in the param's dtype."""
    size = math.prod(shape)
    return size >= 4096 and size % block_size == 0


def _nearest_code(x, table):
    """The index of the entry of ``table`` (ascending) nearest to ``x``, a tie going up: a binary
    search for the last entry ``<= x`` (0 below the first), then one step up when ``x`` is at
    least halfway to the next entry."""
    n = table.shape[0]
    codes = jnp.where(x >= table[n // 2], n // 2, 0)
    half = n // 4
    while half >= 1:
        codes = codes + jnp.where(x >= table[codes + half], half, 0)
        half //= 2
    up = jnp.minimum(codes + 1, n - 1)
    low, high = table[codes], table[up]
    return jnp.where(x - low >= (high - low) * 0.5, up, codes)


def quantize(x, fmt: str, signed: bool, block_size: int) -> QuantizedBuffer:
    """``x`` (float32) as a ``QuantizedBuffer`` (see the module docstring)."""
    blocks = x.astype(jnp.float32).reshape(-1, block_size)
    peak = jnp.maximum(jnp.max(jnp.abs(blocks), axis=-1), jnp.float32(1e-12))
    if fmt == "fp8":
        scale = divided(peak, jnp.float32(FP8_MAX))
        return QuantizedBuffer(divided(blocks, scale[:, None]).astype(jnp.float8_e4m3fn).reshape(x.shape), scale)
    codes = _nearest_code(divided(blocks, peak[:, None]), jnp.asarray(qmap(fmt, signed))).astype(jnp.uint8)
    if fmt == "4bit":
        flat = codes.reshape(-1)
        return QuantizedBuffer((flat[0::2] << 4) | flat[1::2], peak)
    return QuantizedBuffer(codes.reshape(x.shape), peak)


def dequantize(buffer: QuantizedBuffer, fmt: str, signed: bool, shape: tuple[int, ...]):
    """The float32 values a ``QuantizedBuffer`` of a buffer of ``shape`` holds."""
    if fmt == "fp8":
        values = buffer.codes.astype(jnp.float32)
    else:
        codes = buffer.codes
        if fmt == "4bit":
            codes = jnp.stack([codes >> 4, codes & 15], axis=-1)
        values = jnp.asarray(qmap(fmt, signed))[codes.astype(jnp.int32)]
    return (values.reshape(buffer.scale.shape[0], -1) * buffer.scale[:, None]).reshape(shape)


def zeros(shape: tuple[int, ...], fmt: str, block_size: int) -> QuantizedBuffer:
    """A quantized buffer of zeros (every code 0, every scale 0), as torchao starts one."""
    size = math.prod(shape)
    codes = jnp.zeros((size // 2,), jnp.uint8) if fmt == "4bit" else jnp.zeros(shape, _code_dtype(fmt))
    return QuantizedBuffer(codes, jnp.zeros((size // block_size,), jnp.float32))


def _code_dtype(fmt: str):
    return jnp.float8_e4m3fn if fmt == "fp8" else jnp.uint8
