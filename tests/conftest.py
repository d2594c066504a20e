"""Shared test set-up: precision modes and the import shims for the reference libraries.

- timm needs torchvision, which has no CPU build here: `timm.scheduler` and `timm.optim` (with
  `create_optimizer_v2`) are loaded through stub `timm`, `timm.layers` and `timm.models` packages
  whose `__path__` is the installed folder, so their `__init__` (which imports the models and
  torchvision) never runs.
- mmcv 1.7.2's `mmcv.runner` imports torchvision for checkpoint loading only: a stub module is lent
  to `mmcv.runner.checkpoint` while it executes, and taken back (`purelr.references.shims`), so
  transformers' availability checks (run when MMEngine's optimizer registry imports
  `transformers.Adafactor`) see no torchvision instead of failing on the stub.
- mmpretrain, mmdet, mmseg and mmpose (installed `--no-deps`) register their optimizers, constructors and
  schedulers in `<package>.engine.*`; their package `__init__`s import models, datasets and mmcv 2.x
  ops. `mmpretrain`, `mmdet`, `mmseg` and their `engine` packages are stubs over the installed
  folders, so `import mmdet.engine.schedulers` runs only that module and what it imports.
"""

import gc
import importlib.machinery
import importlib.util
import os
import sys

import jax
import pytest

from purelr.references.shims import lend_torchvision
from purelr.references.shims import stub_package as _stub_package


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
    for package in ("mmpretrain", "mmdet", "mmseg", "mmpose"):
        if package in sys.modules:
            continue
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue  # not installed: tests that need it fail on import, loudly
        root = spec.submodule_search_locations[0]
        _stub_package(package, root)
        _stub_package(f"{package}.engine", os.path.join(root, "engine"))


_install_timm_shim()
lend_torchvision()
_install_openmmlab_shims()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(params=["x64", "f32"])
def precision(request):
    """Runs a test once under ``jax_enable_x64`` and once in float32; yields the mode's name."""
    with jax.enable_x64(request.param == "x64"):
        yield request.param


MEMORY_MAPS_BEFORE_CLEARING = 20_000


def _memory_maps() -> int:
    try:
        with open("/proc/self/maps") as maps:
            return sum(1 for _ in maps)
    except OSError:
        return 0


def pytest_runtest_teardown(item, nextitem):
    """Drop JAX's compiled programs between test modules once the process maps many regions.

    Each XLA:CPU executable keeps its JIT-linked code in memory mappings; a worker that runs a
    third of the suite reaches Linux's `vm.max_map_count` (65530) and LLVM then fails with
    "Cannot allocate memory" (a CI run crashed so at 89%). Clearing at a module's end keeps the
    functions a module shares compiled within it.
    """
    if nextitem is not None and getattr(nextitem, "module", None) is getattr(item, "module", None):
        return
    if _memory_maps() > MEMORY_MAPS_BEFORE_CLEARING:
        jax.clear_caches()
        gc.collect()
