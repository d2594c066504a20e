"""Parity of purelr.optim.adahessian with timm 1.0.31's Adahessian, side by side for 100 updates
on torch_reference's problems (x64: the tanh MLP, whose Hessian is full; float32: the quadratic).

torch's train loop runs ``loss.backward(create_graph=True)`` and ``optimizer.step()``, which draws
its Rademacher vectors from its own generator (seeded 2147483647): the test draws the same vectors
from a generator seeded alike, in the order timm draws them (per renewal, per sample, per param),
and gives them to purelr. Two parameter groups (the hidden layer, the output layer: a
``multi_transform`` given one ``hutchinson`` estimate over the whole model) or one (the
``value_fn`` path); every number traced, the lr scheduled in half of the configurations."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from timm.optim import Adahessian

from purelr.optim.adahessian import adahessian, hutchinson
from tests.optim import torch_reference as ref
from tests.parity import OPTIMIZER_RTOL, relative_error, trajectory_floor

STEPS = 100
pytestmark = pytest.mark.filterwarnings("ignore:Using backward.. with create_graph=True")  # timm's own loop
NUMBERS = ("lr", "beta1", "beta2", "eps", "weight_decay", "hessian_power")
LABELS = {outer: {inner: outer for inner in ref.PARAMS[outer]} for outer in ref.PARAMS}


def draw(rng):
    return dict(
        lr=ref.loguniform(rng, 1e-3, 3e-2),
        beta1=rng.uniform(0.0, 0.95),
        beta2=rng.uniform(0.9, 0.9999),
        eps=float(rng.choice([1e-8, ref.loguniform(rng, 1e-6, 1e-2)])),
        weight_decay=float(rng.choice([0.0, ref.loguniform(rng, 1e-4, 1e-1)])),
        hessian_power=float(rng.choice([1.0, 0.5, rng.uniform(0.0, 1.0)])),
    )


def configurations(update_each, n_samples, groups, count, seed):
    rng = np.random.default_rng(seed)
    return [
        dict(
            update_each=update_each,
            n_samples=n_samples,
            groups=tuple({k: float(np.float32(v)) for k, v in draw(rng).items()} for _ in range(groups)),
            schedule=bool(rng.random() < 0.5),
        )
        for _ in range(count)
    ]


CONFIGS = configurations(1, 1, 2, 5, seed=2111) + configurations(2, 1, 1, 5, seed=2113)
NIGHTLY = (
    configurations(1, 1, 2, 12, seed=2114)
    + configurations(3, 2, 2, 12, seed=2115)
    + configurations(2, 3, 1, 12, seed=2116)
)


def rademacher(update_each, n_samples, x64, order=ref.LEAVES):
    """timm's vectors: ``(STEPS, n_samples)`` trees (zeros where a step keeps its estimate), drawn
    for the params in timm's ``order``."""
    generator = torch.Generator().manual_seed(2147483647)
    dtype = torch.float64 if x64 else torch.float32
    zs = jax.tree.map(lambda p: np.zeros((STEPS, n_samples) + p.shape), ref.PARAMS)
    for k in range(0, STEPS, update_each):
        for i in range(n_samples):
            for path in order:
                draws = torch.randint(0, 2, ref.PARAMS[path[0]][path[1]].shape, generator=generator)
                ref._leaf(zs, path)[k, i] = (draws.to(dtype) * 2.0 - 1.0).numpy()
    return zs


