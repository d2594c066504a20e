import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from purelr.optim import clip_grad_norm, clip_grad_value
from tests.optim.torch_reference import torch_dtype
from tests.parity import OPTIMIZER_RTOL, relative_error


def random_tree(seed):
    rng = np.random.default_rng(seed)
    scale = 10.0 ** rng.uniform(-3, 2)
    return {"a": rng.normal(0, scale, (3, 4)), "b": {"c": rng.normal(0, scale, 5), "d": rng.normal(0, scale, ())}}


def torch_clipped(tree, clip):
    leaves = jax.tree.leaves(tree)
    tensors = [torch.nn.Parameter(torch.zeros(np.shape(g), dtype=torch.get_default_dtype())) for g in leaves]
    for t, g in zip(tensors, leaves):
        t.grad = torch.tensor(np.asarray(g), dtype=torch.get_default_dtype())
    result = clip(tensors)
    return jax.tree.unflatten(jax.tree.structure(tree), [t.grad.numpy() for t in tensors]), result


@pytest.mark.parametrize("norm_type", [1.0, 2.0, 3.0, math.inf])
@pytest.mark.parametrize("seed", range(6))
def test_clip_grad_norm_matches_torch(precision, norm_type, seed):
    tree = random_tree(seed)
    max_norm = float(np.random.default_rng(seed).choice([0.01, 0.5, 1.0, 1e3]))
    grads = jax.tree.map(jnp.asarray, tree)
    transform = clip_grad_norm(max_norm, norm_type)
    clipped, state = jax.jit(transform.update)(grads, transform.init(grads))
    with torch_dtype(precision == "x64"):
        expected, total = torch_clipped(
            tree, lambda ps: torch.nn.utils.clip_grad_norm_(ps, max_norm, norm_type, foreach=False)
        )
    rtol = OPTIMIZER_RTOL[precision]
    assert relative_error(state.total_norm, total) <= rtol
    for a, e in zip(jax.tree.leaves(clipped), jax.tree.leaves(expected)):
        assert a.dtype == grads["a"].dtype and relative_error(a, e) <= rtol


@pytest.mark.parametrize("seed", range(4))
def test_clip_grad_value_matches_torch(precision, seed):
    tree = random_tree(seed)
    clip_value = float(np.median(np.abs(tree["a"])))
    clipped, _ = jax.jit(clip_grad_value(clip_value).update)(jax.tree.map(jnp.asarray, tree), None)
    with torch_dtype(precision == "x64"):
        expected, _ = torch_clipped(tree, lambda ps: torch.nn.utils.clip_grad_value_(ps, clip_value))
    for a, e in zip(jax.tree.leaves(clipped), jax.tree.leaves(expected)):
        assert relative_error(a, e) <= OPTIMIZER_RTOL[precision]


def test_error_if_nonfinite_raises_eagerly_and_scales_as_torch_under_jit():
    grads = {"a": jnp.array([1.0, jnp.inf]), "b": jnp.ones(2)}
    transform = clip_grad_norm(1.0, error_if_nonfinite=True)
    with pytest.raises(RuntimeError, match="non-finite"):
        transform.update(grads, transform.init(grads))
    clipped, state = jax.jit(transform.update)(grads, transform.init(grads))
    assert np.isinf(state.total_norm) and np.all(clipped["b"] == 0) and np.isnan(clipped["a"][1])
    nan_grads = {"a": jnp.array([1.0, jnp.nan]), "b": jnp.ones(2)}
    clipped, _ = clip_grad_norm(1.0).update(nan_grads, transform.init(grads))  # torch's default: no error
    assert np.isnan(clipped["b"]).all()


def test_bad_arguments():
    with pytest.raises(TypeError, match="max_norm"):
        clip_grad_norm("1")
    with pytest.raises(ValueError, match="clip_value"):
        clip_grad_value(float("nan"))
