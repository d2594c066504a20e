"""The lr and momentum curves of every parameter group of a config, evaluated at once.

``config_curves(cfg, epoch_len=..., ...)`` reads a config as ``purelr.build`` does and returns one
curve per group and quantity over the whole run, indexed by training iteration (the value the
original runner sets for that iteration), computed with one ``jit(vmap)`` per curve.

Groups come from ``paramwise_cfg``, applied to an example parameter tree that has a leaf for every
rule (a conv kernel and bias, a norm layer, a depth-wise conv, a 1-D leaf, and a leaf named after
each custom key), or to the user's own ``(params, module_kinds)``. Groups are named by their rule
(``default``, ``lr_mult=0.1``, ...).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from purelr.params import paramwise
from purelr.recipes.build import read_recipe
from purelr.recipes.config import load_config
from purelr.recipes.recipe import Recipe, labels_of


class Curves(NamedTuple):
    """Curves of one config: ``values[(group, quantity)]`` over ``steps`` (iterations), and each
    group's base lr (the config's lr times the group's ``lr_mult``)."""

    steps: np.ndarray
    epoch_len: int | None
    values: dict
    bases: dict


def example_params(paramwise_cfg: dict):
    """``(params, module_kinds)``: a small tree with a leaf for every ``paramwise_cfg`` rule."""
    leaf = jnp.zeros((2, 2))
    params = {
        "backbone": {"conv": {"kernel": jnp.zeros((3, 3, 2, 2)), "bias": jnp.zeros(2)},
                     "norm": {"scale": jnp.zeros(2), "bias": jnp.zeros(2)},
                     "dwconv": {"kernel": jnp.zeros((3, 3, 1, 2))},
                     "embed": jnp.zeros(2)},
        "head": {"kernel": leaf, "bias": jnp.zeros(2)},
    }
    for i, key in enumerate(sorted((paramwise_cfg or {}).get("custom_keys", {}))):
        params[f"custom{i}"] = {key.strip(".") or "key": {"kernel": leaf}}
    kinds = {"backbone.conv": "conv", "backbone.norm": "norm", "backbone.dwconv": "dwconv"}
    return params, kinds


def total_iterations(recipe: Recipe, epoch_len, max_epochs, max_iters) -> int:
    if max_iters is None and max_epochs is not None:
        if epoch_len is None:
            raise ValueError("--max-epochs needs --epoch-len (iterations per epoch)")
        max_iters = max_epochs * epoch_len
    max_iters = max_iters or recipe.max_iters
    if max_iters is None:
        raise ValueError("the run's length is unknown: the config has no max_epochs / max_iters "
                         "(or max_epochs without --epoch-len); give --max-iters or --max-epochs")
    return int(max_iters)


def config_curves(cfg, *, epoch_len=None, max_epochs=None, max_iters=None, params=None,
                  module_kinds=None) -> Curves:
    """Every group's lr (and momentum / beta1 where the optimizer has one) at every iteration."""
    cfg = cfg if isinstance(cfg, dict) else load_config(cfg)
    if "timm" in cfg:
        return timm_curves(cfg["timm"], epoch_len=epoch_len, max_epochs=max_epochs, max_iters=max_iters,
                           params=params)
    recipe = read_recipe(cfg, epoch_len=epoch_len)
    total = total_iterations(recipe, epoch_len, max_epochs, max_iters)
    if params is None:
        params, module_kinds = example_params(recipe.paramwise_cfg)
    _, settings = labels_of(recipe, params, module_kinds, None)
    steps = jnp.arange(total)
    hyperparams = dict(recipe.hyperparams)
    momentum = hyperparams.get("momentum", (hyperparams.get("betas") or (None,))[0])
    values, bases = {}, {}
    for label, setting in settings.items():
        if setting.frozen:
            continue
        group = paramwise.group_hyperparams(setting, lr=hyperparams["lr"],
                                            weight_decay=hyperparams.get("weight_decay"))
        bases[label] = group["lr"]
        values[(label, "lr")] = _evaluate(recipe.schedules.get("lr"), group["lr"], steps) * setting.lr_scale
        if momentum is not None:
            values[(label, "momentum")] = _evaluate(recipe.schedules.get("momentum"), momentum, steps)
    return Curves(np.arange(total), epoch_len, values, bases)


def timm_curves(args: dict, *, epoch_len=None, max_epochs=None, max_iters=None, params=None) -> Curves:
    """The lr of a ``timm=dict(...)`` config (timm's ``train.py`` arguments) at every update: one
    curve, or with ``params`` and ``layer_decay`` one per layer-decay group (scaled by its
    ``lr_scale``, as timm's schedulers scale each group)."""
    from purelr.params import timm as paramwise_timm
    from purelr.recipes import timm as timm_lib

    if epoch_len is None:
        raise ValueError("timm configs count epochs: give --epoch-len (updates per epoch)")
    epochs = max_epochs or args.get("epochs", 300)
    total = max_iters or epochs * epoch_len
    steps = jnp.arange(total)
    lr = args["lr"]
    if args.get("sched", "cosine") is None:
        curve = np.full(total, float(lr))
    else:
        schedule = timm_lib.create_scheduler_v2(lr, updates_per_epoch=epoch_len, **timm_lib.scheduler_kwargs(args))
        curve = np.asarray(jax.jit(jax.vmap(schedule))(steps), dtype=np.float64)
    scales = {"default": 1.0}
    if params is not None and args.get("layer_decay") is not None:
        layer_map = timm_lib.layer_map_from_matcher(params, args["group_matcher"])
        _, settings = paramwise_timm.param_groups_layer_decay(params, layer_map, layer_decay=args["layer_decay"])
        scales = {label: setting.lr_scale for label, setting in settings.items() if not setting.frozen}
    return Curves(np.arange(total), epoch_len, {(label, "lr"): curve * scale for label, scale in scales.items()},
                  {label: lr * scale for label, scale in scales.items()})


def _evaluate(factory, base, steps) -> np.ndarray:
    if factory is None:
        return np.full(steps.shape, float(base))
    return np.asarray(jax.jit(jax.vmap(factory(base)))(steps), dtype=np.float64)
