"""detectron2's LazyConfig recipes (``tools/lazyconfig_train_net.py``) as one optax transformation.

A lazy config's ``optimizer``, ``lr_multiplier`` and ``train`` written as dicts, each ``LazyCall``
a dict with its ``_target_`` (a dotted path or the bare class name)::

    purelr.build(dict(detectron2=dict(
        optimizer=dict(_target_="torch.optim.AdamW", lr=1e-4, betas=(0.9, 0.999), weight_decay=0.1,
                       params=dict(base_lr="${..lr}", weight_decay_norm=0.0,
                                   overrides={"pos_embed": {"weight_decay": 0.0}})),
        lr_multiplier=dict(_target_="WarmupParamScheduler", warmup_length=250 / 184375, warmup_factor=0.001,
                           scheduler=dict(_target_="MultiStepParamScheduler", values=[1.0, 0.1, 0.01],
                                          milestones=[163889, 177546], num_updates=184375)),
        train=dict(max_iter=184375))), params, module_kinds=...)

(ViTDet's ``mask_rcnn_vitdet_b_100ep.py``; its ``lr_factor_func`` is any ``dotted name -> factor``.)
``optimizer.params`` takes ``get_default_optimizer_params``'s arguments (``purelr.params.detectron2``;
``"${..lr}"`` is the optimizer's lr); the optimizer is ``torch.optim.SGD``, ``Adam`` or ``AdamW``
(their purelr twins, torch's keywords); ``lr_multiplier`` is any fvcore scheduler or detectron2's
``WarmupParamScheduler`` (``purelr.schedules.fvcore``), read by ``LRMultiplier`` over
``train.max_iter`` (90000, ``configs/common/train.py``'s, when not given). The lazy trainer clips no
gradients; ``train``'s other keys (``amp``, ``ddp``, ``checkpointer``, ...) change no update.
"""

from __future__ import annotations

from typing import Mapping

import optax

from purelr import optim
from purelr.params import detectron2 as params_detectron2
from purelr.params.paramwise import paramwise_transform
from purelr.recipes import recipe as recipe_lib
from purelr.schedules import fvcore, validate

OPTIMIZERS = {"SGD": optim.sgd, "Adam": optim.adam, "AdamW": optim.adamw}
SCHEDULERS = {
    "ConstantParamScheduler": fvcore.constant_param_scheduler,
    "CosineParamScheduler": fvcore.cosine_param_scheduler,
    "ExponentialParamScheduler": fvcore.exponential_param_scheduler,
    "LinearParamScheduler": fvcore.linear_param_scheduler,
    "MultiStepParamScheduler": fvcore.multi_step_param_scheduler,
    "PolynomialDecayParamScheduler": fvcore.polynomial_decay_param_scheduler,
    "StepParamScheduler": fvcore.step_param_scheduler,
    "StepWithFixedGammaParamScheduler": fvcore.step_with_fixed_gamma_param_scheduler,
    "CompositeParamScheduler": fvcore.composite_param_scheduler,
    "WarmupParamScheduler": fvcore.warmup_param_scheduler,
}
SECTIONS = ("optimizer", "lr_multiplier", "train")
MAX_ITER = 90000  # configs/common/train.py


def is_lazy(cfg) -> bool:
    """Whether a ``detectron2=`` entry is a lazy config (``optimizer``, lower case) rather than SOLVER keys."""
    return isinstance(cfg, Mapping) and "optimizer" in cfg


def _target(where: str, spec, known: Mapping):
    spec = validate.mapping(where, spec)
    if "_target_" not in spec:
        raise ValueError(f"{where} needs a _target_ (one of {sorted(known)}), got {dict(spec)!r}")
    name = str(spec["_target_"]).rpartition(".")[2]
    if name not in known:
        raise ValueError(
            f"{where}._target_ = {spec['_target_']!r} is not modelled: one of {sorted(known)}"
            f"{validate.close_to(name, known)}"
        )
    return known[name], {key: value for key, value in spec.items() if key != "_target_"}


def param_scheduler(spec, where: str = "lr_multiplier") -> fvcore.ParamScheduler:
    """The twin of a lazily called fvcore / detectron2 scheduler (inner schedulers built first)."""
    make, kwargs = _target(where, spec, SCHEDULERS)
    if "scheduler" in kwargs:
        kwargs["scheduler"] = param_scheduler(kwargs["scheduler"], f"{where}.scheduler")
    if "schedulers" in kwargs:
        kwargs["schedulers"] = [
            param_scheduler(s, f"{where}.schedulers[{i}]") for i, s in enumerate(kwargs["schedulers"])
        ]
    return make(**kwargs)


def build_lazy(cfg, params, *, module_kinds=None, frozen=None) -> optax.GradientTransformation:
    """``instantiate(cfg.optimizer)`` and ``LRMultiplier(instantiate(cfg.lr_multiplier),
    cfg.train.max_iter)`` of ``lazyconfig_train_net.py`` for ``params``."""
    validate.known_keys("detectron2 (lazy config)", cfg, SECTIONS)
    make, optimizer = _target("optimizer", cfg["optimizer"], OPTIMIZERS)
    group_args = dict(validate.mapping("optimizer.params", optimizer.pop("params", {})))
    group_args.pop("model", None)  # set to the model by the trainer
    group_args = {
        key: optimizer.get(value[4:-1]) if isinstance(value, str) and value.startswith("${..") else value
        for key, value in group_args.items()
    }
    optimizer = {key: tuple(value) if isinstance(value, list) else value for key, value in optimizer.items()}
    if "lr" not in optimizer:
        raise ValueError(f"optimizer needs an lr, got {cfg['optimizer']!r}")
    labels, settings = params_detectron2.get_default_optimizer_params(
        params, **group_args, module_kinds=module_kinds, frozen=frozen
    )
    train = validate.mapping("train", cfg.get("train", {}))
    max_iter = validate.positive_int("train.max_iter", train.get("max_iter", MAX_ITER))
    multiplier = param_scheduler(cfg["lr_multiplier"])
    schedule = lambda base: fvcore.lr_multiplier(base, multiplier, max_iter)
    lr, weight_decay = optimizer.pop("lr"), optimizer.pop("weight_decay", None)
    transform = paramwise_transform(
        make, labels, settings, lr=lr, weight_decay=weight_decay, schedules={"lr": schedule}, **optimizer
    )
    return recipe_lib.wrapped(transform, labels)
