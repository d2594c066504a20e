"""The Reference forms of Schedule-Free (``schedulefree.SGDScheduleFreeReference``,
``schedulefree.AdamWScheduleFreeReference``): the same method, computed on ``x``, ``y`` and ``z``
kept apart in the state (their arithmetic differs from the main forms' in rounding, and AdamW's
adds ``decay_at_z``). The params equal ``y``; ``schedule_free_eval_params`` returns ``x``."""

from __future__ import annotations

import jax.numpy as jnp
import optax

from purelr.optim import base
from purelr.optim import schedule_free as sf


def _xyz_step(x, z, ckp1, beta):
    """``x = x * (1 - ckp1) + ckp1 * z``, then ``y = beta * x + (1 - beta) * z``."""
    ckp1 = ckp1.astype(x.dtype)
    x = x * (1 - ckp1) + ckp1 * z
    return x, x * beta + (1 - beta) * z


def _buffers(moment: bool):
    def init(params) -> dict:
        copies = {key: base.buffer(params, jnp.array) for key in ("z", "x", "y")}
        return dict(copies, exp_avg_sq=base.zeros(params) if moment else None)

    return init


def sgd_schedule_free_reference(
    lr=1.0, momentum=0.9, weight_decay=0.0, warmup_steps=0, r=0.0, weight_lr_power=2.0, foreach: bool | None = None
) -> optax.GradientTransformation:
    """Twin of ``schedulefree.SGDScheduleFreeReference``: with ``g = grad + weight_decay * y``,
    ``z -= lr_k * g``, then ``x`` and ``y`` as in ``_xyz_step`` (``lr_k``, ``ckp1``: see
    ``purelr.optim.schedule_free``). ``foreach`` is accepted and ignored."""
    hp = sf.hyperparameters(lr, ("momentum", momentum), weight_decay, warmup_steps, r, weight_lr_power, foreach=foreach)
    decays = base.maybe_nonzero(hp["weight_decay"])

    def step(grads, state, params, hp, lr):
        def leaf(g, p, z, x, y):
            g = g + hp["weight_decay"] * y if decays else g
            z = z - lr * g
            x, y = _xyz_step(x, z, hp["ckp1"], hp["momentum"])
            return base.update_from(p, y), z, x, y

        updates, z, x, y = base.leafwise(leaf, grads, params, state.z, state.x, state.y)
        return updates, dict(z=z, exp_avg_sq=None, x=x, y=y)

    return sf.transformation("sgd_schedule_free_reference", sf.ScheduleFreeReferenceState, hp, _buffers(False), step)


def adamw_schedule_free_reference(
    lr=0.0025,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=0.0,
    warmup_steps=0,
    r=0.0,
    weight_lr_power=2.0,
    decay_at_z: bool = False,
    foreach: bool | None = False,
) -> optax.GradientTransformation:
    """Twin of ``schedulefree.AdamWScheduleFreeReference``::

        z -= lr_k * weight_decay * (z if decay_at_z else y)
        exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * grad ** 2
        z -= lr_k * grad / (sqrt(exp_avg_sq / (1 - beta2 ** t)) + eps)

    then ``x`` and ``y`` as in ``_xyz_step``. ``foreach`` is accepted and ignored (as there)."""
    hp = sf.hyperparameters(
        lr, ("betas", betas), weight_decay, warmup_steps, r, weight_lr_power, eps=eps, foreach=foreach
    )
    decays = base.maybe_nonzero(hp["weight_decay"])
    normalised = sf.adam_normalised(hp)

    def step(grads, state, params, hp, lr):
        def leaf(g, p, z, v, x, y):
            if decays:
                z = z - (lr * hp["weight_decay"]) * (z if decay_at_z else y)
            u, v = normalised(g, v, hp, state.count)
            z = z + (-lr) * u
            x, y = _xyz_step(x, z, hp["ckp1"], hp["beta1"])
            return base.update_from(p, y), z, v, x, y

        updates, z, v, x, y = base.leafwise(leaf, grads, params, state.z, state.exp_avg_sq, state.x, state.y)
        return updates, dict(z=z, exp_avg_sq=v, x=x, y=y)

    return sf.transformation("adamw_schedule_free_reference", sf.ScheduleFreeReferenceState, hp, _buffers(True), step)
