"""``python -m purelr`` / ``purelr``: the breakpoints of an example schedule.

The example is MMDetection's RetinaNet 1x recipe written with torch schedulers: lr 0.01, a linear
warmup over 500 iterations from 0.001 of it, decays by 10 at epochs 8 and 11 of 12, 7330
iterations an epoch (``ChainedScheduler([LinearLR, MultiStepLR])`` stepped every iteration).
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp

from purelr.breakpoints import breakpoints
from purelr.schedules import torch as schedules

EPOCH_LEN, EPOCHS = 7330, 12


def example_schedule():
    warmup = schedules.linear_lr(0.01, start_factor=0.001, total_iters=500)
    decay = schedules.multistep_lr(0.01, milestones=[8 * EPOCH_LEN, 11 * EPOCH_LEN], gamma=0.1)
    return schedules.chained_scheduler([warmup, decay])


def main(argv=None) -> int:
    schedule = example_schedule()
    values = jax.jit(jax.vmap(schedule))(jnp.arange(EPOCH_LEN * EPOCHS))
    print("RetinaNet 1x (torch LinearLR warmup + MultiStepLR), lr by iteration:")
    print(f"{'iteration':>10} {'epoch':>6} {'lr':>12}")
    for step in breakpoints(values):
        print(f"{step:>10} {step // EPOCH_LEN:>6} {float(values[step]):>12.6g}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
