"""Parity of purelr.optim.soap with heavyball 3.2.1's ``heavyball.SOAP`` (its CPU path, with
``heavyball.utils.compile_mode = None``: no torch.compile), side by side: 100 updates of two param
groups (different numbers each) on a quadratic with a moving target, whose gradient
``curvature * (param - target)`` both sides compute elementwise alike. Params and every buffer
(``exp_avg``, ``exp_avg_sq``, ``GG``, ``Q``) are compared after the last update.

The shapes are chosen so that every first Gram matrix (``G G^T`` of one gradient) has a null space
of dimension at most 1: its eigenvectors are then unique up to sign, while a larger null space
lets LAPACK's ``eigh`` (torch's and JAX's) pick different bases, which SOAP's subspace iteration
carries on (a different, equally valid trajectory). Signs of the basis columns are aligned to
heavyball's before ``Q`` and ``exp_avg`` are compared (the params do not depend on them).

Measured (nightly, 40 configurations under x64, 32 in float32): x64 5.7e-12; float32 9.8e-6, in
``Q`` of the 3 x 4 param's 4 x 4 factor, whose Gram matrix starts at rank 3 and keeps a small
eigenvalue: its eigenvector is conditioned by the gap (the params stay within 6.3e-6).
"""

import warnings

import heavyball
import heavyball.utils
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from purelr.optim.soap import soap
from tests.bad_inputs import assert_purelr_rejects
from tests.optim import torch_reference as ref
from tests.parity import OPTIMIZER_RTOL, relative_error, rounding_floor

heavyball.utils.compile_mode = None  # heavyball's eager path: no torch.compile on the CPU

STEPS = 100
NAN = float("nan")
SHAPES = dict(a=(4, 4), b=(3, 4), c=(2,), d=(4, 2, 2), e=(5,))
GROUPS = (("a", "c", "e"), ("b", "d"))
NUMBERS = ("lr", "betas", "shampoo_beta", "eps", "weight_decay")
ROUNDING_UNITS = 64  # of each leaf's peak: Q and GG come out of eigh / QR, known to a few units


def problem(seed=1):
    rng = np.random.default_rng(seed)
    params = {k: rng.normal(0, 1, s) for k, s in SHAPES.items()}
    targets = {k: rng.normal(0, 0.3, (STEPS,) + s) + rng.normal(0, 1, s) for k, s in SHAPES.items()}
    curvature = {k: rng.uniform(0.2, 2.0, s) for k, s in SHAPES.items()}
    return params, targets, curvature


PARAMS, TARGETS, CURVATURE = problem()


def draw(rng):
    """One group's numbers, float32-exact."""
    numbers = dict(
        lr=ref.loguniform(rng, 1e-3, 3e-2),
        betas=(rng.uniform(0.5, 0.95), rng.uniform(0.9, 0.999)),
        shampoo_beta=rng.uniform(0.8, 0.99),
        eps=float(rng.choice([1e-8, ref.loguniform(rng, 1e-10, 1e-4)])),
        weight_decay=float(rng.choice([0.0, ref.loguniform(rng, 1e-4, 0.1)])),
    )
    return {
        k: tuple(map(ref._float32_exact, v)) if isinstance(v, tuple) else ref._float32_exact(v)
        for k, v in numbers.items()
    }


def configurations(flags: dict, count: int, seed: int):
    rng = np.random.default_rng(seed)
    return [
        dict(flags=flags, groups=[draw(rng) for _ in GROUPS], schedule=bool(rng.random() < 0.5)) for _ in range(count)
    ]


# flags per run: precondition_frequency is the optimizer's; the rest each group's (here alike)
FLAGS = [
    dict(),
    dict(precondition_frequency=1, caution=True, cautious_weight_decay=True),
    dict(precondition_frequency=4, merge_dims=False, precondition_1d=True, max_precond_dim=3),
    dict(precondition_frequency=2, palm=True, warmup_steps=10, max_precond_dim=3, precondition_1d=True),
]
X64_FLAGS = [dict(precondition_frequency=3, caution=True, warmup_steps=5)]  # float64 running sum of 1/3


def _leaf_ids(group):
    return {name: i for i, name in enumerate(group)}


