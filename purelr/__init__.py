"""purelr: PyTorch, MMCV/MMEngine and timm schedules and optimizers as pure JAX/optax functions.

One folder per layer, each importing only the layers below it: ``schedules`` (pure ``step ->
value``), ``optim`` (optax twins), ``params`` (which leaf gets which settings), ``training``
(stateful loop pieces), ``recipes`` (configs and one reader per framework; ``build``), ``cli``.
Submodules load on first use, so ``import purelr.schedules`` pulls in jax and numpy only.
"""

import importlib
import sys

from purelr import _moved

__version__ = "0.1.0"

_SUBMODULES = ("schedules", "optim", "params", "training", "recipes", "cli", "references", "configs")

_ATTRIBUTES = {
    "build": "purelr.recipes.build",
    "load_config": "purelr.recipes.config",
    "register_optimizer": "purelr.recipes.registry",
    "register_schedule": "purelr.recipes.registry",
    "register_constructor": "purelr.recipes.registry",
}

if _moved.FINDER not in sys.meta_path:
    sys.meta_path.append(_moved.FINDER)


def __getattr__(name):
    if name in _SUBMODULES or f"purelr.{name}" in _moved.MOVED:
        return importlib.import_module(f"purelr.{name}")
    if name in _ATTRIBUTES:
        return getattr(importlib.import_module(_ATTRIBUTES[name]), name)
    raise AttributeError(f"module 'purelr' has no attribute {name!r}")
