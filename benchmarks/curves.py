"""Whole learning-rate curves: purelr ``jax.jit(jax.vmap(schedule))`` vs stepping the reference.

``python -m benchmarks.curves [--quick]``. Each row evaluates every value of a training run's
learning-rate curve: purelr in one call of a jitted, vmapped schedule over ``arange(n)``; the
reference by stepping its scheduler as its training loop does, reading the lr after each step.

- RetinaNet 1x (SGD lr 0.01, linear warmup over 500 iterations from 0.001 of it, decays by 10 at
  epochs 8 and 11 of 12, 7330 iterations an epoch: 87,960 values) as MMCV 1.x ``lr_config``
  (``LrUpdaterHook`` driven as ``EpochBasedRunner`` drives it), as MMEngine ``param_scheduler``
  (``ParamSchedulerHook``'s order) and as torch ``ChainedScheduler([LinearLR, MultiStepLR])``;
- timm ``create_scheduler_v2`` cosine over 300 epochs with 5 warmup epochs, stepped per update;
- torch ``OneCycleLR``.

Times are medians of interleaved rounds (purelr: 20 calls a round); "(best)" is the ratio of the
fastest rounds. The last column is the largest relative difference between the two curves
(purelr in float32).
"""

from __future__ import annotations

import sys
import types
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import torch

from benchmarks import common
from purelr.schedules import mmcv, mmengine, timm
from purelr.schedules import torch as torch_schedules

RETINANET_LR_CONFIG = dict(policy="step", warmup="linear", warmup_iters=500, warmup_ratio=0.001, step=[8, 11])
RETINANET_PARAM_SCHEDULER = [
    dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type="MultiStepLR", begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
TIMM_COSINE = dict(sched="cosine", num_epochs=300, warmup_epochs=5, warmup_lr=1e-6, min_lr=1e-5, step_on_epochs=False)


def _optimizer(lr):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr, momentum=0.9)


def step_mmcv(epoch_len, epochs):
    """MMCV 1.7's StepLrUpdaterHook as ``EpochBasedRunner.run`` calls it."""
    import mmcv.runner  # noqa: F401  (registers the hooks)
    from mmcv.runner.hooks.lr_updater import StepLrUpdaterHook

    cfg = {k: v for k, v in RETINANET_LR_CONFIG.items() if k != "policy"}
    hook = StepLrUpdaterHook(**cfg)
    optimizer = _optimizer(0.01)
    runner = types.SimpleNamespace(
        optimizer=optimizer,
        data_loader=range(epoch_len),
        epoch=0,
        iter=0,
        inner_iter=0,
        max_epochs=epochs,
        max_iters=epochs * epoch_len,
    )
    hook.before_run(runner)
    values = []
    for epoch in range(epochs):
        runner.epoch = epoch
        hook.before_train_epoch(runner)
        for inner in range(epoch_len):
            runner.inner_iter = inner
            hook.before_train_iter(runner)
            values.append(optimizer.param_groups[0]["lr"])
            runner.iter += 1
    return values


def step_mmengine(epoch_len, epochs):
    """MMEngine's LinearLR (per iteration) and MultiStepLR (per epoch), stepped by ParamSchedulerHook."""
    from mmengine.optim.scheduler import LinearLR, MultiStepLR

    optimizer = _optimizer(0.01)
    warmup = LinearLR(optimizer, start_factor=0.001, by_epoch=False, begin=0, end=500)
    decay = MultiStepLR(optimizer, milestones=[8, 11], gamma=0.1, by_epoch=True, begin=0, end=12)
    values = []
    for _ in range(epochs):
        for _ in range(epoch_len):
            values.append(optimizer.param_groups[0]["lr"])
            warmup.step()
        decay.step()
    return values


def step_torch(scheduler_factory, n):
    """``scheduler.step()`` n times, reading the lr before each (no optimizer step between)."""
    optimizer = _optimizer(0.01)
    scheduler = scheduler_factory(optimizer)
    values = []
    for _ in range(n):
        values.append(optimizer.param_groups[0]["lr"])
        scheduler.step()
    return values


def step_timm(updates_per_epoch, base_lr):
    """timm's train.py loop: ``step_update(num_updates)`` after each update, ``step(epoch + 1)``
    after each epoch; the lr in force is read before each update."""
    from timm.scheduler import create_scheduler_v2

    optimizer = _optimizer(base_lr)
    scheduler, epochs = create_scheduler_v2(optimizer, **TIMM_COSINE, updates_per_epoch=updates_per_epoch)
    values, num_updates = [], 0
    for epoch in range(epochs):
        for _ in range(updates_per_epoch):
            values.append(optimizer.param_groups[0]["lr"])
            num_updates += 1
            scheduler.step_update(num_updates=num_updates)
        scheduler.step(epoch + 1)
    return values


