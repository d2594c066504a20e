"""Schedule-Free SGD, AdamW and RAdam (Defazio et al. 2024, the ``schedulefree`` package 1.4.1):
``SGDScheduleFree``, ``AdamWScheduleFree``, ``RAdamScheduleFree``, and the ``train()`` /
``eval()`` swap of their parameters as pure functions.

The optimizer keeps ``z`` (the base sequence) and the params hold ``y``, the point gradients are
taken at; the point to evaluate at is ``x``, with ``y = beta1 * x + (1 - beta1) * z``::

    sched = (k + 1) / warmup_steps if k < warmup_steps else 1        (k = count)
    lr_k = lr * sched;  lr_max = max(lr_max, lr_k)
    weight = (k + 1) ** r * lr_max ** weight_lr_power;  weight_sum += weight
    ckp1 = weight / weight_sum  (0 while weight_sum is 0)
    y = lerp(y, z, ckp1) + lr_k * (beta1 * (1 - ckp1) - 1) * u
    z = z - lr_k * u

``u`` is the normalised gradient plus ``weight_decay * y``. As in torch, the state's
``hyperparams`` mirror the param group: the numbers given, and ``scheduled_lr``, ``lr_max``,
``weight_sum`` after the last update (in the params' float dtype: float32 sums where torch's
Python floats are doubles, measured within the float32 bound over the tests' 100-200 updates).
The Reference forms (``schedule_free_reference``) and the
Closure forms (``schedule_free_closure``) keep their own state types, read here as well.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import optax

from purelr.optim import base
from purelr.optim import hyperparams as hp_lib
from purelr.optim.adafactor import torch_lerp
from purelr.schedules.core import as_values, float_dtype, resolve


class ScheduleFreeState(NamedTuple):
    """``SGDScheduleFree`` / ``AdamWScheduleFree`` / ``RAdamScheduleFree``: the params are ``y``
    (``exp_avg_sq`` is ``None`` for SGD)."""

    count: jax.Array  # type: ignore[assignment]
    hyperparams: dict[str, jax.Array]
    z: Any
    exp_avg_sq: Any


class ScheduleFreeReferenceState(NamedTuple):
    """The ``...Reference`` forms: ``x`` and ``y`` kept apart, the params equal to ``y``."""

    count: jax.Array  # type: ignore[assignment]
    hyperparams: dict[str, jax.Array]
    z: Any
    exp_avg_sq: Any
    x: Any
    y: Any


class ScheduleFreeClosureState(NamedTuple):
    """The ``...Closure`` forms: the params are ``x``, the gradient is taken at
    ``schedule_free_train_params(state, params)``."""

    count: jax.Array  # type: ignore[assignment]
    hyperparams: dict[str, jax.Array]
    z: Any
    exp_avg_sq: Any


class ScheduleFreeWrapperState(NamedTuple):
    """``schedule_free_wrapper``: the params are ``y``; ``inner_state`` is the base's, stepped on ``z``."""

    count: jax.Array  # type: ignore[assignment]
    hyperparams: dict[str, jax.Array]
    z: Any
    inner_state: Any


class ScheduleFreeWrapperReferenceState(NamedTuple):
    """``schedule_free_wrapper_reference``: ``x`` and ``y`` kept apart, the params equal to ``y``."""

    count: jax.Array  # type: ignore[assignment]
    hyperparams: dict[str, jax.Array]
    z: Any
    x: Any
    y: Any
    inner_state: Any


STATES = (
    ScheduleFreeState,
    ScheduleFreeReferenceState,
    ScheduleFreeClosureState,
    ScheduleFreeWrapperState,
    ScheduleFreeWrapperReferenceState,
)
KEPT_XY = (ScheduleFreeReferenceState, ScheduleFreeWrapperReferenceState)


