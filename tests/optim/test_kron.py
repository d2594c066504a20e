"""Parity of purelr.optim.kron with timm 1.0.31's Kron, side by side for 100 updates on
torch_reference's problems (x64: the tanh MLP; float32: the quadratic), two parameter groups (the
hidden layer and the output layer, an ``optax.multi_transform`` of two ``kron``s).

timm's randomness is fed from the test: its ``random.Random`` (balancing, stochastic weight decay)
is replaced by one that hands out the test's uniforms in timm's order, and ``torch.randn`` (the
preconditioner's normal vectors) by one that hands out the test's normals for the param being
stepped; purelr gets the same numbers as ``draws``. timm's ``torch.compile``d helpers run eagerly
(``has_dynamo`` off): the arithmetic is the same, without a compiler."""

import functools
import math
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from timm.optim import kron as timm_kron
from timm.optim.kron import Kron

from purelr.optim.kron import kron
from tests.optim import torch_reference as ref
from tests.parity import OPTIMIZER_RTOL, relative_error, trajectory_floor

STEPS = 100
NUMBERS = ("lr", "momentum", "weight_decay", "precond_lr")
LABELS = {outer: {inner: outer for inner in ref.PARAMS[outer]} for outer in ref.PARAMS}
PROBABILITIES = {
    "timm": None,
    "stepwise": (lambda step: 0.5 if step < 40 else 0.25, lambda step: jnp.where(step < 40, 0.5, 0.25)),
}


def draw(rng):
    return dict(
        lr=ref.loguniform(rng, 1e-3, 3e-2),
        momentum=rng.uniform(0.0, 0.95),
        weight_decay=float(rng.choice([0.0, ref.loguniform(rng, 1e-4, 1e-1)])),
        precond_lr=ref.loguniform(rng, 0.01, 0.5),
    )


def configurations(flags, count, seed):
    rng = np.random.default_rng(seed)
    return [
        dict(
            flags=tuple(sorted(flags.items())),
            groups=tuple({k: float(np.float32(v)) for k, v in draw(rng).items()} for _ in range(2)),
            schedule=bool(rng.random() < 0.5),
            seed=int(rng.integers(2**31)),
        )
        for _ in range(count)
    ]


COMBINATIONS = [
    dict(
        preconditioner_update_probability="timm",
        decoupled_decay=True,
        corrected_weight_decay=True,
        stochastic_weight_decay=True,
        precond_init_scale=0.5,
    ),
    dict(preconditioner_update_probability=0.3, memory_save_mode="one_diag", momentum_into_precond_update=False),
]
MORE_COMBINATIONS = [
    dict(preconditioner_update_probability=0.5),
    dict(
        preconditioner_update_probability="stepwise",
        memory_save_mode="all_diag",
        decoupled_decay=True,
        stochastic_weight_decay=True,
        deterministic=True,
    ),
    dict(preconditioner_update_probability=1.0, memory_save_mode="smart_one_diag", max_size_triangular=4),
]
CONFIGS = [c for i, flags in enumerate(COMBINATIONS) for c in configurations(flags, 5, seed=2120 + i)]
NIGHTLY = [
    c for i, flags in enumerate(COMBINATIONS + MORE_COMBINATIONS) for c in configurations(flags, 8, seed=2130 + i)
]


def draws(seed, x64):
    """The random numbers of every update: normals like the params, two uniforms per leaf (the
    first below timm's 0.01 balancing threshold in about a fifth of the updates)."""
    rng = np.random.default_rng(seed)
    dtype = np.float64 if x64 else np.float32
    normal = jax.tree.map(lambda p: rng.normal(size=(STEPS,) + p.shape).astype(dtype), ref.PARAMS)

    def uniforms(p):
        u = rng.uniform(size=(STEPS, 2))
        u[:, 0] *= np.where(rng.random(STEPS) < 0.2, 0.01, 1.0)
        return u.astype(dtype)

    return dict(normal=normal, uniform=jax.tree.map(uniforms, ref.PARAMS))


def _options(flags, for_torch):
    options = dict(flags)
    prob = options.get("preconditioner_update_probability")
    if isinstance(prob, str):
        prob = PROBABILITIES[prob]
        options["preconditioner_update_probability"] = None if prob is None else prob[0 if for_torch else 1]
    return options


