"""Run by ``test_sharding.py`` in a fresh process with 8 host devices (``XLA_FLAGS`` set before jax
loads): every optimizer of ``resume_run.OPTIMIZERS`` (each exported one) and a two-group
``multi_transform``, its params split by ``sharding.split_last_divisible`` and its state by
``sharding.state_shardings``, under x64. The optimizers of ``STEPPED`` (each kind of state: plain
buffers, factored rows, flat histories, preconditioner matrices, PRNG keys, None buffers of other
groups) take three jitted updates with those in and out shardings; the others' state is placed
by its shardings (``device_put`` checks each leaf's shape against its sharding), and ``--all``
steps every one (``-m nightly``). Prints one JSON line: per optimizer, the state leaves checked by
kind and the largest relative difference of the params from the same updates on one device (for
``COMPARED``)."""

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from purelr import optim
from purelr.training import sharding
from tests.training import resume_run

STEPS = 3
# distinct shapes, so a state leaf shaped like a param is that param's buffer; "head" splits on its first axis
SHAPES = {"dense": {"w": (16, 40), "b": (48,)}, "conv": {"w": (3, 3, 8, 16)}, "head": (16, 3), "scale": ()}
COMPARED = ("adamw", "adafactor", "lbfgs", "lamb", "groups")  # also run on one device: the same params
STEPPED = (*COMPARED, "timm_adafactor", "adamw_torchao", "adahessian", "soap", "kron", "psgd_kron", "prodigy")
OPTIMIZERS = dict(
    resume_run.OPTIMIZERS,
    # heavyball's PSGDKron refuses one-element params: the scalar leaf goes to SGD
    psgd_kron=lambda: optax.multi_transform(
        {"kron": resume_run.OPTIMIZERS["psgd_kron"](), "plain": optim.sgd(0.1)},
        lambda params: jax.tree.map(lambda p: "kron" if p.size > 1 else "plain", params),
    ),
    groups=lambda: optax.multi_transform(  # the None buffers of the other group's leaves
        {"decay": optim.adamw(1e-2), "plain": optim.sgd(0.1, momentum=0.9)},
        lambda params: jax.tree.map(lambda p: "decay" if p.ndim >= 2 else "plain", params),
    ),
)


def loss(params, k):
    leaves = jax.tree.leaves(params)
    return sum(jnp.sum(jnp.tanh(p * (1.0 + 0.1 * k)) ** 2 + 0.05 * p**2) for p in leaves) / len(leaves)


def run(name, tx, params, param_shardings=None, opt_shardings=None, steps=STEPS):
    """``steps`` updates of ``tx`` (sharded when shardings are given): the final params and state."""

    def step(params, state, k):
        value, grads = jax.value_and_grad(loss)(params, k)
        extra = dict(value=value, value_fn=lambda p: loss(p, k)) if name == "lbfgs" else {}
        extra = dict(value_fn=lambda p: loss(p, k)) if name == "adahessian" else extra
        updates, state = tx.update(grads, state, params, **extra)
        return optax.apply_updates(params, updates), state

    if param_shardings is None:
        stepped, state = jax.jit(step), tx.init(params)
    else:
        replicated = NamedSharding(next(iter(jax.tree.leaves(param_shardings))).mesh, PartitionSpec())
        stepped = jax.jit(
            step,
            in_shardings=(param_shardings, opt_shardings, replicated),
            out_shardings=(param_shardings, opt_shardings),
        )
        params, state = jax.device_put((params, tx.init(params)), (param_shardings, opt_shardings))
    for k in range(steps):
        params, state = stepped(params, state, jnp.asarray(k, float))
    return params, state


def check(state, params) -> dict:
    """Counts of the state's leaves by kind; raises unless each is laid out as the rule says: a
    leaf shaped like a param has the param's sharding (found by shape, not by the module's mapping),
    a scalar is replicated, any other leaf is replicated or split only over axes its shape allows."""
    by_shape = {p.shape: p.sharding for p in jax.tree.leaves(params) if p.ndim}
    counts = {"like_param": 0, "scalar": 0, "other": 0, "other_split": 0}
    for path, leaf in jax.tree_util.tree_leaves_with_path(state):
        where = jax.tree_util.keystr(path)
        if leaf.shape in by_shape:
            assert leaf.sharding.is_equivalent_to(by_shape[leaf.shape], leaf.ndim), (where, leaf.sharding)
            counts["like_param"] += 1
        elif leaf.ndim == 0:
            assert leaf.sharding.is_fully_replicated, (where, leaf.sharding)
            counts["scalar"] += 1
        else:
            counts["other"] += 1
            counts["other_split"] += not leaf.sharding.is_fully_replicated
    return counts


def main():
    jax.config.update("jax_enable_x64", True)
    mesh = Mesh(np.asarray(jax.devices()), ("data",))
    rng = np.random.default_rng(24)
    params = jax.tree.map(lambda s: jnp.asarray(rng.standard_normal(s)), SHAPES, is_leaf=lambda x: isinstance(x, tuple))
    param_shardings = sharding.split_last_divisible(params, mesh)
    found = {"devices": jax.device_count(), "split_params": 0, "optimizers": {}}
    stepped = OPTIMIZERS if "--all" in sys.argv else STEPPED
    for name, make in OPTIMIZERS.items():
        tx = make()
        opt_shardings = sharding.state_shardings(tx, params, param_shardings)
        steps = STEPS if name in stepped else 0
        sharded, state = run(name, tx, params, param_shardings, opt_shardings, steps)
        found["optimizers"][name] = check(state, sharded)
        if name in COMPARED:
            single, _ = run(name, tx, params)
            errors = jax.tree.map(lambda a, b: float(np.max(np.abs(a - b)) / np.max(np.abs(b))), sharded, single)
            found["optimizers"][name]["params"] = max(jax.tree.leaves(errors))
        found["split_params"] = sum(not p.sharding.is_fully_replicated for p in jax.tree.leaves(sharded))
    print(json.dumps(found))


if __name__ == "__main__":
    sys.exit(main())
