"""Adafactor, the twin of ``torch.optim.Adafactor`` (torch 2.13).

At update ``k`` (``t = k + 1``), for each leaf ``theta`` with gradient ``G`` (``-G`` if ``maximize``)::

    beta_hat = t ** beta2_decay                       # the weight 1 - beta2_t of the running means
    rho      = min(lr, 1 / sqrt(t))
    alpha    = max(eps2, RMS(theta)) * rho            # RMS of the parameter before decay
    theta    = theta * (1 - lr * weight_decay)
    if G has >= 2 dimensions (factored over the last two):
        R = lerp(R, mean(G * G, axis=-1), beta_hat)   # row factor, shape [..., m, 1]
        C = lerp(C, mean(G * G, axis=-2), beta_hat)   # column factor, shape [..., 1, n]
        V = R @ C / max(mean(R, axis=-2), eps1)
    else:
        V = lerp(V, G * G, beta_hat)
    U     = G / sqrt(max(V, eps1 ** 2))
    theta = theta - alpha / max(1, RMS(U) / d) * U

``eps1`` defaults to the machine epsilon of the parameter's dtype (``eps=(None, 1e-3)``).
``lerp`` is torch's: ``a + w (b - a)`` when ``|w| < 0.5``, else ``b - (b - a)(1 - w)``, and the
row/column means are formed as torch forms them (a 2-norm, squared, divided by the length).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from purelr.optim import base
from purelr.optim import hyperparams as hp


class AdafactorState(NamedTuple):
    """``count`` updates done; ``hyperparams`` in force at the last one (``lr``, ``beta2_decay``,
    ``d``, ``weight_decay``, ``eps2``); the factored second moments ``row_var``/``col_var`` of leaves with
    two or more dimensions and ``variance`` of the others (a leaf's unused entries are empty
    arrays of shape ``(0,)``)."""

    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as optax's states do
    hyperparams: dict
    row_var: optax.Updates
    col_var: optax.Updates
    variance: optax.Updates


def torch_lerp(start, end, weight):
    """torch's ``start.lerp(end, weight)``: the form it picks depends on ``|weight| < 0.5``."""
    diff = end - start
    return jnp.where(jnp.abs(weight) < 0.5, start + weight * diff, end - diff * (1 - weight))


def _norm(x, axis=None, keepdims=False):
    return jnp.sqrt(jnp.sum(x * x, axis=axis, keepdims=keepdims))


def _empty(x):
    return jnp.zeros((0,), x.dtype)


def adafactor(
    lr=1e-2,
    beta2_decay=-0.8,
    eps=(None, 1e-3),
    d=1.0,
    weight_decay=0.0,
    *,
    foreach=None,
    maximize: bool = False,
) -> optax.GradientTransformation:
    """Twin of ``torch.optim.Adafactor`` (see the module docstring for the formula).

    ``lr``, ``beta2_decay``, ``d``, ``weight_decay`` and ``eps2`` may be floats or schedules (read
    at the update's ``count``); ``eps1`` is a float, or ``None`` for the parameter dtype's machine
    epsilon. ``foreach`` is accepted for signature compatibility: torch's two
    implementations compute the same numbers. Complex params are refused at ``init`` and
    ``update`` (torch refuses them at its step). Validation is torch's: ``lr >= 0``,
    ``beta2_decay <= 0``, ``eps1 >= 0`` (when given), ``eps2 >= 0``, ``d >= 1``,
    ``weight_decay >= 0``.
    """
    base.device_flags(foreach=foreach)
    lr = hp.check("lr", lr)
    beta2_decay = hp.check("beta2_decay", beta2_decay, minimum=None, maximum=0.0)
    if len(eps) != 2:
        raise ValueError(f"Invalid eps: {eps!r} (must be a pair (eps1, eps2))")
    eps1, eps2 = eps
    if eps1 is not None:
        eps1 = hp.check("eps[0]", eps1)
    eps2 = hp.check("eps[1]", eps2)
    d = hp.check("d", d, minimum=1.0)
    weight_decay = hp.check("weight_decay", weight_decay)
    schedules = {"lr": lr, "beta2_decay": beta2_decay, "d": d, "weight_decay": weight_decay, "eps2": eps2}

    def init_fn(params):
        base.check_real("adafactor", params)

        def factor(axis):
            def leaf(p):
                if p.ndim < 2:
                    return _empty(p)
                shape = list(p.shape)
                shape[axis] = 1
                return jnp.zeros(shape, p.dtype)

            return jax.tree.map(leaf, params)

        return AdafactorState(
            count=jnp.zeros((), jnp.int32),
            hyperparams=hp.initial(schedules),
            row_var=factor(-1),
            col_var=factor(-2),
            variance=jax.tree.map(lambda p: jnp.zeros_like(p) if p.ndim < 2 else _empty(p), params),
        )

    def update_fn(updates, state, params):
        if params is None:
            raise ValueError("adafactor needs params (the relative step uses RMS(params))")
        base.check_real("adafactor", params)
        values = hp.in_force(schedules, state.count)
        step = (state.count + 1).astype(values["lr"].dtype)
        beta_hat = step ** values["beta2_decay"]
        rho = jnp.minimum(values["lr"], 1 / jnp.sqrt(step))
        decay = 1 - values["lr"] * values["weight_decay"]

        def leaf(g, p, row_var, col_var, variance):
            g = (-g if maximize else g).astype(p.dtype)
            e1 = jnp.finfo(p.dtype).eps if eps1 is None else eps1
            alpha = jnp.maximum(values["eps2"], _norm(p) / math.sqrt(p.size)) * rho
            if g.ndim >= 2:
                row_mean = _norm(g, axis=-1, keepdims=True) ** 2 / g.shape[-1]
                col_mean = _norm(g, axis=-2, keepdims=True) ** 2 / g.shape[-2]
                row_var = torch_lerp(row_var, row_mean.astype(p.dtype), beta_hat.astype(p.dtype))
                col_var = torch_lerp(col_var, col_mean.astype(p.dtype), beta_hat.astype(p.dtype))
                estimate = (row_var * col_var) / jnp.maximum(jnp.mean(row_var, axis=-2, keepdims=True), e1)
            else:
                variance = torch_lerp(variance, (g * g).astype(p.dtype), beta_hat.astype(p.dtype))
                estimate = variance
            u = jax.lax.rsqrt(jnp.maximum(estimate, e1 * e1)) * g
            scale = alpha / jnp.maximum(1.0, _norm(u) / (math.sqrt(u.size) * values["d"]))
            new_p = p * decay.astype(p.dtype) - (scale * u).astype(p.dtype)
            return new_p - p, row_var, col_var, variance

        out = jax.tree.map(leaf, updates, params, state.row_var, state.col_var, state.variance)
        treedef: Any = jax.tree.structure(updates)  # jax types PyTreeDef as a bare alias
        new_updates, row_var, col_var, variance = (
            treedef.unflatten(parts) for parts in zip(*treedef.flatten_up_to(out))
        )
        return new_updates, AdafactorState(state.count + 1, values, row_var, col_var, variance)

    return optax.GradientTransformation(init_fn, update_fn)