def hyperparameters(lr, momentum, weight_decay, warmup_steps, r, weight_lr_power, foreach, **more) -> dict:
    """The common numbers, checked (constants; schedules pass): ``lr``, ``weight_decay``,
    ``warmup_steps`` and ``weight_lr_power`` at least 0, ``r`` finite; ``momentum`` is
    ``("momentum", value)`` or ``("betas", (beta1, beta2))`` (0 < beta1 < 1: ``eval`` divides by it).
    ``foreach`` is accepted and ignored (``base.device_flags``)."""
    base.device_flags(foreach=foreach)
    name, value = momentum
    if name == "betas":
        beta1, beta2 = base.check_betas(value)
        coefficients = dict(beta1=beta1, beta2=beta2)
    else:
        coefficients = dict(momentum=hp_lib.check("momentum", value, maximum=1.0, maximum_open=True))
    first = next(iter(coefficients))
    if not callable(coefficients[first]) and coefficients[first] <= 0:
        raise ValueError(f"Invalid {'betas[0]' if name == 'betas' else name}: {coefficients[first]!r} (must be > 0)")
    hp = dict(lr=hp_lib.check("lr", lr), **coefficients, weight_decay=hp_lib.check("weight_decay", weight_decay))
    hp.update(warmup_steps=_warmup(warmup_steps), r=hp_lib.check("r", r, minimum=None))
    hp["weight_lr_power"] = hp_lib.check("weight_lr_power", weight_lr_power)
    hp.update({key: hp_lib.check(key, v) for key, v in more.items()})
    return hp


def _warmup(value):
    if callable(value):
        return value
    if isinstance(value, bool) or not float(hp_lib.check("warmup_steps", value)).is_integer():
        raise ValueError(f"Invalid warmup_steps: {value!r} (must be an integer >= 0)")
    return int(value)


def interpolation(hp: Mapping[str, jax.Array]) -> jax.Array:
    """``beta1`` (AdamW, RAdam) or ``momentum`` (SGD): ``y = lerp(z, x, beta1)``."""
    return hp["beta1"] if "beta1" in hp else hp["momentum"]


def swap_weights(beta, dtype):
    """The lerp weights of the swaps, ``(1 - beta, 1 - 1 / beta)`` (towards ``z``: x to y, y to x),
    in ``dtype``, as close as float32 gets to the double the original computes: for
    ``beta >= 0.5`` the second is ``-(1 - beta) / beta``, one rounding after an exact difference
    (``1 - 1 / beta`` rounds twice); below 0.5 ``1 - 1 / beta``, whose subtraction is exact. The
    Closure forms swap at every update: over 100 float32 updates with ``beta1 = 0.5`` the params
    measured 6.5e-6 from torch's with ``1 - 1 / beta``, 6e-7 this way."""
    to_y = 1 - beta
    return to_y.astype(dtype), jnp.where(beta >= 0.5, -to_y / beta, 1 - 1 / beta).astype(dtype)


def warmup_lr(hp: Mapping[str, jax.Array], count) -> jax.Array:
    """``lr * (k + 1) / warmup_steps`` while ``k < warmup_steps``, else ``lr`` (``k = count``)."""
    k = as_values(count)
    warmup = hp["warmup_steps"]
    ramp = (k + 1) / jnp.where(warmup > 0, warmup, 1.0)
    return hp["lr"] * jnp.where(k < warmup, ramp, 1.0)


def averaging(previous: Mapping[str, jax.Array], hp: Mapping[str, jax.Array], count, lr) -> dict:
    """The group's ``scheduled_lr``, ``lr_max``, ``weight_sum`` after this update, and ``ckp1``, the
    weight of the new ``z`` in the average ``x``."""
    lr_max = jnp.maximum(lr, previous["lr_max"])
    weight = as_values(count + 1) ** hp["r"] * lr_max ** hp["weight_lr_power"]
    weight_sum = previous["weight_sum"] + weight
    ckp1 = jnp.where(weight_sum == 0, 0.0, weight / jnp.where(weight_sum == 0, 1.0, weight_sum))
    return dict(scheduled_lr=lr, lr_max=lr_max, weight_sum=weight_sum, ckp1=ckp1)


def transformation(
    name: str,
    state_type,
    hyperparams: Mapping[str, object],
    buffers: Callable,
    step: Callable,
    lr: Callable = warmup_lr,
    lr_max_start: float = -1.0,
) -> optax.GradientTransformation:
    """An optax transformation around a Schedule-Free step.

    ``buffers(params)`` gives the state's buffers; ``step(grads, state, params, hp, lr)`` gives
    ``(updates, buffers)`` for ``hp`` in force (``hp["ckp1"]`` included) and ``lr(hp, count)``, the
    lr of the update (``warmup_lr``; RAdam's rectified one). ``lr_max_start``: the group's
    ``lr_max`` before the first update (-1; 0 in the Closure forms)."""

    def init_fn(params):
        group = dict(scheduled_lr=0.0, lr_max=lr_max_start, weight_sum=0.0)
        hp = dict(hp_lib.initial(hyperparams), **{k: jnp.asarray(v, float_dtype()) for k, v in group.items()})
        return state_type(count=jnp.zeros((), jnp.int32), hyperparams=hp, **buffers(params))

    def update_fn(grads, state, params=None):
        base.require_params(params, True, name)
        hp = hp_lib.in_force(hyperparams, state.count)
        scheduled = lr(hp, state.count)
        group = averaging(state.hyperparams, hp, state.count, scheduled)
        updates, new = step(grads, state, params, dict(hp, ckp1=group["ckp1"]), scheduled)
        del group["ckp1"]
        count = optax.safe_int32_increment(state.count)
        return updates, state_type(count=count, hyperparams=dict(hp, **group), **new)

    return optax.GradientTransformation(init_fn, update_fn)


