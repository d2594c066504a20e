"""torch's own optimizer test inputs, run side by side with the purelr twins.

torch 2.13 ships its optimizer test database in the wheel
(``torch.testing._internal.common_optimizers``): for each optimizer an ``optim_inputs_func``
(constructor kwarg combinations) and an ``optim_error_inputs_func`` (inputs it must refuse). This
module enumerates them at test time, on ``"cpu"`` and with the implementation flags torch's own
helper adds there (``differentiable=True``; ``fused=True`` for SGD, Adam, AdamW, Adagrad), and:

- runs every combination (the even-numbered ones by default, Muon's and the others with ``-m nightly``)
  for ``STEPS`` steps in torch and in purelr (one jitted ``lax.scan`` per combination) on params of 0, 1 and 2 dimensions (Muon: two matrices, one wide, one tall), and,
  for the optimizers torch marks ``supports_complex``, complex params of 1 and 2 dimensions in
  the same tree; gradients ``c * (p - target_k)`` are formed alike on both sides (LBFGS: the loss
  ``sum c/2 (p - target_k)^2`` and its closure); params and every buffer
  torch keeps are compared, under x64 to 1e-10 and in float32 to 1e-5 (exceptions in ``bound``);
- feeds every error input to the twin: each torch refuses at construction, purelr refuses at
  construction (at ``init`` what depends on the params), naming the argument and the value.

Counts (asserted in ``test_counts``):

| optimizer | kwarg combinations run / torch's | complex / torch's | bad inputs refused / torch's |
|---|---|---|---|
| Adadelta | 12 / 12 | 12 / 12 | 2 / 7 |
| Adafactor | 5 / 5 | — (torch refuses complex) | 5 / 10 |
| Adagrad | 21 / 21 | 14 / 14 | 2 / 7 |
| Adam | 15 / 15 | 10 / 10 | 3 / 12 |
| AdamW | 15 / 15 | 10 / 10 | 3 / 12 |
| Adamax | 10 / 10 | 10 / 10 | 2 / 7 |
| ASGD | 14 / 14 | 14 / 14 | 2 / 7 |
| LBFGS | 5 / 5 | 0 / 5 | 1 / 6 |
| Muon | 7 / 7 | — (torch refuses complex) | 4 / 9 |
| NAdam | 14 / 14 | 14 / 14 | 3 / 8 |
| RAdam | 12 / 12 | 12 / 12 | 3 / 8 |
| RMSprop | 16 / 16 | 16 / 16 | 2 / 7 |
| Rprop | 10 / 10 | 10 / 10 | 2 / 7 |
| SGD | 27 / 27 | 18 / 18 | 2 / 7 |
| SparseAdam | 0 / 4 | — | 0 / 10 |
| **total** | **183 / 187** | **140 / 145** | **36 / 124** |

Not covered, and why (``NOT_COVERED``, asserted too):

- SparseAdam (4 combinations, 10 error inputs): not twinned; sparse gradients have no dense-JAX
  meaning (use ``adam``).
- LBFGS with complex params (5): refused at ``init`` with a clear error; purelr's LBFGS evaluates
  the loss with ``jax.grad``, whose complex gradient is the conjugate of torch's.
- Complex params with ``fused=True`` (SGD 9, Adam 5, AdamW 5, Adagrad 7): torch's fused kernels
  refuse them, so these combinations run on the real params only.
- The 6 error inputs every optimizer shares, less "Tensor lr must be 1-element" (5 each, 70 in
  all): they are about torch's ``params`` argument (not an iterable, duplicates within or across
  groups, named and unnamed params mixed); a twin takes no params at construction and a pytree
  cannot hold a leaf twice (``purelr.params.groups.param_groups`` refuses a leaf in two groups).
- Adam and AdamW: a Tensor lr or betas with ``foreach=True``, and betas mixing floats and
  Tensors (4 each, 8): limits of torch's foreach kernels, not of the algorithm; purelr has one
  implementation and accepts them (the flags are accepted and ignored).
- Adagrad: ``fused`` with ``foreach`` or ``differentiable`` is in torch's CUDA list only (its
  constructor refuses both on CPU as well; ``tests/optim/test_bad_inputs.py`` has them).
- LBFGS's 5 combinations in float32 (not collected, ``LBFGS_F32``): float32 parity of LBFGS is stated in
  ``test_lbfgs.py`` for runs of at most 3 inner iterations a step; torch's combinations run 20.
"""

from __future__ import annotations

