"""Update time against the number of parameter groups: 1, 2, 4 and 8 groups of the ResNet-50 tree.

``python -m benchmarks.groups [--quick]``. AdamW after ``clip_grad_norm``, leaf ``i`` in group
``i % k`` (group ``j`` with lr multiplier ``1 / (j + 1)``), as ``optax.multi_transform`` of
purelr's twin, of plain ``optax.adamw``, and as torch fused AdamW with ``k`` param groups; each
column's median time is divided by its own 1-group time (the last column: fastest repeats). The
JAX cases update the arrays in flax's layouts (``trees.in_jax_layout``).
"""

from __future__ import annotations

import sys

import numpy as np

from benchmarks import common, trees, update

GROUP_COUNTS = (1, 2, 4, 8)


def main(argv=None) -> int:
    args = common.parser(__doc__.splitlines()[0]).parse_args(argv)
    shapes = trees.transformer(depth=2, width=32, tokens=5) if args.quick else trees.resnet50()
    repeats = args.repeats or (3 if args.quick else 15)
    rng = np.random.default_rng(0)
    params = {name: rng.standard_normal(s, dtype=np.float32) for name, s in shapes.items()}
    grads = {name: 0.01 * rng.standard_normal(s, dtype=np.float32) for name, s in shapes.items()}
    jax_params, jax_grads = trees.in_jax_layout(params), trees.in_jax_layout(grads)
    twin, kwargs, optax_adamw, torch_adamw, _ = update.OPTIMIZERS["AdamW"]
    cases = {}
    for k in GROUP_COUNTS:
        groups = update.round_robin(shapes, k)
        cases["purelr", k] = update.jax_case(update.purelr_tx(twin, kwargs, groups), jax_params, jax_grads)[0]
        cases["optax", k] = update.jax_case(update.optax_tx(optax_adamw, kwargs, groups), jax_params, jax_grads)[0]
        cases["torch fused", k] = update.torch_case(torch_adamw, kwargs, dict(fused=True), params, grads, groups)
    times = common.interleaved(cases, repeats)
    print(f"# parameter groups · {common.machine()}\n")
    print(f"{trees.numel(shapes):,} params in {len(shapes)} tensors; AdamW + clip_grad_norm\n")
    impls = ("purelr", "optax", "torch fused")
    headers = [
        "groups",
        *(f"{impl} ms" for impl in impls),
        *(f"{impl} vs 1 group" for impl in impls),
        "purelr vs 1 group (best)",
    ]
    rows = [
        [
            k,
            *(1e3 * times[impl, k].median for impl in impls),
            *(times[impl, k].median / times[impl, 1].median for impl in impls),
            times["purelr", k].best / times["purelr", 1].best,
        ]
        for k in GROUP_COUNTS
    ]
    print(common.table(headers, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
