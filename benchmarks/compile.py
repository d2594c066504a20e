"""Compile time of a whole train-step update: the ResNet-50 tree with MMDetection's RetinaNet 1x
optimizer config, as ``purelr.build`` reads it, vs the same update written in plain optax.

``python -m benchmarks.compile [--quick]``. The config: SGD lr 0.01, momentum 0.9, weight decay
1e-4, ``paramwise_cfg=dict(bias_lr_mult=2, bias_decay_mult=0, norm_decay_mult=0)`` (three
groups), ``grad_clip=dict(max_norm=35, norm_type=2)``, ``lr_config`` step with linear warmup,
12 epochs of 7330 iterations. The step is ``update`` then ``optax.apply_updates``, jitted with the
params and the optimizer state donated; each measurement starts from empty caches
(``jax.clear_caches()``) and times tracing + lowering and XLA's compilation separately. The
last row is a second run of the same program with JAX's persistent compilation cache
(``jax_compilation_cache_dir``) holding the first run's executable.
"""

from __future__ import annotations

import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.experimental.compilation_cache import compilation_cache

import purelr
from benchmarks import common, trees, update
from purelr.params import paramwise
from purelr.schedules import mmcv

EPOCH_LEN = 7330
LR_CONFIG = dict(policy="step", warmup="linear", warmup_iters=500, warmup_ratio=0.001, step=[8, 11])
CONFIG = dict(
    optimizer=dict(type="SGD", lr=0.01, momentum=0.9, weight_decay=0.0001, paramwise_cfg=update.PARAMWISE_CFG),
    optimizer_config=dict(grad_clip=dict(max_norm=35, norm_type=2)),
    lr_config=LR_CONFIG,
    runner=dict(type="EpochBasedRunner", max_epochs=12),
)


def purelr_tx(params, kinds):
    return purelr.build(CONFIG, params, epoch_len=EPOCH_LEN, module_kinds=kinds)


def optax_tx(params, kinds):
    """The same update in plain optax: the lr schedule is purelr's (optax has no MMCV warmup)."""
    labels, settings = paramwise.paramwise_labels(params, update.PARAMWISE_CFG, weight_decay=0.0001, module_kinds=kinds)
    transforms = {}
    for label, setting in settings.items():
        lr = mmcv.lr_config(LR_CONFIG, 0.01 * setting.lr_mult, epoch_len=EPOCH_LEN, max_epochs=12)
        transforms[label] = optax.chain(
            optax.add_decayed_weights(0.0001 * setting.decay_mult), optax.sgd(lr, momentum=0.9)
        )
    return optax.chain(optax.clip_by_global_norm(35.0), optax.multi_transform(transforms, labels))


def compile_times(make_tx, params, kinds):
    """(seconds to trace and lower, seconds for XLA to compile), from empty in-memory caches."""
    jax.clear_caches()
    tx = make_tx(params, kinds)
    state = tx.init(params)

    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    jitted = jax.jit(step, donate_argnums=(0, 1))
    lowered = []
    lower_s = common.once(lambda: lowered.append(jitted.lower(params, state, params)))
    compile_s = common.once(lambda: lowered[0].compile())
    return lower_s, compile_s


def cached_compile_times(make_tx, params, kinds, repeats):
    """``compile_times`` with JAX's persistent compilation cache in a temporary folder, filled by
    a first call; the cache is switched off again afterwards."""
    min_time = jax.config.jax_persistent_cache_min_compile_time_secs
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    try:
        with tempfile.TemporaryDirectory() as cache_dir:
            compilation_cache.set_cache_dir(cache_dir)
            compile_times(make_tx, params, kinds)
            return [compile_times(make_tx, params, kinds) for _ in range(repeats)]
    finally:
        jax.config.update("jax_compilation_cache_dir", None)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", min_time)
        compilation_cache.reset_cache()


HEADERS = ["implementation", "trace + lower s", "XLA compile s", "total s", "x optax"]


def main(argv=None) -> int:
    args = common.parser(__doc__.splitlines()[0]).parse_args(argv)
    shapes = trees.transformer(depth=2, width=32, tokens=5) if args.quick else trees.resnet50()
    repeats = args.repeats or (1 if args.quick else 5)
    params = {name: jnp.zeros(shape, jnp.float32) for name, shape in shapes.items()}
    kinds = trees.module_kinds(shapes)
    results = {"purelr.build": [], "optax": []}
    for _ in range(repeats):  # interleaved, as the other benchmarks
        results["purelr.build"].append(compile_times(purelr_tx, params, kinds))
        results["optax"].append(compile_times(optax_tx, params, kinds))
    results["purelr.build, persistent cache"] = cached_compile_times(purelr_tx, params, kinds, repeats)
    medians = {name: np.median(np.asarray(times), axis=0) for name, times in results.items()}
    print(f"# compile time · {common.machine()}\n")
    labels, _ = paramwise.paramwise_labels(params, update.PARAMWISE_CFG, weight_decay=0.0001, module_kinds=kinds)
    print(
        f"{trees.numel(shapes):,} params in {len(shapes)} tensors, "
        f"{len(set(labels.values()))} groups; median of {repeats}\n"
    )
    total = {name: float(sum(m)) for name, m in medians.items()}
    print(
        common.table(
            HEADERS,
            [
                [name, float(m[0]), float(m[1]), total[name], total[name] / total["optax"]]
                for name, m in medians.items()
            ],
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
