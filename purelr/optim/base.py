"""What every ``torch.optim`` twin shares: the state's count and hyperparameters in force,
leaf-by-leaf buffers, and torch's ``maximize`` / weight-decay handling of the gradient.

A twin's state is a NamedTuple whose first two fields are ``count`` (updates applied so far) and
``hyperparams`` (``{name: value used at the last update}``, the values at count 0 after ``init``),
followed by its buffers, named after the keys of torch's ``optimizer.state[p]``. A buffer torch
does not keep for the chosen flags is ``None``.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import optax

from purelr.optim import fusion
from purelr.optim import hyperparams as hp_lib
from purelr.schedules.core import as_values, resolve


def transformation(
    state_type, hyperparams: Mapping[str, object], init_buffers: Callable, update_buffers: Callable
) -> optax.GradientTransformation:
    """An ``optax.GradientTransformation`` around a twin's arithmetic.

    ``init_buffers(params, hp)`` returns the buffers (a dict of the state's other fields) from the
    values ``hp`` in force at count 0; ``update_buffers(grads, state, params, hp)`` returns
    ``(updates, buffers)`` for the update numbered ``state.count`` with the values ``hp`` in force.
    """

    def init_fn(params):
        return state_type(
            count=jnp.zeros((), jnp.int32),
            hyperparams=hp_lib.initial(hyperparams),
            **init_buffers(params, hp_lib.initial(hyperparams)),
        )

    def update_fn(grads, state, params=None):
        hp = hp_lib.in_force(hyperparams, state.count)
        updates, buffers = update_buffers(grads, state, params, hp)
        return updates, state_type(count=optax.safe_int32_increment(state.count), hyperparams=hp, **buffers)

    return optax.GradientTransformation(init_fn, update_fn)


def leafwise(fn: Callable, grads, *trees):
    """Applies ``fn(grad, *leaves) -> tuple`` leaf by leaf; returns one tree per output.

    A tree given as ``None`` (params that are not needed, a buffer that is not kept) feeds
    ``None`` to every call; an output that is ``None`` on every leaf comes back as ``None``.
    Outputs are cast to the param's dtype (the promoted dtype of the gradient and the other
    leaves), as torch keeps buffers in the parameter's dtype.
    A leaf that ``optax.masked`` (``multi_transform``) hands over as ``MaskedNode`` stays one in
    the first output (the updates) and is ``None`` in the others (see ``buffer``).
    With XLA:CPU's multi-output fusion on, the outputs are computed in sibling form
    (``purelr.optim.fusion``).
    """
    treedef: Any = jax.tree.structure(grads, is_leaf=_is_masked)  # jax types PyTreeDef as a bare alias
    columns = [[None] * treedef.num_leaves if tree is None else treedef.flatten_up_to(tree) for tree in trees]
    flat_grads = treedef.flatten_up_to(grads)
    outputs = {
        i: _leaf_outputs(fn, grad, leaves)
        for i, (grad, *leaves) in enumerate(zip(flat_grads, *columns))
        if not _is_masked(grad)
    }
    width = len(next(iter(outputs.values()))) if outputs else 0
    rows = [outputs.get(i) or [grad] + [None] * (width - 1) for i, grad in enumerate(flat_grads)]
    return tuple(
        None if all(out is None or _is_masked(out) for out in column) else treedef.unflatten(column)
        for column in zip(*rows)
    )


def _leaf_outputs(fn: Callable, grad, leaves) -> list:
    """``fn``'s outputs on one leaf, in the dtype of the param and its buffers (a gradient of a
    lower precision is cast up first, as torch's ``p.grad`` has the param's dtype). A complex
    leaf is computed on its real view (each entry a pair ``(real, imag)``, torch's
    ``view_as_real``): torch steps a complex parameter as the real parameter of twice its size,
    so ``g * g`` squares the real and imaginary parts one by one."""
    dtype = jnp.result_type(grad, *(x for x in leaves if x is not None))
    grad = grad if grad.dtype == dtype else grad.astype(dtype)  # bfloat16 grads of float32 params
    if not jnp.iscomplexobj(grad):
        return [
            None if out is None else jnp.asarray(out).astype(grad.dtype) for out in fusion.leaf_update(fn, grad, leaves)
        ]
    real_dtype = jnp.real(grad).dtype
    outs = fusion.leaf_update(fn, _real_view(grad), [None if x is None else _real_view(x) for x in leaves])
    return [None if out is None else _complex_view(jnp.asarray(out).astype(real_dtype)) for out in outs]


def _real_view(x):
    return jnp.stack([jnp.real(x), jnp.imag(x)], axis=-1)


def _complex_view(x):
    return jax.lax.complex(x[..., 0], x[..., 1])


def _is_masked(x) -> bool:
    return isinstance(x, optax.MaskedNode)


def buffer(params, fill: Callable = jnp.zeros_like):
    """A buffer like ``params``, ``fill(param)`` per leaf. Where ``optax.masked`` (in
    ``multi_transform``) hides a leaf behind a ``MaskedNode``, the buffer holds ``None``: JAX
    rebuilds ``None`` without calling Python, so a state of many groups (each group's buffers span
    the whole tree) costs far less to pass in and out of a jitted step than one of ``MaskedNode``s."""
    return jax.tree.map(lambda p: None if _is_masked(p) else fill(p), params, is_leaf=_is_masked)


def zeros(params):
    return buffer(params)


def full(params, value):
    """A buffer of ``value`` everywhere; ``value + value * 1j`` on a complex leaf, as torch fills
    it (``complex(value, value)``: every entry of the real view holds ``value``)."""
    return buffer(params, lambda p: jnp.full_like(p, value * (1 + 1j) if jnp.iscomplexobj(p) else value))


def check_real(optimizer: str, params) -> None:
    """Refuses complex leaves, naming the first one (torch's Adafactor and Muon refuse complex
    parameters at their first step)."""
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        if jnp.iscomplexobj(leaf):
            raise ValueError(
                f"{optimizer} does not support complex parameters, got dtype "
                f"{jnp.result_type(leaf)} at {jax.tree_util.keystr(path)}"
            )


def device_flags(**flags) -> None:
    """torch's implementation switches (``foreach``, ``fused``, ``capturable``, ``differentiable``),
    accepted where torch accepts them and ignored: torch's single-tensor arithmetic is the
    reference, and XLA compiles one program whatever they say. Checked as torch checks them:
    each ``None`` or a bool, ``fused`` neither with ``foreach`` nor with ``differentiable``."""
    for name, value in flags.items():
        if value is not None and not isinstance(value, bool):
            raise TypeError(f"{name} must be a bool or None, got {value!r}")
    for other in ("foreach", "differentiable"):
        if flags.get("fused") and flags.get(other):
            raise ValueError(
                f"fused=True cannot be used with {other}=True (torch refuses it), "
                f"got fused={flags['fused']!r}, {other}={flags[other]!r}"
            )


def maybe_nonzero(value) -> bool:
    """False only for a constant 0: torch skips the term (``if weight_decay != 0``); a schedule may not be 0."""
    return callable(value) or value != 0


def require_params(params, needed: bool, name: str):
    if params is None and needed:
        raise ValueError(f"{name} needs the params here: call update(grads, state, params)")


def check_betas(betas):
    """torch's ``0 <= betas[i] < 1``, each a constant or a schedule (or 1-element array)."""
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise TypeError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    return tuple(hp_lib.check(f"betas[{i}]", beta, maximum=1.0, maximum_open=True) for i, beta in enumerate(betas))


