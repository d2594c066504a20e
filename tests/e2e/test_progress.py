"""examples/progress.py: a bar redrawn in place on a terminal, one line per epoch everywhere; and
``python -m examples.retinanet_1x`` prints those lines."""

import io
import subprocess
import sys

from examples import progress
from tests import ROOT


def stream(tty):
    out = io.StringIO()
    out.isatty = lambda: tty
    return out


def test_bar_and_epoch_line():
    assert progress.step_line(2, 12, 11, 25, 1.0238) == "epoch  3/12 [#########-----------] 12/25  loss 1.02380"
    assert (
        progress.epoch_line(2, 12, 1.05442, {"default": 0.02, "head": 0.04})
        == "epoch  3/12  loss 1.054420  lr default 0.02  head 0.04"
    )


def test_terminal_gets_the_bar_files_get_lines_only():
    for tty in (True, False):
        out = stream(tty)
        for k in range(3):
            progress.step(out, 0, 2, k, 3, 1.0)
        progress.epoch(out, 0, 2, 1.0, {"default": 0.1})
        text = out.getvalue()
        assert text.endswith("epoch 1/2  loss 1.000000  lr default 0.1\n")
        assert (text.count("\r") == 4) == tty and ("[" in text) == tty


def test_example_runs_with_its_log():
    done = subprocess.run(
        [sys.executable, "-m", "examples.retinanet_1x", "--epoch-len", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[-1].startswith("epoch 12/12  loss ") and "lr_mult=2.0" in lines[-1]
    assert sum(line.startswith("epoch ") for line in lines) == 12
