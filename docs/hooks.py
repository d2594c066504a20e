"""mkdocs hook: the plots page is drawn by the build, from the shipped configs, with
``purelr plot``'s own functions (``purelr.cli.curves.config_curves``, ``purelr.cli.plot``); the
optimizers' reference lists every name ``purelr.optim`` exports."""

from __future__ import annotations

import pathlib
import tempfile

from mkdocs.structure.files import File

import purelr.configs
from purelr.cli import plot
from purelr.cli.curves import config_curves

PLOTS = {
    "retinanet_r50_fpn_1x_mmengine.py": 7330,
    "faster_rcnn_r50_fpn_1x_clip_mmcv.py": 7330,
    "onecycle_mmcv.py": None,
    "timm_resnet50_cosine.py": 1251,
    "timm_vit_finetune_layer_decay.py": 1251,
}
"""Shipped config -> ``--epoch-len`` (COCO 1x at 16 images a batch; ImageNet at 1024)."""

MARKER = "<!-- plots -->"
OPTIMIZERS = "<!-- optimizers -->"
_made: dict[str, str] = {}


def on_files(files, config):
    out = pathlib.Path(tempfile.mkdtemp(prefix="purelr-plots-"))
    for name, epoch_len in PLOTS.items():
        curves = config_curves(purelr.configs.path_of(name), epoch_len=epoch_len)
        png = f"plots/{name.removesuffix('.py')}.png"
        plot.draw(curves, out / pathlib.Path(png).name, title=name)
        files.append(File.generated(config, png, abs_src_path=str(out / pathlib.Path(png).name)))
        length = f" --epoch-len {epoch_len}" if epoch_len else ""
        _made[name] = (
            f"## {name}\n\n`purelr plot purelr/configs/{name}{length}`\n\n![{name}]({png})\n\n"
            f"```\n{plot.table(curves)}\n```\n"
        )
    return files


def on_page_markdown(markdown, page, config, files):
    if MARKER in markdown:
        return markdown.replace(MARKER, "\n".join(_made.values()))
    if OPTIMIZERS in markdown:
        return markdown.replace(OPTIMIZERS, _optimizers())
    return markdown


def _optimizers() -> str:
    """One ``:::`` entry per name of ``purelr.optim.__all__``, at its defining module (the
    package re-exports functions named like their modules, which the reference cannot follow)."""
    import purelr.optim

    found = (getattr(purelr.optim, name) for name in sorted(purelr.optim.__all__))
    return "\n".join(f"::: {obj.__module__}.{obj.__qualname__}\n" for obj in found)
