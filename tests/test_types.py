"""purelr type-checks with no error under mypy at the strictness set in pyproject.toml's
``[tool.mypy]`` (mypy's defaults plus ``check_untyped_defs``); ``py.typed`` ships with it."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).parent.parent


def test_mypy():
    result = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_py_typed_marker():
    assert (ROOT / "purelr" / "py.typed").is_file()
