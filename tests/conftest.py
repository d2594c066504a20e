"""Shared test set-up: precision modes and the import shims for the reference libraries.

- timm needs torchvision, which has no CPU build here: `timm.scheduler` and `timm.optim` (with
  `create_optimizer_v2`) are loaded through stub `timm`, `timm.layers` and `timm.models` packages
  whose `__path__` is the installed folder, so their `__init__` (which imports the models and
  torchvision) never runs.
- mmcv 1.7.2's `mmcv.runner` imports torchvision for checkpoint loading only: a stub module stands in.
- mmpretrain, mmdet and mmseg (installed `--no-deps`) register their optimizers, constructors and
  schedulers in `<package>.engine.*`; their package `__init__`s import models, datasets and mmcv 2.x
  ops. `mmpretrain`, `mmdet`, `mmseg` and their `engine` packages are stubs over the installed
  folders, so `import mmdet.engine.schedulers` runs only that module and what it imports.
"""

import importlib.machinery
import importlib.util
import os
import sys
import types

import jax
import pytest


def _stub_package(name, path):
    module = types.ModuleType(name)
    module.__path__ = [path]
    module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
    module.__spec__.submodule_search_locations = [path]
    sys.modules[name] = module
    return module


def _install_timm_shim():
    if "timm" in sys.modules:
        return
    spec = importlib.util.find_spec("timm")
    if spec is None or not spec.submodule_search_locations:
        return  # not installed: tests that need it fail on import, loudly
    root = spec.submodule_search_locations[0]
    _stub_package("timm", root)
    # timm.optim's factory needs timm.models.group_parameters, whose module needs one name of
    # timm.layers: both packages are stubs holding just that name, so neither __init__ runs.
    layers = _stub_package("timm.layers", os.path.join(root, "layers"))
    layers.use_reentrant_ckpt = importlib.import_module("timm.layers.config").use_reentrant_ckpt
    models = _stub_package("timm.models", os.path.join(root, "models"))
    models.group_parameters = importlib.import_module("timm.models._manipulate").group_parameters


def _install_openmmlab_shims():
    for package in ("mmpretrain", "mmdet", "mmseg"):
        if package in sys.modules:
            continue
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue  # not installed: tests that need it fail on import, loudly
        root = spec.submodule_search_locations[0]
        _stub_package(package, root)
        _stub_package(f"{package}.engine", os.path.join(root, "engine"))


def _install_torchvision_stub():
    if "torchvision" not in sys.modules and importlib.util.find_spec("torchvision") is None:
        stub = sys.modules["torchvision"] = types.ModuleType("torchvision")
        stub.__spec__ = importlib.machinery.ModuleSpec("torchvision", None)


_install_timm_shim()
_install_torchvision_stub()
_install_openmmlab_shims()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(params=["x64", "f32"])
def precision(request):
    """Runs a test once under ``jax_enable_x64`` and once in float32; yields the mode's name."""
    with jax.enable_x64(request.param == "x64"):
        yield request.param
