"""Parity of purelr.optim.fused_adam with DeepSpeed 0.19.8's FusedAdam over 100 updates.

DeepSpeed's FusedAdam runs a CUDA kernel (``csrc/adam/multi_tensor_adam.cu``) or, on CPU, a C++
extension built on first use (``csrc/cpu/adam/fused_adam.cpp`` over ``csrc/adam/cpu_adam_impl.cpp``,
float32 only, about two minutes to compile): that one is run with ``-m nightly``. The default suite
holds the twin to torch's class of the same arithmetic, side by side: ``torch.optim.AdamW``
(``adam_w_mode``) or ``torch.optim.Adam`` (L2), with ``bias_correction`` (x64 1e-10, float32 1e-5);
without bias correction, which torch has no flag for, to the kernel's formula in float64 numpy
(``multi_tensor_adam.cu``: ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g g``,
``update = (m / bc1) / (sqrt(v / bc2) + eps) (+ wd p)``, ``p -= lr update``, bc = 1).
The problem: a quadratic with a moving target, its gradient computed elementwise on each side.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from purelr import optim
from tests.parity import OPTIMIZER_RTOL, relative_error, trajectory_floor

UPDATES = 100
SHAPES = {"a": (3, 4), "b": (5,)}
CASES = {"x64": 16, "f32": 6}


def _problem(seed):
    rng = np.random.default_rng(seed)
    start = {n: rng.normal(size=s) for n, s in SHAPES.items()}
    targets = {n: rng.normal(size=(UPDATES,) + s) for n, s in SHAPES.items()}
    curvature = {n: rng.uniform(0.2, 3.0, size=s) for n, s in SHAPES.items()}
    return start, targets, curvature


def _draw(rng):
    return dict(
        lr=float(rng.choice([1e-3, rng.uniform(1e-4, 3e-2)])),
        betas=(float(rng.uniform(0.5, 0.95)), float(rng.choice([0.999, rng.uniform(0.9, 0.9999)]))),
        eps=float(rng.choice([1e-8, 1e-6, rng.uniform(1e-10, 1e-3)])),
        weight_decay=float(rng.choice([0.0, 0.01, rng.uniform(0, 0.3)])),
        adam_w_mode=bool(rng.integers(2)),
    )


def purelr_run(kwargs, problem, dtype, optimizer=optim.fused_adam):
    """The params after each update, ``jax.jit`` around a ``lax.scan`` of ``UPDATES`` updates."""
    start, targets, curvature = problem
    transform = optimizer(**kwargs)

    @jax.jit
    def run(params, targets):
        def step(carry, target):
            params, state = carry
            grads = jax.tree.map(lambda c, p, t: c * (p - t), curvature, params, target)
            updates, state = transform.update(grads, state, params)
            params = jax.tree.map(lambda p, u: p + u, params, updates)
            return (params, state), params

        return jax.lax.scan(step, (params, transform.init(params)), targets)[1]

    cast = lambda tree: jax.tree.map(lambda x: jnp.asarray(x, dtype), tree)
    return jax.tree.map(np.asarray, run(cast(start), cast(targets)))


def torch_run(kwargs, problem, dtype, optimizer=None):
    """The same with ``optimizer(params, **kwargs)`` (torch's Adam / AdamW by default)."""
    start, targets, curvature = problem
    kwargs = dict(kwargs)
    adam_w_mode = kwargs.pop("adam_w_mode", True)
    kwargs.pop("bias_correction", None)
    if optimizer is None:
        optimizer = torch.optim.AdamW if adam_w_mode else torch.optim.Adam
    else:
        kwargs["adam_w_mode"] = adam_w_mode
    params = {n: torch.tensor(v, dtype=dtype, requires_grad=True) for n, v in start.items()}
    opt = optimizer(list(params.values()), **kwargs)
    out = {n: [] for n in SHAPES}
    for k in range(UPDATES):
        for n, p in params.items():
            p.grad = torch.tensor(curvature[n], dtype=dtype) * (p.detach() - torch.tensor(targets[n][k], dtype=dtype))
        opt.step()
        for n, p in params.items():
            out[n].append(p.detach().numpy().copy())
    return {n: np.stack(v) for n, v in out.items()}


def numpy_run(step, problem):
    """The params after each update of ``step(p, g, m, v, t) -> (p, m, v)``, one tensor at a time, in
    float64 numpy from zero moments."""
    start, targets, curvature = problem
    params = {n: v.copy() for n, v in start.items()}
    moments = {n: (np.zeros_like(v), np.zeros_like(v)) for n, v in start.items()}
    out = {n: [] for n in SHAPES}
    for k in range(UPDATES):
        for n in SHAPES:
            g = curvature[n] * (params[n] - targets[n][k])
            params[n], *moment = step(params[n], g, *moments[n], k + 1)
            moments[n] = tuple(moment)
            out[n].append(params[n].copy())
    return {n: np.stack(x) for n, x in out.items()}


def kernel_run(kwargs, problem):
    """``multi_tensor_adam.cu``'s formula in float64 numpy, bias correction off."""
    beta1, beta2 = kwargs["betas"]

    def step(p, g, m, v, t):
        if not kwargs["adam_w_mode"]:
            g = g + kwargs["weight_decay"] * p
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        update = m / (np.sqrt(v) + kwargs["eps"])
        if kwargs["adam_w_mode"]:
            update = update + kwargs["weight_decay"] * p
        return p - kwargs["lr"] * update, m, v

    return numpy_run(step, problem)


def _compare(ours, want, precision, context):
    worst = 0.0
    for n in SHAPES:
        error = relative_error(ours[n], want[n], floor=trajectory_floor(precision))
        assert error <= OPTIMIZER_RTOL[precision], f"{context} {n}: {error:.3g}"
        worst = max(worst, error)
    return worst


def test_against_torch(precision):
    """``bias_correction=True``: torch's AdamW (``adam_w_mode``) / Adam, seeded random arguments."""
    rng = np.random.default_rng(7)
    dtype = (jnp.float64, torch.float64) if precision == "x64" else (jnp.float32, torch.float32)
    worst = 0.0
    for case in range(CASES[precision]):
        kwargs, problem = _draw(rng), _problem(case)
        worst = max(
            worst,
            _compare(
                purelr_run(kwargs, problem, dtype[0]),
                torch_run(kwargs, problem, dtype[1]),
                precision,
                f"#{case} {kwargs}",
            ),
        )
    print(f"fused_adam vs torch {precision}: worst {worst:.3g}")


def test_without_bias_correction(precision):
    """``bias_correction=False`` (BingBertSquad's config): the kernel's formula, float64."""
    rng = np.random.default_rng(11)
    dtype = jnp.float64 if precision == "x64" else jnp.float32
    for case in range(4):
        kwargs, problem = _draw(rng), _problem(100 + case)
        ours = purelr_run(dict(kwargs, bias_correction=False), problem, dtype)
        _compare(ours, kernel_run(kwargs, problem), precision, f"#{case} {kwargs}")


def test_bad_input():
    with pytest.raises(ValueError, match="FusedAdam does not support amsgrad"):
        optim.fused_adam(amsgrad=True)
    with pytest.raises(TypeError, match="bias_correction must be True or False"):
        optim.fused_adam(bias_correction=1)
    with pytest.raises(ValueError, match=r"betas\[0\]"):
        optim.fused_adam(betas=(1.0, 0.999))


@pytest.mark.nightly
def test_against_deepspeed_cpu_fused_adam():
    """DeepSpeed's own FusedAdam on CPU (its C++ extension, built on first use), float32, with and
    without bias correction, both modes: 1e-5."""
    from deepspeed.ops.adam import FusedAdam

    rng = np.random.default_rng(13)
    for case in range(12):
        kwargs = dict(_draw(rng), bias_correction=bool(case % 3))
        problem = _problem(200 + case)
        with jax.enable_x64(False):
            ours = purelr_run(kwargs, problem, jnp.float32)
        want = torch_run(
            dict(kwargs),
            problem,
            torch.float32,
            optimizer=lambda p, **kw: FusedAdam(p, bias_correction=kwargs["bias_correction"], **kw),
        )
        _compare(ours, want, "f32", f"#{case} {kwargs}")