def adam_hyperparams(lr, betas, eps, weight_decay, **more) -> dict:
    """The Adam family's ``lr, beta1, beta2, eps, weight_decay`` (and ``more``), checked in torch's
    order with torch's conditions."""
    lr, eps = hp_lib.check("lr", lr), hp_lib.check("eps", eps)
    beta1, beta2 = check_betas(betas)
    weight_decay = hp_lib.check("weight_decay", weight_decay)
    more = {name: hp_lib.check(name, value) for name, value in more.items()}
    return dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay, **more)


def gradient(grad, param, hp, *, maximize: bool, weight_decay: bool):
    """torch's ``grad = -grad if maximize``, then L2 decay ``grad + weight_decay * param``."""
    grad = -grad if maximize else grad
    return grad + hp["weight_decay"] * param if weight_decay else grad


def gradient_and_decay(grad, param, hp, *, maximize: bool, weight_decay: bool, decoupled: bool):
    """``(g, start)``: the gradient as above, with L2 decay unless ``decoupled``; ``start`` is the
    param after torch's decoupled ``param *= 1 - lr * weight_decay`` (``None`` without it)."""
    grad = gradient(grad, param, hp, maximize=maximize, weight_decay=weight_decay and not decoupled)
    return grad, param * (1 - hp["lr"] * hp["weight_decay"]) if weight_decay and decoupled else None