import copy
import functools
import inspect
import sys
import types
import unittest

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from purelr import optim
from tests.optim.torch_reference import torch_dtype
from tests.parity import OPTIMIZER_RTOL, relative_error, trajectory_floor

if "expecttest" not in sys.modules:  # a test-only dependency of torch's test utilities
    sys.modules["expecttest"] = types.SimpleNamespace(TestCase=unittest.TestCase)
from torch.testing._internal import common_optimizers  # noqa: E402

torch.set_num_threads(1)

STEPS = 12
LBFGS_STEPS = 3
TWINS = dict(
    Adadelta=optim.adadelta,
    Adafactor=optim.adafactor,
    Adagrad=optim.adagrad,
    Adam=optim.adam,
    AdamW=optim.adamw,
    Adamax=optim.adamax,
    ASGD=optim.asgd,
    LBFGS=optim.lbfgs,
    Muon=optim.muon,
    NAdam=optim.nadam,
    RAdam=optim.radam,
    RMSprop=optim.rmsprop,
    Rprop=optim.rprop,
    SGD=optim.sgd,
)
INFOS = {info.optim_cls.__name__: info for info in common_optimizers.optim_db}

SHAPES = {"scalar": (), "vector": (5,), "matrix": (3, 4)}
COMPLEX_SHAPES = {"complex_vector": (4,), "complex_matrix": (2, 3)}
MUON_SHAPES = {"wide": (3, 4), "tall": (5, 2)}


def combinations(name):
    """torch's kwarg combinations for ``name`` on CPU, with the flags its helper adds."""
    return common_optimizers._get_optim_inputs_including_global_cliquey_kwargs("cpu", torch.float64, INFOS[name])


def bound(name, combination, precision, what):
    """The tolerance: OPTIMIZER_RTOL, except
    - Muon with torch's float32 Tensor lr under x64: 1e-6. torch forms ``lr * sqrt(max(1, A/B))``
      and ``1 - lr * weight_decay`` as float32 0-d tensors (``_to_scalar`` keeps a Tensor),
      purelr in float64 (measured 2e-7);
    - LBFGS's state other than the params under x64: 1e-5 (``test_lbfgs.test_matches_torch_x64``:
      near the minimum ``d`` and ``prev_flat_grad`` are differences of nearly equal iterates)."""
    if name == "Muon" and isinstance(combination.kwargs.get("lr"), torch.Tensor):
        return 1e-6
    if name == "LBFGS" and precision == "x64" and not what.startswith("param "):
        return 1e-5
    return OPTIMIZER_RTOL[precision]


def error_inputs(name):
    return INFOS[name].optim_error_inputs_func("cpu", torch.float32)


def complex_in_torch(name, kwargs):
    """Whether torch steps complex params with these kwargs (its fused kernels refuse them)."""
    return INFOS[name].supports_complex and not kwargs.get("fused")


def with_complex(name, kwargs):
    return complex_in_torch(name, kwargs) and name in TWINS and name != "LBFGS"


def shapes_of(name):
    if name == "Muon":
        return MUON_SHAPES
    return {**SHAPES, **(COMPLEX_SHAPES if with_complex(name, {}) else {})}


def problem(name, x64):
    """``(params, targets, curvature)`` as numpy, in the mode's dtypes (complex for complex leaves)."""
    rng = np.random.default_rng(sorted(TWINS).index(name))
    real, cplx = (np.float64, np.complex128) if x64 else (np.float32, np.complex64)
    steps = LBFGS_STEPS if name == "LBFGS" else STEPS
    params, targets, curvature = {}, {}, {}
    for leaf, shape in shapes_of(name).items():
        dtype = cplx if leaf.startswith("complex") else real

        def draw(*lead):
            x = rng.normal(size=lead + shape)
            return (x + 1j * rng.normal(size=lead + shape) if dtype == cplx else x).astype(dtype)

        params[leaf], targets[leaf] = draw(), draw(steps)
        curvature[leaf] = rng.uniform(0.2, 2.0, shape).astype(real)
    return params, targets, curvature


def to_purelr(value):
    """torch kwargs as the twin takes them: a Tensor becomes a JAX array (torch's Tensor lr)."""
    if isinstance(value, torch.Tensor):
        return jnp.asarray(value.numpy())
    if isinstance(value, tuple):
        return tuple(to_purelr(v) for v in value)
    return value


# ---- the two sides ------------------------------------------------------------------------------


def loss_terms(p, t, c, backend):
    """LBFGS's loss: ``c/2 (p - t)^2`` summed (real params only)."""
    d = p - t
    return (0.5 * c * d * d).sum()