@functools.lru_cache(maxsize=None)
def _compiled(flags, x64):
    def run(values, scheduled, params, data, randomness):
        def make(row):
            numbers = {name: (lambda v: lambda count: v)(value) for name, value in zip(NUMBERS, row)}
            lr = row[0]
            numbers["lr"] = lambda count: lr * jnp.where(scheduled, ref.LR_FACTOR(count), 1.0)
            return kron(**numbers, **_options(flags, False), max_lr_snapshot=lambda count: lr)

        optimizer = optax.multi_transform({"hidden": make(values[0]), "out": make(values[1])}, LABELS)

        def step(carry, inputs):
            params, state = carry
            batch, drawn = inputs
            grads = jax.grad(ref.jax_loss)(params, batch, 1.0)
            updates, state = optimizer.update(grads, state, params, draws=drawn)
            return (optax.apply_updates(params, updates), state), None

        (params, state), _ = jax.lax.scan(step, (params, optimizer.init(params)), (data, randomness))
        return params, [s.inner_state for s in state.inner_states.values()]

    return jax.jit(run)


class TimmRandomness:
    """Stands in for Kron's ``random.Random`` and for ``torch.randn``: hands out the test's numbers
    in timm's order (per param: the balancing draw, the normals if the preconditioner is renewed,
    the stochastic decay draw if it decays)."""

    def __init__(self, drawn, decaying, order=ref.LEAVES):
        self.drawn, self.decaying, self.order, self.queue, self.leaf = drawn, decaying, order, [], None

    def start(self, k):
        self.finish()
        self.k = k
        for i, path in enumerate(self.order):
            uniform = ref._leaf(self.drawn["uniform"], path)[k]
            self.queue.append((float(uniform[0]), path))
            if self.decaying[i]:
                self.queue.append((float(uniform[1]), path))

    def finish(self):
        assert not self.queue, f"timm left {len(self.queue)} draws of update {self.k}"

    def random(self):
        value, self.leaf = self.queue.pop(0)
        return value

    def randint(self, low, high):  # Kron(deterministic=True) seeds a generator with it
        return 0

    def randn(self, shape, generator=None, dtype=None, device=None):
        normal = ref._leaf(self.drawn["normal"], self.leaf)[self.k]
        assert math.prod(shape) == normal.size, (shape, normal.shape)
        return torch.tensor(normal.reshape(tuple(shape)), dtype=dtype)  # a flattened param's, in C order


def run_torch(config, drawn, x64):
    factors = np.asarray(ref.LR_FACTOR(np.arange(STEPS + 1)), dtype=np.float64)
    flags = _options(config["flags"], True)
    with ref.torch_dtype(x64), mock.patch.object(timm_kron, "has_dynamo", False):
        dtype = torch.get_default_dtype()
        params = jax.tree.map(lambda p: torch.tensor(p, dtype=dtype, requires_grad=True), ref.PARAMS)
        groups = [
            dict(
                hp,
                max_lr_snapshot=hp["lr"],
                params=[ref._leaf(params, path) for path in ref.LEAVES if path[0] == outer],
            )
            for hp, outer in zip(config["groups"], ref.PARAMS)
        ]
        optimizer = Kron(groups, **flags)
        decaying = [
            flags.get("stochastic_weight_decay", False) and hp["weight_decay"] != 0
            for hp, outer in zip(config["groups"], ref.PARAMS)
            for path in ref.LEAVES
            if path[0] == outer
        ]
        optimizer.rng = randomness = TimmRandomness(drawn, decaying)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda k: float(factors[k]) if config["schedule"] else 1.0
        )
        data = jax.tree.map(lambda a: torch.tensor(np.asarray(a), dtype=dtype), ref.stream(x64))
        with mock.patch.object(torch, "randn", randomness.randn):
            for k in range(STEPS):
                optimizer.zero_grad()
                ref.losses(params, jax.tree.map(lambda a: a[k], data), torch.tanh).backward()
                lrs = [group["lr"] for group in optimizer.param_groups]
                randomness.start(k)
                optimizer.step()
                scheduler.step()
        randomness.finish()
        return params, optimizer, lrs


