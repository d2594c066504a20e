"""The warmup and lr noise shared by every ``timm.scheduler`` scheduler.

Warmup (``Scheduler`` subclasses): for ``t < warmup_t`` the value is
``warmup_lr_init + t * (target - warmup_lr_init) / warmup_t``; from ``warmup_t`` on the schedule
proper runs on ``t - warmup_t`` (``warmup_prefix=True``) or on ``t``.

Noise (``timm.scheduler.scheduler.Scheduler._add_noise``): inside the noise range the value ``v``
becomes ``v + v * noise``, ``noise = noise_std * z`` drawn afresh until ``|noise| < noise_pct``.

This module imports jax and numpy only.
"""

from __future__ import annotations

import math
import numbers

import jax
import jax.numpy as jnp

from purelr.schedules import core, validate


def warmup(after: core.Schedule, warmup_t: int, warmup_lr_init: float, target: float, prefix: bool) -> core.Schedule:
    """Linear warmup from ``warmup_lr_init`` towards ``target`` over ``warmup_t`` steps, then ``after``.

    ``f(t) = warmup_lr_init + t * (target - warmup_lr_init) / warmup_t`` for ``t < warmup_t``, else
    ``after(t - warmup_t)`` if ``prefix`` else ``after(t)``. ``warmup_t = 0`` is no warmup.
    """
    if warmup_t == 0:
        return after
    slope = (target - warmup_lr_init) / warmup_t

    def schedule(step):
        step = core.as_steps(step)
        later = core.as_values(after(jnp.maximum(step - warmup_t, 0) if prefix else step))
        return jnp.where(step < warmup_t, warmup_lr_init + core.as_values(step) * slope, later)

    return schedule


def _first_step_at_least(name: str, value) -> int:
    """The least step ``t >= 0`` with ``t >= value``, capped at ``2**31`` (never reached)."""
    value = validate.real(name, value)
    if value == math.inf:
        return core.MAX_STEP + 1
    return min(max(math.ceil(value), 0), core.MAX_STEP + 1)


def noise_window(noise_range_t) -> tuple[int, int] | None:
    """Steps ``[start, stop)`` that get noise: ``t >= noise_range_t``, or ``lo <= t < hi`` for a pair."""
    if noise_range_t is None:
        return None
    if isinstance(noise_range_t, (list, tuple)):
        if len(noise_range_t) != 2:
            raise ValueError(f"noise_range_t must be a number or a (start, stop) pair, got {noise_range_t!r}")
        start, stop = (_first_step_at_least(f"noise_range_t[{i}]", v) for i, v in enumerate(noise_range_t))
        return start, stop
    return _first_step_at_least("noise_range_t", noise_range_t), core.MAX_STEP + 1


def _seed(noise_seed) -> int:
    """``noise_seed`` as torch's ``manual_seed`` takes it: any integer, modulo ``2**64``."""
    if isinstance(noise_seed, bool) or not isinstance(noise_seed, numbers.Integral):
        raise TypeError(f"noise_seed must be an integer, got {noise_seed!r}")
    return int(noise_seed) % 2**64


def lr_noise(step, noise_pct: float, noise_std: float, noise_seed: int):
    """The noise of step ``t``: ``noise_std * z``, ``z`` standard normal truncated to ``|z| < noise_pct / noise_std``.

    ``z`` is ``jax.random.truncated_normal`` under the threefry key ``PRNGKey(noise_seed + t)`` (the
    64-bit sum, so the same in float32 and under x64), the twin of timm's draw from
    ``torch.Generator().manual_seed(noise_seed + t)``. timm redraws ``torch.randn`` until the noise
    is inside the range, which is the same truncated distribution, but not the same numbers.
    """
    step = core.as_steps(step)
    high, low = divmod(noise_seed, 2**32)
    low_word = jnp.uint32(low) + step.astype(jnp.uint32)
    high_word = jnp.uint32(high) + (low_word < jnp.uint32(low)).astype(jnp.uint32)
    keys = jax.random.wrap_key_data(jnp.stack([high_word, low_word], axis=-1).reshape(-1, 2), impl="threefry2x32")
    bound = noise_pct / noise_std
    draw = jax.vmap(lambda key: jax.random.truncated_normal(key, -bound, bound, dtype=core.float_dtype()))
    return draw(keys).reshape(jnp.shape(step)) * noise_std


def with_noise(schedule: core.Schedule, noise_range_t, noise_pct, noise_std, noise_seed) -> core.Schedule:
    """``f(t) = v + v * noise(t)`` with ``v = schedule(t)`` for ``t`` in the noise range, else ``v``."""
    window = noise_window(noise_range_t)
    noise_pct = validate.positive("noise_pct", noise_pct)
    noise_std = validate.nonnegative("noise_std", noise_std)
    noise_seed = _seed(noise_seed)
    if window is None or noise_std == 0:
        return schedule
    start, stop = window

    def noisy(step):
        step = core.as_steps(step)
        value = core.as_values(schedule(step))
        inside = (step >= start) & (step <= stop - 1)
        return jnp.where(inside, value + value * lr_noise(step, noise_pct, noise_std, noise_seed), value)

    return noisy