def cases(quick: bool):
    """``{title: (purelr schedule, n, reference stepping function)}``."""
    epoch_len = 733 if quick else 7330
    n_retina = 12 * epoch_len
    updates = 10 if quick else 1251
    one_cycle_steps = 10_000 if quick else 100_000
    warmup = torch.optim.lr_scheduler.LinearLR
    milestones = [8 * epoch_len, 11 * epoch_len]
    return {
        f"RetinaNet 1x, MMCV lr_config ({n_retina:,})": (
            mmcv.lr_config(RETINANET_LR_CONFIG, 0.01, epoch_len=epoch_len, max_epochs=12),
            n_retina,
            lambda: step_mmcv(epoch_len, 12),
        ),
        f"RetinaNet 1x, MMEngine param_scheduler ({n_retina:,})": (
            mmengine.param_scheduler(RETINANET_PARAM_SCHEDULER, 0.01, epoch_len=epoch_len, max_epochs=12),
            n_retina,
            lambda: step_mmengine(epoch_len, 12),
        ),
        f"RetinaNet 1x, torch LinearLR+MultiStepLR ({n_retina:,})": (
            torch_schedules.chained_scheduler(
                [
                    torch_schedules.linear_lr(0.01, start_factor=0.001, total_iters=500),
                    torch_schedules.multistep_lr(0.01, milestones=milestones, gamma=0.1),
                ]
            ),
            n_retina,
            lambda: step_torch(
                lambda o: torch.optim.lr_scheduler.ChainedScheduler(
                    [
                        warmup(o, start_factor=0.001, total_iters=500),
                        torch.optim.lr_scheduler.MultiStepLR(o, milestones=milestones, gamma=0.1),
                    ]
                ),
                n_retina,
            ),
        ),
        f"timm cosine, 300 epochs x {updates} updates ({300 * updates:,})": (
            timm.create_scheduler_v2(1e-3, **TIMM_COSINE, updates_per_epoch=updates),
            300 * updates,
            lambda: step_timm(updates, 1e-3),
        ),
        f"torch OneCycleLR ({one_cycle_steps:,})": (
            torch_schedules.one_cycle_lr(0.1, total_steps=one_cycle_steps),
            one_cycle_steps,
            lambda: step_torch(
                lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.1, total_steps=one_cycle_steps),
                one_cycle_steps,
            ),
        ),
    }


HEADERS = ["curve", "purelr compile ms", "purelr ms", "reference ms", "speed-up", "(best)", "max rel diff"]


def main(argv=None) -> int:
    args = common.parser(__doc__.splitlines()[0]).parse_args(argv)
    common.install_shims()
    warnings.filterwarnings("ignore", module="mmcv")
    warnings.filterwarnings("ignore", "Detected call of")  # scheduler.step() with no optimizer.step()
    repeats = args.repeats or (1 if args.quick else 3)
    print(f"# whole curves · {common.machine()}\n")
    rows = []
    for title, (schedule, n, reference) in cases(args.quick).items():
        steps = jnp.arange(n)
        curve = jax.jit(jax.vmap(schedule))
        compile_s = common.once(lambda: curve.lower(steps).compile())
        curve(steps).block_until_ready()
        # purelr's call is microseconds and the reference's seconds: purelr runs 20 times a round
        times = common.interleaved(
            {"purelr": lambda: [curve(steps).block_until_ready() for _ in range(20)], "reference": reference},
            repeats,
            warmup=1,
        )
        purelr_s, reference_s = times["purelr"].median / 20, times["reference"].median
        expected = np.asarray(reference(), dtype=np.float64)
        got = np.asarray(curve(steps), dtype=np.float64)
        diff = float(np.max(np.abs(got - expected) / np.abs(expected)))
        best = times["reference"].best / (times["purelr"].best / 20)
        rows.append(
            [title, 1e3 * compile_s, 1e3 * purelr_s, 1e3 * reference_s, reference_s / purelr_s, best, f"{diff:.1e}"]
        )
        print(common.table(HEADERS, rows[-1:]).splitlines()[-1], flush=True)
    print()
    print(common.table(HEADERS, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