def run_torch(name, kwargs, params, targets, curvature):
    """Params in the pytree's leaf order (sorted names), so that LBFGS's flat vectors line up."""
    params = {leaf: torch.tensor(params[leaf]) for leaf in sorted(params)}
    targets = {leaf: torch.tensor(t) for leaf, t in targets.items()}
    curvature = {leaf: torch.tensor(c) for leaf, c in curvature.items()}
    optimizer = getattr(torch.optim, name)(list(params.values()), **copy.deepcopy(kwargs))
    for k in range(len(next(iter(targets.values())))):
        if name == "LBFGS":
            for p in params.values():
                p.requires_grad_(True)

            def closure(k=k):
                optimizer.zero_grad()
                loss = sum(loss_terms(p, targets[leaf][k], curvature[leaf], torch) for leaf, p in params.items())
                loss.backward()
                return loss

            optimizer.step(closure)
            continue
        for leaf, p in params.items():
            p.grad = curvature[leaf] * (p.detach() - targets[leaf][k])
        optimizer.step()
    state = {
        leaf: {
            key: value.detach().numpy() for key, value in optimizer.state[p].items() if isinstance(value, torch.Tensor)
        }
        for leaf, p in params.items()
    }
    return {leaf: p.detach().numpy() for leaf, p in params.items()}, state


DEVICE_FLAGS = ("foreach", "fused", "capturable", "differentiable")
# The numbers given as traced schedules; the others stay Python constants, as users give them:
# a twin takes ``1 - beta`` of a constant in double precision, as torch does, which a float32
# traced value cannot reproduce (1.3e-5 off for beta2 = 0.999).
TRACED = ("lr", "weight_decay")


def _number(value):
    if isinstance(value, torch.Tensor):
        return float(value.item())
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def split(name, kwargs):
    """``(flags, numbers)``: the compile-time arguments (a hashable key; torch's defaults filled
    in, device flags left out) and ``{(name, index or None): number}`` for ``TRACED``, each given
    to the twin as a traced constant schedule so that combinations sharing flags share one
    compilation."""
    signature = inspect.signature(getattr(torch.optim, name))
    full = {k: p.default for k, p in signature.parameters.items() if k != "params"}
    full.update(kwargs)
    flags, numbers = [], {}
    for key, value in full.items():
        if key in DEVICE_FLAGS:
            continue
        values = value if isinstance(value, tuple) else (value,)
        static = key not in TRACED or any(_number(v) is None for v in values)
        if static:
            flags.append((key, value))
            continue
        for i, v in enumerate(values):
            numbers[(key, i if isinstance(value, tuple) else None)] = _number(v)
    return tuple(flags), numbers


@functools.lru_cache(maxsize=None)
def _compiled(name, flags, keys):
    """One jitted, vmapped run of ``name`` with ``flags`` over rows of numbers (one per combination)."""

    def run(values, params, targets, curvature):
        kwargs = dict(flags)
        for (key, index), value in zip(keys, values):
            constant = (lambda v: lambda count: v)(value)
            kwargs[key] = constant if index is None else kwargs.get(key, ()) + (constant,)
        optimizer = TWINS[name](**kwargs)

        def step(carry, target):
            params, state = carry
            if name == "LBFGS":

                def value_fn(p):
                    return sum(loss_terms(p[leaf], target[leaf], curvature[leaf], jnp) for leaf in p)

                value, grads = jax.value_and_grad(value_fn)(params)
                updates, state = optimizer.update(grads, state, params, value=value, value_fn=value_fn)
            else:
                grads = jax.tree.map(lambda c, p, t: c * (p - t), curvature, params, target)
                updates, state = optimizer.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), None

        return jax.lax.scan(step, (params, optimizer.init(params)), targets)[0]

    return jax.jit(jax.vmap(run, in_axes=(0, None, None, None)))


@functools.lru_cache(maxsize=None)
def purelr_results(name, x64):
    """``{index: (params, state)}`` for every combination of ``name``, combinations sharing flags
    run together. Each twin is also built eagerly from the combination's own kwargs (a Tensor lr
    as a JAX array, the device flags as given): it must accept them."""
    groups = {}
    for index, combination in enumerate(combinations(name)):
        TWINS[name](**{k: to_purelr(v) for k, v in combination.kwargs.items()})
        flags, numbers = split(name, combination.kwargs)
        groups.setdefault((flags, tuple(numbers)), []).append((index, list(numbers.values())))
    data = jax.tree.map(jnp.asarray, problem(name, x64))
    results = {}
    for (flags, keys), members in groups.items():
        values = jnp.asarray([row for _, row in members])
        batch = jax.tree.map(np.asarray, _compiled(name, flags, keys)(values, *data))
        for row, (index, _) in enumerate(members):
            results[index] = jax.tree.map(lambda leaf: leaf[row], batch)
    return results