def second_moment(hyperparams: Mapping[str, object]):
    """``(update, bias correction)`` of ``exp_avg_sq``: ``v = beta2 * v + (1 - beta2) * g * g`` and
    ``1 - beta2 ** (count + 1)`` (``base.bias_correction``)."""
    complement = base.one_minus(hyperparams["beta2"])
    log_beta = base.log_of(complement)

    def update(v, g, hp, count):
        return hp["beta2"] * v + resolve(complement, count) * g * g

    def correction(count):
        return base.bias_correction(log_beta, base.step_number(count), count)

    return update, correction


def adam_normalised(hyperparams: Mapping[str, object]) -> Callable:
    """``normalised(g, v, hp, count) -> (u, v)``: ``v = beta2 * v + (1 - beta2) * g * g``, then
    ``u = g / (sqrt(v / (1 - beta2 ** t)) + eps)`` (``t = count + 1``)."""
    moment, correction = second_moment(hyperparams)

    def normalised(g, v, hp, count):
        v = moment(v, g, hp, count)
        return g / (jnp.sqrt(v / correction(count)) + hp["eps"]), v

    return normalised


def radam_normalised(hyperparams: Mapping[str, object], silent_sgd_phase: bool) -> Callable:
    """``adam_normalised`` while ``rho_t > 4`` (``rectification``), else ``u = g``."""
    adam = adam_normalised(hyperparams)
    log_beta2 = base.log_of(base.one_minus(hyperparams["beta2"]))

    def normalised(g, v, hp, count):
        u, v = adam(g, v, hp, count)
        return jnp.where(rectification(hp, count, silent_sgd_phase, log_beta2)[0], u, g), v

    return normalised


def rectified_lr(hyperparams: Mapping[str, object], silent_sgd_phase: bool) -> Callable:
    """RAdam's ``lr(hp, count) = lr * rect`` (``rectification``)."""
    log_beta2 = base.log_of(base.one_minus(hyperparams["beta2"]))

    def lr(hp, count):
        return hp["lr"] * rectification(hp, count, silent_sgd_phase, log_beta2)[1]

    return lr


def y_step(y, z, u, hp, lr):
    """``(new y, new z)``: ``y = lerp(y, z, ckp1) + lr * (beta1 * (1 - ckp1) - 1) * u``, ``z -= lr * u``."""
    ckp1 = hp["ckp1"].astype(y.dtype)
    start = torch_lerp(y, z, ckp1)
    return base.update_from(y, start, u * (lr * (interpolation(hp) * (1 - ckp1) - 1))), z - lr * u


def sgd_schedule_free(
    lr=1.0, momentum=0.9, weight_decay=0.0, warmup_steps=0, r=0.0, weight_lr_power=2.0, foreach: bool | None = None
) -> optax.GradientTransformation:
    """Twin of ``schedulefree.SGDScheduleFree``: ``u = grad + weight_decay * y`` in the module's step
    (``beta1`` is ``momentum``). ``foreach`` is accepted and ignored."""
    hp = hyperparameters(lr, ("momentum", momentum), weight_decay, warmup_steps, r, weight_lr_power, foreach=foreach)
    return _main("sgd_schedule_free", hp, plain, z_only)


def adamw_schedule_free(
    lr=0.0025,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=0.0,
    warmup_steps=0,
    r=0.0,
    weight_lr_power=2.0,
    foreach: bool | None = None,
) -> optax.GradientTransformation:
    """Twin of ``schedulefree.AdamWScheduleFree``: in the module's step,
    ``u = grad / (sqrt(exp_avg_sq / (1 - beta2 ** t)) + eps) + weight_decay * y`` after
    ``exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * grad ** 2`` (``t = count + 1``).
    ``foreach`` is accepted and ignored."""
    hp = hyperparameters(lr, ("betas", betas), weight_decay, warmup_steps, r, weight_lr_power, eps=eps, foreach=foreach)
    return _main("adamw_schedule_free", hp, adam_normalised(hp), z_and_moment)


