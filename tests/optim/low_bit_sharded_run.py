"""Low-bit AdamW on 8 host devices, a leaf split along its first axis (``test_adam_low_bit``): for
each format, the number of all-gathers in the compiled update and its temporaries (bytes a
device), printed as one JSON line."""

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from purelr.optim import adam_low_bit


def main():
    mesh = Mesh(np.asarray(jax.devices()), ("data",))
    params = {"w": jnp.ones((3072, 768)), "b": jnp.ones((3072,))}
    shardings = {key: NamedSharding(mesh, PartitionSpec("data")) for key in params}
    params = jax.device_put(params, shardings)
    found = {}
    for name in ("adamw_8bit", "adamw_4bit", "adamw_fp8"):
        tx = getattr(adam_low_bit, name)()

        def step(params, state, grads, tx=tx):
            updates, state = tx.update(grads, state, params)
            return jax.tree.map(jnp.add, params, updates), state

        state = jax.jit(tx.init)(params)
        compiled = jax.jit(step, donate_argnums=(0, 1)).lower(params, state, params).compile()
        found[name] = {
            "all_gathers": compiled.as_text().count("all-gather-start") + compiled.as_text().count("all-gather("),
            "temporaries": compiled.memory_analysis().temp_size_in_bytes,
        }
    print(json.dumps(found))


if __name__ == "__main__":
    sys.exit(main())