def real_view(x):
    x = np.asarray(x)
    return np.stack([x.real, x.imag], -1) if np.iscomplexobj(x) else x


def errors(name, ours, theirs):
    """``{what: relative error}`` over the params and every buffer torch keeps per param, floored
    at the trajectory floor of the params' precision (``tests.parity.trajectory_floor``)."""
    (params, state), (torch_params, torch_state) = ours, theirs
    found = {}
    for leaf, expected in torch_params.items():
        floor = trajectory_floor(
            "x64" if np.asarray(expected).dtype.itemsize * (1 + (not np.iscomplexobj(expected))) >= 16 else "f32"
        )
        found[f"param {leaf}"] = relative_error(real_view(params[leaf]), real_view(expected), floor=floor)
        for field in state._fields[2:]:
            mine, expected = getattr(state, field), torch_state[leaf].get(field)
            mine = mine.get(leaf) if isinstance(mine, dict) else mine
            if expected is None or mine is None or np.shape(mine) != np.shape(expected):
                continue
            found[f"{field} {leaf}"] = relative_error(real_view(mine), real_view(expected), floor=floor)
    return found


# ---- kwarg combinations -------------------------------------------------------------------------

LBFGS_F32 = (
    "LBFGS in float32 is proven in test_lbfgs.py with at most 3 inner iterations a step: "
    "over torch's default 20, float32 rounding on each side grows by the conditioning "
    "at every iteration, as torch's own does under a one-ulp change of the start"
)
CASES = [
    (name, i, precision)
    for name in TWINS
    for i in range(len(combinations(name)))
    for precision in ("x64", "f32")
    if not (name == "LBFGS" and precision == "f32")
]  # LBFGS_F32


# the default run; nightly: the others too, and Muon's (48 s: its Newton-Schulz sums in torch's
# order; tests/optim/test_muon.py runs torch's Muon by default)
EVERY_OTHER = [case for case in CASES if case[1] % 2 == 0 and case[0] != "Muon"]


@pytest.mark.parametrize("name, index, precision", EVERY_OTHER, ids=[f"{n}-{i}-{p}" for n, i, p in EVERY_OTHER])
def test_combination_matches_torch(name, index, precision):
    with jax.enable_x64(precision == "x64"):
        combination_matches_torch(name, index, precision)


OTHERS = [case for case in CASES if case not in EVERY_OTHER]


@pytest.mark.nightly
@pytest.mark.parametrize("name, index, precision", OTHERS, ids=[f"{n}-{i}-{p}" for n, i, p in OTHERS])
def test_other_combination_matches_torch(name, index, precision):
    with jax.enable_x64(precision == "x64"):
        combination_matches_torch(name, index, precision)


def combination_matches_torch(name, index, precision):
    combination = combinations(name)[index]
    x64 = precision == "x64"
    data = problem(name, x64)
    if not with_complex(name, combination.kwargs):  # torch's fused kernels refuse complex params
        data = tuple({leaf: x for leaf, x in part.items() if leaf not in COMPLEX_SHAPES} for part in data)
    with torch_dtype(x64):
        theirs = run_torch(name, combination.kwargs, *data)
    found = errors(name, purelr_results(name, x64)[index], theirs)
    over = {what: error for what, error in found.items() if not error <= bound(name, combination, precision, what)}
    assert not over, f"{name} {combination.desc} {combination.kwargs}: {over}"


# ---- error inputs -------------------------------------------------------------------------------

FOREACH_ONLY = ("foreach", "both floats or both Tensors")


def classify(name, error_input):
    """``"refused"`` (purelr must refuse it) or the reason it is not covered."""
    given = error_input.optimizer_error_input
    if name not in TWINS:
        return "not twinned"
    if given.kwargs:
        return "torch's foreach kernels" if any(m in given.desc for m in FOREACH_ONLY) else "refused"
    params = given.params if isinstance(given.params, list) else []
    if len(params) == 1 and isinstance(params[0], torch.Tensor) and (params[0].is_complex() or params[0].ndim != 2):
        return "refused"  # a param the optimizer cannot step: refused at init
    return "torch's params argument"


