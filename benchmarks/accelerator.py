"""The AdamW update on an accelerator: purelr vs torch fused AdamW on the same device, and both
against the device's measured copy bandwidth.

``python -m benchmarks.accelerator [--time-limit SECONDS] [--quick]``. On the device JAX computes on
by default (a GPU or TPU when one is there; the CPU otherwise), for a flat tree of 1B float32
params (``--big``, in 100 leaves), ResNet-50 and ViT-B/16 (``trees``):

- ``purelr``: ``jax.jit(step, donate_argnums=(0, 1))``, ``step`` = ``purelr.optim.adamw`` then
  ``optax.apply_updates``, finished with ``jax.block_until_ready``;
- ``torch fused``: ``torch.optim.AdamW(fused=True)`` on CUDA (torch's fused CPU kernel when no GPU
  is there), finished with ``torch.cuda.synchronize``;
- the limit: AdamW must read param, grad, ``exp_avg`` and ``exp_avg_sq`` and write three of them,
  28 bytes a float32 param; the copy bandwidth is the best of a jitted ``-x`` in JAX and
  ``dst.copy_(src)`` in torch over 1 GiB (bytes read plus written over the time). ``x limit`` is the
  update's effective bandwidth over that (1.0: as fast as memory allows).

Arrays are drawn on the device (normal params, 0.01 x normal grads), so the 1B tree never
passes through the host. Cases run interleaved (``common.interleaved``); a tree whose turn comes
after ``--time-limit`` seconds is left out, and the table says so.
"""

from __future__ import annotations

import math
import sys
import time

import jax
import jax.numpy as jnp
import optax
import torch

import purelr.optim
from benchmarks import common, trees

LR, WEIGHT_DECAY = 1e-3, 1e-2
BYTES_PER_PARAM = 28  # float32 AdamW: 4 reads and 3 writes
COPY_BYTES = 1 << 30


def torch_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def tree_shapes(quick: bool, big: int) -> dict[str, dict[str, tuple[int, ...]]]:
    if quick:
        return {"flat 64K, 4 leaves": trees.flat(1 << 16, 4), "ViT-like, 2 blocks of 32": trees.transformer(2, 32)}
    return {
        f"flat {big / 1e9:g}B, 100 leaves": trees.flat(big, 100),
        "ResNet-50": trees.resnet50(),
        "ViT-B/16": trees.transformer(),
    }


def jax_case(shapes: dict[str, tuple[int, ...]], seed: int = 0):
    """purelr's AdamW step on arrays drawn on JAX's default device, jitted with donation."""
    keys = jax.random.split(jax.random.key(seed), 2 * len(shapes))
    params = {name: jax.random.normal(keys[2 * i], s, jnp.float32) for i, (name, s) in enumerate(shapes.items())}
    grads = {name: 0.01 * jax.random.normal(keys[2 * i + 1], s) for i, (name, s) in enumerate(shapes.items())}
    tx = purelr.optim.adamw(LR, weight_decay=WEIGHT_DECAY)

    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    box = [params, tx.init(params)]
    compiled = jax.jit(step, donate_argnums=(0, 1)).lower(box[0], box[1], grads).compile()

    def run():
        box[0], box[1] = compiled(box[0], box[1], grads)
        jax.block_until_ready(box)

    return run, box


def torch_case(shapes: dict[str, tuple[int, ...]], device: torch.device, seed: int = 0):
    """torch's fused AdamW step on tensors drawn on ``device``."""
    generator = torch.Generator(device=device).manual_seed(seed)
    params = [torch.randn(s, generator=generator, device=device, requires_grad=True) for s in shapes.values()]
    for p in params:
        p.grad = 0.01 * torch.randn(p.shape, generator=generator, device=device)
    optimizer = torch.optim.AdamW(params, lr=LR, weight_decay=WEIGHT_DECAY, fused=True)

    def run():
        optimizer.step()
        synchronize(device)

    return run, (params, optimizer)


def copy_bandwidth(device: torch.device, repeats: int, nbytes: int = COPY_BYTES) -> dict[str, float]:
    """GB/s (read plus written) of a jitted ``-x`` in JAX and of ``copy_`` in torch over ``nbytes``."""
    n = nbytes // 4
    x = jnp.ones((n,), jnp.float32)
    negate = jax.jit(lambda x: -x).lower(x).compile()
    src, dst = torch.ones(n, device=device), torch.empty(n, device=device)

    def torch_copy():
        dst.copy_(src)
        synchronize(device)

    times = common.interleaved({"jax": lambda: negate(x).block_until_ready(), "torch": torch_copy}, repeats)
    return {name: 2 * nbytes / t.best / 1e9 for name, t in times.items()}


def main(argv=None) -> int:
    cli = common.parser(__doc__.splitlines()[0])
    cli.add_argument("--time-limit", type=float, default=540.0, help="seconds; later trees are left out")
    cli.add_argument("--big", type=int, default=10**9, help="params of the flat tree (default 1B)")
    args = cli.parse_args(argv)
    start = time.perf_counter()
    repeats = args.repeats or (3 if args.quick else 20)
    device = torch_device()
    print(f"# AdamW update on {jax.devices()[0].device_kind} (JAX {jax.default_backend()}), torch on {device}")
    print(f"{common.machine()}\n")
    bandwidth = copy_bandwidth(device, repeats, (1 << 20) if args.quick else COPY_BYTES)
    limit = max(bandwidth.values())
    print(f"copy bandwidth: JAX {bandwidth['jax']:.1f} GB/s, torch {bandwidth['torch']:.1f} GB/s (best of {repeats})\n")
    rows, left_out = [], []
    for title, shapes in tree_shapes(args.quick, args.big).items():
        if time.perf_counter() - start > args.time_limit:
            left_out.append(title)
            continue
        numel = trees.numel(shapes)
        cases = {"purelr": jax_case(shapes), "torch fused": torch_case(shapes, device)}
        times = common.interleaved({name: case[0] for name, case in cases.items()}, repeats)
        del cases
        torch_ms = times["torch fused"].median
        for name, t in times.items():
            rate = BYTES_PER_PARAM * numel / t.median / 1e9
            row = [title, f"{numel:,}", len(shapes), name, 1e3 * t.median, 1e3 * t.best]
            rows.append(row + [rate, rate / limit, t.median / torch_ms])
        if device.type == "cuda":
            torch.cuda.empty_cache()
    headers = ["tree", "params", "leaves", "implementation", "ms/step", "best ms", "GB/s", "x limit", "x torch fused"]
    print(common.table(headers, rows))
    if left_out:
        print(f"\nleft out after {args.time_limit:g} s: {', '.join(left_out)}")
    return 0 if math.isfinite(limit) else 1


if __name__ == "__main__":
    sys.exit(main())
