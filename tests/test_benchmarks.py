"""Smoke test of the benchmark scripts: each ``--quick`` mode runs to its table (no timings checked).
The scripts that compile whole optimizers (20-40 s each on 2 cores) run nightly."""

import importlib

import pytest

SCRIPTS = ["curves", "groups", "low_bit_memory"] + [
    pytest.param(name, marks=pytest.mark.nightly) for name in ("update", "compile", "train_step", "accelerator")
]


@pytest.mark.parametrize("name", SCRIPTS)
def test_quick_mode_prints_a_table(name, capsys):
    module = importlib.import_module(f"benchmarks.{name}")
    assert module.main(["--quick", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# ") and "|--" in out
