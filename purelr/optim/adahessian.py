"""timm's ``Adahessian`` (``adahessian``; Yao et al., 2020, arXiv:2006.00719, David Samuel's
PyTorch code): Adam whose second moment averages the squared Hutchinson estimate of the Hessian's
diagonal, ``z * (H @ z)`` for Rademacher vectors ``z``.

torch gets ``H @ z`` by differentiating the gradient again (``loss.backward(create_graph=True)``
in timm's train loop); here ``update`` takes the loss (``value_fn``, as ``lbfgs`` does) and
differentiates it forward over reverse (``jax.jvp`` of ``jax.grad``), or takes the estimate itself
(``hessian``, from ``hutchinson``): under ``optax.multi_transform`` (parameter groups) each group
sees only its own params, so the estimate over the whole model is computed once and handed to
every group, as torch's one backward pass serves all groups.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax

from purelr.optim import base
from purelr.optim import hyperparams as hp_lib
from purelr.schedules.core import resolve


class AdahessianState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]
    hyperparams: dict[str, jax.Array]
    exp_avg: Any
    exp_hessian_diag_sq: Any
    hess: Any  # torch's p.hess: the estimate in use (recomputed every update_each updates)
    key: jax.Array  # draws the Rademacher vectors when update is given none


def adahessian(
    lr=0.1,
    betas=(0.9, 0.999),
    eps=1e-8,
    weight_decay=0.0,
    hessian_power=1.0,
    update_each: int = 1,
    n_samples: int = 1,
    avg_conv_kernel: bool = False,
    *,
    seed: int = 2147483647,
) -> optax.GradientTransformationExtraArgs:
    """Twin of timm 1.0.31's ``timm.optim.Adahessian``; every number may be a schedule.

    ``update(grads, state, params, *, value_fn=None, hessian=None, rademacher=None)``: at update
    ``t = count + 1``, when ``count % update_each == 0`` the estimate is renewed, ``hess =
    hessian`` if given, else ``hutchinson(value_fn, params, rademacher)`` (``rademacher``:
    ``n_samples`` trees of +-1 like params; drawn from ``state.key`` when not given); else the
    last one is kept. Then::

        hess = mean |hess| over the kernel's dims 2, 3 (torch's OIHW layout)   (avg_conv_kernel, 4-D)
        param *= 1 - lr * weight_decay
        exp_avg = beta1 * exp_avg + (1 - beta1) * grad
        exp_hessian_diag_sq = beta2 * exp_hessian_diag_sq + (1 - beta2) * hess * hess
        denom = (exp_hessian_diag_sq / (1 - beta2 ** t)) ** (hessian_power / 2) + eps
        param -= lr / (1 - beta1 ** t) * exp_avg / denom

    timm draws the vectors from its own ``torch.Generator`` seeded with 2147483647; ``seed``
    seeds ``state.key`` instead (JAX's generator: other vectors).
    """
    for name, value in (("update_each", update_each), ("n_samples", n_samples)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"Invalid {name}: {value!r} (must be an int >= 1)")
    lr, eps = hp_lib.check("lr", lr), hp_lib.check("eps", eps)
    beta1, beta2 = base.check_betas(betas)
    hyperparams = dict(
        lr=lr,
        beta1=beta1,
        beta2=beta2,
        eps=eps,
        weight_decay=hp_lib.check("weight_decay", weight_decay, minimum=None),
        hessian_power=hp_lib.check("hessian_power", hessian_power, maximum=1.0),
    )
    complements = base.one_minus(beta1), base.one_minus(beta2)
    log_betas = tuple(base.log_of(c) for c in complements)

    def init_fn(params):
        hp = hp_lib.initial(hyperparams)
        return AdahessianState(
            count=jnp.zeros((), jnp.int32),
            hyperparams=hp,
            exp_avg=base.zeros(params),
            exp_hessian_diag_sq=base.zeros(params),
            hess=base.zeros(params),
            key=jax.random.PRNGKey(seed),
        )

    def update_fn(grads, state, params=None, *, value_fn=None, hessian=None, rademacher=None, **extra_args):
        base.require_params(params, True, "adahessian")
        hp = hp_lib.in_force(hyperparams, state.count)
        key, draw_key = jax.random.split(state.key)
        renew = state.count % update_each == 0
        if hessian is None:
            if value_fn is None:
                raise ValueError(
                    "adahessian needs value_fn (params -> loss) or hessian: call update(..., value_fn=loss)"
                )
            vectors = rademacher if rademacher is not None else draw(draw_key, params, n_samples)
            if len(vectors) != n_samples:
                raise ValueError(f"rademacher must hold n_samples={n_samples} trees, got {len(vectors)}")
            hessian = jax.lax.cond(renew, lambda: hutchinson(value_fn, params, vectors), lambda: state.hess)
        c1, c2 = (resolve(c, state.count) for c in complements)
        t = base.step_number(state.count)
        bias_correction1, bias_correction2 = (base.bias_correction(lb, t, state.count) for lb in log_betas)
        half_power = hp["hessian_power"] / 2

        def leaf(g, p, h_new, h_old, m, v):
            h = jnp.where(renew, h_new, h_old)
            if avg_conv_kernel and h.ndim == 4:
                h = jnp.broadcast_to(jnp.mean(jnp.abs(h), (2, 3), keepdims=True), h.shape)
            start = base.multiplied(p, 1 - hp["lr"] * hp["weight_decay"])
            m = hp["beta1"] * m + c1 * g
            v = hp["beta2"] * v + c2 * h * h
            denom = base.torch_pow(v / bias_correction2, half_power) + hp["eps"]
            return base.update_from(p, start, -(hp["lr"] / bias_correction1) * (m / denom)), m, v, h

        updates, m, v, h = base.leafwise(
            leaf, grads, params, hessian, state.hess, state.exp_avg, state.exp_hessian_diag_sq
        )
        return updates, AdahessianState(
            count=optax.safe_int32_increment(state.count),
            hyperparams=hp,
            exp_avg=m,
            exp_hessian_diag_sq=v,
            hess=h,
            key=key,
        )

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def hutchinson(value_fn: Callable[[Any], jax.Array], params, rademacher: Sequence[Any]):
    """The estimate of the Hessian's diagonal torch's ``set_hessian`` accumulates:
    ``sum_i (H @ z_i) * z_i / n`` over the ``n`` trees ``z_i`` of ``rademacher``, ``H`` the
    Hessian of ``value_fn`` at ``params`` (its products by ``jax.jvp`` of ``jax.grad``)."""
    gradient = jax.grad(value_fn)
    total = None
    for z in rademacher:
        hz = jax.jvp(gradient, (params,), (z,))[1]
        term = jax.tree.map(lambda a, b: a * b / len(rademacher), hz, z)
        total = term if total is None else jax.tree.map(jnp.add, total, term)
    return total


def draw(key, params, n_samples: int) -> list:
    """``n_samples`` trees of Rademacher vectors (+-1, the params' dtypes) like ``params``."""
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, (n_samples, len(leaves)))
    return [
        treedef.unflatten([jax.random.rademacher(k, p.shape, p.dtype) for k, p in zip(row, leaves)])  # type: ignore[attr-defined]
        for row in keys
    ]
