"""Side-by-side runs of a ``torch.optim`` optimizer and its purelr twin on the same problem.

The problem (see ``stream``): under x64 a small tanh MLP (nested-dict params) fit by mean squared
error to a fixed stream of minibatches, one per step (``STEPS`` of them); in float32 a quadratic
with a moving target. The loss and its gradient are computed in each framework.
With ``maximize`` the objective is the negated loss, so both runs still converge.

A configuration is a dict of torch keyword arguments plus ``schedule`` (bool: lr follows
``LR_FACTOR``, through torch's ``LambdaLR``). The purelr side compiles one function per optimizer
and set of boolean flags: the numbers of a configuration are traced arguments (given to the twin
as schedules), configurations sharing flags run together under ``vmap``, and the steps run under
``lax.scan``. After the last step both sides' params and every optimizer buffer (purelr's state
field named like torch's ``optimizer.state[p]`` key) are compared.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import inspect
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch

from purelr.schedules.core import cosine_anneal, fraction, join_schedules, linear_anneal
from tests.parity import (  # noqa: F401 (TRAJECTORY_UNITS re-exported)
    OPTIMIZER_RTOL,
    TRAJECTORY_UNITS,
    relative_error,
    rounding_floor,
)

STEPS = 200
SIZES = (3, 6, 2)  # inputs, hidden units, outputs
BATCH = 8
WARMUP = 20
LR_FACTOR = join_schedules(
    [
        lambda s: linear_anneal(0.1, 1.0, fraction(s, WARMUP)),
        lambda s: cosine_anneal(1.0, 0.05, fraction(s, STEPS - WARMUP)),
    ],
    [WARMUP],
)
LEAVES = (("hidden", "kernel"), ("hidden", "bias"), ("out", "kernel"), ("out", "bias"))

torch.set_num_threads(1)


def problem(seed=0):
    """Initial params (nested dict of float64 numpy arrays) and the two data streams."""
    rng = np.random.default_rng(seed)
    n_in, n_hidden, n_out = SIZES
    params = {
        "hidden": {"kernel": rng.normal(0, 0.7, (n_in, n_hidden)), "bias": rng.normal(0, 0.1, n_hidden)},
        "out": {"kernel": rng.normal(0, 0.5, (n_hidden, n_out)), "bias": rng.normal(0, 0.1, n_out)},
    }
    x = rng.normal(size=(STEPS, BATCH, n_in))
    y = np.stack([np.sin(x.sum(-1)), np.cos(x[..., 0])], -1)[..., :n_out]
    targets = jax.tree.map(lambda p: rng.normal(0, 0.3, (STEPS,) + p.shape) + rng.normal(0, 1, p.shape), params)
    curvature = jax.tree.map(lambda p: rng.uniform(0.2, 2.0, p.shape), params)
    return params, dict(x=x, y=y), dict(target=targets, curvature=curvature)


PARAMS, MLP_DATA, QUADRATIC_DATA = problem()


def stream(x64: bool):
    """The data of every step (leading axis): the MLP's minibatches under x64; in float32 the
    targets of a quadratic whose gradient (elementwise) both frameworks round alike, since float32
    gradients of the MLP differ by a few ulps between the frameworks and the differences grow over
    200 steps past 1e-5 for reasons that are not the optimizer's."""
    if x64:
        return MLP_DATA
    return dict(
        target=QUADRATIC_DATA["target"],
        curvature=jax.tree.map(lambda c: np.broadcast_to(c, (STEPS,) + c.shape), QUADRATIC_DATA["curvature"]),
    )


def losses(params, batch, tanh, batched=False):
    """The loss of a step (per copy when ``batched``: params with a leading axis of copies)."""
    if "x" in batch:
        expand = (lambda b: b[:, None, :]) if batched else (lambda b: b)
        hidden = tanh(batch["x"] @ params["hidden"]["kernel"] + expand(params["hidden"]["bias"]))
        out = hidden @ params["out"]["kernel"] + expand(params["out"]["bias"])
        return ((out - batch["y"]) ** 2).mean((-2, -1))
    total = 0.0
    for path in LEAVES:
        p = _leaf(params, path)
        term = 0.5 * _leaf(batch["curvature"], path) * (p - _leaf(batch["target"], path)) ** 2
        total = total + term.sum(tuple(range(1 if batched else 0, term.ndim)))
    return total


def jax_loss(params, batch, sign):
    return sign * losses(params, batch, jnp.tanh)


# ---- configurations -----------------------------------------------------------------------------


