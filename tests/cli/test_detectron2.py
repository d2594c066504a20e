"""`purelr plot` / `purelr compare --against fvcore` on detectron2 model-zoo YAML configs."""

import os

import pytest

from purelr.cli import main

ZOO = os.path.join(os.path.dirname(__file__), "..", "data", "detectron2", "configs")
CITYSCAPES = os.path.join(ZOO, "Cityscapes", "mask_rcnn_R_50_FPN.yaml")


def test_plot_reads_the_yaml_and_its_base(tmp_path, capsys):
    """The Cityscapes config (``_BASE_: ../Base-RCNN-FPN.yaml``): warmup from 1e-5 over 1000
    iterations to BASE_LR 0.01, decayed by 0.1 at 18000, to MAX_ITER 24000."""
    assert main(["plot", CITYSCAPES, "-o", str(tmp_path / "lr.png"), "--csv", str(tmp_path / "lr.csv")]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines()[1:7]]
    assert [(int(r[0]), float(r[2])) for r in rows] == [
        (0, 1e-05),
        (999, 0.00999001),
        (1000, 0.01),
        (17999, 0.01),
        (18000, 0.001),
        (23999, 0.001),
    ], out
    assert (tmp_path / "lr.png").stat().st_size > 0 and "24000 iterations" in out


def test_compare_against_fvcore_passes_and_fails(tmp_path, capsys):
    """A shortened run (``--max-iters`` replaces MAX_ITER) against LRMultiplier over fvcore's
    schedulers stepped by torch: float32 agreement passes, 1e-12 fails (exit 1)."""
    for rtol, code, verdict in ((1e-6, 0, "PASS"), (1e-12, 1, "FAIL")):
        assert (
            main(
                [
                    "compare",
                    CITYSCAPES,
                    "--against",
                    "fvcore",
                    "--max-iters",
                    "1500",
                    "--rtol",
                    str(rtol),
                    "-o",
                    str(tmp_path / "c.png"),
                ]
            )
            == code
        )
        last = capsys.readouterr().out.splitlines()[-1]
        assert last.startswith(f"{verdict}: ") and last.endswith("over 1500 iterations"), last


@pytest.mark.parametrize(
    "args, message",
    [
        (["compare", CITYSCAPES, "--against", "mmcv"], "the config is a detectron2 config"),
        (["plot", CITYSCAPES, "--max-epochs", "3"], "detectron2 configs count iterations"),
    ],
)
def test_mismatched_use_is_one_line_and_exit_2(args, message, tmp_path, capsys):
    assert main(args + ["-o", str(tmp_path / "x.png")]) == 2
    error = capsys.readouterr().err
    assert message in error and len(error.splitlines()) == 1, error
