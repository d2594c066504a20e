"""purelr: PyTorch, MMCV/MMEngine and timm schedules and optimizers as pure JAX/optax functions.

Submodules load on first use, so ``import purelr.schedules`` pulls in jax and numpy only.
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = ("schedules", "optim")


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"purelr.{name}")
    raise AttributeError(f"module 'purelr' has no attribute {name!r}")