def run_heavyball(config, x64: bool):
    dtype = torch.float64 if x64 else torch.float32
    flags = dict(config["flags"])
    frequency = flags.pop("precondition_frequency", 2)
    tensors = {k: torch.tensor(v, dtype=dtype) for k, v in PARAMS.items()}
    groups = []
    for names, numbers in zip(GROUPS, config["groups"]):
        groups.append(dict(numbers, params=[tensors[n] for n in names], **flags))
    storage = "float64" if x64 else "float32"
    optimizer = heavyball.SOAP(groups, precondition_frequency=frequency, storage_dtype=storage)
    factor = np.asarray(ref.LR_FACTOR(np.arange(STEPS + 1)), np.float64)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: float(factor[k]) if config["schedule"] else 1.0)
    targets = {k: torch.tensor(v, dtype=dtype) for k, v in TARGETS.items()}
    curvature = {k: torch.tensor(v, dtype=dtype) for k, v in CURVATURE.items()}
    with warnings.catch_warnings(), ref.torch_dtype(x64):  # heavyball's scalars in the default dtype
        warnings.simplefilter("ignore")  # heavyball warns once that the lr changed between steps
        for k in range(STEPS):
            for name, p in tensors.items():
                p.grad = curvature[name] * (p - targets[name][k])
            optimizer.step()
            scheduler.step()
    state = {}
    for name, p in tensors.items():
        (inner,) = [v for v in optimizer.state[p].values() if isinstance(v, dict)]
        state[name] = {key.rsplit("_", 1)[0].removeprefix("scale_by_soap_"): value for key, value in inner.items()}
    return {k: p.numpy() for k, p in tensors.items()}, state


def _make(flags, scheduled_lr: bool):
    flags = dict(flags)
    frequency = flags.pop("precondition_frequency", 2)

    def make(numbers, scheduled):
        transforms = {}
        for i, group in enumerate(numbers):
            kwargs = {}
            for name in NUMBERS:
                value = group[name]
                if name == "betas":
                    kwargs[name] = tuple((lambda v: lambda count: v)(b) for b in value)
                elif name == "lr":
                    kwargs[name] = (lambda v: lambda count: v * jnp.where(scheduled, ref.LR_FACTOR(count), 1.0))(value)
                else:
                    kwargs[name] = (lambda v: lambda count: v)(value)
            storage = "float64" if jax.config.jax_enable_x64 else "float32"
            transforms[i] = soap(**kwargs, **flags, precondition_frequency=frequency, storage_dtype=storage)
        labels = {name: i for i, names in enumerate(GROUPS) for name in names}
        return optax.multi_transform(transforms, labels)

    return make


_COMPILED = {}


def run_purelr(configs):
    """Final params and per-group states of configurations sharing flags (one vmapped run)."""
    flags = configs[0]["flags"]
    key = (tuple(sorted(flags.items())), jax.config.jax_enable_x64)
    if key not in _COMPILED:
        make = _make(flags, True)

        def run(numbers, scheduled, params, targets, curvature):
            optimizer = make(numbers, scheduled)

            def step(carry, target):
                params, state = carry
                grads = jax.tree.map(lambda p, t, c: c * (p - t), params, target, curvature)
                updates, state = optimizer.update(grads, state, params)
                return (optax.apply_updates(params, updates), state), None

            (params, state), _ = jax.lax.scan(step, (params, optimizer.init(params)), targets)
            return params, state

        _COMPILED[key] = jax.jit(jax.vmap(run, in_axes=(0, 0, None, None, None)))
    numbers = [
        {
            name: (
                tuple(jnp.asarray([c["groups"][i][name][j] for c in configs]) for j in range(2))
                if name == "betas"
                else jnp.asarray([c["groups"][i][name] for c in configs])
            )
            for name in NUMBERS
        }
        for i in range(len(GROUPS))
    ]
    scheduled = jnp.asarray([c["schedule"] for c in configs])
    params, state = _COMPILED[key](numbers, scheduled, *jax.tree.map(jnp.asarray, (PARAMS, TARGETS, CURVATURE)))
    return [jax.tree.map(lambda x: np.asarray(x[i]), (params, state)) for i in range(len(configs))]


