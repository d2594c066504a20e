"""purelr.optim.double_float against float64 (numpy), jitted: every operation on random pairs, with
constants (which XLA would fold through the error terms) and traced values; ``fma`` against
torch's fused kernels."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from purelr.optim import double_float as df

UNIT = 2.0**-48  # the pairs' precision


def value(w):
    return np.float64(w.hi) + np.float64(w.lo)


@jax.jit
def operations(ah, al, bh, bl, n):
    a, b = df.Wide(ah, al), df.Wide(bh, bl)
    return a + b, a - b, a * b, a / b, a.sqrt(), a**n, 0.3 * a, 1.0 - a, a.stored()


def test_operations_match_float64():
    rng = np.random.default_rng(0)
    worst = np.zeros(9)
    for i in range(200):
        a = rng.uniform(0.9, 1.0) if i % 3 == 0 else abs(rng.normal()) * 10 ** rng.uniform(-6, 6)
        b = rng.normal() * 10 ** rng.uniform(-6, 6)
        n = int(rng.integers(0, 300)) if i % 3 == 0 else 2
        A, B = df.constant(a, jnp.float32), df.constant(b, jnp.float32)
        a, b = value(A), value(B)
        expected = [a + b, a - b, a * b, a / b, np.sqrt(a), a**n, 0.3 * a, 1.0 - a, a]
        for j, (out, e) in enumerate(zip(operations(*A, *B, n), expected)):
            scale = max(abs(a), abs(b), 1.0) if j in (0, 1, 7) else abs(e)  # sums: units of the terms
            worst[j] = max(worst[j], abs(value(out) - e) / scale / UNIT)
    assert np.all(worst[[0, 1, 2, 3, 4, 6, 7]] <= 4), worst  # measured 1.2 .. 2.7
    assert worst[5] <= 512, worst  # up to 300 products: measured 177
    assert worst[8] <= 2.0**-28 * 2**24, worst  # stored: at most 2**-28 of hi's last place


def test_stored_pairs_are_float64_numbers():
    """``hi + lo`` of a stored pair is exact in float64 and splits back into the same pair."""
    rng = np.random.default_rng(1)
    for _ in range(50):
        x = df.Wide(jnp.float32(rng.normal()), jnp.float32(0.0)) / df.constant(rng.uniform(1, 9), jnp.float32)
        stored = jax.jit(df.Wide.stored)(x)
        total = float(stored.hi) + float(stored.lo)
        hi = np.float32(total)
        assert hi == stored.hi and np.float32(total - float(hi)) == stored.lo


def test_infinity_and_float64_pass_through():
    inf = df.constant(float("inf"), jnp.float32)
    assert float(inf.hi) == np.inf and float(inf.lo) == 0.0
    assert float((df.constant(2.0, jnp.float32) * inf).hi) == np.inf
    with jax.enable_x64(True):
        x = df.constant(0.1, jnp.float64)
        assert (x / 3.0).hi.dtype == jnp.float64 and float((x / 3.0).hi) == 0.1 / 3.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fma_rounds_as_torch_kernels(dtype):
    """``fma`` against torch's ``x.mul_(b).add_(y, alpha=a)`` and ``x.mul_(b).addcmul_(y, z,
    value=a)`` (Prodigy's moment updates), bit for bit, jitted, lengths 2 to 1000 (torch's scalar
    and vectorized loops). ``x * b + a * y`` as written measured 30 % of the entries apart: XLA
    fuses one of the two products into the addition, not necessarily torch's."""
    rng = np.random.default_rng(2)
    add = jax.jit(lambda x, b, a, y: df.fma(y, a, x * b))
    addcmul = jax.jit(lambda x, b, a, y, z: df.fma(a * y, z, x * b))
    mismatched = 0
    with jax.enable_x64(dtype == np.float64):
        for n in (2, 18, 100, 1000):
            x, y, z = (rng.normal(size=n).astype(dtype) * 10 ** rng.uniform(-2, 2, n).astype(dtype) for _ in range(3))
            a, b = dtype(rng.uniform(0.1, 10)), dtype(rng.uniform(0.9, 1.0))
            fused = torch.tensor(x).mul_(float(b)).add_(torch.tensor(y), alpha=float(a)).numpy()
            mismatched += np.sum(np.asarray(add(x, b, a, y)) != fused)
            fused = torch.tensor(x).mul_(float(b)).addcmul_(torch.tensor(y), torch.tensor(z), value=float(a)).numpy()
            mismatched += np.sum(np.asarray(addcmul(x, b, a, y, z)) != fused)
    assert mismatched == 0, mismatched
