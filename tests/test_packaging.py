"""The wheel and sdist ``python -m build`` makes: they carry the version of ``purelr.__version__``,
the shipped configs and ``py.typed``; the wheel installed in a fresh virtual environment (no
dependencies downloaded: it sees this environment's jax, optax and matplotlib) runs
``purelr plot`` on a shipped config."""

import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import venv
import zipfile

import purelr

ROOT = pathlib.Path(__file__).parent.parent
CONFIG = "retinanet_r50_fpn_1x_mmengine.py"


def _run(*command, cwd):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # no checkout on the path
    result = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{command}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_wheel_installs_and_plots(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "CHANGELOG.md", "MANIFEST.in"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "purelr", source / "purelr", ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path / "dist"
    _run(sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, source, cwd=tmp_path)
    version = purelr.__version__
    (wheel,) = dist.glob(f"purelr-{version}-py3-none-any.whl")
    (sdist,) = dist.glob(f"purelr-{version}.tar.gz")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    assert {"purelr/py.typed", f"purelr/configs/{CONFIG}", "purelr/configs/_base_/schedule_1x_mmengine.py"} <= shipped
    assert f"purelr-{version}/CHANGELOG.md" in tarfile.open(sdist).getnames()

    env = tmp_path / "venv"
    venv.create(env, system_site_packages=True, with_pip=True)
    python = env / "bin" / "python"
    _run(python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel, cwd=tmp_path)
    run = tmp_path / "run"
    run.mkdir()  # outside the checkout: purelr comes from the wheel
    where = _run(python, "-c", "import purelr, purelr.configs; print(purelr.__file__, purelr.__version__)", cwd=run)
    assert where.split() == [
        str(
            env
            / "lib"
            / f"python{sys.version_info.major}.{sys.version_info.minor}"
            / "site-packages"
            / "purelr"
            / "__init__.py"
        ),
        version,
    ]
    config = _run(
        python, "-c", f"import purelr.configs as c, os; print(os.path.join(c.__path__[0], {CONFIG!r}))", cwd=run
    )
    out = _run(
        env / "bin" / "purelr", "plot", config.strip(), "--epoch-len", "100", "-o", "lr.png", "--csv", "lr.csv", cwd=run
    )
    assert "wrote lr.png, lr.csv" in out
    assert (run / "lr.png").stat().st_size > 10_000
    assert (run / "lr.csv").read_text().count("\n") > 1000
