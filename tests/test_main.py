"""`python -m purelr`: the README's first command prints the example's breakpoints."""

import subprocess
import sys

import numpy as np

from purelr.breakpoints import breakpoints


def test_main_prints_retinanet_breakpoints():
    result = subprocess.run([sys.executable, "-m", "purelr"], capture_output=True, text=True, check=True)
    rows = [line.split() for line in result.stdout.splitlines()[2:]]
    table = {int(step): float(lr) for step, _, lr in rows}
    assert table == {0: 1e-05, 500: 0.01, 58639: 0.01, 58640: 0.001, 80629: 0.001, 80630: 0.0001, 87959: 0.0001}


def test_breakpoints_mark_slope_changes_and_jumps():
    curve = np.concatenate([np.linspace(0, 1, 11), np.ones(5), 0.1 * np.ones(5)])
    assert breakpoints(curve) == [0, 10, 15, 16, 20]
