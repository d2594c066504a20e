"""Schedule-Free around any optimizer (the ``schedulefree`` package 1.4.1):
``schedulefree.ScheduleFreeWrapper`` and ``schedulefree.ScheduleFreeWrapperReference``.

The base optimizer steps the sequence ``z`` with the gradient taken at the params ``y``; the
wrapper keeps the average ``x`` and sets ``y = lerp(x, z, 1 - momentum)``. At update ``k``, with
``lr`` the base's lr in force (times its ``d``: Prodigy, D-Adaptation)::

    z = z - lr * weight_decay_at_y * y                       (when weight_decay_at_y != 0)
    z = base step of z (gradient at y)
    lr_max = max(lr_max, lr);  weight = (k + 1) ** r * lr_max ** weight_lr_power
    weight_sum += weight;  ckp1 = weight / weight_sum        (0 while weight_sum is 0)
    x = lerp(x, z, ckp1);  y = lerp(x, z, 1 - momentum)

The base is any purelr twin (a chain holding one works): its lr is read from its state's
``hyperparams['lr']``, and for the decay before the step, the lr in force at this update (the
base's update is traced once more for it; under jit all but the lr is dead code). Parameter
groups: one wrapper per group inside ``optax.multi_transform`` is torch's wrapper over a
several-group optimizer (its ``k``, ``lr_max``, ``weight_sum`` are per group). ``eval()`` and
``train()`` are ``schedule_free_eval_params`` / ``schedule_free_train_params``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from purelr.optim import base as base_lib
from purelr.optim import hyperparams as hp_lib
from purelr.optim import schedule_free as sf
from purelr.optim.adafactor import torch_lerp


def schedule_free_wrapper(
    base: optax.GradientTransformation, weight_decay_at_y=0.0, momentum=0.9, weight_lr_power=2.0, r=0.0
) -> optax.GradientTransformation:
    """Twin of ``schedulefree.ScheduleFreeWrapper(base, weight_decay_at_y, momentum,
    weight_lr_power, r)``: the params are ``y``, and ``x`` is not kept but recovered from ``y`` and
    ``z`` (``x = lerp(y, z, 1 - 1 / momentum)``, after ``y -= lr * weight_decay_at_y *
    (1 - momentum) * y``), as the original swaps it through its buffers."""
    hp = _hyperparameters(weight_decay_at_y, momentum, weight_lr_power, r)
    if not callable(hp["momentum"]) and hp["momentum"] == 0:
        raise ValueError("Invalid momentum: 0.0 (must be != 0: the step divides by it)")

    def leaf(y, z, x, hp, lr, decays):
        to_x = sf.swap_weights(hp["momentum"], y.dtype)[1]
        if decays:
            decay = lr * hp["weight_decay_at_y"]
            z = z - decay * y
            y = y - (decay * (1 - hp["momentum"])) * y
        return torch_lerp(y, z, to_x), z

    def after(y, x, z, ckp1, to_y):
        x = torch_lerp(x, z, ckp1)
        return base_lib.update_from(y, torch_lerp(x, z, to_y)), {}

    return _wrapper("schedule_free_wrapper", sf.ScheduleFreeWrapperState, base, hp, leaf, after, ())


def schedule_free_wrapper_reference(
    base: optax.GradientTransformation, momentum=0.9, weight_decay_at_y=0.0, r=0.0, weight_lr_power=2.0
) -> optax.GradientTransformation:
    """Twin of ``schedulefree.ScheduleFreeWrapperReference(base, momentum, weight_decay_at_y, r,
    weight_lr_power)``: ``x`` and ``y`` kept in the state (``eval`` returns ``x``), the same method
    in its own rounding (``y = lerp(x, z, 1 - momentum)`` from the stored ``x``)."""
    hp = _hyperparameters(weight_decay_at_y, momentum, weight_lr_power, r)

    def leaf(y, z, x, hp, lr, decays):
        if decays:
            z = z - (lr * hp["weight_decay_at_y"]) * y
        return x, z

    def after(y, x, z, ckp1, to_y):
        x = torch_lerp(x, z, ckp1)
        new_y = torch_lerp(x, z, to_y)
        return base_lib.update_from(y, new_y), dict(x=x, y=new_y)

    return _wrapper(
        "schedule_free_wrapper_reference", sf.ScheduleFreeWrapperReferenceState, base, hp, leaf, after, ("x", "y")
    )


def _hyperparameters(weight_decay_at_y, momentum, weight_lr_power, r) -> dict:
    """The wrapper's numbers, checked when constant: finite (the original checks none)."""
    hp = {name: hp_lib.check(name, v, minimum=None) for name, v in dict(momentum=momentum, r=r).items()}
    hp["weight_decay_at_y"] = hp_lib.check("weight_decay_at_y", weight_decay_at_y, minimum=None)
    hp["weight_lr_power"] = hp_lib.check("weight_lr_power", weight_lr_power, minimum=None)
    return hp