def check(configs):
    x64 = jax.config.jax_enable_x64
    precision = "x64" if x64 else "f32"
    floor = trajectory_floor(precision)
    data = jax.tree.map(lambda a: jnp.asarray(a[:STEPS]), ref.stream(x64))
    worst = 0.0
    for config in configs:
        drawn = draws(config["seed"], x64)
        values = jnp.asarray([[g[name] for name in NUMBERS] for g in config["groups"]])
        run = _compiled(config["flags"], x64)
        params, states = run(values, config["schedule"], jax.tree.map(jnp.asarray, ref.PARAMS), data, drawn)
        torch_params, optimizer, lrs = run_torch(config, drawn, x64)
        errors = {}
        for path in ref.LEAVES:
            name = ".".join(path)
            p = ref._leaf(torch_params, path)
            state = states[list(ref.PARAMS).index(path[0])]
            torch_state = optimizer.state[p]
            errors[f"param {name}"] = relative_error(ref._leaf(params, path), p.detach(), floor=floor)
            expected = torch_state["momentum_buffer"].numpy()
            peak = max(float(np.max(np.abs(expected))), 1e-30)
            errors[f"momentum_buffer {name}"] = relative_error(
                ref._leaf(state.momentum_buffer, path), expected, peak, floor
            )
            for i, (q, expected) in enumerate(zip(ref._leaf(state.Q, path), torch_state["Q"])):
                assert q.shape == tuple(expected.shape), (name, i, q.shape, expected.shape)
                peak = max(float(np.max(np.abs(expected.numpy()))), 1e-30)
                errors[f"Q[{i}] {name}"] = relative_error(q, expected.numpy(), peak, floor)
            errors[f"step {name}"] = relative_error(state.count, torch_state["step"])
            errors[f"update_counter {name}"] = relative_error(state.update_counter, torch_state["update_counter"])
        for i, state in enumerate(states):
            errors[f"lr in force {i}"] = relative_error(state.hyperparams["lr"], lrs[i])
        where = max(errors, key=errors.get)
        assert errors[where] <= OPTIMIZER_RTOL[precision], f"{config}: {where} off by {errors[where]:.3g}"
        worst = max(worst, errors[where])
    return worst


@pytest.mark.filterwarnings("ignore:It is highly recommended")
def test_matches_timm(precision):
    check(CONFIGS)


@pytest.mark.nightly
@pytest.mark.filterwarnings("ignore:It is highly recommended")
def test_more_configurations_match_timm(precision):
    check(NIGHTLY)


def torch_module(params):
    """A torch module whose parameters are named as the flax tree's dotted names (``hidden.kernel``)."""
    module = torch.nn.Module()
    for outer, leaves in params.items():
        tensors = {inner: torch.nn.Parameter(torch.tensor(value)) for inner, value in leaves.items()}
        setattr(module, outer, torch.nn.ParameterDict(tensors))
    return module


@pytest.mark.filterwarnings("ignore:It is highly recommended")
def test_create_optimizer_v2_matches_timm():
    """``kronw`` by name (x64): timm's weight-decay groups (the biases without decay, first), the
    momentum and a preconditioner probability given through ``create_optimizer_v2``."""
    from timm.optim import create_optimizer_v2 as timm_create_optimizer_v2

    from purelr.recipes.timm import create_optimizer_v2

    kwargs = dict(lr=1e-2, weight_decay=0.05, momentum=0.8, preconditioner_update_probability=0.5)
    with jax.enable_x64(True):
        drawn = draws(2140, True)
        data = jax.tree.map(lambda a: jnp.asarray(a[:STEPS]), ref.stream(True))
        optimizer = create_optimizer_v2(jax.tree.map(jnp.asarray, ref.PARAMS), "kronw", **kwargs)

        def step(carry, inputs):
            params, state = carry
            grads = jax.grad(ref.jax_loss)(params, inputs[0], 1.0)
            updates, state = optimizer.update(grads, state, params, draws=inputs[1])
            return (optax.apply_updates(params, updates), state), None

        params = jax.tree.map(jnp.asarray, ref.PARAMS)
        (params, _), _ = jax.jit(lambda p: jax.lax.scan(step, (p, optimizer.init(p)), (data, drawn)))(params)
    with ref.torch_dtype(True), mock.patch.object(timm_kron, "has_dynamo", False):
        model = torch_module(ref.PARAMS)
        torch_optimizer = timm_create_optimizer_v2(model, "kronw", **kwargs)
        order = [path for path in ref.LEAVES if path[1] == "bias"] + [p for p in ref.LEAVES if p[1] == "kernel"]
        torch_optimizer.rng = randomness = TimmRandomness(drawn, [False] * 4, order)
        tree = {outer: getattr(model, outer) for outer in ref.PARAMS}
        batches = jax.tree.map(lambda a: torch.tensor(np.asarray(a)), ref.stream(True))
        with mock.patch.object(torch, "randn", randomness.randn):
            for k in range(STEPS):
                torch_optimizer.zero_grad()
                ref.losses(tree, jax.tree.map(lambda a: a[k], batches), torch.tanh).backward()
                randomness.start(k)
                torch_optimizer.step()
        randomness.finish()
    for path in ref.LEAVES:
        expected = ref._leaf(tree, path).detach()
        error = relative_error(ref._leaf(params, path), expected, floor=trajectory_floor())
        assert error <= OPTIMIZER_RTOL["x64"], (path, error)