@functools.lru_cache(maxsize=None)
def _compiled(update_each, n_samples, groups, x64):
    def run(values, scheduled, params, data, zs):
        def make(row):
            numbers = {name: (lambda v: lambda count: v)(value) for name, value in zip(NUMBERS, row)}
            lr = numbers["lr"]
            numbers["lr"] = lambda count: lr(count) * jnp.where(scheduled, ref.LR_FACTOR(count), 1.0)
            betas = numbers.pop("beta1"), numbers.pop("beta2")
            return adahessian(betas=betas, update_each=update_each, n_samples=n_samples, **numbers)

        if groups == 1:
            optimizer = make(values[0])
        else:
            optimizer = optax.multi_transform({"hidden": make(values[0]), "out": make(values[1])}, LABELS)

        def step(carry, inputs):
            params, state = carry
            batch, z = inputs
            vectors = [jax.tree.map(lambda leaf: leaf[i], z) for i in range(n_samples)]
            loss = functools.partial(ref.jax_loss, batch=batch, sign=1.0)
            grads = jax.grad(loss)(params)
            if groups == 1:
                updates, state = optimizer.update(grads, state, params, value_fn=loss, rademacher=vectors)
            else:
                updates, state = optimizer.update(grads, state, params, hessian=hutchinson(loss, params, vectors))
            return (optax.apply_updates(params, updates), state), None

        (params, state), _ = jax.lax.scan(step, (params, optimizer.init(params)), (data, zs))
        return params, state

    return jax.jit(jax.vmap(run, in_axes=(0, 0, None, None, None)))


def run_purelr(configs, x64):
    first = configs[0]
    values = jnp.asarray([[[g[name] for name in NUMBERS] for g in c["groups"]] for c in configs])
    scheduled = jnp.asarray([c["schedule"] for c in configs])
    data = jax.tree.map(lambda a: jnp.asarray(a[:STEPS]), ref.stream(x64))
    zs = jax.tree.map(jnp.asarray, rademacher(first["update_each"], first["n_samples"], x64))
    run = _compiled(first["update_each"], first["n_samples"], len(first["groups"]), x64)
    params, state = run(values, scheduled, jax.tree.map(jnp.asarray, ref.PARAMS), data, zs)
    states = [s.inner_state for s in state.inner_states.values()] if len(first["groups"]) == 2 else [state]
    return [
        (
            jax.tree.map(lambda a: np.asarray(a[i]), params),
            [jax.tree.map(lambda a: np.asarray(a[i]), s) for s in states],
        )
        for i in range(len(configs))
    ]


def run_torch(config, x64):
    """timm's loop: ``backward(create_graph=True)``, ``step()``, ``scheduler.step()``."""
    factors = np.asarray(ref.LR_FACTOR(np.arange(STEPS + 1)), dtype=np.float64)
    with ref.torch_dtype(x64):
        dtype = torch.get_default_dtype()
        params = jax.tree.map(lambda p: torch.tensor(p, dtype=dtype, requires_grad=True), ref.PARAMS)
        outers = [list(ref.PARAMS)] if len(config["groups"]) == 1 else [[outer] for outer in ref.PARAMS]
        groups = [
            dict(
                {k: v for k, v in hp.items() if k not in ("beta1", "beta2")},
                betas=(hp["beta1"], hp["beta2"]),
                params=[ref._leaf(params, path) for path in ref.LEAVES if path[0] in names],
            )
            for hp, names in zip(config["groups"], outers)
        ]
        optimizer = Adahessian(groups, update_each=config["update_each"], n_samples=config["n_samples"])
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda k: float(factors[k]) if config["schedule"] else 1.0
        )
        data = jax.tree.map(lambda a: torch.tensor(np.asarray(a), dtype=dtype), ref.stream(x64))
        for k in range(STEPS):
            optimizer.zero_grad()
            ref.losses(params, jax.tree.map(lambda a: a[k], data), torch.tanh).backward(create_graph=True)
            lrs = [group["lr"] for group in optimizer.param_groups]
            optimizer.step()
            scheduler.step()
        return params, optimizer, lrs


