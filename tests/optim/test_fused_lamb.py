"""Parity of purelr.optim.fused_lamb with DeepSpeed 0.19.8's FusedLamb over 100 updates.

FusedLamb runs only as a CUDA kernel (DeepSpeed has no CPU build of it), so the reference is the
kernel's arithmetic (``csrc/lamb/fused_lamb_cuda_kernel.cu``, ``lamb_cuda_kernel_part1`` to
``part3`` and ``fused_lamb_cuda``) written out in float64 numpy, ``kernel_step``; float32 twins
are held to it at 1e-5, x64 ones at 1e-10, on seeded random arguments, jitted (``lax.scan``).
"""

import jax.numpy as jnp
import numpy as np
import pytest

from purelr import optim
from tests.optim.test_fused_adam import _compare, _problem, numpy_run, purelr_run

CASES = {"x64": 16, "f32": 6}


def kernel_step(
    p, g, m, v, t, lr, beta1, beta2, eps, eps_inside_sqrt, weight_decay, max_coeff, min_coeff, bias_correction
):
    """One FusedLamb step of one tensor: ``(p, m, v)`` after it."""
    step_size = lr * np.sqrt(1 - beta2**t) / (1 - beta1**t) if bias_correction else lr
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    denom = np.sqrt(v + eps) if eps_inside_sqrt else np.sqrt(v) + eps
    update = m / denom + weight_decay * p
    w_norm, u_norm = np.sqrt(np.sum(p * p)), np.sqrt(np.sum(update * update))
    coeff = 1.0
    if w_norm != 0 and u_norm != 0:
        coeff = min(max(w_norm / u_norm, min_coeff), max_coeff)
    return p - step_size * coeff * update, m, v


def kernel_run(kwargs, problem):
    args = dict(kwargs)
    beta1, beta2 = args.pop("betas")
    return numpy_run(lambda p, g, m, v, t: kernel_step(p, g, m, v, t, beta1=beta1, beta2=beta2, **args), problem)


def _draw(rng):
    return dict(
        lr=float(rng.uniform(1e-4, 2e-2)),
        betas=(float(rng.uniform(0.5, 0.95)), float(rng.choice([0.999, rng.uniform(0.9, 0.9999)]))),
        eps=float(rng.choice([1e-8, 1e-6, rng.uniform(1e-10, 1e-3)])),
        eps_inside_sqrt=bool(rng.integers(2)),
        weight_decay=float(rng.choice([0.0, 0.01, rng.uniform(0, 0.3)])),
        max_coeff=float(rng.choice([10.0, 0.3, rng.uniform(0.05, 2.0)])),
        min_coeff=float(rng.choice([0.01, rng.uniform(0.0, 0.05)])),
        bias_correction=bool(rng.integers(2)),
    )


def test_against_the_kernel(precision):
    rng = np.random.default_rng(17)
    dtype = jnp.float64 if precision == "x64" else jnp.float32
    worst = 0.0
    for case in range(CASES[precision]):
        kwargs, problem = _draw(rng), _problem(300 + case)
        worst = max(
            worst,
            _compare(
                purelr_run(kwargs, problem, dtype, optim.fused_lamb),
                kernel_run(kwargs, problem),
                precision,
                f"#{case} {kwargs}",
            ),
        )
    print(f"fused_lamb vs the kernel {precision}: worst {worst:.3g}")


def test_zero_params_take_an_unscaled_step(precision):
    """A zero tensor has ``||param|| = 0``: the coefficient is 1, not ``min_coeff``."""
    transform = optim.fused_lamb(lr=0.1, min_coeff=0.5, max_coeff=0.6)
    params = {"w": jnp.zeros(3)}
    updates, _ = transform.update({"w": jnp.ones(3)}, transform.init(params), params)
    assert np.allclose(updates["w"], -0.1 * np.sqrt(1 - 0.999) / (1 - 0.9) * 0.1 / (np.sqrt(0.001) + 1e-8))


def test_bad_input():
    with pytest.raises(ValueError, match="max_grad_norm=1.0: FusedLamb clips only"):
        optim.fused_lamb(max_grad_norm=1.0)
    with pytest.raises(ValueError, match="FusedLamb does not support amsgrad"):
        optim.fused_lamb(amsgrad=True)
    with pytest.raises(TypeError, match="eps_inside_sqrt must be True or False"):
        optim.fused_lamb(eps_inside_sqrt="yes")
