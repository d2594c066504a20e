"""Shared test set-up: precision modes and the import shims for the reference libraries.

- timm needs torchvision, which has no CPU build here: `timm.scheduler` (and `timm.optim`) are
  loaded through a stub `timm` package whose `__path__` is the installed folder, so `timm/__init__`
  (which imports the models and torchvision) never runs.
- mmcv 1.7.2's `mmcv.runner` imports torchvision for checkpoint loading only: a stub module stands in.
"""

import importlib.util
import os
import sys
import types

import jax
import pytest


def _install_timm_shim():
    if "timm" in sys.modules:
        return
    spec = importlib.util.find_spec("timm")
    if spec is None or not spec.submodule_search_locations:
        return  # not installed: tests that need it fail on import, loudly
    stub = types.ModuleType("timm")
    stub.__path__ = list(spec.submodule_search_locations)
    sys.modules["timm"] = stub


def _install_torchvision_stub():
    if "torchvision" not in sys.modules and importlib.util.find_spec("torchvision") is None:
        sys.modules["torchvision"] = types.ModuleType("torchvision")


_install_timm_shim()
_install_torchvision_stub()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(params=["x64", "f32"])
def precision(request):
    """Runs a test once under ``jax_enable_x64`` and once in float32; yields the mode's name."""
    with jax.enable_x64(request.param == "x64"):
        yield request.param
