"""One optimizer update: purelr's torch twins vs torch (fused / foreach / for-loop) and plain optax.

``python -m benchmarks.update [--quick]``. For each parameter tree and each of AdamW, SGD with
momentum and weight decay, and Adam, alone and as ``clip_grad_norm + 3 parameter groups``:

- ``purelr``: ``jax.jit(step, donate_argnums=(0, 1))`` where ``step(params, state, grads)`` runs
  ``tx.update`` and ``optax.apply_updates`` (params and optimizer state donated, as a training
  loop that keeps only the new ones should do);
- ``purelr, not donated``: the same without donation (XLA then writes every output to fresh
  memory), alone only;
- ``purelr, torch layout``: the same on the arrays in torch's layouts (conv ``(out, in, kh, kw)``)
  instead of flax's (``(kh, kw, in, out)``), alone only: XLA:CPU's loops over a 3x3 kernel's
  3-element minor dimension are not vectorised;
- ``optax``: the same step with the same math written in plain optax;
- ``torch fused`` / ``foreach`` / ``for-loop``: ``optimizer.step()`` (after
  ``clip_grad_norm_`` and with three ``param_groups`` in the second form).

The JAX cases update the arrays in flax's layouts (``trees.in_jax_layout``), torch its own; the
caption says whether XLA:CPU's multi-output fusion is on (``PURELR_XLA_CPU_FUSION=1``: ``purelr.optim.fusion``
switches it on when purelr is imported before JAX's backend starts).

Columns: milliseconds per update (median of interleaved repeats, and the fastest repeat,
the least disturbed by other processes), effective GB/s (the bytes a
single fused pass must move: read param, grad and each buffer, write param and each buffer, plus
one read of the grads for the norm when clipping), the peak resident memory the case added while
it was built and warmed up, the ratios to torch fused and to optax (of medians, of bests), and for the jitted steps the
kernels (fusions and other top-level ops of the compiled XLA program) and all HLO instructions.
"""

from __future__ import annotations

import gc
import math
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch

import purelr.optim
from benchmarks import common, trees
from purelr.params import paramwise

MAX_NORM = 1.0
PARAMWISE_CFG = dict(bias_lr_mult=2.0, bias_decay_mult=0.0, norm_decay_mult=0.0)

# name: (purelr twin, its keyword arguments (torch's), the same in optax as f(lr, weight_decay),
#        torch class, buffers besides param and grad)
OPTIMIZERS = {
    "AdamW": (
        purelr.optim.adamw,
        dict(lr=1e-3, weight_decay=1e-2),
        lambda lr, wd: optax.adamw(lr, weight_decay=wd),
        torch.optim.AdamW,
        2,
    ),
    "SGD-momentum": (
        purelr.optim.sgd,
        dict(lr=1e-2, momentum=0.9, weight_decay=1e-4),
        lambda lr, wd: optax.chain(optax.add_decayed_weights(wd), optax.sgd(lr, momentum=0.9)),
        torch.optim.SGD,
        1,
    ),
    "Adam": (purelr.optim.adam, dict(lr=1e-3, weight_decay=0.0), lambda lr, wd: optax.adam(lr), torch.optim.Adam, 2),
}
TORCH_KINDS = {
    "torch fused": dict(fused=True),
    "torch foreach": dict(foreach=True),
    "torch for-loop": dict(foreach=False),
}


def paramwise_groups(params) -> tuple[dict[str, str], dict[str, paramwise.ParamSetting]]:
    """``(labels, settings)`` of MMCV's ``paramwise_cfg=PARAMWISE_CFG`` (weights; norm layers
    without decay; other biases at twice the lr without decay), by ``purelr.params.paramwise``. A tree
    without norm layers or biases is split ``round_robin`` into three groups instead."""
    kinds = trees.module_kinds(params)
    if not kinds:
        return round_robin(params, 3)
    return paramwise.paramwise_labels(params, PARAMWISE_CFG, weight_decay=1.0, module_kinds=kinds)


def round_robin(params, groups: int):
    """Leaf ``i`` in group ``i % groups``; group ``k`` has lr multiplier ``1 / (k + 1)``."""
    labels = {name: f"g{i % groups}" for i, name in enumerate(params)}
    return labels, {f"g{k}": paramwise.ParamSetting(lr_mult=1.0 / (k + 1)) for k in range(groups)}


def purelr_tx(twin, kwargs, groups):
    """purelr's twin alone, or ``clip_grad_norm`` then the twin per group (``purelr.params.paramwise``)."""
    if groups is None:
        return twin(**kwargs)
    return optax.chain(purelr.optim.clip_grad_norm(MAX_NORM), paramwise.paramwise_transform(twin, *groups, **kwargs))


def optax_tx(factory, kwargs, groups):
    """The same in plain optax: ``clip_by_global_norm`` and ``optax.multi_transform``."""
    lr, wd = kwargs["lr"], kwargs["weight_decay"]
    if groups is None:
        return factory(lr, wd)
    labels, settings = groups
    transforms = {label: factory(lr * s.lr_mult, wd * s.decay_mult) for label, s in settings.items()}
    return optax.chain(optax.clip_by_global_norm(MAX_NORM), optax.multi_transform(transforms, labels))


def jax_case(tx, host_params, host_grads, donate: bool = True):
    """A jitted step (params and state donated) and its compiled program's (kernels, instructions)."""
    params = {name: jnp.asarray(x) for name, x in host_params.items()}
    grads = {name: jnp.asarray(x) for name, x in host_grads.items()}
    box = [params, tx.init(params)]

    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    donated = (0, 1) if donate else ()
    compiled = jax.jit(step, donate_argnums=donated).lower(box[0], box[1], grads).compile()

    def run():
        box[0], box[1] = compiled(box[0], box[1], grads)
        jax.block_until_ready(box)

    return run, hlo_counts(compiled.as_text())


