"""Side-by-side runs of an optimizer whose step sums over all its parameter groups (Prodigy,
D-Adaptation) and its purelr twin, on ``torch_reference``'s problem (the tanh MLP under x64, the
quadratic in float32) for ``STEPS`` updates.

A configuration is a dict of the original's keyword arguments plus ``groups`` (``{"hidden": {...},
"out": {...}}``: the two param groups, the MLP's layers, with their overrides) and ``schedule``
(the lr follows ``torch_reference.LR_FACTOR`` through torch's ``LambdaLR``, which scales every
group's lr alike). Each configuration is one original optimizer with two groups (its sums are
over both); the purelr side compiles one function per optimizer and set of static options
(booleans, ints, ``None``s and a group's ``lr=0``), the numbers traced and the configurations
sharing the static options vmapped, the updates under ``lax.scan``. After the last update the
params, every buffer (the state field named like the original's ``optimizer.state[p]`` key) and
every scalar (named like the original's ``param_groups[0]`` key: ``d``, ``k``, sums) are compared.
"""

from __future__ import annotations

import contextlib
import functools
import io
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch

from tests.optim import torch_reference as ref
from tests.parity import OPTIMIZER_RTOL, TRAJECTORY_UNITS, UNIT_ROUNDOFF, relative_error, rounding_floor

STEPS = 100
LABELS = {outer: {inner: outer for inner in ref.PARAMS[outer]} for outer in ref.PARAMS}


def _is_number(value):
    return isinstance(value, float)


def split(config):
    """``(static, numbers)``: hashable static options and ``{path: number}`` of the floats (a path
    is ``(name,)``, ``(name, index)`` for a tuple's entry, ``("groups", label, name)``)."""
    static, numbers = [], {}
    for name, value in config.items():
        if name == "groups":
            for label, overrides in value.items():
                for key, entry in overrides.items():
                    if key == "lr" or not _is_number(entry):
                        static.append((("groups", label, key), entry))
                    else:
                        numbers[("groups", label, key)] = entry
        elif isinstance(value, tuple):
            numbers.update({(name, i): v for i, v in enumerate(value)})
        elif _is_number(value):
            numbers[(name,)] = value
        else:
            static.append(((name,), value))
    return tuple(static), numbers


@functools.lru_cache(maxsize=None)
def _compiled(make, static: tuple, keys: tuple):
    def run(values, params, data):
        kwargs = dict(groups={label: {} for label in ref.PARAMS}, param_labels=LABELS)
        for path, value in static:
            if path[0] == "groups":
                kwargs["groups"][path[1]][path[2]] = value
            elif path[0] != "schedule":
                kwargs[path[0]] = value
        scheduled = dict(static)[("schedule",)]
        for path, value in zip(keys, values):
            const = (lambda v: lambda count: v)(value)
            if path == ("lr",) and scheduled:
                const = (lambda v: lambda count: v * ref.LR_FACTOR(count))(value)
            if path[0] == "groups":
                kwargs["groups"][path[1]][path[2]] = const
            elif len(path) == 2:
                kwargs[path[0]] = kwargs.get(path[0], ()) + (const,)
            else:
                kwargs[path[0]] = const
        optimizer = make(**kwargs)

        def step(carry, batch):
            params, state = carry
            grads = jax.grad(ref.jax_loss)(params, batch, 1.0)
            updates, state = optimizer.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), None

        (params, state), _ = jax.lax.scan(step, (params, optimizer.init(params)), data)
        return params, state

    return jax.jit(jax.vmap(run, in_axes=(0, None, None)))


def data(x64: bool):
    return jax.tree.map(lambda a: np.asarray(a)[:STEPS], ref.stream(x64))


def run_purelr(make, configs):
    static, numbers = split(configs[0])
    keys = tuple(numbers)
    values = jnp.asarray([[split(c)[1][k] for k in keys] for c in configs])
    params, batches = jax.tree.map(jnp.asarray, (ref.PARAMS, data(jax.config.jax_enable_x64)))
    out_params, out_state = _compiled(make, static, keys)(values, params, batches)
    return [jax.tree.map(lambda leaf: np.asarray(leaf[i]), (out_params, out_state)) for i in range(len(configs))]


