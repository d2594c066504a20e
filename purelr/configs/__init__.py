"""Example configs shipped with purelr (package data): ``purelr.build(path_of(name), params, ...)``.

MMDetection 2.x (MMCV) form: ``retinanet_r50_fpn_1x_mmcv.py``, ``faster_rcnn_r50_fpn_1x_clip_mmcv.py``,
``onecycle_mmcv.py``; MMEngine form: ``retinanet_r50_fpn_1x_mmengine.py``; timm ``train.py``
arguments (``timm=dict(...)``, see ``purelr.timm``): ``timm_resnet50_cosine.py``,
``timm_vit_finetune_layer_decay.py``. ``_base_/`` holds the shared schedules, as in MMDetection.
"""

import os

DIRECTORY = os.path.dirname(os.path.abspath(__file__))


def names() -> list[str]:
    """The shipped example configs (``_base_`` files left out)."""
    return sorted(f for f in os.listdir(DIRECTORY) if f.endswith(".py") and not f.startswith("_"))


def path_of(name: str) -> str:
    """The file of a shipped example config, for ``purelr.load_config`` / ``purelr.build``."""
    if name not in names():
        raise ValueError(f"no shipped config {name!r}; shipped: {names()}")
    return os.path.join(DIRECTORY, name)
