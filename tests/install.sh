#!/usr/bin/env bash
# Installs purelr with its test extra and the reference libraries the parity tests run.
# mmengine, timm and mmcv 1.7.2 go in without their dependencies: their schedulers need
# neither torchvision (no CPU build here) nor mmcv's compiled ops.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -e ".[test]"
python -m pip install -q --no-deps mmengine==0.10.7 timm==1.0.31
if ! python -c "import importlib.metadata as m; assert m.version('mmcv') == '1.7.2'" 2>/dev/null; then
  python -m pip install -q "setuptools<70" wheel
  MMCV_WITH_OPS=0 python -m pip install -q --no-deps --no-build-isolation mmcv==1.7.2
fi