def multiplied(param, factor):
    """torch's in-place ``param.mul_(factor)`` (decoupled weight decay), rounded before anything is
    added to it. XLA:CPU fuses a product into the sum that follows (one fused multiply-add where
    torch rounds twice): a rounding unit of the param at many updates, the same way each time while
    the param moves slowly. The select (equal to the product, NaN where the param is NaN) stops it."""
    return jnp.where(jnp.isnan(param), param, param * factor)


def update_from(param, start, *deltas):
    """torch's in-place sequence ``param = start; param += delta...`` as an optax update.

    With the params at hand the update is ``new_param - param``, so that ``apply_updates`` gives
    the param torch computes, rounded as torch rounds it (``param + (new - param)`` is exactly
    ``new`` when the step is small next to the param); ``start`` defaults to the param.
    """
    if param is None:
        return sum(deltas)
    new = param if start is None else start
    for delta in deltas:
        new = new + delta
    return new - param


def step_number(count):
    """torch's ``state['step']`` after its increment, as a value: ``count + 1``."""
    return as_values(count + 1)


def one_minus(value):
    """``1 - value`` for a constant-or-schedule hyperparameter (``beta2`` -> ``1 - beta2``).

    A constant's complement is taken in double precision, as torch takes it in Python, before it
    is rounded to float32: ``1 - float32(0.999)`` would be 1.3e-5 away from ``float32(0.001)``.
    """
    return (lambda step: 1 - resolve(value, step)) if callable(value) else 1.0 - value


def log_of(complement):
    """``log(beta)`` from ``1 - beta`` (constant-or-schedule, as ``one_minus`` gives it): a
    constant's is taken in double precision (``log1p(-(1 - beta))``), as torch takes ``beta ** t``
    in Python, before it is rounded to float32; ``beta = 0`` gives ``-inf``."""
    if callable(complement):
        return lambda step: jnp.log1p(-resolve(complement, step))
    return math.log1p(-complement) if complement < 1 else -math.inf


def bias_correction(log_beta, t, count):
    """torch's ``1 - beta ** t`` as ``-expm1(t * log(beta))``, from ``log_of(1 - beta)``.

    ``1 - beta ** t`` in float32 loses most of its digits: ``float32(0.999)`` is 1.3e-8 off,
    which moves ``1 - beta2 ** t`` by 1.3e-5 relative for every ``t`` up to a few hundred, and the
    subtraction from 1 cancels ~10 bits of ``beta2 ** t``. The ``expm1`` form is accurate to a few
    float32 ulps (and to ~1e-16 of torch's double value under x64).
    """
    return -jnp.expm1(t * resolve(log_beta, count))


def adam_moments(hyperparams: Mapping[str, object]):
    """``(decays, complements, log_betas)`` of the Adam family's ``hyperparams``
    (``adam_hyperparams``): whether weight decay may be nonzero, ``(1 - beta1, 1 - beta2)`` and
    their ``log_of``, for ``bias_correction``."""
    complements = one_minus(hyperparams["beta1"]), one_minus(hyperparams["beta2"])
    return maybe_nonzero(hyperparams["weight_decay"]), complements, tuple(log_of(c) for c in complements)


def moment_buffers(params, hp=None) -> dict:
    """Adam's zero ``exp_avg`` and ``exp_avg_sq`` (an ``init_buffers``)."""
    return dict(exp_avg=zeros(params), exp_avg_sq=zeros(params))


def torch_pow(x, exponent):
    """torch's ``x.pow(exponent)`` for a number ``exponent``, with its special cases: 1 for 0,
    ``x`` for 1, ``sqrt(x)`` for 0.5 (XLA's ``pow`` rounds those otherwise)."""
    general = jnp.power(x, exponent)
    return jnp.where(exponent == 0, 1.0, jnp.where(exponent == 0.5, jnp.sqrt(x), jnp.where(exponent == 1, x, general)))