def compare(params, state, torch_params, torch_state):
    """Largest relative error (floor: ``ROUNDING_UNITS`` of each leaf's peak) and where."""
    precision = "x64" if jax.config.jax_enable_x64 else "f32"
    floor = rounding_floor(OPTIMIZER_RTOL[precision], ROUNDING_UNITS, precision)
    errors = {}
    for i, names in enumerate(GROUPS):
        inner = state.inner_states[i].inner_state
        for name in names:
            expected = torch_state[name]
            errors[f"param {name}"] = relative_error(params[name], torch_params[name], floor=floor)
            qs = inner.Q[name]
            signs = []
            for j, (q, tq) in enumerate(zip(qs, expected["Q"])):
                if tq is None:
                    assert q is None, f"Q {name}[{j}]: heavyball keeps none"
                    signs.append(None)
                    continue
                tq = tq[0].numpy()
                sign = np.where(np.sum(q * tq, axis=0) < 0, -1.0, 1.0)
                signs.append(sign)
                errors[f"Q {name}[{j}]"] = relative_error(q * sign, tq, floor=floor)
                tgg = expected["GG"][j][0].numpy()
                errors[f"GG {name}[{j}]"] = relative_error(inner.GG[name][j], tgg, floor=floor)
            m = inner.exp_avg[name]
            for j, sign in enumerate(signs):
                if sign is not None:
                    m = m * sign.reshape((-1,) + (1,) * (m.ndim - 1 - j))
            errors[f"exp_avg {name}"] = relative_error(m, expected["exp_avg"][0].numpy(), floor=floor)
            errors[f"exp_avg_sq {name}"] = relative_error(
                inner.exp_avg_sq[name], expected["exp_avg_sq"][0].numpy(), floor=floor
            )
    worst = max(errors, key=errors.get)
    return errors[worst], worst


def check(configs):
    x64 = jax.config.jax_enable_x64
    rtol = OPTIMIZER_RTOL["x64" if x64 else "f32"]
    by_flags = {}
    for config in configs:
        by_flags.setdefault(tuple(sorted(config["flags"].items())), []).append(config)
    worst = 0.0
    for group in by_flags.values():
        for config, (params, state) in zip(group, run_purelr(group)):
            error, where = compare(params, state, *run_heavyball(config, x64))
            assert error <= rtol, f"SOAP {config}: {where} off by {error:.3g}"
            worst = max(worst, error)
    return worst


DEFAULTS = dict(lr=3e-3, betas=(0.9, 0.95), shampoo_beta=0.95, eps=1e-8, weight_decay=0.01)  # heavyball.SOAP's


def _configs(per: int, seed: int):
    flags = FLAGS + (X64_FLAGS if jax.config.jax_enable_x64 else [])
    return [c for i, f in enumerate(flags) for c in configurations(f, per, seed + i)]


def test_matches_heavyball(precision):
    """One random configuration per set of flags, and heavyball's defaults in both groups."""
    check(_configs(1, seed=300) + [dict(flags={}, groups=[DEFAULTS, DEFAULTS], schedule=False)])


@pytest.mark.nightly
def test_more_configurations_match_heavyball(precision):
    check(_configs(8, seed=310))


@pytest.mark.parametrize(
    "kwargs, needles",
    [
        (dict(split=True), ("split", "True")),
        (dict(mars=True), ("mars", "True")),
        (dict(use_precond_schedule=True), ("use_precond_schedule", "True")),
        (dict(precond_grad_accum=True), ("precond_grad_accum", "True")),
        (dict(precondition_frequency=0), ("precondition_frequency", "0")),
        (dict(precondition_frequency=2.0), ("precondition_frequency", "2.0")),
        (dict(max_precond_dim=0), ("max_precond_dim", "0")),
        (dict(warmup_steps=-1), ("warmup_steps", "-1")),
        (dict(storage_dtype="int8"), ("storage_dtype", "int8")),
        (dict(lr=-1.0), ("lr", "-1.0")),
        (dict(betas=(1.0, 0.95)), ("betas[0]", "1.0")),
        (dict(shampoo_beta=1.0), ("shampoo_beta", "1.0")),
        (dict(eps=NAN), ("eps", "nan")),
    ],
)
def test_rejects(kwargs, needles):
    assert_purelr_rejects(lambda: soap(**kwargs), ValueError, *needles)
