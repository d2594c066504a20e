"""``purelr compare``: a config's curves next to the original library's, stepped as its runner steps.

For each parameter group the original is run from the group's own base lr (MMCV's LrUpdaterHook /
MomentumUpdaterHook under EpochBasedRunner or IterBasedRunner, MMEngine's schedulers as
ParamSchedulerHook steps them, timm's ``create_scheduler_v2`` as its ``train.py`` steps it, the
group's layer-decay scale applied, the Hugging Face Trainer's scheduler from its
``TrainingArguments``, or a detectron2 SOLVER's ``LRMultiplier`` over fvcore's schedulers as
detectron2's hook steps it: ``purelr.references.detectron2``, or DeepSpeed's scheduler as its
engine steps it) and compared with purelr's curve at
every iteration. torch's
schedulers have no config form: compare them in Python (``purelr.schedules.torch``).
"""

from __future__ import annotations

import numpy as np

from purelr.cli.curves import Curves
from purelr.recipes.config import load_config

AGAINST = ("mmcv", "mmengine", "timm", "hf", "fvcore", "deepspeed")
STYLES = {
    "deepspeed": "a DeepSpeed config (deepspeed=dict(...) or a ds_config JSON in it)",
    "hf": "a Hugging Face Trainer config (hf=dict(...))",
    "fvcore": "a detectron2 config (detectron2=..., or its YAML with SOLVER)",
    "timm": "a timm config (timm=dict(...))",
    "mmengine": "an MMEngine config (optim_wrapper)",
    "mmcv": "an MMCV / MMDetection 2.x config (optimizer, no optim_wrapper)",
}


def check_style(cfg: dict, against: str) -> None:
    """Raises ``ValueError`` when ``cfg`` is written for another library than ``against``: each
    original reads only its own style (``timm``, else ``optim_wrapper``, else ``optimizer``, the
    order ``purelr.build`` reads them in). A config of none of them is left to the reader's error."""
    style = next(
        (
            name
            for key, name in (
                ("deepspeed", "deepspeed"),
                ("hf", "hf"),
                ("detectron2", "fvcore"),
                ("timm", "timm"),
                ("optim_wrapper", "mmengine"),
                ("optimizer", "mmcv"),
            )
            if key in cfg
        ),
        None,
    )
    if style is not None and style != against:
        raise ValueError(
            f"--against {against}: the config is {STYLES[style]}, which {against} cannot "
            f"read; compare it --against {style}"
        )


def reference_curves(cfg, curves: Curves, against: str) -> Curves:
    """The original library's value for every curve of ``curves`` (same groups and iterations)."""
    cfg = load_config(cfg) if not isinstance(cfg, dict) else cfg
    iters = len(curves.steps)
    run = {"mmcv": _mmcv, "mmengine": _mmengine, "timm": _timm, "hf": _hf, "fvcore": _fvcore, "deepspeed": _deepspeed}[
        against
    ]
    values = {}
    for (group, quantity), ours in curves.values.items():
        base = float((curves.starts or {}).get((group, quantity), ours[0])) if quantity != "lr" else None
        values[(group, quantity)] = run(cfg, curves, group, quantity, iters, base)
    return Curves(curves.steps, curves.epoch_len, values, curves.bases, curves.starts)


