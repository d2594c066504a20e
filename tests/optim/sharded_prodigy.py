"""A Prodigy run with params sharded over 8 host devices against the same run on one device
(``tests/optim/test_prodigy.py`` starts it in a fresh process, ``XLA_FLAGS`` set before jax
loads). Prints one JSON line: the device count, the largest relative difference of the final
params and of ``d``, and how many state leaves are split over the devices."""

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()

import json  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec  # noqa: E402

from purelr.optim import prodigy  # noqa: E402

STEPS = 60


def problem():
    rng = np.random.default_rng(0)
    shapes = dict(w1=(64, 24), b1=(24,), w2=(24, 16), b2=(16,), scale=(3,))
    params = {k: rng.normal(0, 0.5, s) for k, s in shapes.items()}
    targets = {k: rng.normal(0, 1, (STEPS,) + s) for k, s in shapes.items()}
    return params, targets


def run(params, targets):
    optimizer = prodigy(
        weight_decay=0.01,
        use_bias_correction=True,
        slice_p=3,
        groups={"decay": {}, "no_decay": {"weight_decay": 0.0, "eps": 1e-6}},
        param_labels=lambda p: {k: "decay" if k.startswith("w") else "no_decay" for k in p},
    )

    def step(carry, target):
        params, state = carry
        grads = jax.grad(lambda p: sum(jnp.sum((p[k] - target[k]) ** 2 * (1 + jnp.abs(p[k]))) for k in p))(params)
        updates, state = optimizer.update(grads, state, params)
        return (optax.apply_updates(params, updates), state), None

    (params, state), _ = jax.lax.scan(step, (params, optimizer.init(params)), targets)
    return params, state


def main():
    jax.config.update("jax_enable_x64", True)
    params, targets = problem()
    single = jax.jit(run)(params, targets)
    mesh = Mesh(np.array(jax.devices()), ("d",))
    spec = {k: PartitionSpec("d") if p.shape[0] % 8 == 0 else PartitionSpec() for k, p in params.items()}
    sharded_params = {k: jax.device_put(p, NamedSharding(mesh, spec[k])) for k, p in params.items()}
    sharded = jax.jit(run)(sharded_params, targets)
    split = sum(
        1
        for leaf in jax.tree.leaves(sharded[1])
        if isinstance(leaf, jax.Array) and len(leaf.sharding.device_set) == 8 and not leaf.sharding.is_fully_replicated
    )

    def rel(a, b):
        return float(np.max(np.abs(np.asarray(a) - np.asarray(b)) / np.maximum(np.abs(np.asarray(b)), 1e-300)))

    print(
        json.dumps(
            dict(
                devices=jax.device_count(),
                split_state_leaves=split,
                split_params=sum(not p.sharding.is_fully_replicated for p in jax.tree.leaves(sharded[0])),
                params=max(rel(sharded[0][k], single[0][k]) for k in params),
                d=rel(sharded[1].d, single[1].d),
                d_value=float(single[1].d),
            )
        )
    )


if __name__ == "__main__":
    main()
