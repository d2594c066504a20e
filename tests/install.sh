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
step "mmpretrain 1.2.0, mmdet 3.3.0, mmsegmentation 1.2.2 and mmpose 1.3.2, without their dependencies (their engine modules only)"
python -m pip install -q --no-deps mmpretrain==1.2.0 mmdet==3.3.0 mmsegmentation==1.2.2 mmpose==1.3.2
step "transformers 5.24.0 and accelerate 1.15.0 (the Trainer's references; neither pulls or upgrades torch)"
python -m pip install -q transformers==5.24.0 accelerate==1.15.0
step "deepspeed 0.19.8 without its ops (DS_BUILD_OPS=0) and without its dependencies, which follow pinned (torch stays the CPU wheel)"
DS_BUILD_OPS=0 python -m pip install -q --no-deps deepspeed==0.19.8
python -m pip install -q hjson==3.1.0 py-cpuinfo==9.0.0 pydantic==2.13.4 msgpack==1.2.4 psutil==7.2.2 einops==0.8.1 tqdm==4.70.1
step "bitsandbytes 0.50.2 without its dependencies (the Trainer's lion_32bit; its 32-bit Lion runs on the CPU)"
python -m pip install -q --no-deps bitsandbytes==0.50.2
step "torchao 0.18.0 without its dependencies (its low-bit AdamW runs on the CPU through torch.compile)"
python -m pip install -q --no-deps torchao==0.18.0
step "fvcore 0.1.5.post20221221 without its dependencies (its param_scheduler module is pure Python)"
python -m pip install -q --no-deps fvcore==0.1.5.post20221221
step "lion-pytorch 0.2.5 and heavyball 3.2.1 without their dependencies (torch stays the CPU wheel; heavyball's opt-einsum and numpy come with jax)"
python -m pip install -q --no-deps lion-pytorch==0.2.5 heavyball==3.2.1
step "prodigyopt 1.1.2 and dadaptation 3.2 without their dependencies (pure Python over torch)"
python -m pip install -q --no-deps prodigyopt==1.1.2 dadaptation==3.2
step "muon-optimizer 0.1.0 without its dependencies (Keller Jordan's muon.py, module muon)"
python -m pip install -q --no-deps muon-optimizer==0.1.0
step "schedulefree 1.4.1 without its dependencies (its optimizers are pure torch; torch stays the CPU wheel)"
python -m pip install -q --no-deps schedulefree==1.4.1
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
step "done: $(python -c 'import importlib.metadata as m; print(", ".join(f"{d} {m.version(d)}" for d in ("purelr", "torch", "mmcv", "mmengine", "timm", "mmpretrain", "mmdet", "mmsegmentation", "transformers", "accelerate", "deepspeed", "mmpose", "bitsandbytes", "fvcore", "torchao", "lion-pytorch", "heavyball", "prodigyopt", "dadaptation", "schedulefree")))')"
