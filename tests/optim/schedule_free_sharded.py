"""Schedule-Free with its params sharded over 8 host devices, against one device (run by
``tests/optim/test_schedule_free.py`` in a fresh process: ``XLA_FLAGS`` must be set before jax
starts). Prints one JSON line: per run, the largest relative error of the params, the eval params
and the state's ``z`` against the one-device run, and how many state leaves carry their param's
sharding.

A two-layer tanh MLP, the hidden layer split by columns and the output layer by rows over a
``("model",)`` mesh of 8 devices (``jax.sharding.NamedSharding``), x64, 100 jitted updates under
``lax.scan``: ``adamw_schedule_free`` in two groups (``optax.multi_transform``) and
``sgd_schedule_free_closure`` (its gradient at ``schedule_free_train_params``).
"""

import json
import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax.sharding import Mesh, NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

from purelr.optim import schedule_free as sf  # noqa: E402
from purelr.optim import schedule_free_closure as sfc  # noqa: E402
from tests.parity import relative_error  # noqa: E402

STEPS = 100
SPECS = {"hidden": {"kernel": P(None, "model"), "bias": P("model")}, "out": {"kernel": P("model", None), "bias": P()}}
RUNS = {
    "adamw_schedule_free": (
        lambda: optax.multi_transform(
            {
                "hidden": sf.adamw_schedule_free(0.02, warmup_steps=10, weight_decay=0.01, r=1.0),
                "out": sf.adamw_schedule_free(0.005, betas=(0.95, 0.99), weight_lr_power=1.0),
            },
            {"hidden": {"kernel": "hidden", "bias": "hidden"}, "out": {"kernel": "out", "bias": "out"}},
        ),
        False,
    ),
    "sgd_schedule_free_closure": (lambda: sfc.sgd_schedule_free_closure(0.1, warmup_steps=10, weight_decay=1e-3), True),
}


def problem():
    rng = np.random.default_rng(24)
    params = {
        "hidden": {"kernel": rng.normal(0, 0.3, (16, 64)), "bias": rng.normal(0, 0.1, 64)},
        "out": {"kernel": rng.normal(0, 0.2, (64, 8)), "bias": rng.normal(0, 0.1, 8)},
    }
    x = rng.normal(size=(STEPS, 32, 16))
    y = np.tanh(x @ rng.normal(size=(16, 8)))
    return jax.tree.map(jnp.asarray, params), jnp.asarray(x), jnp.asarray(y)


def loss(params, x, y):
    hidden = jnp.tanh(x @ params["hidden"]["kernel"] + params["hidden"]["bias"])
    return jnp.mean((hidden @ params["out"]["kernel"] + params["out"]["bias"] - y) ** 2)


def train(optimizer, closure, params, xs, ys):
    def step(carry, batch):
        params, state = carry
        at = sf.schedule_free_train_params(state, params) if closure else params
        updates, state = optimizer.update(jax.grad(loss)(at, *batch), state, params)
        return (optax.apply_updates(params, updates), state), None

    (params, state), _ = jax.lax.scan(step, (params, optimizer.init(params)), (xs, ys))
    return params, state, sf.schedule_free_eval_params(state, params)


def is_state(value):
    return isinstance(value, sf.STATES)


def main():
    jax.config.update("jax_enable_x64", True)
    assert jax.device_count() == 8, jax.devices()
    mesh = Mesh(np.array(jax.devices()), ("model",))
    shardings = jax.tree.map(lambda spec: NamedSharding(mesh, spec), SPECS)
    params, xs, ys = problem()
    out = dict(devices=jax.device_count())
    for name, (make, closure) in RUNS.items():
        optimizer = make()
        run = jax.jit(lambda p, x, y: train(optimizer, closure, p, x, y))
        one = run(params, xs, ys)
        many = run(jax.device_put(params, shardings), xs, ys)
        z_one, z_many = ([s.z for s in jax.tree.leaves(r[1], is_leaf=is_state) if is_state(s)] for r in (one, many))
        treedef = jax.tree.structure(params)
        placed = [
            leaf.sharding.is_equivalent_to(sharding, leaf.ndim)
            for z in z_many
            for leaf, sharding in zip(treedef.flatten_up_to(z), treedef.flatten_up_to(shardings))
            if leaf is not None
        ]
        errors = {
            what: max(relative_error(a, b) for a, b in zip(jax.tree.leaves(x), jax.tree.leaves(y)))
            for what, x, y in (("params", many[0], one[0]), ("eval", many[2], one[2]), ("z", z_many, z_one))
        }
        split = sum(not leaf.sharding.is_fully_replicated for leaf in jax.tree.leaves(many[0]))
        out[name] = dict(errors, z_placed=sum(placed), z_leaves=len(placed), split_params=split)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
