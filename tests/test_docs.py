"""The documentation site builds with warnings as errors (``mkdocs build --strict``: broken links,
missing pages, docstrings the API reference cannot read), its plots drawn by the build."""

import importlib.util
import os
import pathlib
import subprocess
import sys

import yaml

ROOT = pathlib.Path(__file__).parent.parent


def _pages(nav):
    for entry in nav:
        for value in entry.values():
            yield from _pages(value) if isinstance(value, list) else [value]


def test_site_builds_strict_with_its_plots(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_MKDOCS_2_WARNING": "1"}
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    site = tmp_path / "site"
    with open(ROOT / "mkdocs.yml") as file:
        nav = yaml.load(file, Loader=yaml.BaseLoader)["nav"]
    for page in _pages(nav):
        assert (site / page.replace("index.md", "index.html").replace(".md", "/index.html")).is_file(), page
    plots = sorted(p.name for p in (site / "plots").glob("*.png"))
    assert plots == sorted(name.replace(".py", ".png") for name in _hooks().PLOTS)
    assert all((site / "plots" / name).stat().st_size > 20_000 for name in plots)
    optim = (site / "api" / "optim" / "index.html").read_text()
    assert 'id="purelr.optim.sgd.sgd"' in optim and 'id="purelr.optim.lamb.lamb"' in optim


def _hooks():
    spec = importlib.util.spec_from_file_location("purelr_docs_hooks", ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
