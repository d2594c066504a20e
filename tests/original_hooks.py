"""MMDetection 2.28.2's ``YOLOXLrUpdaterHook`` and MMClassification 0.25.0's
``CosineAnnealingCooldownLrUpdaterHook``, loaded from their own files (``tests.corpus.source``).

Neither package can be installed next to MMDetection 3.x / MMPretrain, and their package
``__init__``s import models and compiled ops; these two module files import only
``mmcv.runner.hooks`` (MMCV 1.7.2, installed), so each is executed alone and registers its hook in
MMCV's ``HOOKS``, where ``purelr.references.mmcv.build_hook`` finds it by its policy's name.
"""

import sys
import warnings

from purelr.references.shims import module_from_file
from tests import corpus

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # mmcv's "MMCV will release v2.0.0" notice
    from mmcv.runner.hooks import HOOKS

    from purelr.references import mmcv as _driver  # noqa: F401 (stands in for torchvision first)


def register() -> None:
    """Loads each file of ``tests.corpus.ORIGINAL_MODULES`` once (its hook registered in ``HOOKS``)."""
    for tree, member in corpus.ORIGINAL_MODULES:
        name = "original_" + member.removesuffix(".py").replace("/", "_")
        if name not in sys.modules:  # corpus.source is asked for the file only the first time
            module_from_file(name, corpus.source(tree, member))


def hook(policy: str):
    """The original hook class of ``policy`` (``'YOLOX'``, ``'CosineAnnealingCooldown'``)."""
    register()
    return HOOKS.get(policy + "LrUpdaterHook")