def _mmcv(cfg, curves, group, quantity, iters, base):
    from purelr.recipes.mmcv import default_runner
    from purelr.references import mmcv as reference

    runner = cfg.get("runner") or default_runner(cfg)
    momentum = cfg["optimizer"].get("momentum", (cfg["optimizer"].get("betas") or (None,))[0])
    adam = "betas" in cfg["optimizer"]
    lr = curves.bases[group]
    lengths = dict(epoch_len=curves.epoch_len or iters)
    hooks = dict(lr_cfg=cfg.get("lr_config"), momentum_cfg=cfg.get("momentum_config"))
    optimizer = reference.make_optimizer(lr, momentum, adam=adam)
    if runner.get("type") == "IterBasedRunner":
        values = reference.run_iter_based(optimizer, max_iters=iters, **lengths, **hooks)
    else:
        values = reference.run_epoch_based(optimizer, max_epochs=-(-iters // lengths["epoch_len"]), **lengths, **hooks)
    return values[0 if quantity == "lr" else 1][:iters]


def _mmengine(cfg, curves, group, quantity, iters, base):
    from purelr.recipes.mmengine import scheduled_param
    from purelr.references import mmengine as reference

    train_cfg = cfg.get("train_cfg") or {}
    schedulers = cfg.get("param_scheduler") or []
    schedulers = [schedulers] if isinstance(schedulers, dict) else schedulers
    chosen = [s for s in schedulers if scheduled_param(s) == quantity]
    optimizer = cfg["optim_wrapper"]["optimizer"]
    start = curves.bases[group] if quantity == "lr" else base
    if not chosen:
        return np.full(iters, start)
    fixed = quantity == "lr" and "fix_lr=True" in group  # a label names the fields of its ParamSetting
    return reference.run(
        chosen,
        start,
        epoch_len=curves.epoch_len or iters,
        iters=iters,
        max_epochs=train_cfg.get("max_epochs"),
        max_iters=train_cfg.get("max_iters"),
        momentum=quantity == "momentum",
        adam="betas" in optimizer and quantity == "momentum",
        param=quantity if quantity not in ("lr", "momentum") else None,
        hook=reference.simsiam_hook(cfg.get("custom_hooks")) if fixed else None,
    )


def _timm(cfg, curves, group, quantity, iters, base):
    from purelr.recipes import timm as timm_lib
    from purelr.references import timm as reference

    args = timm_lib.train_args(cfg["timm"])
    lr = max(curves.bases.values())  # the lr of the group at scale 1: every group's, without layer decay
    epochs = -(-iters // curves.epoch_len)
    scale = curves.bases[group] / lr
    lrs = reference.train_loop(lr, epochs, curves.epoch_len, **timm_lib.scheduler_kwargs(args))
    return lrs[:iters] * scale


def _hf(cfg, curves, group, quantity, iters, base):
    from purelr.recipes import hf as hf_lib
    from purelr.references import hf as reference

    accumulation = hf_lib.training_arguments(cfg["hf"])["gradient_accumulation_steps"]
    batches = (curves.epoch_len or iters) * accumulation  # as many updates an epoch as epoch_len gives
    return np.asarray(reference.lr_curve(cfg["hf"], batches, updates=iters))


def _fvcore(cfg, curves, group, quantity, iters, base):
    from purelr.recipes.detectron2 import solver_of
    from purelr.references import detectron2 as reference

    return reference.lr_curve(solver_of(cfg["detectron2"]), [curves.bases[group]], iters)[:, 0]


def _deepspeed(cfg, curves, group, quantity, iters, base):
    from purelr.recipes import deepspeed as deepspeed_lib
    from purelr.references import deepspeed as reference

    ds_config = deepspeed_lib.read_config(cfg["deepspeed"])
    _, lr, betas = deepspeed_lib.optimizer_of(ds_config)
    scheduler = ds_config.get("scheduler")
    if scheduler is None:
        return np.full(iters, lr if quantity == "lr" else betas[0], dtype=np.float64)
    values = reference.curves(
        scheduler["type"], dict(scheduler.get("params") or {}), np.arange(iters), lr, betas=betas or (0.9, 0.999)
    )
    return values[0] if quantity == "lr" else values[1]


def differences(ours: Curves, reference: Curves) -> dict:
    """``{(group, quantity): max |ours - reference| / max(|reference|)}``."""
    return {
        key: float(
            np.max(np.abs(ours.values[key] - reference.values[key]))
            / max(float(np.max(np.abs(reference.values[key]))), np.finfo(float).tiny)
        )
        for key in ours.values
    }
