import jax
import jax.numpy as jnp
import numpy as np
import optax

from purelr.optim import adam, skip_nonfinite


def test_skips_nonfinite_steps_and_keeps_the_inner_state():
    params = {"w": jnp.ones(3), "nested": {"b": jnp.zeros(2)}}
    optimizer = skip_nonfinite(adam(lr=lambda count: 0.1 / (count + 1.0)))
    state = optimizer.init(params)
    update = jax.jit(optimizer.update)
    good = jax.tree.map(jnp.ones_like, params)
    bad = {"w": jnp.array([1.0, jnp.nan, 1.0]), "nested": {"b": jnp.ones(2)}}
    for _ in range(1000):  # more non-finite steps in a row than optax's default allows (5)
        updates, state = update(bad, state, params)
        assert all(np.all(np.asarray(u) == 0) for u in jax.tree.leaves(updates))
    assert int(state.inner_state.count) == 0 and int(state.total_notfinite) == 1000
    updates, state = update(good, state, params)
    reference, _ = adam(lr=lambda count: 0.1 / (count + 1.0)).update(good, adam(lr=0.1).init(params), params)
    assert int(state.inner_state.count) == 1
    for a, e in zip(jax.tree.leaves(updates), jax.tree.leaves(reference)):
        np.testing.assert_allclose(a, e, rtol=1e-6)
    assert float(state.inner_state.hyperparams["lr"]) == np.float32(0.1)
    optax.apply_updates(params, updates)