def _wrapper(name, state_type, base, hyperparams, leaf, after, kept) -> optax.GradientTransformation:
    """``leaf(y, z, x, hp, lr, decays) -> (x, z)`` before the base's step (``x`` is the kept one,
    ``None`` in the main form); ``after(y, x, z, ckp1, 1 - momentum) -> (update, kept buffers)``."""
    decays = base_lib.maybe_nonzero(hyperparams["weight_decay_at_y"])

    def init_fn(params):
        inner_state = base.init(params)
        _base_lr(inner_state, name)  # raises when the base keeps no lr
        group = dict(lr_max=0.0, weight_sum=0.0)
        hp = dict(hp_lib.initial(hyperparams), **{k: jnp.asarray(v, sf.float_dtype()) for k, v in group.items()})
        buffers = {key: base_lib.buffer(params, jnp.array) for key in ("z", *kept)}
        return state_type(count=jnp.zeros((), jnp.int32), hyperparams=hp, inner_state=inner_state, **buffers)

    def update_fn(grads, state, params=None):
        base_lib.require_params(params, True, name)
        hp = hp_lib.in_force(hyperparams, state.count)
        lr = _base_lr(base.update(grads, state.inner_state, _masked_like(params, state.z))[1], name) if decays else None
        kept_x = state.x if kept else None
        x, z = base_lib.leafwise(lambda g, y, z, x: leaf(y, z, x, hp, lr, decays), grads, params, state.z, kept_x)
        steps, inner_state = base.update(grads, state.inner_state, _masked_like(params, z))
        _, z = base_lib.leafwise(lambda step, z: (step, z + step), steps, z)  # None where masked
        group = sf.averaging(state.hyperparams, hp, state.count, _base_lr(inner_state, name, d=True))

        def finish(g, y, x, z):
            update, buffers = after(y, x, z, group["ckp1"].astype(y.dtype), (1 - hp["momentum"]).astype(y.dtype))
            return (update, *(buffers[key] for key in kept))

        updates, *buffers = base_lib.leafwise(finish, grads, params, x, z)
        del group["ckp1"], group["scheduled_lr"]
        return updates, state_type(
            count=optax.safe_int32_increment(state.count),
            hyperparams=dict(hp, **group),
            z=z,
            inner_state=inner_state,
            **dict(zip(kept, buffers)),
        )

    return optax.GradientTransformation(init_fn, update_fn)


def _masked_like(params, buffer):
    """``buffer`` with ``optax.multi_transform``'s ``MaskedNode`` where ``params`` has one (the
    buffer holds ``None`` there, ``base.buffer``), as the base's ``init`` saw the params."""
    treedef = jax.tree.structure(params, is_leaf=base_lib._is_masked)
    pairs = zip(treedef.flatten_up_to(params), treedef.flatten_up_to(buffer))  # type: ignore[attr-defined]
    return treedef.unflatten([p if base_lib._is_masked(p) else b for p, b in pairs])  # type: ignore[attr-defined]


def _base_lr(state, name: str, d: bool = False):
    """``hyperparams['lr']`` of the first twin in the base's state (times its scalar ``d`` when
    ``d``: torch's ``group['lr'] * group.get('d', 1.0)``)."""
    for s in jax.tree.leaves(state, is_leaf=_keeps_lr):
        if _keeps_lr(s):
            scale = getattr(s, "d", None)
            return s.hyperparams["lr"] * (scale if d and scale is not None and jnp.ndim(scale) == 0 else 1.0)
    raise ValueError(
        f"{name}: the base's state holds no lr (hyperparams['lr'] of a purelr twin): {type(state).__name__}"
    )


def _keeps_lr(value) -> bool:
    return isinstance(getattr(value, "hyperparams", None), dict) and "lr" in value.hyperparams
