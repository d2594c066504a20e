"""Memory of low-bit AdamW state: bytes per parameter of the optimizer state and the memory of a
compiled update, purelr's 8-bit / 4-bit / fp8 AdamW (``purelr.optim.adam_low_bit``) against its
float32 AdamW, and torchao's state bytes on the same tree.

State bytes are counted from the arrays (purelr) and the state tensors (torchao: codes, scales
and plain buffers). The update's memory is XLA's own account of the compiled update
(``compiled.memory_analysis()``: arguments + outputs + temporaries - aliased, params and grads
included), the peak a device holds while it runs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common, trees
from purelr import optim

NAMES = ("adamw", "adamw_8bit", "adamw_4bit", "adamw_fp8")
TORCHAO = {"adamw_8bit": "AdamW8bit", "adamw_4bit": "AdamW4bit", "adamw_fp8": "AdamWFp8"}


def state_bytes(state) -> int:
    return sum(int(np.prod(leaf.shape)) * np.dtype(leaf.dtype).itemsize for leaf in jax.tree.leaves(state))


def update_bytes(tx, params) -> tuple[int, int]:
    """XLA's account of the jitted ``params, state -> params, state`` update with donated inputs:
    ``(arguments + outputs - aliased, temporaries)`` in bytes."""

    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return jax.tree.map(jnp.add, params, updates), state

    state = jax.eval_shape(tx.init, params)
    compiled = jax.jit(step, donate_argnums=(0, 1)).lower(params, state, params).compile()
    memory = compiled.memory_analysis()
    held = memory.argument_size_in_bytes + memory.output_size_in_bytes - memory.alias_size_in_bytes
    return held, memory.temp_size_in_bytes


def torchao_state_bytes(name: str, shapes: dict) -> float:
    """torchao's state bytes after one step (its buffers are made at the first step)."""
    import torch
    import torchao.optim

    tensors = [torch.nn.Parameter(torch.zeros(s)) for s in shapes.values()]
    optimizer = getattr(torchao.optim, TORCHAO[name])(tensors)
    for tensor in tensors:
        tensor.grad = torch.full_like(tensor, 1e-3)
    optimizer.step()
    total = 0
    for state in optimizer.state.values():
        for key, value in state.items():
            if key == "step":
                continue
            parts = [getattr(value, a) for a in ("codes", "scale")] if hasattr(value, "codes") else [value]
            total += sum(p.numel() * p.element_size() for p in parts)
    return total


def main(argv=None) -> int:
    parser = common.parser(__doc__.splitlines()[0])
    parser.add_argument("--torchao", action="store_true", help="also count torchao's state (compiles its step)")
    args = parser.parse_args(argv)
    tree = trees.transformer(depth=2, width=64, tokens=17) if args.quick else trees.transformer()
    params = {name: jax.ShapeDtypeStruct(s, jnp.float32) for name, s in tree.items()}
    count = trees.numel(tree)
    print(f"# low-bit AdamW state · {common.machine(fusion_mode=False)}\n")
    print(f"ViT-B/16-like tree: {count:,} params in {len(tree)} tensors (float32)\n")
    rows = []
    baseline = None
    for name in NAMES:
        tx = getattr(optim, name)()
        state = jax.eval_shape(tx.init, params)
        per_param = state_bytes(state) / count
        held, temporaries = update_bytes(tx, params)
        baseline = baseline or held + temporaries
        reference = torchao_state_bytes(name, tree) / count if args.torchao and name in TORCHAO else float("nan")
        rows.append([name, per_param, reference, held / count, temporaries / 2**20, (held + temporaries) / baseline])
    headers = [
        "optimizer",
        "state bytes/param",
        "torchao bytes/param",
        "update: held bytes/param",
        "update: temporaries MiB",
        "update peak vs float32 AdamW",
    ]
    print(common.table(headers, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
