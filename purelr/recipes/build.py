"""``purelr.build``: one optax transformation from a whole config, read by its framework's reader
(``purelr.recipes.mmcv``, ``purelr.recipes.mmengine``, ``purelr.recipes.timm``, ``purelr.recipes.hf``,
``purelr.recipes.detectron2``, ``purelr.recipes.deepspeed``).

MMDetection 2.x (MMCV 1.x runner)::

    optimizer = dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=1e-4,
                     paramwise_cfg=dict(norm_decay_mult=0.0), constructor=...)
    optimizer_config = dict(grad_clip=dict(max_norm=35, norm_type=2))
        # or dict(type='GradientCumulativeOptimizerHook', cumulative_iters=4, grad_clip=...)
    lr_config = dict(policy='step', warmup='linear', warmup_iters=500, warmup_ratio=0.001, step=[8, 11])
    momentum_config = None
    runner = dict(type='EpochBasedRunner', max_epochs=12)      # or IterBasedRunner, max_iters

MMEngine::

    optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='SGD', ...), paramwise_cfg=...,
                         clip_grad=dict(max_norm=35, norm_type=2), accumulative_counts=1)
    param_scheduler = [dict(type='LinearLR', ...), dict(type='MultiStepLR', ...)]
    train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=12)  # or IterBasedTrainLoop, max_iters

The result, applied once per training iteration, does what the original runner does at that
iteration: gradients of frozen parameters dropped, accumulated (with the remainder rule), clipped
over all trainable parameters, then the optimizer of each parameter group with the lr (and
momentum / Adam's beta1) its schedulers set at that iteration, each group scheduled from its own
base value (``lr * lr_mult``).
"""

from __future__ import annotations

import difflib
import os

import optax

from purelr.recipes import mmcv, mmengine, registry
from purelr.recipes.config import load_config
from purelr.recipes.pyconfig import Imported
from purelr.recipes.recipe import Recipe, auto_scaled, transformation


def build(
    cfg,
    params,
    *,
    epoch_len: int | None = None,
    module_kinds=None,
    frozen=None,
    layer_map=None,
    world_size: int | None = None,
    head=None,
    layer_norms=(),
) -> optax.GradientTransformation:
    """The optimizer an MMDetection 2.x, MMEngine or timm config describes, for ``params``.

    ``cfg``: a config dict or a file path (``purelr.load_config``; a detectron2 YAML config, with
    ``SOLVER`` or ``_BASE_``, is read as ``dict(detectron2=path)``). ``epoch_len``: iterations per
    epoch, needed by epoch-based schedules. ``module_kinds``: ``purelr.params.module_kinds.module_kinds
    (model, ...)`` for the norm / depth-wise rules of ``paramwise_cfg``. ``frozen``: a selector of
    the parameters torch would have with ``requires_grad=False``. A config with a ``timm`` entry
    (timm ``train.py`` arguments) is built by ``purelr.recipes.timm.build_timm`` (``layer_map`` for its
    ``layer_decay`` when the entry has no ``group_matcher``; ``head``, a selector of the classifier's
    parameters, for its ``clip_mode='agc'``; ``epoch_len`` there is ``len(loader_train)``, the batches
    of an epoch). ``world_size``: the number of processes the original trained on, for
    ``auto_scale_lr=dict(enable=True, ...)`` and timm's lr from ``lr_base``. A config with an ``hf``
    entry (``TrainingArguments`` fields) is built by ``purelr.recipes.hf.build_hf`` (``epoch_len``
    there is ``len(train_dataloader)``; ``layer_norms``, the module paths of the model's LayerNorm
    layers, ``purelr.params.hf.layer_norm_modules``, for the Trainer's no-decay rule).
    A config with a ``detectron2`` entry (its ``SOLVER`` keys, or a detectron2 YAML file) is built by
    ``purelr.recipes.detectron2.build_detectron2`` (``world_size`` for ``REFERENCE_WORLD_SIZE``).
    A config with a ``deepspeed`` entry (a DeepSpeed config dict or JSON path) is built by
    ``purelr.recipes.deepspeed.build_deepspeed`` (``world_size`` checks its batch sizes).
    """
    cfg = _loaded(cfg)
    if "hf" in cfg:
        from purelr.recipes import hf as hf_lib

        registry.import_custom(cfg.get("custom_imports"))
        return hf_lib.build_hf(cfg["hf"], params, epoch_len=epoch_len, layer_norms=layer_norms, frozen=frozen)
    if "timm" in cfg:
        from purelr.recipes import timm as timm_lib

        registry.import_custom(cfg.get("custom_imports"))
        return timm_lib.build_timm(
            cfg["timm"],
            params,
            epoch_len=epoch_len,
            layer_map=layer_map,
            frozen=frozen,
            world_size=world_size,
            head=head,
        )
    if "detectron2" in cfg:
        from purelr.recipes import detectron2 as detectron2_lib

        return detectron2_lib.build_detectron2(
            cfg["detectron2"], params, module_kinds=module_kinds, frozen=frozen, world_size=world_size
        )
    if "deepspeed" in cfg:
        from purelr.recipes import deepspeed as deepspeed_lib

        return deepspeed_lib.build_deepspeed(cfg["deepspeed"], params, world_size=world_size or 1)
    return transformation(
        read_recipe(cfg, epoch_len=epoch_len, world_size=world_size), params, module_kinds=module_kinds, frozen=frozen
    )


def read_recipe(cfg, *, epoch_len: int | None = None, world_size: int | None = None) -> Recipe:
    """Reads and checks a config (dict or file) into a ``Recipe``, the lr scaled as
    ``auto_scale_lr`` asks (``recipe.auto_scaled``); errors name the key and value."""
    cfg = _loaded(cfg)
    registry.import_custom(cfg.get("custom_imports"))
    for reader in (mmengine, mmcv):
        if reader.SECTIONS[0] in cfg:
            _check_spelling(cfg, reader.SECTIONS)
            return auto_scaled(reader.read(cfg, epoch_len), cfg, world_size)
    raise ValueError(
        f"a config needs 'optimizer' (MMDetection 2.x), 'optim_wrapper' (MMEngine) or 'timm'; it has {sorted(cfg)}"
    )


def _check_spelling(cfg: dict, sections) -> None:
    """A key one letter or so away from a section the reader reads (``lr_confg``), while that
    section is absent, would silently drop it: raises naming both."""
    missing = [section for section in sections if section not in cfg]
    for key in cfg:
        close = difflib.get_close_matches(str(key), missing, n=1, cutoff=0.9)
        if key not in sections and close:
            raise ValueError(f"config key {key!r} is not read: did you mean {close[0]!r}?")


def _loaded(cfg) -> dict:
    if isinstance(cfg, (str, os.PathLike)):
        from purelr.recipes.detectron2 import is_detectron2_yaml

        cfg = {"detectron2": cfg} if is_detectron2_yaml(cfg) else load_config(cfg)
    if not isinstance(cfg, dict):
        raise TypeError(f"a config must be a dict or a file path, got {cfg!r}")
    return _named_types(cfg)


def _named_types(value):
    """``type=SGD`` imported in a pure-Python config (``Imported('torch.optim.SGD')``) read as the
    name ``'SGD'`` that the registry knows; imported values elsewhere stay, and a reader that needs
    a value there names the key and the import."""
    if isinstance(value, dict):
        return {
            key: (item.name.rpartition(".")[2] if key == "type" and isinstance(item, Imported) else _named_types(item))
            for key, item in value.items()
        }
    if type(value) in (list, tuple):
        return type(value)(_named_types(item) for item in value)
    return value
