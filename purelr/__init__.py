"""purelr: PyTorch, MMCV/MMEngine and timm schedules and optimizers as pure JAX/optax functions.

Submodules load on first use, so ``import purelr.schedules`` pulls in jax and numpy only.
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = ("schedules", "optim", "paramwise", "paramwise_timm", "groups", "module_kinds", "config",
               "registry", "accumulate", "plateau", "averaging", "batchnorm", "checkpoint", "curves", "plot",
               "from_torch", "compare", "references")


_ATTRIBUTES = {
    "build": "purelr.builder",
    "load_config": "purelr.config",
    "register_optimizer": "purelr.registry",
    "register_schedule": "purelr.registry",
    "register_constructor": "purelr.registry",
}


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"purelr.{name}")
    if name in _ATTRIBUTES:
        return getattr(importlib.import_module(_ATTRIBUTES[name]), name)
    raise AttributeError(f"module 'purelr' has no attribute {name!r}")
