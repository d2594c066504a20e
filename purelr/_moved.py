"""The module paths of purelr 0.1 (one flat package) as aliases of the layer folders' modules.

``import purelr.paramwise`` gives the module ``purelr.params.paramwise`` itself (one module object
under both names), through a finder on ``sys.meta_path`` that ``purelr/__init__.py`` installs, so
the old paths need no files of their own.
"""

import importlib
import importlib.util
import types

MOVED = {
    "purelr.module_kinds": "purelr.params.module_kinds",
    "purelr.groups": "purelr.params.groups",
    "purelr.paramwise": "purelr.params.paramwise",
    "purelr.paramwise_timm": "purelr.params.timm",
    "purelr.accumulate": "purelr.training.accumulate",
    "purelr.plateau": "purelr.training.plateau",
    "purelr.averaging": "purelr.training.averaging",
    "purelr.batchnorm": "purelr.training.batchnorm",
    "purelr.checkpoint": "purelr.training.checkpoint",
    "purelr.from_torch": "purelr.training.from_torch",
    "purelr.to_torch": "purelr.training.to_torch",
    "purelr.config": "purelr.recipes.config",
    "purelr.registry": "purelr.recipes.registry",
    "purelr.builder": "purelr.recipes.build",
    "purelr.timm": "purelr.recipes.timm",
    "purelr.compare": "purelr.cli.compare",
    "purelr.curves": "purelr.cli.curves",
    "purelr.plot": "purelr.cli.plot",
    "purelr.breakpoints": "purelr.cli.breakpoints",
}


def _find_spec(name, path=None, target=None):
    if name not in MOVED:
        return None
    return importlib.util.spec_from_loader(name, _LOADER)


def _create_module(spec):
    module = importlib.import_module(MOVED[spec.name])
    _SPECS[module.__name__] = module.__spec__
    return module


def _exec_module(module):
    # the import system stamps the alias's spec on the module: give it its own back
    module.__spec__ = _SPECS[module.__name__]


_SPECS: dict[str, importlib.machinery.ModuleSpec | None] = {}
_LOADER = types.SimpleNamespace(create_module=_create_module, exec_module=_exec_module)
FINDER = types.SimpleNamespace(find_spec=_find_spec)
