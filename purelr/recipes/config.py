"""Config files as MMCV 1.x / MMEngine read them: ``.py``, ``.json`` and ``.yaml`` with ``_base_``.

``load_config(path)`` returns a plain dict. A ``.py`` file runs as the user's own code (it is the
user's config, as in MMCV); its public module-level names, other than modules and functions, are
the config. ``_base_`` names a file or a list of files, relative to the file naming them; the bases
are merged (a key defined by two bases is an error, as in MMCV), then the file's own keys are merged
into them: dicts merge key by key, anything else replaces, and a dict with ``_delete_=True``
replaces the base's dict whole.
"""

from __future__ import annotations

import json
import os
import runpy
import types

EXTENSIONS = (".py", ".json", ".yaml", ".yml")


class ConfigError(ValueError):
    """A config file that cannot be read or merged; the message names the file and the key."""


def load_config(path: str | os.PathLike) -> dict:
    """The merged config dict of ``path`` and its ``_base_`` files."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"load_config path must be a file path, got {path!r}")
    return _load(os.path.abspath(os.fspath(path)), ())


def _load(path: str, chain: tuple) -> dict:
    if path in chain:
        cycle = " -> ".join(os.path.basename(p) for p in chain + (path,))
        raise ConfigError(f"_base_ cycle: {cycle}")
    own = _read(path)
    bases = own.pop("_base_", [])
    bases = [bases] if isinstance(bases, str) else bases
    if not isinstance(bases, (list, tuple)) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: _base_ must be a file name or a list of them, got {bases!r}")
    merged: dict = {}
    for base in bases:
        base_path = os.path.normpath(os.path.join(os.path.dirname(path), base))
        if not os.path.isfile(base_path):
            raise ConfigError(f"{path}: _base_ file {base!r} not found (looked for {base_path})")
        loaded = _load(base_path, chain + (path,))
        clash = sorted(set(merged) & set(loaded))
        if clash:
            raise ConfigError(f"{path}: keys {clash} are defined by more than one _base_ file")
        merged.update(loaded)
    return merge(own, merged)


def _read(path: str) -> dict:
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    extension = os.path.splitext(path)[1]
    if extension not in EXTENSIONS:
        raise ConfigError(f"{path}: config files must end in one of {list(EXTENSIONS)}, got {extension!r}")
    try:
        if extension == ".py":
            return _read_python(path)
        with open(path, encoding="utf-8") as file:
            if extension == ".json":
                data = json.load(file)
            else:
                import yaml

                data = yaml.safe_load(file)
    except (SyntaxError, json.JSONDecodeError) as error:
        raise ConfigError(f"{path}: does not parse: {error}") from error
    except Exception as error:  # yaml's errors, a .py config raising while it runs
        if isinstance(error, ConfigError):
            raise
        raise ConfigError(f"{path}: does not load: {type(error).__name__}: {error}") from error
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must hold a mapping, got {type(data).__name__}")
    return data


def _read_python(path: str) -> dict:
    namespace = runpy.run_path(path)
    return {
        name: value
        for name, value in namespace.items()
        if not name.startswith("__")
        and not isinstance(value, (types.ModuleType, types.FunctionType, type))
    }


def merge(child: dict, base: dict) -> dict:
    """``child`` merged into ``base``: dicts key by key (``_delete_=True`` replaces), others replace."""
    result = dict(base)
    for key, value in child.items():
        if isinstance(value, dict):
            value = dict(value)
            replace = value.pop("_delete_", False)
            if not replace and isinstance(result.get(key), dict):
                value = merge(value, result[key])
            else:
                value = merge(value, {})
        result[key] = value
    return result

