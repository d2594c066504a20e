"""What timm 1.0.31's own optimizers share beyond ``base``: the cautious mask, corrected
(``lr ** 2 / max_lr``) decoupled weight decay, and SGD's momentum buffer as timm's SGDW and Lars
step it; ``lerp`` is torch's (``purelr.optim.adafactor.torch_lerp``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from purelr.optim.adafactor import torch_lerp as lerp  # noqa: F401  (re-exported for the timm twins)
from purelr.optim.cautious import caution_mask as caution  # noqa: F401  (re-exported for the timm twins)
from purelr.optim.corrected_decay import decay_scale
from purelr.optim.hyperparams import check


def decayed(param, hp, count):
    """timm's decoupled ``param *= 1 - wd_scale * weight_decay``, rounded as torch stores it."""
    return stored(param * (1.0 - decay_scale(hp) * hp["weight_decay"]), count)


def sgd_momentum(g, buf, hp, count, *, nesterov: bool, first_from_zeros: bool, scheduled: bool, cautious: bool = False):
    """``(d, buf)``: SGD's momentum as timm's SGDW and Lars step it. ``buf = g`` at the first update
    (``first_from_zeros``: dampening is a constant 0, so the zero buffer gives it already), then
    ``momentum * buf + (1 - dampening) * g``; ``d = g + momentum * buf`` (nesterov) or ``buf``,
    times the cautious mask of ``(d, g)`` when ``cautious``. A ``scheduled`` momentum that is 0 at
    an update gives ``d = g`` and keeps the buffer (torch tests ``momentum != 0`` per step)."""
    m = hp["momentum"]
    new_buf = m * buf + (1 - hp["dampening"]) * g
    if not first_from_zeros:
        new_buf = jnp.where(count == 0, g, new_buf)
    d = g + m * new_buf if nesterov else new_buf
    if cautious:
        d = d * caution(d, g)
    if scheduled:
        d, new_buf = jnp.where(m != 0, d, g), jnp.where(m != 0, new_buf, buf)
    return d, new_buf


def nesterov_check(nesterov: bool, momentum, dampening) -> None:
    """timm's (torch's) ``Nesterov momentum requires a momentum and zero dampening``."""
    if nesterov and not callable(momentum) and not callable(dampening) and (momentum <= 0 or dampening != 0):
        raise ValueError(
            f"Nesterov momentum requires a momentum and zero dampening, got "
            f"momentum={momentum!r}, dampening={dampening!r}"
        )


def positive(name: str, value, meaning: str = ""):
    """``check(name, value)``, refusing 0 too (a divisor): ``meaning`` adds what else is allowed."""
    value = check(name, value)
    if not callable(value) and value <= 0:
        raise ValueError(f"Invalid {name}: {value!r} (must be > 0{meaning})")
    return value


def stored(x, count):
    """``x`` rounded to its dtype, as torch stores an in-place result (``param.mul_(f)``) before the
    next operation reads it. XLA:CPU fuses a product into the addition that follows (one fused
    multiply-add: a rounding fewer than torch), which drifts systematically where the term added is
    exact (Lion's ``±lr`` steps: 1.5e-5 in float32 after 200 steps). ``count >> 31`` is 0 for every
    count, but XLA cannot fold it, so the bits pass through an operation it cannot fuse across."""
    int_type = {2: jnp.int16, 4: jnp.int32, 8: jnp.int64}[jnp.dtype(x.dtype).itemsize]
    bits = jax.lax.bitcast_convert_type(x, int_type) ^ (count >> 31).astype(int_type)
    return jax.lax.bitcast_convert_type(bits, x.dtype)
