"""A whole train step (forward, backward, ``clip_grad_norm`` + AdamW) with XLA:CPU's multi-output
fusion off and on.

``python -m benchmarks.train_step [--quick]``. The option is read when JAX starts and applies to
the whole program, the model included, so the script times the same jitted step (a small flax
CNN on 32x32 images, params and optimizer state donated) in two fresh interpreters, one with the
option and one without (``fusion.environ``), and prints both.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from benchmarks import common
from purelr.optim import fusion


def measure(quick: bool, repeats: int) -> dict:
    """Times the step in this process: ``{"params": n, "median": s, "best": s}``."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import optax

    import purelr.optim

    widths = (16, 32) if quick else (64, 128, 256)

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            for width in widths:
                x = nn.relu(nn.Conv(width, (3, 3))(x))
                x = nn.relu(nn.Conv(width, (3, 3))(x))
                x = nn.max_pool(x, (2, 2), (2, 2))
            return nn.Dense(10)(nn.relu(nn.Dense(512)(x.mean((1, 2)))))

    net = Net()
    images = jnp.ones((8 if quick else 32, 32, 32, 3))
    labels = jnp.zeros(images.shape[0], jnp.int32)
    params = net.init(jax.random.PRNGKey(0), images)["params"]
    tx = optax.chain(purelr.optim.clip_grad_norm(1.0), purelr.optim.adamw(1e-3))

    def step(params, opt_state, images, labels):
        def loss(params):
            logits = net.apply({"params": params}, images)
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

        grads = jax.grad(loss)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    jitted = jax.jit(step, donate_argnums=(0, 1))
    box = [params, tx.init(params)]

    def run():
        box[0], box[1] = jitted(box[0], box[1], images, labels)
        jax.block_until_ready(box)

    times = common.interleaved({"step": run}, repeats)["step"]
    count = sum(leaf.size for leaf in jax.tree.leaves(box[0]))
    return {"params": count, "median": times.median, "best": times.best}


def child(option: bool, quick: bool, repeats: int) -> dict:
    env = fusion.environ(option)
    args = [sys.executable, "-m", "benchmarks.train_step", "--child", *(["--quick"] * quick), "--repeats", str(repeats)]
    out = subprocess.run(args, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None) -> int:
    cli = common.parser(__doc__.splitlines()[0])
    cli.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = cli.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 30)
    if args.child:
        print(json.dumps(measure(args.quick, repeats)))
        return 0
    print(f"# train step · {common.machine(fusion_mode=False)}\n")
    results = {mode: child(mode == "on", args.quick, repeats) for mode in ("off", "on")}
    print(f"a flax CNN of {results['off']['params']:,} params, clip_grad_norm + AdamW, median of {repeats}\n")
    rows = [
        [mode, 1e3 * r["median"], 1e3 * r["best"], r["median"] / results["off"]["median"]]
        for mode, r in results.items()
    ]
    print(common.table(["multi-output fusion", "step ms", "best ms", "x off"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
