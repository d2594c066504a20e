"""The train step of ``examples.twin_cnn`` over 8 devices with ``jax.sharding``, against one device.

Two layouts on a one-axis mesh ``("data",)``, both with the batch split along its first axis:

- ``data_parallel``: params, batch statistics and optimizer state replicated on every device;
- ``fully_sharded``: each param split along its last axis whose size the device count divides
  (replicated when none does), its optimizer state leaves and batch statistics split the same way.

The optimizer state's shardings are the params' ones, mapped onto the state by
``purelr.training.sharding.state_shardings`` (scalars such as counts and hyperparameters are
replicated), and the jit-compiled step is told to keep them (``out_shardings``). GSPMD keeps the meaning of the
step: BatchNorm's batch statistics, the mean loss's sum and the clipping norm are reductions over
all devices, so only their order changes. After the run the state leaves' shardings are checked
against the params'.

On a CPU, ``python -m examples.sharded`` asks XLA for 8 host devices (``XLA_FLAGS``) before jax
loads; ``--json`` ends the output with one JSON line of the measured differences and checks.
"""

import os
import sys

if __name__ == "__main__" and "jax" not in sys.modules:
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()

import argparse  # noqa: E402
import json  # noqa: E402
from typing import NamedTuple  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec  # noqa: E402

import purelr  # noqa: E402
from examples import progress, retinanet_1x, timm_adamw, twin_cnn  # noqa: E402
from purelr.training import sharding  # noqa: E402

LAYOUTS = ("single", "data_parallel", "fully_sharded")
RECIPES = {"retinanet_1x": retinanet_1x.CONFIG, "timm_adamw": timm_adamw.CONFIG}


class ShardedRun(NamedTuple):
    """``losses`` of every iteration, the final ``params`` ``{dotted name: array}``, how many
    params are split over devices (``split_params``) and how many optimizer state leaves were
    found laid out like a param (``state_leaves``), all of which carry that param's sharding
    (else the run raises)."""

    losses: np.ndarray
    params: dict
    split_params: int
    state_leaves: int


def map_params(tx, f, opt_state, *rest, transform_non_params):
    """``optax.tree_utils.tree_map_params`` through ``multi_transform``'s masked trees."""

    def masked(leaf):
        return leaf is None or isinstance(leaf, optax.MaskedNode)

    def keep_masked(leaf, *others):
        return leaf if masked(leaf) else f(leaf, *others)

    return optax.tree_utils.tree_map_params(
        tx, keep_masked, opt_state, *rest, transform_non_params=transform_non_params, is_leaf=masked
    )


def check_state_sharding(tx, opt_state, params) -> int:
    """The number of state leaves laid out like a param; raises unless each has its param's sharding."""
    checked = []

    def check(leaf, param):
        if not leaf.sharding.is_equivalent_to(param.sharding, leaf.ndim):
            raise AssertionError(f"an optimizer state leaf has {leaf.sharding}, its param {param.sharding}")
        checked.append(leaf)
        return leaf

    map_params(tx, check, opt_state, params, transform_non_params=lambda leaf: leaf)
    return len(checked)


def run(cfg, data: twin_cnn.Data, *, epochs: int, layout: str, log=None) -> ShardedRun:
    """Trains the flax twin (float32) with ``purelr.build(cfg, ...)`` in ``layout`` (``LAYOUTS``):
    ``single`` on the first device, the others over every device."""
    model = twin_cnn.TwinCNN(dtype=jnp.float32)
    params, batch_stats = twin_cnn.from_torch_model(twin_cnn.torch_model(0), jnp.float32)
    epoch_len = len(data.labels)
    tx = purelr.build(cfg, params, epoch_len=epoch_len, module_kinds=twin_cnn.kinds())
    opt_state = tx.init(params)
    devices = jax.devices()[:1] if layout == "single" else jax.devices()
    mesh = jax.sharding.Mesh(np.asarray(devices), ("data",))
    replicated = NamedSharding(mesh, PartitionSpec())
    layout_of = sharding.split_last_divisible if layout == "fully_sharded" else sharding.replicated
    param_shardings, stats_shardings = layout_of(params, mesh), layout_of(batch_stats, mesh)
    opt_shardings = sharding.state_shardings(tx, params, param_shardings)
    batch = NamedSharding(mesh, PartitionSpec("data"))
    step = jax.jit(
        twin_cnn.train_step(model, tx),
        in_shardings=(param_shardings, stats_shardings, opt_shardings, batch, batch),
        out_shardings=(param_shardings, stats_shardings, opt_shardings, replicated),
    )
    params, batch_stats, opt_state = jax.device_put(
        (params, batch_stats, opt_state), (param_shardings, stats_shardings, opt_shardings)
    )
    images = jnp.asarray(twin_cnn.nhwc(data.images), jnp.float32)
    labels = jnp.asarray(data.labels)
    losses = []
    for epoch in range(epochs):
        for k in range(epoch_len):
            params, batch_stats, opt_state, loss = step(params, batch_stats, opt_state, images[k], labels[k])
            losses.append(loss)
            if log is not None:
                progress.step(log, epoch, epochs, k, epoch_len, float(loss))
        if log is not None:
            progress.epoch(log, epoch, epochs, float(np.mean(losses[-epoch_len:])), twin_cnn.group_lrs(opt_state))
    split = sum(not leaf.sharding.is_fully_replicated for leaf in jax.tree.leaves(params))
    return ShardedRun(
        np.asarray(jax.device_get(losses)), twin_cnn.flat(params), split, check_state_sharding(tx, opt_state, params)
    )


def compare(recipe: str, *, epochs: int, epoch_len: int, log=None) -> dict:
    """Runs ``recipe`` (a key of ``RECIPES``) in every layout; for each sharded layout, the largest
    relative difference from the single-device run in the losses (relative to the largest loss) and
    in the final params (per leaf, relative to its largest entry), the params split over devices
    and the state leaves checked."""
    data = twin_cnn.make_data(epoch_len)
    runs = {}
    for layout in LAYOUTS:
        if log is not None:
            log.write(f"{recipe}, {layout} ({1 if layout == 'single' else jax.device_count()} devices)\n")
        runs[layout] = run(RECIPES[recipe], data, epochs=epochs, layout=layout, log=log)
    single = runs["single"]
    return {
        layout: dict(
            losses=twin_cnn.relative_error(runs[layout].losses, single.losses),
            params=max(twin_cnn.relative_error(runs[layout].params[n], single.params[n]) for n in single.params),
            split_params=runs[layout].split_params,
            state_leaves=runs[layout].state_leaves,
        )
        for layout in LAYOUTS[1:]
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="retinanet_1x")
    parser.add_argument("--epochs", type=int, default=retinanet_1x.EPOCHS)
    parser.add_argument("--epoch-len", type=int, default=retinanet_1x.EPOCH_LEN)
    parser.add_argument("--json", action="store_true", help="end with one JSON line of the results")
    args = parser.parse_args(argv)
    log = None if args.json else sys.stdout
    found = compare(args.recipe, epochs=args.epochs, epoch_len=args.epoch_len, log=log)
    for layout, result in found.items():
        print(
            f"{layout} vs one device: losses {result['losses']:.3g}, params {result['params']:.3g} "
            f"(relative); {result['split_params']} params split over devices, {result['state_leaves']} "
            f"optimizer state leaves carry their param's sharding"
        )
    if args.json:
        print(json.dumps(dict(devices=jax.device_count(), **found)))


if __name__ == "__main__":
    sys.exit(main())