def check(configs):
    x64 = jax.config.jax_enable_x64
    precision = "x64" if x64 else "f32"
    floor = trajectory_floor(precision)
    worst = 0.0
    for config, (params, states) in zip(configs, run_purelr(configs, x64)):
        torch_params, optimizer, lrs = run_torch(config, x64)
        errors = {}
        for path in ref.LEAVES:
            name = ".".join(path)
            p = ref._leaf(torch_params, path)
            state = states[0] if len(states) == 1 else states[list(ref.PARAMS).index(path[0])]
            errors[f"param {name}"] = relative_error(ref._leaf(params, path), p.detach(), floor=floor)
            torch_state = optimizer.state[p]
            for field, expected in (
                ("exp_avg", torch_state["exp_avg"]),
                ("exp_hessian_diag_sq", torch_state["exp_hessian_diag_sq"]),
                ("hess", p.hess),
            ):
                expected = expected.detach().numpy()
                peak = max(float(np.max(np.abs(expected))), 1e-30)
                actual = ref._leaf(getattr(state, field), path)
                errors[f"{field} {name}"] = relative_error(actual, expected, peak, floor)
            errors[f"step {name}"] = relative_error(state.count, torch_state["step"])
        for i, state in enumerate(states):
            errors[f"lr in force {i}"] = relative_error(state.hyperparams["lr"], lrs[i])
        where = max(errors, key=errors.get)
        assert errors[where] <= OPTIMIZER_RTOL[precision], f"{config}: {where} off by {errors[where]:.3g}"
        worst = max(worst, errors[where])
    return worst


def _by_flags(configs):
    flags = {}
    for config in configs:
        flags.setdefault((config["update_each"], config["n_samples"], len(config["groups"])), []).append(config)
    return flags.values()


def test_matches_timm(precision):
    for configs in _by_flags(CONFIGS):
        check(configs)


@pytest.mark.nightly
def test_more_configurations_match_timm(precision):
    for configs in _by_flags(NIGHTLY):
        check(configs)


def test_update_draws_its_own_vectors():
    """Without ``rademacher`` the vectors come from ``state.key`` (+-1 entries, new each update):
    the estimate of a quadratic's Hessian diagonal is then exact whatever the draw."""
    curvature = {"a": jnp.asarray([1.0, 2.0, 3.0]), "b": jnp.asarray([[0.5, 4.0]])}

    def loss(params):
        return sum(jnp.sum(c * p**2) / 2 for c, p in zip(jax.tree.leaves(curvature), jax.tree.leaves(params)))

    params = jax.tree.map(jnp.ones_like, curvature)
    optimizer = adahessian()
    state = optimizer.init(params)
    _, state = jax.jit(functools.partial(optimizer.update, value_fn=loss))(jax.grad(loss)(params), state, params)
    assert jax.tree.all(jax.tree.map(lambda h, c: bool(jnp.all(h == c)), state.hess, curvature))
    assert not bool(jnp.all(state.key == optimizer.init(params).key))


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("lr", dict(lr=-1.0)),
        ("eps", dict(eps=-1e-8)),
        ("betas[0]", dict(betas=(1.0, 0.999))),
        ("betas[1]", dict(betas=(0.9, -0.1))),
        ("hessian_power", dict(hessian_power=1.5)),
    ],
)
def test_rejects_what_timm_rejects(name, kwargs):
    ref.check_rejects(adahessian, Adahessian, name, **kwargs)


def test_needs_the_loss_or_the_estimate():
    optimizer = adahessian()
    params = {"w": jnp.ones(2)}
    with pytest.raises(ValueError, match="value_fn"):
        optimizer.update(params, optimizer.init(params), params)


