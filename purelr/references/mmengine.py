"""Drives MMEngine 0.10.7's real parameter schedulers as its runner and ParamSchedulerHook do.

Schedulers are built in list order before iteration 0, with the runner's default ``end`` (the
train loop's length) and ``epoch_length``; after each iteration the iteration-based schedulers
step, and after each epoch's last iteration the epoch-based ones.
"""

import copy
import importlib
import importlib.util
import types
import warnings

import mmengine.optim.scheduler  # noqa: F401,E402  (registers the schedulers)
import numpy as np
import torch
from mmengine.registry import OPTIMIZERS, PARAM_SCHEDULERS

from purelr.references.shims import module_from_file

ZOOS = ("mmdet", "mmpretrain", "mmseg")
"""The packages whose ``engine.schedulers`` / ``engine.optimizers`` register more parts in their
child registries."""


def scoped(kind: str, what: str = "schedulers") -> str:
    """``'<zoo>.<kind>'`` where a model zoo's own registry of ``what`` (``schedulers`` or
    ``optimizers``, its module imported on demand) holds ``kind``, as the zoo's default scope finds
    it first (MMPretrain's ``LARS``, not the one MMEngine registers from bitsandbytes); else ``kind``.
    MMEngine's own schedulers are taken as they are; a zoo that cannot be imported (not installed,
    or asserting another MMCV than the one installed) is passed over."""
    registry = PARAM_SCHEDULERS if what == "schedulers" else OPTIMIZERS
    if what == "schedulers" and registry.get(kind) is not None:
        return kind
    for zoo in ZOOS:
        try:
            importlib.import_module(f"{zoo}.engine.{what}")
        except (ImportError, AssertionError):
            continue
        if zoo in registry.children and kind in registry.children[zoo].module_dict:
            return f"{zoo}.{kind}"
    return kind


def simsiam_hook(custom_hooks):
    """MMPretrain's own ``SimSiamHook`` built from its ``custom_hooks`` entry, or None. Its module is
    executed from its file: ``mmpretrain.engine.hooks`` imports every hook of the zoo (torchvision
    among what they need); this one needs ``mmengine.hooks`` and ``mmpretrain.registry`` only."""
    for entry in custom_hooks or []:
        if str(entry.get("type", "")).rpartition(".")[2] == "SimSiamHook":
            spec = importlib.util.find_spec("mmpretrain")
            assert spec is not None and spec.submodule_search_locations is not None
            root = spec.submodule_search_locations[0]
            module = module_from_file("original_mmpretrain_simsiam_hook", f"{root}/engine/hooks/simsiam_hook.py")
            return module.SimSiamHook(**{k: v for k, v in entry.items() if k not in ("type", "priority")})
    return None


def run(
    cfgs, base, *, epoch_len, iters, max_epochs=None, max_iters=None, momentum=False, adam=False, param=None, hook=None
):
    """The lr (or momentum / Adam's beta1, or ``param``: another entry of SGD's group such as
    ``weight_decay``, started at ``base``) MMEngine's optimizer holds during iterations ``0..iters-1``.
    ``hook`` (``simsiam_hook``): called before each epoch and iteration as the runner calls it, on a
    group marked ``fix_lr=True``."""
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer: torch.optim.Optimizer
    if adam:
        optimizer = torch.optim.Adam([weight], lr=0.1, betas=(base, 0.999))
    elif param is not None:
        optimizer = torch.optim.SGD([weight], lr=0.1, momentum=0.9)
        optimizer.param_groups[0][param] = base
    else:
        optimizer = torch.optim.SGD([weight], lr=0.1 if momentum else base, momentum=base if momentum else 0.9)
    loop = "epoch" if max_epochs is not None else "iter" if max_iters is not None else None
    schedulers = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for cfg in cfgs:
            cfg = copy.deepcopy(cfg)
            cfg["type"] = scoped(cfg["type"])
            if loop:
                by_epoch = cfg.get("by_epoch", True)
                cfg.setdefault(
                    "end",
                    (max_epochs if by_epoch else max_epochs * epoch_len)
                    if loop == "epoch"
                    else (1 if by_epoch else max_iters),
                )
            schedulers.append(
                PARAM_SCHEDULERS.build(cfg, default_args=dict(optimizer=optimizer, epoch_length=epoch_len))
            )
        group = optimizer.param_groups[0]
        runner = types.SimpleNamespace(optim_wrapper=types.SimpleNamespace(optimizer=optimizer))
        if hook is not None:
            group["fix_lr"] = True
        values = []
        for k in range(iters):
            if hook is not None:
                if k % epoch_len == 0 and (loop != "iter" or k == 0):
                    hook.before_train_epoch(runner)
                hook.before_train_iter(runner, k % epoch_len)
            values.append(group["betas"][0] if adam else group[param or ("momentum" if momentum else "lr")])
            for scheduler in schedulers:
                if not scheduler.by_epoch:
                    scheduler.step()
            if loop != "iter" and (k + 1) % epoch_len == 0:
                for scheduler in schedulers:
                    if scheduler.by_epoch:
                        scheduler.step()
    return np.asarray(values, dtype=np.float64)
