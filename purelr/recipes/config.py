"""Config files as MMCV 1.x / MMEngine read them: ``.py``, ``.json`` and ``.yaml`` with ``_base_``.

``load_config(path)`` returns a plain dict, as MMEngine 0.10's ``Config.fromfile`` reads the file:

- text substitutions first: ``{{ fileDirname }}`` (and ``fileBasename``,
  ``fileBasenameNoExtension``, ``fileExtname``), ``{{$ENV_VAR:default}}``, and ``{{_base_.a.b}}``,
  which becomes the value of ``a.b`` in the merged bases;
- ``_base_`` names a file or a list of files, relative to the file naming them, or
  ``scope::path`` under a config root given in ``scopes`` (``{'mmdet': '/path/to/mmdetection/
  configs'}``). The bases are merged (a key defined by two bases is an error), then the file's own
  keys are merged into them: dicts key by key, anything else replaces, a dict with ``_delete_=True``
  replaces the base's dict whole. A ``.py`` file also reads its bases as ``_base_.a.b``;
- MMEngine's pure-Python style (``with read_base(): from .._base_.x import *``): the bases' names
  are imported into the file, and other imports (``from torch.optim import SGD``) are
  ``pyconfig.Imported`` placeholders, never imported.

A ``.py`` file is read as data (``purelr.recipes.pyconfig``): code outside the subset configs are
written in is refused, naming the line. ``trust=True`` runs such code as MMCV/MMEngine run every
config file. Public names that are not modules, functions or imported placeholders are the config.
"""

from __future__ import annotations

import ast
import copy
import json
import os
import re
import types

from purelr.recipes import pyconfig
from purelr.recipes.errors import ConfigError

EXTENSIONS = (".py", ".json", ".yaml", ".yml")
BASE_VARIABLE = re.compile(r"\{\{\s*_base_\.([\w.]+)\s*\}\}")
ENV_VARIABLE = re.compile(r"\{\{['\"]?\s*\$(\w+)\s*:\s*(\S*?)\s*['\"]?\}\}")

__all__ = ["ConfigError", "load_config", "merge"]


def load_config(path: str | os.PathLike, *, scopes: dict | None = None, trust: bool = False) -> dict:
    """The merged config dict of ``path`` and its bases."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"load_config path must be a file path, got {path!r}")
    return _load(os.path.abspath(os.fspath(path)), (), dict(scopes or {}), trust)


def _load(path: str, chain: tuple, scopes: dict, trust: bool) -> dict:
    if path in chain:
        cycle = " -> ".join(os.path.basename(p) for p in chain + (path,))
        raise ConfigError(f"_base_ cycle: {cycle}")
    text, base_variables = _substituted(path)
    extension = os.path.splitext(path)[1]
    if extension == ".py":
        tree = _parsed(text, path)
        if _is_lazy(tree, path):
            return _config(*_lazy(text, path, chain, scopes, trust))
        bases = _base_files(tree, path)
    else:
        own = _data(text, path, extension)
        bases = own.pop("_base_", [])
    merged: dict = {}
    for base in [bases] if isinstance(bases, str) else bases:
        loaded = _load(_base_path(base, path, scopes), chain + (path,), scopes, trust)
        clash = sorted(set(merged) & set(loaded))
        if clash:
            raise ConfigError(f"{path}: keys {clash} are defined by more than one _base_ file")
        merged.update(loaded)
    if extension == ".py":
        own = _evaluated(text, path, {"_base_": merged}, trust)
    own = _with_base_variables(own, base_variables, merged, path)
    return merge(own, merged, where=path)


def _substituted(path: str) -> tuple[str, dict]:
    """The file's text after MMEngine's substitutions, and the ``{{_base_.x}}`` markers it holds."""
    text = _text(path)
    extension = os.path.splitext(path)[1]
    directory, name = os.path.split(path)
    for key, value in dict(
        fileDirname=directory,
        fileBasename=name,
        fileBasenameNoExtension=os.path.splitext(name)[0],
        fileExtname=extension,
    ).items():
        text = re.sub(r"\{\{\s*" + key + r"\s*\}\}", value.replace("\\", "/"), text)
    for variable, default in ENV_VARIABLE.findall(text):
        value = os.environ.get(variable, default)
        if not value:
            raise ConfigError(f"{path}: environment variable {variable!r} is not set and has no default")
        text = re.sub(
            r"\{\{['\"]?\s*\$" + variable + r"\s*:\s*" + re.escape(default) + r"\s*['\"]?\}\}",
            value.replace("\\", "/"),
            text,
        )
    markers: dict[str, str] = {}
    for variable in sorted(set(BASE_VARIABLE.findall(text))):
        marker = f"_base_.{variable}@{len(markers)}"
        markers[marker] = variable
        text = re.sub(r"\{\{\s*_base_\." + re.escape(variable) + r"\s*\}\}", f'"{marker}"', text)
    return text, markers


def _text(path: str) -> str:
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    extension = os.path.splitext(path)[1]
    if extension not in EXTENSIONS:
        raise ConfigError(f"{path}: config files must end in one of {list(EXTENSIONS)}, got {extension!r}")
    try:
        with open(path, encoding="utf-8") as file:
            return file.read()
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: is not UTF-8 text: {error}") from error


def _parsed(text: str, path: str) -> ast.Module:
    try:
        return ast.parse(text, filename=path)
    except SyntaxError as error:
        raise ConfigError(f"{path}: does not parse: {error}") from error


def _is_lazy(tree: ast.Module, path: str) -> bool:
    """MMEngine's rule: the pure-Python style if a ``with read_base():``, a relative import or an
    import of a non-standard-library module comes before any ``_base_ = ...``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and node.targets[0].id == "_base_":
            return False
        if isinstance(node, ast.With):
            return True
        if isinstance(node, ast.ImportFrom):
            if node.level or not (pyconfig.standard_library(node.module or "") or node.module == "mmengine"):
                return True
        if isinstance(node, ast.Import) and not all(pyconfig.standard_library(alias.name) for alias in node.names):
            return True
    return False