def run_torch(optimizer_type, configs, x64: bool):
    """Final params, ``optimizer.state`` per leaf and ``param_groups[0]``, per configuration."""
    factors = np.asarray(ref.LR_FACTOR(np.arange(STEPS + 1)), dtype=np.float64)
    with ref.torch_dtype(x64), contextlib.redirect_stdout(io.StringIO()), one_rank():
        dtype = torch.get_default_dtype()
        trees = [
            {
                o: {i: torch.tensor(ref.PARAMS[o][i], dtype=dtype, requires_grad=True) for i in ref.PARAMS[o]}
                for o in ref.PARAMS
            }
            for _ in configs
        ]
        optimizers, schedulers = [], []
        for config, tree in zip(configs, trees):
            kwargs = {k: v for k, v in config.items() if k not in ("groups", "schedule")}
            groups = [
                dict(config["groups"].get(outer, {}), params=[tree[outer]["kernel"], tree[outer]["bias"]])
                for outer in ref.PARAMS
            ]
            optimizer = optimizer_type(groups, **kwargs)
            optimizers.append(optimizer)
            factor = (lambda k: float(factors[k])) if config["schedule"] else (lambda k: 1.0)
            schedulers.append(torch.optim.lr_scheduler.LambdaLR(optimizer, factor))
        stacked = {o: {i: None for i in ref.PARAMS[o]} for o in ref.PARAMS}
        batches = jax.tree.map(lambda a: torch.tensor(a, dtype=dtype), data(x64))
        for k in range(STEPS):
            for optimizer in optimizers:
                optimizer.zero_grad()
            for outer, inner in ref.LEAVES:
                stacked[outer][inner] = torch.stack([tree[outer][inner] for tree in trees])
            batch = jax.tree.map(lambda a: a[k], batches)
            torch.sum(ref.losses(stacked, batch, torch.tanh, batched=True)).backward()
            used = [max(group["lr"] for group in optimizer.param_groups) for optimizer in optimizers]
            for optimizer, scheduler in zip(optimizers, schedulers):
                optimizer.step()
                scheduler.step()
    return [
        (tree, {path: optimizer.state[ref._leaf(tree, path)] for path in ref.LEAVES}, optimizer.param_groups[0], lr)
        for tree, optimizer, lr in zip(trees, optimizers, used)
    ]


@contextlib.contextmanager
def one_rank():
    """The originals' ``fsdp_in_use`` path on one CPU process: their sums go through
    ``torch.zeros(2).cuda()`` and ``dist.all_reduce``, here the identity (a world of one rank)."""
    with (
        mock.patch.object(torch.Tensor, "cuda", lambda self, *args, **kwargs: self),
        mock.patch.object(torch.distributed, "all_reduce", lambda tensor, op=None: None),
    ):
        yield


def _numpy(value):
    return value.detach().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def compare(params, state, torch_params, torch_state, torch_group, torch_lr, units=None, rtol=None):
    """Largest error over params, buffers and scalars in units of the tolerance (``<= 1``
    passes), with its name.

    A leaf's floor is ``TRAJECTORY_UNITS`` rounding units of its peak, as in
    ``torch_reference.compare``, or ``units[field][precision]`` where a test states more for a
    field (a buffer whose entries are sums of terms that grow with ``d`` and cancel); a scalar
    is held to ``OPTIMIZER_RTOL`` or ``units[field][precision]`` units of itself (a running sum
    that cancels: ``numerator_weighted``). ``rtol[precision]``, where given, replaces
    ``OPTIMIZER_RTOL`` (a test that gives it says why).
    """
    precision = "x64" if jax.config.jax_enable_x64 else "f32"
    rtol = (rtol or {}).get(precision, OPTIMIZER_RTOL[precision])
    units = units or {}

    def bound(field):
        return max(rtol, units.get(field, {}).get(precision, 0) * UNIT_ROUNDOFF[precision])

    def floor(field):
        return rounding_floor(rtol, units.get(field, {}).get(precision, TRAJECTORY_UNITS[precision]), precision)

    errors = {}
    low = getattr(state, "low", {})  # a double-float twin's low halves (purelr.optim.double_float)
    fields = [f for f in state._fields[2:] if f not in ("low", "torch_order")]
    for path in ref.LEAVES:
        name = ".".join(path)
        expected = _numpy(ref._leaf(torch_params, path))
        errors[f"param {name}"] = relative_error(ref._leaf(params, path), expected, floor=floor("param")) / rtol
        for field in fields:
            value = getattr(state, field)
            if not isinstance(value, dict):
                continue
            actual = ref._leaf(value, path)
            expected = torch_state[path].get(field)  # a buffer the original does not keep (beta1 = 0) stays 0 here
            expected = np.broadcast_to(0.0 if expected is None else _numpy(expected), actual.shape)
            peak = max(float(np.max(np.abs(expected))), 1e-30)
            errors[f"{field} {name}"] = relative_error(actual, expected, peak, floor(field)) / rtol
    for field in fields:
        value = getattr(state, field)
        if value is not None and not isinstance(value, dict):
            if field in low:  # the scalar is hi + lo, a float64 value
                value = np.asarray(value, np.float64) + np.asarray(low[field], np.float64)
            errors[field] = relative_error(value, _numpy(torch_group[field])) / bound(field)
    errors["lr in force"] = relative_error(state.hyperparams["lr"], torch_lr) / rtol
    worst = max(errors, key=errors.get)
    return errors[worst], worst