def hlo_counts(text: str) -> tuple[int, int]:
    """(kernels, instructions): top-level ops of the entry computation that do work (not
    parameters, constants, tuples, bitcasts or scalar copies), and instructions in all computations."""
    entry = text[text.index("\nENTRY") :]
    ops = [line for line in entry.splitlines()[1:] if " = " in line]
    idle = (" parameter(", " constant(", " tuple(", " get-tuple-element(", " bitcast(")
    kernels = [
        op
        for op in ops
        if not any(word in op for word in idle) and not (" copy(" in op and "[] " in op.split(" = ")[1][:12])
    ]
    instructions = sum(
        " = " in line and not line.lstrip().startswith(("ENTRY", "%fused", "fused")) for line in text.splitlines()
    )
    return len(kernels), instructions


def torch_case(cls, kwargs, kind, host_params, host_grads, groups):
    params = {name: torch.tensor(x, requires_grad=True) for name, x in host_params.items()}
    for name, p in params.items():
        p.grad = torch.tensor(host_grads[name])
    if groups is None:
        param_groups = [{"params": list(params.values())}]
    else:
        labels, settings = groups
        param_groups = [
            {
                "params": [p for name, p in params.items() if labels[name] == label],
                "lr": kwargs["lr"] * s.lr_mult,
                "weight_decay": kwargs["weight_decay"] * s.decay_mult,
            }
            for label, s in settings.items()
        ]
    optimizer = cls(param_groups, **kwargs, **kind)
    everything = list(params.values())

    def run():
        if groups is not None:
            torch.nn.utils.clip_grad_norm_(everything, MAX_NORM)
        optimizer.step()

    return run


def measure(shapes, repeats, rng, optimizers):
    host_params = {name: rng.standard_normal(s, dtype=np.float32) for name, s in shapes.items()}
    host_grads = {name: 0.01 * rng.standard_normal(s, dtype=np.float32) for name, s in shapes.items()}
    jax_params, jax_grads = trees.in_jax_layout(host_params), trees.in_jax_layout(host_grads)
    rows = []
    for opt_name in optimizers:
        twin, kwargs, optax_factory, cls, buffers = OPTIMIZERS[opt_name]
        for form, groups in [("alone", None), ("clip + 3 groups", paramwise_groups(host_params))]:
            builders = {
                "purelr": lambda: jax_case(purelr_tx(twin, kwargs, groups), jax_params, jax_grads),
                **(
                    {
                        "purelr, not donated": lambda: jax_case(
                            purelr_tx(twin, kwargs, None), jax_params, jax_grads, donate=False
                        ),
                        "purelr, torch layout": lambda: jax_case(
                            purelr_tx(twin, kwargs, None), host_params, host_grads
                        ),
                    }
                    if groups is None
                    else {}
                ),
                "optax": lambda: jax_case(optax_tx(optax_factory, kwargs, groups), jax_params, jax_grads),
                **{
                    kind: (lambda extra=extra: (torch_case(cls, kwargs, extra, host_params, host_grads, groups), None))
                    for kind, extra in TORCH_KINDS.items()
                },
            }
            cases, counts, memory = {}, {}, {}
            for name, build in builders.items():
                gc.collect()
                before = common.rss_mb()
                cases[name], counts[name] = build()
                common.reset_peak_rss()
                cases[name]()
                memory[name] = common.peak_rss_mb() - before
            times = common.interleaved(cases, repeats)
            clip = groups is not None
            nominal = 4 * trees.numel(shapes) * (2 * (1 + buffers) + 1 + clip)
            fused, plain = times["torch fused"], times["optax"]
            for name, (median, best) in times.items():
                kernels, instructions = counts[name] or (math.nan, math.nan)
                rows.append(
                    [
                        opt_name,
                        form,
                        name,
                        1e3 * median,
                        1e3 * best,
                        nominal / median / 1e9,
                        memory[name],
                        median / fused.median,
                        best / fused.best,
                        median / plain.median,
                        best / plain.best,
                        kernels,
                        instructions,
                    ]
                )
            del cases
    return rows


HEADERS = [
    "optimizer",
    "form",
    "implementation",
    "ms/step",
    "best ms",
    "GB/s",
    "peak RSS +MB",
    "x torch fused",
    "(best)",
    "x optax",
    "(best)",
    "kernels",
    "HLO ops",
]


def main(argv=None) -> int:
    cli = common.parser(__doc__.splitlines()[0])
    cli.add_argument("--only", default="", help="run only the trees whose title contains this")
    args = cli.parse_args(argv)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    if args.quick:
        sizes = {"ViT-like, 2 blocks of width 32": trees.transformer(depth=2, width=32, tokens=5)}
    else:
        sizes = {f"flat {n:,}, 16 leaves": trees.flat(n, 16) for n in (10**6, 10**7, 10**8)}
        sizes["ResNet-50"] = trees.resnet50()
        sizes["ViT-B/16-like"] = trees.transformer()
    sizes = {title: shapes for title, shapes in sizes.items() if args.only in title}
    repeats = args.repeats or (3 if args.quick else 15)
    print(f"# update step · {common.machine()}")
    for title, shapes in sizes.items():
        print(f"\n## {title}: {trees.numel(shapes):,} params in {len(shapes)} tensors\n")
        optimizers = list(OPTIMIZERS)[:1] if args.quick else OPTIMIZERS
        print(common.table(HEADERS, measure(shapes, repeats, rng, optimizers)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
