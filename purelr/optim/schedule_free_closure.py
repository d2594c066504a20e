"""The Closure forms of Schedule-Free (``schedulefree.SGDScheduleFreeClosure``,
``AdamWScheduleFreeClosure``, ``RAdamScheduleFreeClosure``): the params are ``x``, and torch's
``step(closure)`` moves them to ``y = lerp(x, z, 1 - beta1)``, calls the closure there, and
moves back. In optax terms the closure is the caller's: take the gradient at
``schedule_free_train_params(state, params)`` and pass it to ``update``::

    y = lerp(x, z, 1 - beta1);  u = normalised grad(y) + weight_decay * y
    x = lerp(y, z, 1 - 1 / beta1);  z -= lr_k * u;  x = lerp(x, z, ckp1)

(``lr_k``, ``ckp1`` and ``u`` as in ``purelr.optim.schedule_free``)."""

from __future__ import annotations

from typing import Callable

import optax

from purelr.optim import base
from purelr.optim import schedule_free as sf
from purelr.optim.adafactor import torch_lerp


def _closure_step(normalised: Callable, decays: bool):
    """The step of a Closure form, given ``normalised(g, v, hp, count) -> (u, v)``."""

    def step(grads, state, params, hp, lr):
        beta = sf.interpolation(hp)

        def leaf(g, x, z, v):
            to_y, to_x = sf.swap_weights(beta, x.dtype)
            y = torch_lerp(x, z, to_y)
            u, v = normalised(g, v, hp, state.count)
            u = u + hp["weight_decay"] * y if decays else u
            x_back = torch_lerp(y, z, to_x)
            z = z - lr * u
            return base.update_from(x, torch_lerp(x_back, z, hp["ckp1"].astype(x.dtype))), z, v

        updates, z, v = base.leafwise(leaf, grads, params, state.z, state.exp_avg_sq)
        return updates, dict(z=z, exp_avg_sq=v)

    return step


def _make(name: str, hp: dict, normalised: Callable, moment: bool, lr=sf.warmup_lr) -> optax.GradientTransformation:
    buffers = sf.z_and_moment if moment else sf.z_only
    step = _closure_step(normalised, base.maybe_nonzero(hp["weight_decay"]))
    return sf.transformation(name, sf.ScheduleFreeClosureState, hp, buffers, step, lr, lr_max_start=0.0)


def sgd_schedule_free_closure(
    lr=1.0, momentum=0.9, weight_decay=0.0, warmup_steps=0, r=0.0, weight_lr_power=2.0, foreach: bool | None = None
) -> optax.GradientTransformation:
    """Twin of ``schedulefree.SGDScheduleFreeClosure`` (``u = grad + weight_decay * y``).
    ``foreach`` is accepted and ignored."""
    hp = sf.hyperparameters(lr, ("momentum", momentum), weight_decay, warmup_steps, r, weight_lr_power, foreach=foreach)
    return _make("sgd_schedule_free_closure", hp, sf.plain, moment=False)


def adamw_schedule_free_closure(
    lr=0.0025,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=0.0,
    warmup_steps=0,
    r=0.0,
    weight_lr_power=2.0,
    foreach: bool | None = None,
) -> optax.GradientTransformation:
    """Twin of ``schedulefree.AdamWScheduleFreeClosure``. ``foreach`` is accepted and ignored."""
    hp = sf.hyperparameters(
        lr, ("betas", betas), weight_decay, warmup_steps, r, weight_lr_power, eps=eps, foreach=foreach
    )
    return _make("adamw_schedule_free_closure", hp, sf.adam_normalised(hp), moment=True)


def radam_schedule_free_closure(
    lr=0.0025,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=0.0,
    r=0.0,
    weight_lr_power=2.0,
    foreach: bool | None = None,
    silent_sgd_phase: bool = True,
) -> optax.GradientTransformation:
    """Twin of ``schedulefree.RAdamScheduleFreeClosure``: AdamW's closure step with RAdam's
    rectified lr and its SGD phase (``schedule_free.radam_schedule_free``). ``foreach`` is
    accepted and ignored."""
    hp = sf.hyperparameters(lr, ("betas", betas), weight_decay, 0, r, weight_lr_power, eps=eps, foreach=foreach)
    normalised = sf.radam_normalised(hp, silent_sgd_phase)
    lr = sf.rectified_lr(hp, silent_sgd_phase)
    return _make("radam_schedule_free_closure", hp, normalised, moment=True, lr=lr)