def adamw_schedule_free_paper(
    lr=0.0025,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=0.0,
    warmup_steps=0,
    r=0.0,
    weight_lr_power=2.0,
    foreach: bool | None = None,
) -> optax.GradientTransformation:
    """Twin of ``schedulefree.AdamWScheduleFreePaper`` (the published experiments' version): the
    bias correction moves to the lr, ``lr_k = lr * sched * sqrt(1 - beta2 ** t)`` (also in
    ``lr_max``), and ``u = grad / (sqrt(exp_avg_sq) + eps) + weight_decay * y``."""
    hp = hyperparameters(lr, ("betas", betas), weight_decay, warmup_steps, r, weight_lr_power, eps=eps, foreach=foreach)
    moment, correction = second_moment(hp)

    def normalised(g, v, hp, count):
        v = moment(v, g, hp, count)
        return g / (jnp.sqrt(v) + hp["eps"]), v

    def corrected_lr(hp, count):
        return warmup_lr(hp, count) * jnp.sqrt(correction(count))

    return _main("adamw_schedule_free_paper", hp, normalised, z_and_moment, corrected_lr)


def rectification(hp: Mapping[str, jax.Array], count, silent_sgd_phase: bool, log_beta2):
    """RAdam's ``(adam, rect)`` at ``t = count + 1``: ``adam`` is ``rho_t > 4`` (an Adam step, else
    an SGD step, or none with ``silent_sgd_phase``), ``rect`` the factor of the lr::

        rho_inf = 2 / (1 - beta2) - 1;  rho_t = rho_inf - 2 t beta2 ** t / (1 - beta2 ** t)
        rect = sqrt((rho_t - 4) (rho_t - 2) rho_inf / ((rho_inf - 4) (rho_inf - 2) rho_t))

    ``rho_t`` is a small difference of two numbers near ``rho_inf`` (2000 for ``beta2 = 0.999``).
    In float64 it is computed as written, as the original computes it (in Python). In float32 as
    written it would carry ``rho_inf`` float32 rounding units (1e-4: 1e-3 of ``rect`` at the first
    rectified step) where the original's double value is good to 1e-12: it is computed as
    ``2 (A + B) / ((1 - beta2) (1 - beta2 ** t)) - 1`` with ``L = -log(beta2)``,
    ``A = beta2 ** t (e ** (t L) - 1 - t L)`` and ``B = t beta2 ** t (e ** -L - 1 + L)``, two
    positive terms (``_exp_excess``), equal to the difference in exact arithmetic.
    """
    rho_t, rho_inf = rho(hp, count, log_beta2)
    adam = rho_t > 4.0
    ratio = (rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)
    return adam, jnp.where(adam, jnp.sqrt(jnp.where(adam, ratio, 1.0)), 0.0 if silent_sgd_phase else 1.0)


def rho(hp: Mapping[str, jax.Array], count, log_beta2):
    """``(rho_t, rho_inf)`` of ``rectification``, at ``t = count + 1``."""
    t = base.step_number(count)
    log_b = resolve(log_beta2, count)
    bt, q, c = jnp.exp(t * log_b), -jnp.expm1(t * log_b), 1 - hp["beta2"]
    rho_inf = 2 / c - 1
    if bt.dtype == jnp.float64:
        return rho_inf - 2 * t * bt / q, rho_inf
    a = jnp.where(-t * log_b <= 1, bt * _exp_excess(-t * log_b), q + t * log_b * bt)
    return jnp.where(bt > 0, 2 * (a + t * bt * _exp_excess(log_b)) / (c * q) - 1, rho_inf), rho_inf


_FACTORIALS = [float(math.factorial(k)) for k in range(2, 21)]


def _exp_excess(x):
    """``e ** x - 1 - x`` without cancellation: its Taylor series (to ``x ** 20``) for ``|x| <= 1``."""
    small = jnp.clip(x, -1.0, 1.0)
    series = 0.0
    for factorial in reversed(_FACTORIALS):
        series = series * small + 1 / factorial  # type: ignore[assignment]
    return jnp.where(jnp.abs(x) <= 1, small * small * series, jnp.expm1(x) - x)


