"""The package layout: one folder per layer, each importing only the layers below it, and the
module paths of purelr 0.1 still importable as aliases of the moved modules."""

import ast
import importlib
import pathlib

import pytest

import purelr
from purelr import _moved

PACKAGE = pathlib.Path(purelr.__file__).parent
LAYERS = ("schedules", "optim", "params", "training", "recipes", "cli")  # bottom to top


def purelr_imports(path: pathlib.Path) -> set[str]:
    """The purelr layers a module imports, at module level or inside functions."""
    layers = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "purelr" and len(parts) > 1:
                layers.add(parts[1])
    return layers


def layer_modules():
    for layer in LAYERS + ("references", "configs"):
        for path in sorted((PACKAGE / layer).rglob("*.py")):
            if "configs" not in path.relative_to(PACKAGE).parts[1:-1]:
                yield layer, path


@pytest.mark.parametrize(
    "layer,path", list(layer_modules()), ids=lambda x: str(x.relative_to(PACKAGE)) if isinstance(x, pathlib.Path) else x
)
def test_a_layer_imports_only_the_layers_below_it(layer, path):
    imported = purelr_imports(path)
    if layer in ("references", "configs"):
        # drivers of the originals and example configs stand beside the layers (drivers share their import shims)
        allowed = {"references"} if layer == "references" else set()
    else:
        allowed = set(LAYERS[: LAYERS.index(layer) + 1]) | ({"references", "configs"} if layer == "cli" else set())
    assert imported <= allowed, f"{path.relative_to(PACKAGE)} imports {sorted(imported - allowed)}"


def test_the_direction_check_sees_function_level_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("import jax\n\ndef f():\n    from purelr.recipes import build\n    import purelr.cli.plot\n")
    assert purelr_imports(module) == {"recipes", "cli"}


def test_no_module_is_left_at_the_top_level():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert top == ["__init__.py", "__main__.py", "_moved.py"]


@pytest.mark.parametrize("old,new", sorted(_moved.MOVED.items()))
def test_every_old_module_path_is_the_moved_module(old, new):
    module = importlib.import_module(old)
    assert module is importlib.import_module(new)
    assert module.__spec__.name == new and module.__name__ == new
    assert getattr(purelr, old.split(".")[1]) is module


def test_old_from_imports_keep_working():
    from purelr.builder import build
    from purelr.groups import hyperparams_in_force
    from purelr.timm import create_optimizer_v2

    assert build is purelr.build
    assert hyperparams_in_force is importlib.import_module("purelr.params.groups").hyperparams_in_force
    assert create_optimizer_v2.__module__ == "purelr.recipes.timm"
