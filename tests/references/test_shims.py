"""The reference libraries and the test shims in one process, in the orders the suite imports them.

transformers' availability checks (``importlib.util.find_spec('torchvision')``) used to meet the
stub torchvision the shims left in ``sys.modules``: importing transformers, or MMEngine's optimizer
registry (which imports ``transformers.Adafactor``), failed halfway, and the next import of the
registry raised ``KeyError: 'ASGD is already registered'``. ``purelr.references.shims`` lends the
stub to ``mmcv.runner.checkpoint`` only while it runs. Each order runs in a fresh interpreter that
loads ``tests/conftest.py`` first, as pytest does.
"""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REFERENCES = (
    "mmengine.optim",
    "mmcv.runner",
    "transformers.trainer",
    "timm.optim",
    "mmdet.engine.optimizers",
    "mmpretrain.engine.optimizers",
    "purelr.references.mmcv",
    "purelr.references.timm",
)
ORDERS = {
    "mmengine first (the registry imports transformers)": REFERENCES,
    "transformers first": ("transformers.trainer", *REFERENCES[:2], *REFERENCES[3:]),
    "mmcv first": ("mmcv.runner", "purelr.references.mmcv", "transformers.trainer", "mmengine.optim"),
}
CHECK = """
import importlib, sys
import tests.conftest
for name in sys.argv[1:]:
    importlib.import_module(name)
import transformers
from mmengine.optim.optimizer.builder import OPTIMIZERS
from transformers import Trainer
import mmcv.runner.checkpoint
assert OPTIMIZERS.get("Adafactor") is transformers.Adafactor, OPTIMIZERS.get("Adafactor")
assert "torchvision" not in sys.modules, "the torchvision stub was left in sys.modules"
assert not transformers.utils.import_utils.is_torchvision_available()
print("imported", len(sys.argv) - 1)
"""


@pytest.mark.parametrize(
    "order",
    [pytest.param(order, marks=[] if "registry" in order else [pytest.mark.nightly]) for order in ORDERS],
    ids=list(ORDERS),
)
def test_references_import_together(order):
    """Every reference imports, MMEngine registers transformers' Adafactor once, no stub is left."""
    result = subprocess.run(
        [sys.executable, "-c", CHECK, *ORDERS[order]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": ROOT},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"imported {len(ORDERS[order])}" in result.stdout