def radam_schedule_free(
    lr=0.0025,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=0.0,
    r=0.0,
    weight_lr_power=2.0,
    foreach: bool | None = None,
    silent_sgd_phase: bool = True,
) -> optax.GradientTransformation:
    """Twin of ``schedulefree.RAdamScheduleFree``: no warmup; the lr is ``lr * rect``
    (``rectification``), and ``u`` is AdamW's normalised gradient while ``rho_t > 4``, else the
    gradient itself (with ``rect = 0`` under ``silent_sgd_phase``: only ``exp_avg_sq`` moves), plus
    ``weight_decay * y``. ``foreach`` is accepted and ignored."""
    hp = hyperparameters(lr, ("betas", betas), weight_decay, 0, r, weight_lr_power, eps=eps, foreach=foreach)
    normalised = radam_normalised(hp, silent_sgd_phase)
    return _main("radam_schedule_free", hp, normalised, z_and_moment, rectified_lr(hp, silent_sgd_phase))


def _main(name: str, hp: dict, normalised: Callable, buffers: Callable, lr: Callable = warmup_lr):
    """A main form: ``u, exp_avg_sq = normalised(grad, exp_avg_sq, hp, count)``, plus
    ``weight_decay * y``, then ``y_step``."""
    decays = base.maybe_nonzero(hp["weight_decay"])

    def step(grads, state, params, hp, lr):
        def leaf(g, y, z, v):
            u, v = normalised(g, v, hp, state.count)
            u = u + hp["weight_decay"] * y if decays else u
            return (*y_step(y, z, u, hp, lr), v)

        updates, z, v = base.leafwise(leaf, grads, params, state.z, state.exp_avg_sq)
        return updates, dict(z=z, exp_avg_sq=v)

    return transformation(name, ScheduleFreeState, hp, buffers, step, lr)


def plain(g, v, hp, count):
    """SGD's ``normalised``: the gradient as it is."""
    return g, v


def z_only(params) -> dict:
    """``z`` (a copy of the params); no ``exp_avg_sq``."""
    return dict(z=base.buffer(params, jnp.array), exp_avg_sq=None)


def z_and_moment(params) -> dict:
    """``z`` (a copy of the params) and zero ``exp_avg_sq``."""
    return dict(z=base.buffer(params, jnp.array), exp_avg_sq=base.zeros(params))


# ---- the train() / eval() swap ------------------------------------------------------------------


def schedule_free_eval_params(state, params):
    """The params torch holds after ``optimizer.eval()``: ``x``, from the train params ``y``.

    ``state`` is a Schedule-Free state, or any optimizer state holding some (a chain, an
    ``optax.multi_transform`` of groups): each leaf a Schedule-Free group updates becomes
    ``lerp(y, z, 1 - 1 / beta1)`` (``beta1`` of the group's last update; ``momentum`` for SGD);
    the Reference forms' ``x`` is kept in their state; the Closure forms' params are ``x`` already.
    ``schedule_free_wrapper`` and ``schedule_free_wrapper_reference`` (their ``momentum``) swap alike.
    Leaves no Schedule-Free group owns are returned as they are (torch: no ``z`` in the state).
    Same spirit as ``optax.contrib.schedule_free_eval_params`` (same argument order).
    """
    return _swap(state, params, eval_mode=True)


def schedule_free_train_params(state, params):
    """The inverse swap, torch's ``optimizer.train()``: from the eval params ``x``, the params
    ``y = lerp(x, z, 1 - beta1)`` gradients are taken at (the Reference forms' kept ``y``). For the
    Closure forms this is the point the closure's gradient is taken at."""
    return _swap(state, params, eval_mode=False)


def _swap(state, params, eval_mode: bool):
    treedef = jax.tree.structure(params)
    out = treedef.flatten_up_to(params)  # type: ignore[attr-defined]
    found = [s for s in jax.tree.leaves(state, is_leaf=_is_state) if _is_state(s)]
    if not found:
        raise ValueError(
            f"no Schedule-Free state in {type(state).__name__}: expected one of {[s.__name__ for s in STATES]}"
        )
    for s in found:
        if isinstance(s, KEPT_XY):
            kept = treedef.flatten_up_to(s.x if eval_mode else s.y)  # type: ignore[attr-defined]
        elif eval_mode and isinstance(s, ScheduleFreeClosureState):
            continue  # its params are x already
        beta = interpolation(s.hyperparams)
        for i, z in enumerate(treedef.flatten_up_to(s.z)):  # type: ignore[attr-defined]
            if z is None or isinstance(z, optax.MaskedNode):
                continue
            if isinstance(s, KEPT_XY):
                out[i] = kept[i]
            else:
                to_y, to_x = swap_weights(beta, z.dtype)
                out[i] = torch_lerp(out[i], z, to_x if eval_mode else to_y)
    return treedef.unflatten(out)  # type: ignore[attr-defined]


def _is_state(value) -> bool:
    return isinstance(value, STATES)