@pytest.mark.filterwarnings("ignore:It is highly recommended")
def test_flattened_kernels_and_scalars_match_timm():
    """``flatten=True`` on a 4-D kernel (its dims 2, 3 merged: factors (2, 2), (3, 3), (6, 6)) and a
    scalar param (one scalar factor), x64, 50 updates of a quadratic, one group."""
    steps, rng = 50, np.random.default_rng(2150)
    start = {"a": rng.normal(size=(2, 3, 2, 3)), "b": np.asarray(0.7)}
    curvature = {"a": rng.uniform(0.2, 2.0, (2, 3, 2, 3)), "b": np.asarray(1.3)}
    target = {"a": rng.normal(size=(2, 3, 2, 3)), "b": np.asarray(-0.4)}
    drawn = dict(
        normal=jax.tree.map(lambda p: rng.normal(size=(steps,) + p.shape), start),
        uniform=jax.tree.map(lambda p: rng.uniform(size=(steps, 2)) * [0.02, 1.0], start),
    )
    kwargs = dict(lr=0.05, momentum=0.8, weight_decay=0.01, flatten=True, preconditioner_update_probability=0.5)

    def loss(params, xp, convert):
        return sum(xp.sum(convert(curvature[k]) * (params[k] - convert(target[k])) ** 2) / 2 for k in params)

    with jax.enable_x64(True):
        optimizer = kron(**kwargs)

        def step(carry, drawn):
            params, state = carry
            updates, state = optimizer.update(jax.grad(loss)(params, jnp, jnp.asarray), state, params, draws=drawn)
            return (optax.apply_updates(params, updates), state), None

        params = jax.tree.map(jnp.asarray, start)
        (params, state), _ = jax.jit(lambda p: jax.lax.scan(step, (p, optimizer.init(p)), drawn))(params)
        assert [q.shape for q in state.Q["a"]] == [(2, 2), (3, 3), (6, 6)]
    with ref.torch_dtype(True), mock.patch.object(timm_kron, "has_dynamo", False):
        tensors = {k: torch.tensor(v, requires_grad=True) for k, v in start.items()}
        torch_optimizer = Kron(list(tensors.values()), **kwargs)
        torch_optimizer.rng = randomness = TimmRandomness(drawn, [False, False], [("a",), ("b",)])
        with mock.patch.object(torch, "randn", randomness.randn):
            for k in range(steps):
                torch_optimizer.zero_grad()
                loss(tensors, torch, torch.tensor).backward()
                randomness.start(k)
                torch_optimizer.step()
        randomness.finish()
    for name, tensor in tensors.items():
        error = relative_error(params[name], tensor.detach(), floor=trajectory_floor())
        assert error <= OPTIMIZER_RTOL["x64"], (name, error)


def test_rejects_a_bad_torch_layout():
    """``torch_layout``: transposes only, not with ``flatten``."""
    from purelr.optim.prodigy import kernel_layouts

    with pytest.raises(ValueError, match="torch_layout must be a tree of transposes .* got 3 with flatten=False"):
        kron(torch_layout=3)
    with pytest.raises(ValueError, match="without flatten"):
        kron(torch_layout=kernel_layouts, flatten=True)
    params = {"kernel": jnp.ones((2, 3))}
    twin = kron(torch_layout={"kernel": lambda k: k[::-1]})
    with pytest.raises(ValueError, match="gives a 2-dim param a function that is not a transpose"):
        twin.update(params, twin.init(params), params)
