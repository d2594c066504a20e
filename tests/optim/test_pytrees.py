"""Updates work on any pytree: a flax linen params dict and an nnx State give the dict's numbers."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import purelr.optim as optim

OPTIMIZERS = {
    "sgd": lambda: optim.sgd(0.1, momentum=0.9, weight_decay=1e-4, nesterov=True),
    "adamw": lambda: optim.adamw(1e-3, amsgrad=True),
    "rmsprop": lambda: optim.rmsprop(1e-3, momentum=0.5, centered=True),
    "adafactor": lambda: optim.adafactor(1e-2),
    "clip_then_adam": lambda: optax.chain(optim.clip_grad_norm(1.0), optim.adam(1e-3, weight_decay=0.01)),
}


def run(transform, params, grads, steps=3):
    @jax.jit
    def step(params, state):
        updates, state = transform.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    state = transform.init(params)
    for _ in range(steps):
        params, state = step(params, state)
    return params


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_linen_params_and_nnx_state_match_plain_dicts(name):
    model = nn.Sequential([nn.Dense(5), nn.LayerNorm(), nn.Dense(3)])
    linen_params = model.init(jax.random.key(0), jnp.ones((2, 4)))["params"]
    grads = jax.tree.map(lambda p: jnp.sin(jnp.arange(p.size, dtype=p.dtype).reshape(p.shape)), linen_params)
    as_dict = jax.tree.map(np.asarray, linen_params)
    expected = run(OPTIMIZERS[name](), as_dict, jax.tree.map(np.asarray, grads))
    np.testing.assert_equal(jax.tree.map(np.asarray, run(OPTIMIZERS[name](), linen_params, grads)), expected)

    linear = nnx.Linear(4, 3, rngs=nnx.Rngs(0))
    state = nnx.state(linear, nnx.Param)
    nnx_grads = jax.tree.map(lambda p: jnp.cos(p), state)
    plain = run(
        OPTIMIZERS[name](),
        jax.tree.map(np.asarray, state.to_pure_dict()),
        jax.tree.map(np.asarray, nnx_grads.to_pure_dict()),
    )
    updated = run(OPTIMIZERS[name](), state, nnx_grads)
    np.testing.assert_equal(jax.tree.map(np.asarray, updated.to_pure_dict()), plain)