def check(make, optimizer_type, configs, units=None, rtol=None):
    """Every configuration on both sides; asserts parity (``compare``); returns the largest error
    in units of the tolerance."""
    x64 = jax.config.jax_enable_x64
    batches = {}
    for config in configs:
        static, numbers = split(config)
        batches.setdefault((static, tuple(numbers)), []).append(config)
    worst = 0.0
    for batch in batches.values():
        for config, (params, state), reference in zip(
            batch, run_purelr(make, batch), run_torch(optimizer_type, batch, x64)
        ):
            error, where = compare(params, state, *reference, units=units, rtol=rtol)
            assert error <= 1, f"{optimizer_type.__name__} {config}: {where} off by {error:.3g} x the tolerance"
            worst = max(worst, error)
    return worst


def draw_configs(draw, flags: list[dict], *, per_combination: int, seed: int):
    """``per_combination`` random ``draw(rng)`` per entry of ``flags`` (numbers, drawn and fixed,
    rounded to float32, as ``torch_reference.configurations``), each with a random ``schedule``."""
    rng = np.random.default_rng(seed)
    configs = []
    for fixed in flags:
        fixed = jax.tree.map(lambda v: ref._float32_exact(v) if _is_number(v) else v, fixed)  # betas=(0.0, 0.99)
        for _ in range(per_combination):
            drawn = jax.tree.map(ref._float32_exact, draw(rng))
            groups = {
                label: {**drawn.get("groups", {}).get(label, {}), **fixed.get("groups", {}).get(label, {})}
                for label in ref.PARAMS
            }
            config = {**drawn, **fixed, "groups": groups}
            config["schedule"] = bool(rng.random() < 0.5)
            configs.append(config)
    return configs


def check_constants(make, optimizer_type, config, units=None, rtol=None):
    """``config`` (without ``schedule``: the lr is constant) given as plain numbers, the update
    jitted on its own: the static paths a constant takes (``beta1 = 0``, no weight decay)."""
    x64 = jax.config.jax_enable_x64
    kwargs = {k: v for k, v in config.items() if k != "groups"}
    optimizer = make(
        **kwargs, groups={label: config.get("groups", {}).get(label, {}) for label in ref.PARAMS}, param_labels=LABELS
    )
    update = jax.jit(optimizer.update)
    grad = jax.jit(jax.grad(ref.jax_loss), static_argnums=2)
    params, batches = jax.tree.map(jnp.asarray, (ref.PARAMS, data(x64)))
    state = optimizer.init(params)
    for k in range(STEPS):
        updates, state = update(grad(params, jax.tree.map(lambda a: a[k], batches), 1.0), state, params)
        params = optax.apply_updates(params, updates)
    (reference,) = run_torch(optimizer_type, [dict(config, schedule=False, groups=config.get("groups", {}))], x64)
    error, where = compare(params, state, *reference, units=units, rtol=rtol)
    assert error <= 1, f"{config}: {where} off by {error:.3g} x the tolerance"
    return error


def check_given_gradients(
    make, optimizer_type, config, zero_steps: int, steps: int = 20, seed: int = 0, units=None, rtol=None
):
    """Both sides given the same gradients (``zero_steps`` all-zero updates first, then random
    ones), two groups: the originals' early return while every sum is 0, and what follows."""
    x64 = jax.config.jax_enable_x64
    rng = np.random.default_rng(seed)
    grads = [
        jax.tree.map(lambda p: np.zeros_like(p) if k < zero_steps else rng.normal(size=p.shape), ref.PARAMS)
        for k in range(steps)
    ]
    optimizer = make(**config, groups={label: {} for label in ref.PARAMS}, param_labels=LABELS)
    update = jax.jit(optimizer.update)
    params = jax.tree.map(jnp.asarray, ref.PARAMS)
    state = optimizer.init(params)
    for g in grads:
        updates, state = update(jax.tree.map(jnp.asarray, g), state, params)
        params = optax.apply_updates(params, updates)
    with ref.torch_dtype(x64), contextlib.redirect_stdout(io.StringIO()), one_rank():
        dtype = torch.get_default_dtype()
        tree = {
            o: {i: torch.tensor(ref.PARAMS[o][i], dtype=dtype, requires_grad=True) for i in ref.PARAMS[o]}
            for o in ref.PARAMS
        }
        original = optimizer_type([dict(params=[tree[o]["kernel"], tree[o]["bias"]]) for o in ref.PARAMS], **config)
        for g in grads:
            for outer, inner in ref.LEAVES:
                tree[outer][inner].grad = torch.tensor(g[outer][inner], dtype=dtype)
            original.step()
    reference = (tree, {path: original.state[ref._leaf(tree, path)] for path in ref.LEAVES}, original.param_groups[0])
    error, where = compare(params, state, *reference, original.param_groups[0]["lr"], units=units, rtol=rtol)
    assert error <= 1, f"{config}, {zero_steps} zero updates: {where} off by {error:.3g} x the tolerance"
    assert int(state.k) == original.param_groups[0]["k"]
