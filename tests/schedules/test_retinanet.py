"""MMDetection's RetinaNet 1x recipe in its three spellings, against the curve MMCV's runner gives.

SGD lr 0.01, linear warmup over 500 iterations from 0.001 of it, decays by 10 at epochs 8 and 11,
12 epochs of 7330 iterations: MMCV 1.x ``lr_config``, MMEngine ``param_scheduler`` and torch's
``ChainedScheduler([LinearLR, MultiStepLR])``, each compared with
MMCV 1.7.2's LrUpdaterHook driven as EpochBasedRunner drives it, at every iteration.

MMEngine's form is not the same curve during warmup: its ``LinearLR`` with ``end=500`` reaches the
full lr at iteration 499 (``total_iters = end - begin - 1``), where MMCV's warmup reaches it at 500.
The MMEngine twin is checked against MMEngine itself in test_mmengine.py; here the two recipes are
shown to agree from step 500 on and to differ during warmup by the one-iteration stretch only.
"""

import jax.numpy as jnp
import numpy as np

from purelr.schedules import torch as torch_schedules
from purelr.schedules.mmcv import lr_config
from purelr.schedules.mmengine import param_scheduler
from tests.parity import assert_schedule_matches, jitted
from tests.schedules.test_mmcv import RETINANET_1X, retinanet_reference

EPOCH_LEN, EPOCHS = 7330, 12


def torch_form():
    warmup = torch_schedules.linear_lr(0.01, start_factor=0.001, total_iters=500)
    decay = torch_schedules.multistep_lr(0.01, milestones=[8 * EPOCH_LEN, 11 * EPOCH_LEN])
    return torch_schedules.chained_scheduler([warmup, decay])


MMENGINE_RETINANET_1X = [
    dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type="MultiStepLR", begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1),
]


def test_retinanet_1x_in_every_form_matches_mmcv_runner(precision):
    expected = retinanet_reference(EPOCH_LEN)
    steps = jnp.arange(EPOCHS * EPOCH_LEN)
    forms = {
        "mmcv lr_config": lr_config(RETINANET_1X, 0.01, epoch_len=EPOCH_LEN, max_epochs=EPOCHS),
        "torch ChainedScheduler": torch_form(),
    }
    assert expected.shape == (EPOCHS * EPOCH_LEN,)
    for name, schedule in forms.items():
        assert_schedule_matches(np.asarray(schedule(steps)), expected, precision, context=name)
        assert_schedule_matches(jitted(schedule, steps), expected, precision, context=f"{name} jitted")

    mmengine_schedule = param_scheduler(MMENGINE_RETINANET_1X, 0.01, epoch_len=EPOCH_LEN, max_epochs=EPOCHS)
    mmengine = np.asarray(mmengine_schedule(steps))
    assert_schedule_matches(mmengine[500:], expected[500:], precision, context="mmengine after warmup")
    assert_schedule_matches(
        jitted(mmengine_schedule, steps)[500:], expected[500:], precision, context="mmengine after warmup jitted"
    )
    warmup = np.arange(500)
    stretched = 0.01 * (0.001 + 0.999 * np.minimum(warmup / 499, 1.0))  # MMEngine: full lr at 499
    assert_schedule_matches(mmengine[:500], stretched, precision, context="mmengine warmup")
    assert 0 < np.max(np.abs(mmengine[:500] - expected[:500]) / expected[:500]) < 2.1e-3
