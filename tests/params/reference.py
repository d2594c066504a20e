"""The real MMCV / MMEngine constructors run on the torch twins, with mmcv.ops stood in for.

mmcv here has no compiled ops, so both constructors would never see a deformable conv; ``dcn_ops``
puts a stub ``mmcv.ops`` (whose ``DeformConv2d`` is the twins' stand-in) in place for the run.
"""

import contextlib
import functools
import sys
import types
import warnings

import jax
import jax.numpy as jnp
import torch

from purelr.params.module_kinds import module_kinds
from tests.params import models

MODELS = {
    "resnet": (models.FlaxResNet(), jnp.zeros((1, 16, 16, 3)), models.torch_resnet()),
    "vit": (models.FlaxViT(), jnp.zeros((1, 4, 12)), models.torch_vit()),
}
EXTRA_KINDS = {"resnet": {"neck.dcn": "dcn"}, "vit": {}}


@functools.lru_cache(maxsize=None)
def flax_params(name):
    model, x, _ = MODELS[name]
    return jax.tree.map(
        lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(lambda: model.init(jax.random.key(0), x))["params"]
    )


@functools.lru_cache(maxsize=None)
def kinds(name):
    """The model's module kinds read from flax, plus the stand-in DCN marked by hand."""
    model, x, _ = MODELS[name]
    return {**module_kinds(model, x), **EXTRA_KINDS[name]}


@contextlib.contextmanager
def dcn_ops():
    from mmcv.runner.optimizer import default_constructor as mmcv_constructor
    from mmengine.optim.optimizer import default_constructor as mmengine_constructor

    ops = types.ModuleType("mmcv.ops")
    ops.DeformConv2d = ops.ModulatedDeformConv2d = models.TorchDeformStandIn
    saved = (sys.modules.get("mmcv.ops"), mmcv_constructor.check_ops_exist, mmengine_constructor.mmcv_full_available)
    sys.modules["mmcv.ops"] = ops
    mmcv_constructor.check_ops_exist = mmengine_constructor.mmcv_full_available = lambda: True
    try:
        yield
    finally:
        if saved[0] is None:
            del sys.modules["mmcv.ops"]
        else:
            sys.modules["mmcv.ops"] = saved[0]
        mmcv_constructor.check_ops_exist, mmengine_constructor.mmcv_full_available = saved[1:]


def torch_settings(style, name, optimizer_cfg, paramwise_cfg, frozen=()):
    """``{flax name: {'lr', 'weight_decay', 'momentum'}}`` from the real constructor, or
    ``'frozen'`` for a param with ``requires_grad=False``."""
    model = MODELS[name][2]
    for param_name, param in model.named_parameters():
        param.requires_grad_(not any(param_name.startswith(p + ".") for p in frozen))
    with dcn_ops(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if style == "mmcv":
            from mmcv.runner import DefaultOptimizerConstructor

            optimizer = DefaultOptimizerConstructor(dict(optimizer_cfg), paramwise_cfg)(model)
        else:
            from mmengine.logging import MMLogger
            from mmengine.optim import DefaultOptimWrapperConstructor

            MMLogger.get_current_instance().setLevel("ERROR")
            optimizer = DefaultOptimWrapperConstructor(
                dict(type="OptimWrapper", optimizer=dict(optimizer_cfg)), paramwise_cfg
            )(model).optimizer
    group_of = {id(p): group for group in optimizer.param_groups for p in group["params"]}
    settings = {}
    for param_name, param in model.named_parameters():
        group = group_of.get(id(param))
        key = models.flax_name(model, param_name)
        if not param.requires_grad:
            settings[key] = "frozen"
        else:
            settings[key] = {k: group[k] for k in ("lr", "weight_decay", "momentum")}
    torch.nn.Module.requires_grad_(model, True)
    return settings