def refusal(name, error_input):
    """Calls the twin as torch was called; returns the message of the error it raises."""
    given = error_input.optimizer_error_input
    kwargs = {k: to_purelr(v) for k, v in given.kwargs.items()}
    optimizer_params = given.params
    with pytest.raises((ValueError, TypeError)) as raised:
        optimizer = TWINS[name](**kwargs)
        if optimizer_params is not None:
            optimizer.init({f"p{i}": jnp.asarray(p.detach().numpy()) for i, p in enumerate(optimizer_params)})
    return str(raised.value)


def needles(error_input):
    """What the message must name: the argument and its value (a shape for a Tensor), or for a
    param the problem (its shape, or "complex")."""
    given = error_input.optimizer_error_input
    if not given.kwargs:
        (param,) = given.params
        return ["p0", "complex" if param.is_complex() else str(tuple(param.shape))]
    arg, value = list(given.kwargs.items())[-1]
    if isinstance(value, torch.Tensor):
        return [arg, str(tuple(value.shape))]
    if isinstance(value, tuple):
        bad = next(i for i, v in enumerate(value) if refused_alone(arg, value, i))
        return [arg, repr(value[bad])]
    return [arg, repr(value) if isinstance(value, str) else str(value)]


def refused_alone(arg, value, index):
    """Whether element ``index`` of a tuple argument is the one out of range (torch's bounds)."""
    x = value[index]
    return x is not None and (x < 0 or (arg == "betas" and x >= 1) or (arg == "etas" and index == 0 and x >= 1))


ERROR_CASES = [(name, i) for name in INFOS for i in range(len(error_inputs(name)))]


@pytest.mark.parametrize("name, index", ERROR_CASES, ids=[f"{n}-{i}" for n, i in ERROR_CASES])
def test_error_input(name, index):
    error_input = error_inputs(name)[index]
    if classify(name, error_input) != "refused":
        return
    message = refusal(name, error_input)
    missing = [n for n in needles(error_input) if n not in message]
    assert not missing, f"{error_input.optimizer_error_input.desc}: {message!r} does not name {missing}"


# ---- counts -------------------------------------------------------------------------------------


def counts():
    table = {}
    for name in INFOS:
        kwargs = [c.kwargs for c in combinations(name)]
        total, run = len(kwargs), len(kwargs) if name in TWINS else 0
        complex_total = sum(complex_in_torch(name, k) for k in kwargs)
        complex_run = sum(with_complex(name, k) for k in kwargs)
        kinds = [classify(name, e) for e in error_inputs(name)]
        table[name] = (run, total, complex_run, complex_total, kinds.count("refused"), len(kinds))
    return table


EXPECTED = {
    "Adadelta": (12, 12, 12, 12, 2, 7),
    "Adafactor": (5, 5, 0, 0, 5, 10),
    "Adagrad": (21, 21, 14, 14, 2, 7),
    "Adam": (15, 15, 10, 10, 3, 12),
    "AdamW": (15, 15, 10, 10, 3, 12),
    "Adamax": (10, 10, 10, 10, 2, 7),
    "ASGD": (14, 14, 14, 14, 2, 7),
    "LBFGS": (5, 5, 0, 5, 1, 6),
    "Muon": (7, 7, 0, 0, 4, 9),
    "NAdam": (14, 14, 14, 14, 3, 8),
    "RAdam": (12, 12, 12, 12, 3, 8),
    "RMSprop": (16, 16, 16, 16, 2, 7),
    "Rprop": (10, 10, 10, 10, 2, 7),
    "SGD": (27, 27, 18, 18, 2, 7),
    "SparseAdam": (0, 4, 0, 0, 0, 10),
}
NOT_COVERED = {
    "not twinned": 10,
    "torch's params argument": 70,
    "torch's foreach kernels": 8,
}


def test_counts():
    """The table of the module docstring, and the reasons for what is not covered."""
    assert counts() == EXPECTED
    reasons = {}
    for name in INFOS:
        for error_input in error_inputs(name):
            kind = classify(name, error_input)
            reasons[kind] = reasons.get(kind, 0) + 1
    reasons.pop("refused")
    assert reasons == NOT_COVERED


# ---- low precision ------------------------------------------------------------------------------

