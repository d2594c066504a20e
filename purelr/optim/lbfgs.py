"""``torch.optim.LBFGS``: limited-memory BFGS with an optional strong-Wolfe line search.

One ``update`` is one ``optimizer.step(closure)``: the whole inner loop of up to ``max_iter``
iterations (and up to ``max_eval`` evaluations of the loss) runs inside it, in ``lax.while_loop``s.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from purelr.optim import base
from purelr.optim import hyperparams as hp_lib
from purelr.optim.hyperparams import check
from purelr.schedules import validate

LINE_SEARCH_FNS = (None, "strong_wolfe")


class LBFGSState(NamedTuple):
    """torch's ``optimizer.state`` of LBFGS, its lists kept in fixed-size arrays.

    Vectors are flat (the params' leaves raveled and concatenated in the pytree's leaf order, as
    ``_gather_flat_grad`` concatenates ``p.grad``). The history arrays have ``history_size`` rows,
    the first ``num_old`` in use, oldest first: torch's ``old_dirs[i]``, ``old_stps[i]``, ``ro[i]``.
    """

    count: jax.Array  # type: ignore[assignment]  # outer steps (calls of step(closure)) so far
    hyperparams: dict[str, jax.Array]  # {"lr": value used at the last step}
    d: jax.Array  # last search direction
    t: jax.Array  # last step length
    old_dirs: jax.Array  # gradient differences y, shape (history_size, n)
    old_stps: jax.Array  # steps s = d * t, shape (history_size, n)
    ro: jax.Array  # 1 / y.s, shape (history_size,)
    num_old: jax.Array  # len(old_dirs)
    H_diag: jax.Array  # scale of the initial inverse Hessian  # noqa: N815 (torch's name)
    prev_flat_grad: jax.Array
    prev_loss: jax.Array
    n_iter: jax.Array  # inner iterations over all steps
    func_evals: jax.Array  # evaluations of the loss over all steps


def _python_max(a, b):
    """``max(a, b)`` as Python computes it (the first of equal values, ``a`` unless ``b > a``)."""
    return jnp.where(b > a, b, a)


def _python_min(a, b):
    return jnp.where(b < a, b, a)


def _cubic_interpolate(x1, f1, g1, x2, f2, g2, bounds=None):
    """Minimizer of the cubic through ``(x1, f1)``, ``(x2, f2)`` with slopes ``g1``, ``g2``, clamped
    to ``bounds`` (the interval between ``x1`` and ``x2`` by default); the midpoint of the bounds
    when the cubic has no real minimizer."""
    if bounds is None:
        ordered = x1 <= x2
        bounds = jnp.where(ordered, x1, x2), jnp.where(ordered, x2, x1)
    low, high = bounds
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1**2 - g1 * g2
    d2 = jnp.sqrt(jnp.where(d2_square >= 0, d2_square, 0))
    min_pos = jnp.where(
        x1 <= x2,
        x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2)),
        x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2)),
    )
    return jnp.where(d2_square >= 0, _python_min(_python_max(min_pos, low), high), (low + high) / 2.0)


def _strong_wolfe(evaluate, x, t, d, f, g, gtd, max_ls, c1=1e-4, c2=0.9, tolerance_change=1e-9):
    """torch's ``_strong_wolfe``: bracketing, then zoom with cubic interpolation.

    ``evaluate(point) -> (loss, flat_grad)``. Returns ``(f_new, g_new, t, ls_func_evals)``.
    As torch calls it, ``tolerance_change`` is always 1e-9 here (not the optimizer's).
    Each phase's ``break`` conditions are the loop's exit test, checked before each iteration.
    """
    d_norm = jnp.max(jnp.abs(d))

    def probe(t):
        f_new, g_new = evaluate(x + t * d)
        return f_new, g_new, jnp.dot(g_new, d)

    f_new, g_new, gtd_new = probe(t)
    zero = jnp.zeros_like(t)
    search = dict(
        t=t,
        f_new=f_new,
        g_new=g_new,
        gtd_new=gtd_new,
        t_prev=zero,
        f_prev=f,
        g_prev=g,
        gtd_prev=gtd,
        ls_iter=jnp.zeros((), jnp.int32),
    )

    def tests(s):
        too_high = (s["f_new"] > f + c1 * s["t"] * gtd) | ((s["ls_iter"] > 1) & (s["f_new"] >= s["f_prev"]))
        return too_high, jnp.abs(s["gtd_new"]) <= -c2 * gtd, s["gtd_new"] >= 0

    def bracketing(s):
        too_high, wolfe, ascent = tests(s)
        return (s["ls_iter"] < max_ls) & ~(too_high | wolfe | ascent)

    def extrapolate(s):
        bounds = s["t"] + 0.01 * (s["t"] - s["t_prev"]), s["t"] * 10
        t_next = _cubic_interpolate(
            s["t_prev"], s["f_prev"], s["gtd_prev"], s["t"], s["f_new"], s["gtd_new"], bounds=bounds
        )
        f_next, g_next, gtd_next = probe(t_next)
        return dict(
            t=t_next,
            f_new=f_next,
            g_new=g_next,
            gtd_new=gtd_next,
            t_prev=s["t"],
            f_prev=s["f_new"],
            g_prev=s["g_new"],
            gtd_prev=s["gtd_new"],
            ls_iter=s["ls_iter"] + 1,
        )

    s = jax.lax.while_loop(bracketing, extrapolate, search)
    exhausted = s["ls_iter"] >= max_ls
    too_high, wolfe, _ = tests(s)
    done = ~exhausted & ~too_high & wolfe

    def pair(first, exhausted_first, done_first, second):
        """The bracket: ``[first, second]``; ``[0 / f / g, second]`` when out of evaluations;
        ``[second]`` (kept twice) when the point already satisfies the Wolfe conditions."""
        first = jnp.where(exhausted, exhausted_first, jnp.where(done, done_first, first))
        return jnp.stack([first, second])

    zoom = dict(
        bracket=pair(s["t_prev"], zero, s["t"], s["t"]),
        f=pair(s["f_prev"], f, s["f_new"], s["f_new"]),
        g=pair(s["g_prev"], g, s["g_new"], s["g_new"]),
        gtd=pair(s["gtd_prev"], gtd, s["gtd_new"], s["gtd_new"]),
        insuf_progress=jnp.zeros((), bool),
        done=done,
        ls_iter=s["ls_iter"],
    )
    low_first = zoom["f"][0] <= zoom["f"][1]
    zoom["low"], zoom["high"] = jnp.where(low_first, 0, 1), jnp.where(low_first, 1, 0)

    def zooming(z):
        width = jnp.abs(z["bracket"][1] - z["bracket"][0]) * d_norm
        return ~z["done"] & (z["ls_iter"] < max_ls) & ~(width < tolerance_change)

    def refine(z):
        bracket, low, high = z["bracket"], z["low"], z["high"]
        t = _cubic_interpolate(bracket[0], z["f"][0], z["gtd"][0], bracket[1], z["f"][1], z["gtd"][1])
        top, bottom = _python_max(bracket[0], bracket[1]), _python_min(bracket[0], bracket[1])
        eps = 0.1 * (top - bottom)
        near_edge = _python_min(top - t, t - bottom) < eps
        at_edge = z["insuf_progress"] | (t >= top) | (t <= bottom)
        moved = jnp.where(jnp.abs(t - top) < jnp.abs(t - bottom), top - eps, bottom + eps)
        t = jnp.where(near_edge & at_edge, moved, t)
        f_new, g_new, gtd_new = probe(t)
        new = dict(bracket=t, f=f_new, g=g_new, gtd=gtd_new)

        def replace_high(_):
            out = {k: _set_row(z[k], high, v) for k, v in new.items()}
            first = out["f"][0] <= out["f"][1]
            return out, jnp.where(first, 0, 1), jnp.where(first, 1, 0), z["done"]

        def replace_low(_):
            wolfe = jnp.abs(gtd_new) <= -c2 * gtd
            flip = ~wolfe & (gtd_new * (bracket[high] - bracket[low]) >= 0)
            out = {k: _set_row(jnp.where(flip, _set_row(z[k], high, z[k][low]), z[k]), low, v) for k, v in new.items()}
            return out, low, high, wolfe

        out, low, high, done = jax.lax.cond(
            (f_new > f + c1 * t * gtd) | (f_new >= z["f"][low]), replace_high, replace_low, None
        )
        return dict(out, low=low, high=high, done=done, insuf_progress=near_edge & ~at_edge, ls_iter=z["ls_iter"] + 1)

    z = jax.lax.while_loop(zooming, refine, zoom)
    low = z["low"]
    return z["f"][low], z["g"][low], z["bracket"][low], z["ls_iter"] + 1


def _set_row(x, i, row):
    """``x.at[i].set(row)`` written as a select over the rows, so that no scatter is emitted: XLA:CPU
    0.10.2 with its multi-output fusion on aborts compiling two scatters at the same index, which
    the history buffers' updates become under ``jax.vmap`` (``purelr.optim.fusion``)."""
    rows = jnp.arange(x.shape[0]).reshape((-1,) + (1,) * (x.ndim - 1))
    return jnp.where(rows == i, jnp.asarray(row, x.dtype), x)


def _direction(flat_grad, y, s, state_parts, history_size):
    """torch's memory update with ``(y, s)`` and the two-loop recursion: ``-H @ flat_grad``."""
    old_dirs, old_stps, ro, num_old, h_diag = state_parts
    ys = jnp.dot(y, s)
    keep = ys > 1e-10
    full = num_old == history_size
    slot = jnp.minimum(num_old, history_size - 1)

    def push(history, item):
        shifted = jnp.where(full, jnp.roll(history, -1, axis=0), history)
        return jnp.where(keep, _set_row(shifted, slot, item), history)

    old_dirs, old_stps, ro = push(old_dirs, y), push(old_stps, s), push(ro, 1.0 / ys)
    num_old = jnp.where(keep & ~full, num_old + 1, num_old)
    h_diag = jnp.where(keep, ys / jnp.dot(y, y), h_diag)

    def newest_first(j, carry):
        q, al = carry
        i = num_old - 1 - j
        a = jnp.dot(old_stps[i], q) * ro[i]
        return q - a * old_dirs[i], _set_row(al, i, a)

    q, al = jax.lax.fori_loop(0, num_old, newest_first, (-flat_grad, jnp.zeros_like(ro)))

    def oldest_first(i, r):
        be_i = jnp.dot(old_dirs[i], r) * ro[i]
        return r + (al[i] - be_i) * old_stps[i]

    d = jax.lax.fori_loop(0, num_old, oldest_first, q * h_diag)
    return d, (old_dirs, old_stps, ro, num_old, h_diag)


def lbfgs(
    lr=1,
    max_iter: int = 20,
    max_eval: int | None = None,
    tolerance_grad: float = 1e-7,
    tolerance_change: float = 1e-9,
    history_size: int = 100,
    line_search_fn: str | None = None,
) -> optax.GradientTransformationExtraArgs:
    """Twin of ``torch.optim.LBFGS`` (torch 2.13); ``lr`` may be a schedule, read at the step count.

    ``update(grads, state, params, *, value, value_fn)`` is one ``optimizer.step(closure)``:
    ``value_fn(params) -> loss`` is the closure, ``value`` and ``grads`` are its loss and gradient
    at ``params`` (torch's first closure call, counted in ``func_evals``), and the update, applied
    with ``optax.apply_updates``, moves the params where the step leaves them. With ``x`` the
    params and ``g`` the gradient as flat vectors, the step returns at once if ``max|g| <=
    tolerance_grad``; otherwise, for up to ``max_iter`` iterations::

        first iteration ever:  d = -g, H_diag = 1, empty history
        otherwise:             y = g - prev_flat_grad, s = d * t
                               if y.s > 1e-10: append (y, s, 1 / y.s), oldest dropped past
                                               history_size; H_diag = y.s / y.y
                               d = -H g by the two-loop recursion over the history
        t = min(1, 1 / sum|g|) * lr on the first iteration ever, else lr
        stop if g.d > -tolerance_change
        strong_wolfe: (loss, g, t) from the line search on x + t * d (c1 = 1e-4, c2 = 0.9, cubic
                      interpolation, at most max_eval - evaluations so far); x += t * d
        None:         x += t * d; loss, g re-evaluated unless this is the last iteration
        stop after max_iter iterations, max_eval evaluations, max|g| <= tolerance_grad,
        max|d * t| <= tolerance_change or |loss - prev_loss| < tolerance_change

    The state carries torch's ``d``, ``t``, ``old_dirs``, ``old_stps``, ``ro``, ``H_diag``,
    ``prev_flat_grad``, ``prev_loss``, ``n_iter``, ``func_evals`` from step to step. Params may be
    any pytree of real arrays. ``update`` traces into one computation (nested ``while_loop``s, no
    Python control flow on values): jit it, or use ``minimize``.

    Unlike torch, an unknown ``line_search_fn`` is rejected here at construction, and
    ``history_size`` must be positive (torch fails at a step on either). Complex params are
    refused at ``init`` (torch steps their real view; here the loss's ``jax.grad`` would be the
    conjugate of torch's gradient).
    """
    lr = check("lr", lr)
    max_iter = validate.nonnegative_int("max_iter", max_iter)
    max_eval = max_iter * 5 // 4 if max_eval is None else validate.integer("max_eval", max_eval)
    tolerance_grad = validate.real("tolerance_grad", tolerance_grad)
    tolerance_change = validate.real("tolerance_change", tolerance_change)
    history_size = validate.positive_int("history_size", history_size)
    if line_search_fn not in LINE_SEARCH_FNS:
        raise ValueError(f"Invalid line_search_fn: {line_search_fn!r} (must be None or 'strong_wolfe')")
    hyperparams = dict(lr=lr)

    def init_fn(params):
        base.check_real("lbfgs", params)
        flat, _ = ravel_pytree(params)
        zero = jnp.zeros((), flat.dtype)
        return LBFGSState(
            count=jnp.zeros((), jnp.int32),
            hyperparams=hp_lib.initial(hyperparams),
            d=jnp.zeros_like(flat),
            t=zero,
            old_dirs=jnp.zeros((history_size,) + flat.shape, flat.dtype),
            old_stps=jnp.zeros((history_size,) + flat.shape, flat.dtype),
            ro=jnp.zeros(history_size, flat.dtype),
            num_old=jnp.zeros((), jnp.int32),
            H_diag=jnp.ones((), flat.dtype),
            prev_flat_grad=jnp.zeros_like(flat),
            prev_loss=zero,
            n_iter=jnp.zeros((), jnp.int32),
            func_evals=jnp.zeros((), jnp.int32),
        )

    def update_fn(grads, state, params, *, value, value_fn: Callable[[Any], jax.Array], **extra_args):
        del extra_args  # for other transforms of an optax.chain
        x0, unravel = ravel_pytree(params)
        dtype = x0.dtype
        hp = hp_lib.in_force(hyperparams, state.count)
        step_lr = hp["lr"].astype(dtype)
        value_and_grad = jax.value_and_grad(value_fn)

        def evaluate(x):
            loss, grad = value_and_grad(unravel(x))
            return jnp.asarray(loss, dtype), ravel_pytree(grad)[0].astype(dtype)

        flat_grad = ravel_pytree(grads)[0].astype(dtype)
        loss = jnp.asarray(value, dtype)
        func_evals = state.func_evals + 1
        carry = dict(
            x=x0,
            loss=loss,
            flat_grad=flat_grad,
            d=state.d,
            t=state.t,
            history=(state.old_dirs, state.old_stps, state.ro, state.num_old, state.H_diag),
            prev_flat_grad=state.prev_flat_grad,
            prev_loss=state.prev_loss,
            n_iter=state.n_iter,
            func_evals=func_evals,
            local_iter=jnp.zeros((), jnp.int32),
            current_evals=jnp.ones((), jnp.int32),
            stop=jnp.max(jnp.abs(flat_grad)) <= tolerance_grad,
        )

        def running(c):
            return ~c["stop"] & (c["local_iter"] < max_iter)

        def iteration(c):
            local_iter, n_iter = c["local_iter"] + 1, c["n_iter"] + 1
            first = n_iter == 1
            flat_grad, loss = c["flat_grad"], c["loss"]
            d, history = jax.lax.cond(  # the first iteration ever finds init's empty history
                first,
                lambda: (-flat_grad, c["history"]),
                lambda: _direction(
                    flat_grad, flat_grad - c["prev_flat_grad"], c["d"] * c["t"], c["history"], history_size
                ),
            )
            inverse_sum = 1.0 / jnp.sum(jnp.abs(flat_grad))
            t = jnp.where(first, _python_min(jnp.ones((), dtype), inverse_sum) * step_lr, step_lr)
            gtd = jnp.dot(flat_grad, d)
            descent = ~(gtd > -tolerance_change)

            def move():
                if line_search_fn == "strong_wolfe":
                    new_loss, new_grad, t_ls, evals = _strong_wolfe(
                        evaluate, c["x"], t, d, loss, flat_grad, gtd, max_ls=max_eval - c["current_evals"]
                    )
                    return c["x"] + t_ls * d, new_loss, new_grad, t_ls, evals
                x = c["x"] + t * d
                last = local_iter == max_iter  # no re-evaluation after the last iteration
                new_loss, new_grad = jax.lax.cond(last, lambda: (loss, flat_grad), lambda: evaluate(x))
                return x, new_loss, new_grad, t, jnp.where(last, 0, 1).astype(jnp.int32)

            x, new_loss, new_grad, t, evals = jax.lax.cond(
                descent, move, lambda: (c["x"], loss, flat_grad, t, jnp.zeros((), jnp.int32))
            )
            # a gradient that was not re-evaluated was not small (or the step had ended)
            opt_cond = (evals > 0) & (jnp.max(jnp.abs(new_grad)) <= tolerance_grad)
            current_evals = c["current_evals"] + evals
            stop = (
                ~descent
                | (current_evals >= max_eval)
                | opt_cond
                | (jnp.max(jnp.abs(d * t)) <= tolerance_change)
                | (jnp.abs(new_loss - loss) < tolerance_change)
            )
            return dict(
                x=x,
                loss=new_loss,
                flat_grad=new_grad,
                d=d,
                t=t,
                history=history,
                prev_flat_grad=flat_grad,
                prev_loss=loss,
                n_iter=n_iter,
                func_evals=c["func_evals"] + evals,
                local_iter=local_iter,
                current_evals=current_evals,
                stop=stop,
            )

        c = jax.lax.while_loop(running, iteration, carry)
        old_dirs, old_stps, ro, num_old, h_diag = c["history"]
        new_params = unravel(c["x"])
        updates = jax.tree.map(lambda new, p: (new - p).astype(p.dtype), new_params, params)
        return updates, LBFGSState(
            count=optax.safe_int32_increment(state.count),
            hyperparams=hp,
            d=c["d"],
            t=c["t"],
            old_dirs=old_dirs,
            old_stps=old_stps,
            ro=ro,
            num_old=num_old,
            H_diag=h_diag,
            prev_flat_grad=c["prev_flat_grad"],
            prev_loss=c["prev_loss"],
            n_iter=c["n_iter"],
            func_evals=c["func_evals"],
        )

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def minimize(value_fn: Callable[[Any], jax.Array], params, steps: int, **lbfgs_kwargs):
    """``steps`` calls of ``optimizer.step(closure)`` from ``params``, jitted as one scan.

    Returns ``(params, state, losses)``: the final params and ``LBFGSState``, and the loss at the
    start of each step (what ``step(closure)`` returns).
    """
    steps = validate.nonnegative_int("steps", steps)
    optimizer = lbfgs(**lbfgs_kwargs)
    value_and_grad = jax.value_and_grad(value_fn)

    def step(carry, _):
        params, state = carry
        value, grads = value_and_grad(params)
        updates, state = optimizer.update(grads, state, params, value=value, value_fn=value_fn)
        return (optax.apply_updates(params, updates), state), value

    @jax.jit
    def run(params):
        (params, state), losses = jax.lax.scan(step, (params, optimizer.init(params)), length=steps)
        return params, state, losses

    return run(params)
