#!/usr/bin/env bash
# Installs purelr with its test extra and the reference libraries the parity tests run, and
# fetches the config corpora the corpus test reads (tests/corpus.py).
# mmengine, timm and mmcv 1.7.2 go in without their dependencies: their schedulers need
# neither torchvision (no CPU build here) nor mmcv's compiled ops. mmcv 1.7.2's setup.py needs
# setuptools<70 (pkg_resources), while torch requires setuptools>=77: its wheel is built in a
# throwaway venv, so the downgrade never reaches the environment purelr is installed in.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { echo "install.sh: $*"; }

step "purelr (editable) with its test extra: torch 2.13.0 CPU, pytest, hypothesis, ..."
python -m pip install -q -e ".[test]"
step "mmengine 0.10.7 and timm 1.0.31, without their dependencies"
python -m pip install -q --no-deps mmengine==0.10.7 timm==1.0.31
step "mmpretrain 1.2.0, mmdet 3.3.0 and mmsegmentation 1.2.2, without their dependencies (their engine modules only)"
python -m pip install -q --no-deps mmpretrain==1.2.0 mmdet==3.3.0 mmsegmentation==1.2.2
if python -c "import importlib.metadata as m; assert m.version('mmcv') == '1.7.2'" 2>/dev/null; then
  step "mmcv 1.7.2 already installed"
else
  build=$(mktemp -d)
  trap 'rm -rf "$build"' EXIT
  step "mmcv 1.7.2: a throwaway build venv with setuptools<70 (in $build)"
  python -m venv "$build/venv"
  "$build/venv/bin/python" -m pip install -q "setuptools<70" wheel
  step "mmcv 1.7.2: building its wheel without compiled ops (MMCV_WITH_OPS=0)"
  MMCV_WITH_OPS=0 "$build/venv/bin/python" -m pip wheel -q --no-deps --no-build-isolation \
    -w "$build/wheels" mmcv==1.7.2
  step "mmcv 1.7.2: installing the wheel without its dependencies"
  python -m pip install -q --no-deps "$build"/wheels/mmcv-1.7.2-*.whl
fi
step "the OpenMMLab config corpora (configs of 7 pinned wheels, sha256-checked) into tests/data/corpus, and the MMCV-era hook modules purelr twins (YOLOX, CosineAnnealingCooldown) into tests/data/sources"
python -m tests.corpus
step "done: $(python -c 'import importlib.metadata as m; print(", ".join(f"{d} {m.version(d)}" for d in ("purelr", "torch", "mmcv", "mmengine", "timm", "mmpretrain", "mmdet", "mmsegmentation")))')"