LOW_STEPS = 5
LOW_TWINS = [name for name in TWINS if name not in ("LBFGS", "Muon")]
# Largest error allowed, in units of the dtype's machine epsilon relative to the leaf's scale.
# torch rounds every elementwise op to the param's dtype; XLA computes the twin's step in float32
# (the hyperparameters are float32 scalars) and rounds once. Measured worst over 5 steps of
# torch's combinations: 1.0 ulp (bfloat16), 2.3 ulps (float16, ASGD); float32 params with
# bfloat16 gradients: 2.7e-7 relative.
LOW_ULPS = 4


def low_precision_run(name, kwargs, param_dtype, grad_dtype):
    """``(purelr params, torch params)`` after ``LOW_STEPS`` steps: params in ``param_dtype``,
    gradients ``c * (p - target_k)`` formed in float32 on both sides and rounded once to
    ``grad_dtype`` (torch: then to the param's dtype, as ``p.grad`` must have it)."""
    rng = np.random.default_rng(11)
    shapes = {"vector": (6,), "matrix": (3, 4)}
    start = {leaf: rng.normal(size=shape).astype(np.float32) for leaf, shape in shapes.items()}
    targets = {leaf: rng.normal(size=(LOW_STEPS,) + shape).astype(np.float32) for leaf, shape in shapes.items()}
    curvature = {leaf: rng.uniform(0.2, 2.0, shape).astype(np.float32) for leaf, shape in shapes.items()}
    jax_dtype, jax_grad = jnp.dtype(param_dtype), jnp.dtype(grad_dtype)
    optimizer = TWINS[name](**{k: to_purelr(v) for k, v in kwargs.items()})

    def step(carry, target):
        params, state = carry
        grads = jax.tree.map(
            lambda c, p, t: (c * (p.astype(jnp.float32) - t)).astype(jax_grad), curvature, params, target
        )
        updates, state = optimizer.update(grads, state, params)
        return (optax.apply_updates(params, updates), state), None

    params = {leaf: jnp.asarray(x).astype(jax_dtype) for leaf, x in start.items()}
    ours = jax.jit(lambda p, t: jax.lax.scan(step, (p, optimizer.init(p)), t)[0][0])(params, targets)
    torch_dtype_, torch_grad = getattr(torch, param_dtype), getattr(torch, grad_dtype)
    theirs = {leaf: torch.tensor(x).to(torch_dtype_) for leaf, x in sorted(start.items())}
    torch_optimizer = getattr(torch.optim, name)(list(theirs.values()), **copy.deepcopy(kwargs))
    for k in range(LOW_STEPS):
        for leaf, p in theirs.items():
            g = torch.tensor(curvature[leaf]) * (p.float() - torch.tensor(targets[leaf][k]))
            p.grad = g.to(torch_grad).to(torch_dtype_)
        torch_optimizer.step()
    return (
        {leaf: np.asarray(x.astype(jnp.float32)) for leaf, x in ours.items()},
        {leaf: p.float().numpy() for leaf, p in theirs.items()},
    )


def low_combinations(name, dtype):
    """torch's own combinations for this dtype (Adam's eps becomes 0.1 in float16), without the
    implementation flags."""
    return [c.kwargs for c in INFOS[name].optim_inputs_func("cpu", dtype=getattr(torch, dtype))]


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("name", LOW_TWINS)
def test_low_precision_params_step_as_torch(name, dtype):
    """Params (and so buffers) in bfloat16 / float16, within ``LOW_ULPS`` of the dtype."""
    eps = float(jnp.finfo(jnp.dtype(dtype)).eps)
    for kwargs in low_combinations(name, dtype):
        if isinstance(kwargs.get("lr"), torch.Tensor):
            continue  # a float32 Tensor lr: the same number as the float case above
        with jax.enable_x64(False):
            ours, theirs = low_precision_run(name, kwargs, dtype, dtype)
        for leaf in theirs:
            ulps = relative_error(ours[leaf], theirs[leaf]) / eps
            assert ulps <= LOW_ULPS, f"{name} {dtype} {kwargs} {leaf}: {ulps:.3g} ulps"


@pytest.mark.parametrize("name", LOW_TWINS)
def test_float32_params_with_bfloat16_grads(name):
    """float32 params given bfloat16 gradients: buffers and params stay float32 and match torch
    (whose ``p.grad`` holds the bfloat16 values in float32) within the float32 bound."""
    for kwargs in low_combinations(name, "float32"):
        with jax.enable_x64(False):
            ours, theirs = low_precision_run(name, kwargs, "float32", "bfloat16")
        for leaf in theirs:
            assert ours[leaf].dtype == np.float32
            assert relative_error(ours[leaf], theirs[leaf]) <= OPTIMIZER_RTOL["f32"], (name, kwargs, leaf)
