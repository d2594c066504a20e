"""Named parts a config can refer to with ``type=``: optimizers, schedules, constructors.

The twin of MMCV/MMEngine's ``OPTIMIZERS.register_module()`` registries. ``type='SGD'`` and every
other ``torch.optim`` name resolve to the ``purelr.optim`` twins; a user's own part is added with a
decorator::

    @purelr.register_optimizer()          # type='my_sgd' (the function's name) or name='MySGD'
    def my_sgd(lr, momentum=0.0, weight_decay=0.0) -> optax.GradientTransformation: ...

What each kind is called with is said by ``purelr.build``. ``custom_imports`` imports the modules
that register parts before a config is built, as MMCV does.
"""

from __future__ import annotations

import difflib
import importlib
import warnings
from typing import Callable

from purelr.schedules import validate

TORCH_OPTIMIZERS = {
    "SGD": "sgd",
    "Adam": "adam",
    "AdamW": "adamw",
    "Adamax": "adamax",
    "NAdam": "nadam",
    "RAdam": "radam",
    "Adagrad": "adagrad",
    "Adadelta": "adadelta",
    "RMSprop": "rmsprop",
    "Rprop": "rprop",
    "ASGD": "asgd",
    "Adafactor": "adafactor",
    "Muon": "muon",
    "LBFGS": "lbfgs",
}

OPENMMLAB_OPTIMIZERS = {"LARS": "mmpretrain_lars", "Lamb": "mmpretrain_lamb", "Adan": "mmpretrain_adan"}
"""The optimizers MMPretrain (and MMClassification 0.x: ``Lamb``) register, by their twins in ``purelr.optim``."""

_REGISTRIES: dict[str, dict[str, Callable]] = {"optimizer": {}, "schedule": {}, "constructor": {}}


def _register(kind: str, name: str | None, force: bool):
    if name is not None and not isinstance(name, str):
        raise TypeError(f"register_{kind} name must be a string or None, got {name!r}")

    def decorator(part: Callable) -> Callable:
        key = name or part.__name__
        if key in _REGISTRIES[kind] and not force and _REGISTRIES[kind][key] is not part:
            raise KeyError(f"{kind} {key!r} is already registered (pass force=True to replace it)")
        _REGISTRIES[kind][key] = part
        return part

    return decorator


def register_optimizer(name: str | None = None, *, force: bool = False):
    """Registers ``fn(**optimizer_cfg) -> optax.GradientTransformation`` as ``type=name``."""
    return _register("optimizer", name, force)


def register_schedule(name: str | None = None, *, force: bool = False):
    """Registers ``fn(base_value, *, epoch_len, max_iters, **cfg) -> schedule`` as a policy/type."""
    return _register("schedule", name, force)


def register_constructor(name: str | None = None, *, force: bool = False):
    """Registers ``fn(params, optimizer_cfg, paramwise_cfg, **context) -> labels and settings``."""
    return _register("constructor", name, force)


def registered(kind: str) -> dict[str, Callable]:
    """The parts of ``kind`` a config can name, built-in twins included."""
    parts = dict(_REGISTRIES[kind])
    if kind == "optimizer":
        import purelr.optim as optim

        for torch_name, twin in {**TORCH_OPTIMIZERS, **OPENMMLAB_OPTIMIZERS}.items():
            if hasattr(optim, twin):
                parts.setdefault(torch_name, getattr(optim, twin))
    if kind == "constructor":
        from purelr.params.layer_decay_openmmlab import CONSTRUCTORS

        for name, constructor in CONSTRUCTORS.items():
            parts.setdefault(name, constructor)
    return parts


MODEL_ZOOS = (
    "mmaction",
    "mmagic",
    "mmcls",
    "mmdet",
    "mmdet3d",
    "mmedit",
    "mmflow",
    "mmgen",
    "mmocr",
    "mmpose",
    "mmpretrain",
    "mmrazor",
    "mmrotate",
    "mmseg",
    "mmselfsup",
    "mmtrack",
    "mmyolo",
)
"""The OpenMMLab model-zoo packages; a JAX user need not have them installed."""
NOT_INSTALLED: set = set()
"""Modules of a model zoo that ``custom_imports`` named and that are not installed, or installed
without what they need (OpenMMLab configs import ``mmdet.models`` for a backbone; mmdet 3.x refuses
to import next to mmcv 1.x): skipped, and named when a part is then missing."""


def lookup(kind: str, name, where: str, builtin=()) -> Callable:
    """The part registered as ``name``; an unknown name raises naming ``where`` and close matches
    among the registered parts and the ``builtin`` names the caller handles itself."""
    parts = registered(kind)
    if not isinstance(name, str) or name not in parts:
        known = [*builtin, *parts]
        close = difflib.get_close_matches(str(name), known, n=3, cutoff=0.5)
        hint = f"; did you mean {close}?" if close else f"; known: {sorted(known)}"
        if NOT_INSTALLED:
            hint += (
                f" (custom_imports named {sorted(NOT_INSTALLED)}, not installed: a part they register "
                f"needs a purelr twin, @purelr.register_{kind}())"
            )
        raise ValueError(f"{where}: unknown {kind} type {name!r}{hint}")
    return parts[name]


def import_custom(custom_imports, where: str = "custom_imports") -> None:
    """MMCV's ``custom_imports=dict(imports=[...], allow_failed_imports=False)``. A module of a model
    zoo (``MODEL_ZOOS``) that is not installed, or fails to import, is skipped with a warning
    (``NOT_INSTALLED``): it registers models, which purelr does not build. Any other import failure
    is an error."""
    if custom_imports is None:
        return
    if not isinstance(custom_imports, dict) or "imports" not in custom_imports:
        raise ValueError(f"{where} must be dict(imports=[...], allow_failed_imports=False), got {custom_imports!r}")
    modules = custom_imports["imports"]
    modules = validate.strings(f"{where}.imports", [modules] if isinstance(modules, str) else modules)
    unknown = sorted(set(custom_imports) - {"imports", "allow_failed_imports"})
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; known: ['allow_failed_imports', 'imports']")
    for module in modules:
        package = module.split(".")[0]
        try:
            importlib.import_module(module)
        except Exception as error:
            if package in MODEL_ZOOS:
                if not (isinstance(error, ModuleNotFoundError) and error.name == package):
                    warnings.warn(
                        f"{where}.imports: {module!r} is installed but fails to import and is "
                        f"skipped: {type(error).__name__}: {error}"
                    )
                NOT_INSTALLED.add(module)
                continue
            if not isinstance(error, ImportError):
                raise
            if not custom_imports.get("allow_failed_imports", False):
                raise ImportError(f"{where}.imports: cannot import {module!r}: {error}") from error
            warnings.warn(f"{where}.imports: {module!r} failed to import and is skipped: {error}")