def test_create_optimizer_v2_matches_timm():
    """``adahessian`` by name (x64): timm's weight-decay groups (the biases without decay, first:
    timm draws their vectors first), betas through ``create_optimizer_v2``, the estimate over the
    whole model given to every group."""
    from timm.optim import create_optimizer_v2 as timm_create_optimizer_v2

    from purelr.recipes.timm import create_optimizer_v2
    from tests.optim.test_kron import torch_module

    kwargs = dict(lr=0.05, weight_decay=0.05, betas=(0.8, 0.99), update_each=2)
    order = [path for path in ref.LEAVES if path[1] == "bias"] + [p for p in ref.LEAVES if p[1] == "kernel"]
    with jax.enable_x64(True):
        zs = jax.tree.map(jnp.asarray, rademacher(2, 1, True, order))
        data = jax.tree.map(lambda a: jnp.asarray(a[:STEPS]), ref.stream(True))
        optimizer = create_optimizer_v2(jax.tree.map(jnp.asarray, ref.PARAMS), "adahessian", **kwargs)

        def step(carry, inputs):
            params, state = carry
            loss = functools.partial(ref.jax_loss, batch=inputs[0], sign=1.0)
            hessian = hutchinson(loss, params, [jax.tree.map(lambda z: z[0], inputs[1])])
            updates, state = optimizer.update(jax.grad(loss)(params), state, params, hessian=hessian)
            return (optax.apply_updates(params, updates), state), None

        params = jax.tree.map(jnp.asarray, ref.PARAMS)
        (params, _), _ = jax.jit(lambda p: jax.lax.scan(step, (p, optimizer.init(p)), (data, zs)))(params)
    with ref.torch_dtype(True):
        model = torch_module(ref.PARAMS)
        torch_optimizer = timm_create_optimizer_v2(model, "adahessian", **kwargs)
        tree = {outer: getattr(model, outer) for outer in ref.PARAMS}
        batches = jax.tree.map(lambda a: torch.tensor(np.asarray(a)), ref.stream(True))
        for k in range(STEPS):
            torch_optimizer.zero_grad()
            ref.losses(tree, jax.tree.map(lambda a: a[k], batches), torch.tanh).backward(create_graph=True)
            torch_optimizer.step()
    for path in ref.LEAVES:
        expected = ref._leaf(tree, path).detach()
        error = relative_error(ref._leaf(params, path), expected, floor=trajectory_floor())
        assert error <= OPTIMIZER_RTOL["x64"], (path, error)


def test_avg_conv_kernel_matches_timm():
    """``avg_conv_kernel`` on a 4-D kernel (torch's OIHW: the estimate's |.| averaged over dims 2,
    3) beside a vector, x64, 40 updates of a loss whose Hessian couples every entry, two samples
    renewed every other update, one group."""
    steps, rng = 40, np.random.default_rng(2160)
    start = {"a": rng.normal(size=(2, 3, 2, 2)), "b": rng.normal(size=3)}
    kwargs = dict(lr=0.02, weight_decay=0.01, hessian_power=0.7, update_each=2, n_samples=2, avg_conv_kernel=True)

    def loss(params, xp):
        total = sum(xp.sum(p**2) for p in params.values())
        return total**2 / 8 + sum(xp.sum(xp.cos(p)) for p in params.values())

    generator = torch.Generator().manual_seed(2147483647)
    zs = jax.tree.map(lambda p: np.zeros((steps, 2) + p.shape), start)
    for k in range(0, steps, 2):
        for i in range(2):
            for name in ("a", "b"):
                zs[name][k, i] = (torch.randint(0, 2, start[name].shape, generator=generator) * 2.0 - 1.0).numpy()
    with jax.enable_x64(True):
        optimizer = adahessian(**kwargs)

        def step(carry, z):
            params, state = carry
            value_fn = functools.partial(loss, xp=jnp)
            vectors = [jax.tree.map(lambda leaf: leaf[i], z) for i in range(2)]
            grads = jax.grad(value_fn)(params)
            updates, state = optimizer.update(grads, state, params, value_fn=value_fn, rademacher=vectors)
            return (optax.apply_updates(params, updates), state), None

        params = jax.tree.map(jnp.asarray, start)
        (params, state), _ = jax.jit(lambda p: jax.lax.scan(step, (p, optimizer.init(p)), zs))(params)
    with ref.torch_dtype(True):
        tensors = {k: torch.tensor(v, requires_grad=True) for k, v in start.items()}
        torch_optimizer = Adahessian(list(tensors.values()), **kwargs)
        for k in range(steps):
            torch_optimizer.zero_grad()
            loss(tensors, torch).backward(create_graph=True)
            torch_optimizer.step()
    for name, tensor in tensors.items():
        floor = trajectory_floor()
        assert relative_error(params[name], tensor.detach(), floor=floor) <= OPTIMIZER_RTOL["x64"], name
        assert relative_error(state.hess[name], tensor.hess.detach(), floor=floor) <= OPTIMIZER_RTOL["x64"], name
