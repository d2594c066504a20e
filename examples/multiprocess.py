"""The e2e train step of ``examples.twin_cnn`` across processes joined by ``jax.distributed``,
params and optimizer state fully sharded over every process's devices, against one process.

Each process runs the same program (SPMD): it joins the others through the coordinator
(``jax.distributed.initialize``), sees all of their devices in ``jax.devices()``, builds one mesh
over them and holds only its own shards of the params (``purelr.training.sharding.split_last_divisible``),
of the optimizer state (``sharding.state_shardings``) and of each batch (split along its first
axis). Global arrays are assembled from the part each process holds
(``jax.make_array_from_callback``: every process can compute the initial values and the data, so
each takes its slices). After the run the params are gathered to every process
(``jax.experimental.multihost_utils.process_allgather``) and process 0 writes them.

On one machine, ``python -m examples.multiprocess --processes 2 --out DIR`` starts the processes
itself (a free port on localhost, ``--devices`` CPU devices each, gloo collectives) and
``--processes 1`` is the one-process run; each writes ``DIR/params.npz`` with the final params of a
float64 and a float32 run (``float64/<name>``, ``float32/<name>``), the losses, the device count and
how many params were split over devices.

On real hosts, run on every host (the same code, data and flags; host 0's address reachable)::

    python -m examples.multiprocess --coordinator HOST0:1234 --num-processes N --process-id I --out DIR

(on GPU/TPU hosts drop ``--devices``; on clusters that ``jax.distributed.initialize`` detects by
itself, SLURM or Cloud TPU, the three arguments can be left out there).
"""

import os
import sys

if __name__ == "__main__" and "jax" not in sys.modules and "--devices" in sys.argv:
    count = sys.argv[sys.argv.index("--devices") + 1]
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={count}"
    ).strip()

import argparse  # noqa: E402
import pathlib  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec  # noqa: E402

import purelr  # noqa: E402
from examples import retinanet_1x, timm_adamw, twin_cnn  # noqa: E402
from purelr.training import sharding  # noqa: E402

RECIPES = {"retinanet_1x": retinanet_1x.CONFIG, "timm_adamw": timm_adamw.CONFIG}


def global_array(value, array_sharding):
    """The global array of ``value`` (a host array every process holds) laid out by ``array_sharding``,
    each process giving only its own devices' slices."""
    value = np.asarray(value)
    return jax.make_array_from_callback(value.shape, array_sharding, lambda index: value[index])


def run(cfg, data: twin_cnn.Data, *, epochs: int, dtype) -> tuple[np.ndarray, dict, int]:
    """Trains the flax twin in ``dtype`` over every device of every process: the losses, the
    final params ``{dotted name: array}`` (gathered to every process) and how many were split."""
    model = twin_cnn.TwinCNN(dtype=dtype)
    params, batch_stats = twin_cnn.from_torch_model(twin_cnn.torch_model(0), dtype)
    epoch_len = len(data.labels)
    tx = purelr.build(cfg, params, epoch_len=epoch_len, module_kinds=twin_cnn.kinds(dtype))
    mesh = Mesh(np.asarray(jax.devices()), ("data",))
    param_shardings = sharding.split_last_divisible(params, mesh)
    stats_shardings = sharding.split_last_divisible(batch_stats, mesh)
    opt_shardings = sharding.state_shardings(tx, params, param_shardings)
    batch, replicated = NamedSharding(mesh, PartitionSpec("data")), NamedSharding(mesh, PartitionSpec())
    step = jax.jit(
        twin_cnn.train_step(model, tx),
        in_shardings=(param_shardings, stats_shardings, opt_shardings, batch, batch),
        out_shardings=(param_shardings, stats_shardings, opt_shardings, replicated),
    )
    opt_state = jax.jit(tx.init, out_shardings=opt_shardings)(jax.tree.map(global_array, params, param_shardings))
    params = jax.tree.map(global_array, params, param_shardings)
    batch_stats = jax.tree.map(global_array, batch_stats, stats_shardings)
    images = np.asarray(twin_cnn.nhwc(data.images), dtype)
    losses = []
    for _ in range(epochs):
        for k in range(epoch_len):
            inputs = global_array(images[k], batch), global_array(data.labels[k], batch)
            params, batch_stats, opt_state, loss = step(params, batch_stats, opt_state, *inputs)
            losses.append(loss)
    split = sum(not leaf.sharding.is_fully_replicated for leaf in jax.tree.leaves(params))
    gathered = multihost_utils.process_allgather(params, tiled=True)
    return np.asarray([np.asarray(x.addressable_data(0)) for x in losses]), twin_cnn.flat(gathered), split


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def launch(args) -> int:
    """Starts ``args.processes`` copies of this program on localhost and waits for them (``args.timeout`` s)."""
    address = f"localhost:{free_port()}"
    common = ["--out", args.out, "--recipe", args.recipe, "--epochs", str(args.epochs), "--epoch-len"]
    common += [str(args.epoch_len), "--devices", str(args.devices), "--num-processes", str(args.processes)]
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "examples.multiprocess", *common, "--coordinator", address, "--process-id", str(i)]
        )
        for i in range(args.processes)
    ]
    try:
        codes = [child.wait(timeout=args.timeout) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    return max(codes, key=abs)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="folder for params.npz (written by process 0)")
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="timm_adamw")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--epoch-len", type=int, default=4)
    parser.add_argument("--devices", type=int, default=2, help="CPU devices per process (set before jax starts)")
    parser.add_argument("--processes", type=int, default=None, help="start this many processes on localhost")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds the started processes may take")
    parser.add_argument("--coordinator", help="HOST:PORT of process 0 (a process started by hand or by --processes)")
    parser.add_argument("--num-processes", type=int, default=None)
    parser.add_argument("--process-id", type=int, default=None)
    args = parser.parse_args(argv)
    if args.processes is not None and args.processes > 1:
        return launch(args)
    if args.coordinator is not None or args.num_processes is not None:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(args.coordinator, num_processes=args.num_processes, process_id=args.process_id)
    data = twin_cnn.make_data(args.epoch_len)
    out = {}
    for dtype in (jnp.float64, jnp.float32):
        with jax.enable_x64(dtype == jnp.float64):
            losses, params, split = run(RECIPES[args.recipe], data, epochs=args.epochs, dtype=dtype)
        name = jnp.dtype(dtype).name
        out.update({f"{name}/losses": losses, **{f"{name}/{key}": value for key, value in params.items()}})
        out[f"{name}_split_params"] = split
    if jax.process_index() == 0:
        pathlib.Path(args.out).mkdir(parents=True, exist_ok=True)
        np.savez(pathlib.Path(args.out) / "params.npz", devices=jax.device_count(), **out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