def _base_files(tree: ast.Module, path: str):
    """The value of the first top-level ``_base_ = ...`` (a file name or a list of them)."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and node.targets[0].id == "_base_":
            bases = pyconfig.value_of(node.value, path)
            break
    else:
        return []
    names = [bases] if isinstance(bases, str) else bases
    if not isinstance(names, (list, tuple)) or not all(isinstance(b, str) for b in names):
        raise ConfigError(f"{path}: _base_ must be a file name or a list of them, got {bases!r}")
    return list(names)


def _base_path(base: str, path: str, scopes: dict) -> str:
    if "::" in base:
        scope, _, relative = base.partition("::")
        if scope not in scopes:
            raise ConfigError(
                f"{path}: _base_ {base!r} names the scope {scope!r}: give its config root, "
                f"load_config(path, scopes={{{scope!r}: '/path/to/{scope}/configs'}}) "
                f"(--scope {scope}=PATH); known scopes: {sorted(scopes)}"
            )
        resolved = os.path.join(scopes[scope], relative)
    else:
        resolved = os.path.normpath(os.path.join(os.path.dirname(path), base))
    if not os.path.isfile(resolved):
        raise ConfigError(f"{path}: _base_ file {base!r} not found (looked for {resolved})")
    return resolved


def _data(text: str, path: str, extension: str) -> dict:
    try:
        if extension == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except ValueError as error:  # json's errors
        raise ConfigError(f"{path}: does not parse: {error}") from error
    except Exception as error:  # yaml's errors
        raise ConfigError(f"{path}: does not load: {type(error).__name__}: {error}") from error
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must hold a mapping, got {type(data).__name__}")
    return data


def _namespace(text: str, path: str, names: dict, trust: bool, *, import_base=None, imported=None) -> dict:
    """Runs the ``.py`` config ``text`` in ``names`` (its bases' values, config dicts as MMEngine's
    ``ConfigDict``s) and returns the namespace; ``_base_ = ...`` is skipped, as MMEngine removes it."""
    config_dicts: dict = {}
    pyconfig.mark(list(names.values()), config_dicts)
    tree = _parsed(text, path)
    tree.body = [
        node
        for node in tree.body
        if not (
            isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and node.targets[0].id == "_base_"
        )
    ]
    try:
        pyconfig.execute_module(
            tree, path, names, config_dicts=config_dicts, import_base=import_base, trust=trust, imported=imported
        )
    except ConfigError:
        raise
    except Exception as error:  # the file's own error: a KeyError, a ZeroDivisionError, ...
        raise ConfigError(f"{path}: does not load: {type(error).__name__}: {error}") from error
    return names


def _config(names: dict, imported: set | None = None) -> dict:
    """A namespace's config: its public names other than modules and functions, and other than
    imported names (those bound by imports in a pure-Python config, placeholders in the others)."""
    return {
        name: value
        for name, value in names.items()
        if not name.startswith("__")
        and name != "_base_"
        and not isinstance(value, (types.ModuleType, types.FunctionType, types.SimpleNamespace, type))
        and (name not in imported if imported is not None else not isinstance(value, pyconfig.Imported))
    }


def _evaluated(text: str, path: str, names: dict, trust: bool) -> dict:
    return _config(_namespace(text, path, names, trust))


def _lazy(text: str, path: str, chain: tuple, scopes: dict, trust: bool) -> tuple[dict, set]:
    """MMEngine's pure-Python style: the namespace, in which ``with read_base():`` imports the bases'
    names, and the names bound by imports (this file's and its bases')."""
    imported: set = set()

    def import_base(module: str, level: int, wanted: list, line: int) -> dict:
        if level:
            base = os.path.join(os.path.dirname(path), *[".."] * (level - 1), *module.split(".")) + ".py"
        else:
            package, _, rest = module.partition(".")
            root = scopes.get(package)
            if root is None or not rest.startswith("configs."):
                raise ConfigError(
                    f"{path}, line {line}: read_base() imports {module!r}: give the config root of "
                    f"{package!r}, load_config(path, scopes={{{package!r}: '/path/to/{package}/configs'}})"
                )
            base = os.path.join(root, *rest.split(".")[1:]) + ".py"
        base = os.path.normpath(base)
        if not os.path.isfile(base):
            raise ConfigError(f"{path}, line {line}: read_base() imports {module!r}, but {base} is not a file")
        if base in chain + (path,):
            raise ConfigError(f"read_base() cycle: {' -> '.join(os.path.basename(p) for p in chain + (path, base))}")
        names, base_imported = _lazy(_text(base), base, chain + (path,), scopes, trust)
        imported.update(base_imported)
        missing = sorted(set(wanted) - set(names) - {"*"})
        if missing:
            raise ConfigError(f"{path}, line {line}: {module!r} defines no {missing}")
        return {name: value for name, value in names.items() if not name.startswith("__")}

    return _namespace(text, path, {}, trust, import_base=import_base, imported=imported), imported


def _with_base_variables(value, markers: dict, bases: dict, path: str):
    """``{{_base_.a.b}}`` markers replaced by (copies of) the bases' values."""
    if isinstance(value, str) and value in markers:
        found = bases
        for key in markers[value].split("."):
            if not isinstance(found, dict) or key not in found:
                raise ConfigError(f"{path}: {{{{_base_.{markers[value]}}}}}: the bases define no {key!r} there")
            found = found[key]
        return copy.deepcopy(found)
    if isinstance(value, dict):
        return {key: _with_base_variables(item, markers, bases, path) for key, item in value.items()}
    if type(value) in (list, tuple):
        return type(value)(_with_base_variables(item, markers, bases, path) for item in value)
    return value


def merge(child: dict, base: dict, *, where: str = "config") -> dict:
    """``child`` merged into ``base`` as MMEngine merges a file into its bases: dicts key by key
    (``_delete_=True`` replaces the base's dict), anything else replaces."""
    result = dict(base)
    for key, value in child.items():
        if isinstance(value, dict):
            value = dict(value)
            if key in result and not value.pop("_delete_", False):
                if not isinstance(result[key], dict):
                    raise ConfigError(
                        f"{where}: {key} is a dict here but a {type(result[key]).__name__} in its "
                        f"base; set _delete_=True to replace it"
                    )
                value = merge(value, result[key], where=where)
        result[key] = value
    return result
