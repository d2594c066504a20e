"""Stand-ins that let the reference libraries import on a machine without torchvision.

mmcv 1.7.2's ``mmcv.runner.checkpoint`` imports torchvision at module level (for loading
torchvision checkpoints, which nothing here does). A stub ``torchvision`` left in ``sys.modules``
for good breaks every later availability check by name: ``importlib.util.find_spec('torchvision')``
raises on a module without a spec, and with a spec says torchvision is there. transformers makes
such checks when imported (itself, or through MMEngine's optimizer registry, which imports
``transformers.Adafactor``): it then failed halfway, and MMEngine's half-filled registry raised
``KeyError: 'ASGD is already registered'`` on the next import. So the stub is lent to the modules
that need it while they execute, and taken back after: :func:`lend_torchvision`.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types

NEEDS_TORCHVISION = ("mmcv.runner.checkpoint",)
"""Modules that import torchvision at module level and use it only in functions purelr never calls."""


class _Lending(importlib.abc.Loader):
    """Runs ``loader.exec_module`` with a stub ``torchvision`` in ``sys.modules``, then removes it."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        lent = "torchvision" not in sys.modules
        if lent:
            sys.modules["torchvision"] = types.ModuleType("torchvision")
        try:
            self.loader.exec_module(module)
        finally:
            if lent:
                sys.modules.pop("torchvision", None)


class _TorchvisionLender(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name not in NEEDS_TORCHVISION:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        if spec is not None and spec.loader is not None:
            spec.loader = _Lending(spec.loader)
        return spec


def lend_torchvision() -> None:
    """Where torchvision is not installed, lends a stub of it to the modules in
    ``NEEDS_TORCHVISION`` while they are imported (a finder first on ``sys.meta_path``; idempotent)."""
    if any(isinstance(finder, _TorchvisionLender) for finder in sys.meta_path):
        return
    if "torchvision" not in sys.modules and importlib.util.find_spec("torchvision") is None:
        sys.meta_path.insert(0, _TorchvisionLender())


def stub_package(name: str, path: str) -> types.ModuleType:
    """A package ``name`` in ``sys.modules`` whose submodules load from the folder ``path`` while its
    own ``__init__`` never runs. It has a spec (``find_spec(name)`` answers it, as for an installed
    package), so availability checks by name (transformers') do not raise."""
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
    module.__spec__.submodule_search_locations = [path]
    module.__path__ = [path]
    sys.modules[name] = module
    return module


def module_from_file(name: str, path: str) -> types.ModuleType:
    """The module file ``path`` executed alone, once, as ``sys.modules[name]``: a reference part
    whose package ``__init__`` imports what this machine lacks (a model zoo's hooks)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"{path!r} is not a Python module file (for {name!r})")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]