def regression_data(seed, shapes: dict, batches: int):
    """``(x, y, params)``: ``batches`` batches of 16 inputs of 6 features and 3 targets, and params
    of the given shapes, drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batches, 16, 6))
    y = rng.normal(size=(batches, 16, 3))
    params = {k: rng.normal(size=s) * 0.5 for k, s in shapes.items()}
    return x, y, params


def trajectory(optimizer, params, gradient, steps: int):
    """``(params after each update, final state)`` of ``steps`` updates under ``lax.scan``, update
    ``k`` taking ``gradient(params, k)``."""

    def step(carry, k):
        params, state = carry
        updates, state = optimizer.update(gradient(params, k), state, params)
        params = optax.apply_updates(params, updates)
        return (params, state), params

    (_, state), path = jax.lax.scan(step, (params, optimizer.init(params)), jnp.arange(steps))
    return path, state


def loguniform(rng, low, high):
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def configurations(flags: dict, draw, *, per_combination: int, seed: int):
    """Every combination of the boolean ``flags`` times ``per_combination`` random ``draw(rng)``s
    (numbers rounded to float32, see ``_float32_exact``)."""
    rng = np.random.default_rng(seed)
    configs = []
    for values in itertools.product(*flags.values()):
        for _ in range(per_combination):
            config = dict(zip(flags, values), **jax.tree.map(_float32_exact, draw(rng)))
            config["schedule"] = bool(rng.random() < 0.5)
            configs.append(config)
    return configs


def chosen(combinations: list[dict], draw, *, per_combination: int, seed: int):
    """``configurations`` for the listed flag combinations only (one compile each), where the
    product of every flag would compile too many for the default suite."""
    return [
        config
        for i, flags in enumerate(combinations)
        for config in configurations(
            {name: [value] for name, value in flags.items()}, draw, per_combination=per_combination, seed=seed + i
        )
    ]


def _float32_exact(value):
    """Drawn numbers are float32 numbers: twins given them as traced float32 values (schedules)
    then see what torch sees, and ``1 - beta`` is exact on both sides."""
    return float(np.float32(value)) if _is_number(value) else value


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _split(config):
    """``(flags, numbers)``: the booleans (compile-time) and ``{(name, index): number}``."""
    flags, numbers = {}, {}
    for name, value in config.items():
        if name == "schedule":
            continue
        if isinstance(value, tuple):
            numbers.update({(name, i): float(v) for i, v in enumerate(value)})
        elif _is_number(value):
            numbers[(name, None)] = float(value)
        else:
            flags[name] = value
    return flags, numbers


# ---- purelr side --------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _compiled(make, flags: tuple, keys: tuple, x64: bool):
    """One jitted, vmapped run per optimizer, flags and precision; numbers are traced."""
    flags = dict(flags)
    sign = -1.0 if flags.get("maximize") else 1.0

    def run(values, scheduled, params, data):
        kwargs = dict(flags)
        for (name, index), value in zip(keys, values):
            const = (lambda v: lambda count: v)(value)
            if name == "lr":
                const = (lambda v: lambda count: v * jnp.where(scheduled, LR_FACTOR(count), 1.0))(value)
            if index is None:
                kwargs[name] = const
            else:
                kwargs[name] = kwargs.get(name, ()) + (const,)
        optimizer = make(**kwargs)

        def step(carry, batch):
            params, state = carry
            grads = jax.grad(jax_loss)(params, batch, sign)
            updates, state = optimizer.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), None

        (params, state), _ = jax.lax.scan(step, (params, optimizer.init(params)), data)
        return params, state

    return jax.jit(jax.vmap(run, in_axes=(0, 0, None, None)))


def run_purelr(make, configs):
    """Final ``(params, state)`` of each configuration (which share one set of flags)."""
    flags, numbers = _split(configs[0])
    keys = tuple(numbers)
    values = jnp.asarray([[_split(c)[1][k] for k in keys] for c in configs])
    scheduled = jnp.asarray([c["schedule"] for c in configs])
    x64 = jax.config.jax_enable_x64
    params, data = jax.tree.map(jnp.asarray, (PARAMS, stream(x64)))
    run = _compiled(make, tuple(sorted(flags.items())), keys, x64)
    batch_params, batch_state = run(values, scheduled, params, data)
    return [jax.tree.map(lambda leaf: np.asarray(leaf[i]), (batch_params, batch_state)) for i in range(len(configs))]


# ---- torch side ---------------------------------------------------------------------------------


@contextlib.contextmanager
def torch_dtype(x64: bool):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64 if x64 else torch.float32)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


@contextlib.contextmanager
def given_normals(pending: list, normals: dict):
    """``torch.randn_like`` patched to return ``normals[name][k]`` for the next ``(name, k)`` of
    ``pending`` (heavyball's ``dampen_grad`` draws one per param, in group order)."""

    def randn_like(x, *args, **kwargs):
        name, k = pending.pop(0)
        assert x.numel() == normals[name][k].size, (name, x.shape)
        return torch.tensor(normals[name][k], dtype=x.dtype).reshape(x.shape)

    original = torch.randn_like
    torch.randn_like = randn_like
    try:
        yield
    finally:
        torch.randn_like = original


def run_torch(optimizer_type, configs, x64: bool, constructor_keys=()):
    """Final params, ``optimizer.state`` per leaf and the lr in force at the last step, per config.

    All configurations run at once, as the param groups of one optimizer (each with its own
    options; torch updates each group on its own), their MLPs stacked for one backward pass.
    ``constructor_keys``: options the optimizer reads from its constructor's defaults for all its
    groups together (timm's Lamb ``max_grad_norm``): then each configuration is an optimizer of
    its own, given them as constructor arguments. ``foreach=False`` is given where accepted.
    """
    factors = np.asarray(LR_FACTOR(np.arange(STEPS + 1)), dtype=np.float64)
    with torch_dtype(x64):
        dtype = torch.get_default_dtype()
        params = [
            {
                outer: {
                    inner: torch.tensor(PARAMS[outer][inner], dtype=dtype, requires_grad=True)
                    for inner in PARAMS[outer]
                }
                for outer in PARAMS
            }
            for _ in configs
        ]
        groups = [
            dict({k: v for k, v in config.items() if k != "schedule"}, params=[_leaf(tree, path) for path in LEAVES])
            for config, tree in zip(configs, params)
        ]
        batches = [[i] for i in range(len(configs))] if constructor_keys else [list(range(len(configs)))]
        flags = dict(foreach=False) if "foreach" in inspect.signature(optimizer_type).parameters else {}
        optimizers = [
            optimizer_type(
                [groups[i] for i in batch],
                **flags,
                **{key: groups[batch[0]].pop(key) for key in constructor_keys if key in groups[batch[0]]},
            )
            for batch in batches
        ]
        for optimizer in optimizers:  # Adagrad fills `sum` from its argument, not the group's
            for group in optimizer.param_groups:
                for p in group["params"] if "initial_accumulator_value" in group else ():
                    optimizer.state[p]["sum"].fill_(group["initial_accumulator_value"])
        schedulers = [
            torch.optim.lr_scheduler.LambdaLR(
                optimizer, [(lambda k: float(factors[k])) if configs[i]["schedule"] else (lambda k: 1.0) for i in batch]
            )
            for optimizer, batch in zip(optimizers, batches)
        ]
        signs = torch.tensor([-1.0 if config.get("maximize") else 1.0 for config in configs])
        stacked = {outer: {inner: None for inner in PARAMS[outer]} for outer in PARAMS}
        data = jax.tree.map(lambda a: torch.tensor(np.asarray(a), dtype=dtype), stream(x64))
        for k in range(STEPS):
            for optimizer in optimizers:
                optimizer.zero_grad()
            for outer, inner in LEAVES:
                stacked[outer][inner] = torch.stack([tree[outer][inner] for tree in params])
            batch = jax.tree.map(lambda a: a[k], data)
            torch.sum(signs * losses(stacked, batch, torch.tanh, batched=True)).backward()
            last_lrs = [group["lr"] for optimizer in optimizers for group in optimizer.param_groups]
            for optimizer, scheduler in zip(optimizers, schedulers):
                optimizer.step()
                scheduler.step()
    state = collections.defaultdict(dict)  # as torch's optimizer.state: {} for a param never stepped
    for optimizer in optimizers:
        state.update(optimizer.state)
    return [(tree, {path: state[_leaf(tree, path)] for path in LEAVES}, lr) for tree, lr in zip(params, last_lrs)]


# ---- comparison ---------------------------------------------------------------------------------


def _leaf(tree, path):
    for key in path:
        tree = tree[key]
    return tree


def compare(params, state, torch_params, torch_state, torch_lr):
    """Largest relative error over params, buffers, step count and lr in force, with its name.

    Floor: ``TRAJECTORY_UNITS`` rounding units of each leaf's peak. After ``STEPS`` updates a
    param is its start plus a sum of steps of the leaf's scale, and a buffer (``exp_avg``,
    ``square_avg``) a running average of gradients that are themselves differences (prediction
    minus target): each side knows them to units of the peak, not of themselves. Measured in
    float32 (torch float32 against purelr float32): up to 33 units (nadam's buffers: 0.63897 for
    torch's 0.63898, peak 4.85); under x64 below one unit (Adafactor: 0.5).
    """
    precision = "x64" if jax.config.jax_enable_x64 else "f32"
    floor = rounding_floor(OPTIMIZER_RTOL[precision], TRAJECTORY_UNITS[precision], precision)
    errors = {}
    for path in LEAVES:
        name = ".".join(path)
        errors[f"param {name}"] = relative_error(_leaf(params, path), _leaf(torch_params, path).detach(), floor=floor)
        for field, buffer in _buffers(state):
            if buffer is None:
                continue
            actual = _leaf(buffer, path) if isinstance(buffer, dict) else buffer
            if np.size(actual) == 0:  # a buffer this leaf does not use (timm's Adafactor: factored or not)
                continue
            expected = torch_state[path].get(field)  # a buffer torch never made stays 0 here
            expected = np.zeros_like(actual) if expected is None else expected
            if isinstance(expected, torch.Tensor) and expected.dtype == torch.bfloat16:  # numpy has none
                expected = expected.float()
            # peak at least 1e-30: XLA flushes subnormals (mu_product after many steps) to zero
            peak = max(float(np.max(np.abs(np.asarray(expected)))), 1e-30)
            errors[f"{field} {name}"] = relative_error(actual, expected, peak, floor)
        if "step" in torch_state[path]:
            errors[f"step {name}"] = relative_error(state.count, torch_state[path]["step"])
    errors["lr in force"] = relative_error(state.hyperparams["lr"], torch_lr)
    worst = max(errors, key=errors.get)
    return errors[worst], worst


def _buffers(state):
    """``(field, buffer)`` of a twin's state, and of a twin's state nested in it (a wrapper's, such
    as ``lookahead``'s inner optimizer, whose buffers torch keeps in the same ``optimizer.state[p]``)."""
    for field in state._fields[2:]:
        value = getattr(state, field)
        if getattr(type(value), "_fields", ())[:2] == ("count", "hyperparams"):
            yield from _buffers(value)
        else:
            yield field, value


def check_family(make, optimizer_type, configs, constructor_keys=(), rtol=None):
    """Runs every configuration on both sides; asserts parity (``rtol``: ``OPTIMIZER_RTOL`` unless
    given); returns the largest error (``constructor_keys``: see ``run_torch``)."""
    x64 = jax.config.jax_enable_x64
    rtol = OPTIMIZER_RTOL["x64" if x64 else "f32"] if rtol is None else rtol
    groups = {}
    for config in configs:
        flags, numbers = _split(config)
        groups.setdefault((tuple(sorted(flags.items())), tuple(numbers)), []).append(config)
    worst = 0.0
    for group in groups.values():
        for config, (params, state), reference in zip(
            group, run_purelr(make, group), run_torch(optimizer_type, group, x64, constructor_keys)
        ):
            error, where = compare(params, state, *reference)
            assert error <= rtol, f"{optimizer_type.__name__} {config}: {where} off by {error:.3g}"
            worst = max(worst, error)
    return worst


def check_defaults(make, optimizer_type, constructor_keys=(), **kwargs):
    """Constant hyperparameters (torch's defaults unless given), the update jitted on its own
    (``constructor_keys``: see ``run_torch``)."""
    x64 = jax.config.jax_enable_x64
    optimizer = make(**kwargs)
    sign = -1.0 if kwargs.get("maximize") else 1.0
    update = jax.jit(optimizer.update)
    grad = jax.jit(jax.grad(jax_loss), static_argnums=2)
    params, data = jax.tree.map(jnp.asarray, (PARAMS, stream(x64)))
    state = optimizer.init(params)
    for k in range(STEPS):
        updates, state = update(grad(params, jax.tree.map(lambda a: a[k], data), sign), state, params)
        params = optax.apply_updates(params, updates)
    (reference,) = run_torch(optimizer_type, [dict(kwargs, schedule=False)], x64, constructor_keys)
    error, where = compare(params, state, *reference)
    assert error <= OPTIMIZER_RTOL["x64" if x64 else "f32"], f"{kwargs}: {where} off by {error:.3g}"


def check_rejects(make, optimizer_type, name, **kwargs):
    """Torch rejects ``kwargs`` with a ValueError; so does purelr, naming ``name`` and the value."""
    with torch_dtype(False):
        try:
            optimizer_type([torch.zeros(1, requires_grad=True)], **kwargs)
        except ValueError:
            pass
        else:
            raise AssertionError(f"torch accepts {kwargs}")
    try:
        make(**kwargs)
    except ValueError as error:
        value = kwargs[name.split("[")[0]]
        value = value[int(name[-2])] if "[" in name else value
        assert name in str(error) and repr(value) in str(error), str(error)
    else:
        raise AssertionError(f"purelr accepts {kwargs}")
