"""`purelr plot`'s reading aids: phase boundaries from the schedules' structure, group names by
what they hold, constants in the title, the log lr axis past two decades, the CSV at the
schedule's precision."""

import jax
import numpy as np
import pytest

from purelr.cli import plot
from purelr.cli.curves import Curves, config_curves
from purelr.schedules import core, hf, mmcv, mmengine, timm

RETINANET = dict(
    optimizer=dict(
        type="SGD",
        lr=0.01,
        momentum=0.9,
        weight_decay=0.0001,
        paramwise_cfg=dict(bias_lr_mult=2.0, norm_decay_mult=0.0),
    ),
    lr_config=dict(policy="step", warmup="linear", warmup_iters=500, warmup_ratio=0.001, step=[8, 11]),
    runner=dict(type="EpochBasedRunner", max_epochs=12),
)


def test_schedules_mark_their_phases():
    warm_step = [
        dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=500),
        dict(type="MultiStepLR", begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1),
    ]
    assert core.phases_of(mmengine.param_scheduler(warm_step, 0.01, epoch_len=100, max_epochs=12)) == (
        (500, "LinearLR ends"),
        (800, "MultiStepLR milestone"),
        (1100, "MultiStepLR milestone"),
        (1200, "MultiStepLR ends"),
    )
    step = dict(policy="step", warmup="linear", warmup_iters=500, warmup_ratio=0.001, step=[8, 11])
    assert core.phases_of(mmcv.lr_config(step, 0.01, epoch_len=100, max_epochs=12)) == (
        (500, "linear warmup ends"),
        (800, "step at epoch 8"),
        (1100, "step at epoch 11"),
    )
    one_cycle = mmcv.lr_config(dict(policy="OneCycle", max_lr=0.003, pct_start=0.3), 0.01, max_iters=20000)
    assert core.phases_of(one_cycle) == ((6000, "phase 2 of 2"),)  # the peak is iteration 5999
    values = np.asarray(jax.vmap(one_cycle)(np.arange(5998, 6001)))
    assert values[1] == values.max()
    assert core.phases_of(
        timm.create_scheduler_v2(0.1, "multistep", 10, decay_milestones=[4, 7], warmup_epochs=2, updates_per_epoch=5)
    ) == (
        (10, "warmup ends"),
        (20, "decay by 0.1"),
        (35, "decay by 0.1"),
    )
    assert core.phases_of(hf.get_linear_schedule_with_warmup(0.1, 30, 100)) == ((30, "warmup ends"),)
    joined = core.join_schedules(
        [core.by_epoch(core.with_phases(core.constant_schedule(1.0), [(3, "x")]), 10), core.constant_schedule(2.0)],
        [50],
    )
    assert core.phases_of(joined) == ((30, "x"), (50, "schedule 1 begins"))
    assert core.phases_of(core.constant_schedule(1.0)) == ()


def test_curves_name_groups_by_what_they_hold_and_keep_constants():
    curves = config_curves(RETINANET, epoch_len=100)
    assert curves.phases == {500: "linear warmup ends", 800: "step at epoch 8", 1100: "step at epoch 11"}
    assert curves.names == {
        "lr_mult=2.0": "bias (lr x2)",
        "default": "1-D, depth-wise conv, weights",
        "decay_mult=0.0": "norm (no decay)",
    }
    assert plot.changing(curves) == ["lr"]
    assert plot.constants(curves) == "momentum 0.9, weight_decay 0.0001 (norm (no decay): 0)"
    assert plot._log_scale(curves, "lr", None)  # 1e-5 .. 2e-2: more than two decades
    assert not plot._log_scale(curves, "lr", False)
    assert plot.marks(curves) == [0, 500, 800, 1100, 1199]


def test_table_lists_phase_boundaries_and_at_most_columns_curves():
    curves = config_curves(RETINANET, epoch_len=100)
    lines = plot.table(curves, columns=2).splitlines()
    assert lines[0] == "(2 of 3 curves shown)"
    assert [int(line.split()[0]) for line in lines[2:]] == [0, 499, 500, 799, 800, 1099, 1100, 1199]
    assert lines[-1].endswith("end") and lines[4].endswith("linear warmup ends")


def test_sampled_breakpoints_where_no_phase_is_marked():
    values = np.concatenate([np.linspace(0, 1, 11), np.ones(10)])
    curves = Curves(np.arange(21), None, {("default", "lr"): values}, {"default": 1.0})
    assert plot.marks(curves) == [0, 10, 20]


@pytest.mark.parametrize("x64", [False, True], ids=["float32", "float64"])
def test_csv_values_at_the_schedule_precision(x64, tmp_path):
    with jax.enable_x64(x64):
        schedule = hf.get_linear_schedule_with_warmup(1e-3, 3, 10)
        values = np.asarray(jax.vmap(schedule)(np.arange(10)), dtype=np.float64)
    curves = Curves(np.arange(10), None, {("default", "lr"): values}, {"default": 1e-3})
    plot.write_csv(curves, tmp_path / "lr.csv")
    column = [line.split(",")[2] for line in (tmp_path / "lr.csv").read_text().splitlines()[1:]]
    parse = float if x64 else np.float32
    assert [float(parse(v)) for v in column] == list(values)  # nothing lost
    assert column[3] == "0.001"
    if not x64:
        assert all(len(v) <= 13 for v in column)  # no float64 noise of a float32 value (0.00033333336)


def test_draw_writes_a_png_with_a_warmup_panel(tmp_path):
    curves = config_curves(RETINANET, epoch_len=100)
    plot.draw(curves, tmp_path / "lr.png", title="retinanet")
    assert (tmp_path / "lr.png").read_bytes()[:4] == b"\x89PNG"
