"""purelr.params.paramwise end to end: an optimizer built from a paramwise_cfg steps as torch with MMCV's
groups and a per-group schedule; a ResNet-50-sized tree gets a handful of labels; nnx module
kinds; bad input."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from flax import nnx

from purelr.optim import sgd
from purelr.params.groups import hyperparams_in_force
from purelr.params.module_kinds import dotted_names, module_kinds
from purelr.params.paramwise import paramwise, paramwise_labels
from purelr.schedules.torch import cosine_annealing_lr
from tests.optim.torch_reference import torch_dtype
from tests.parity import OPTIMIZER_RTOL, relative_error

STEPS, T_MAX, ETA_MIN = 25, 20, 1e-3
CFG = dict(norm_decay_mult=0.0, bias_lr_mult=2.0, custom_keys={"head": dict(lr_mult=0.1, decay_mult=0.5)})


def torch_model():
    with torch_dtype(True):
        model = torch.nn.Module()
        model.fc, model.norm, model.head = torch.nn.Linear(3, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2)
    return model


def test_paramwise_steps_as_mmcv_with_per_group_schedule():
    """Quadratic loss with per-leaf targets (its gradient is the same in both frameworks)."""
    from mmcv.runner import DefaultOptimizerConstructor

    model = torch_model()
    rng = np.random.default_rng(1)
    names = {
        "fc.weight": "fc.kernel",
        "fc.bias": "fc.bias",
        "norm.weight": "norm.scale",
        "norm.bias": "norm.bias",
        "head.weight": "head.kernel",
        "head.bias": "head.bias",
    }
    start = {n: rng.normal(size=p.shape) for n, p in model.named_parameters()}
    targets = {n: rng.normal(size=(STEPS,) + p.shape) for n, p in model.named_parameters()}
    with torch_dtype(True), torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(torch.tensor(start[n]))
    optimizer = DefaultOptimizerConstructor(dict(type="SGD", lr=0.1, momentum=0.9, weight_decay=1e-2), CFG)(model)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=T_MAX, eta_min=ETA_MIN)
    for k in range(STEPS):
        optimizer.zero_grad()
        sum(((p - torch.tensor(targets[n][k])) ** 2).sum() for n, p in model.named_parameters()).backward()
        optimizer.step()
        scheduler.step()
    with jax.enable_x64(True):
        params, flax_targets = {}, {}
        for torch_name, flax_name in names.items():
            module, leaf = flax_name.split(".")
            value = start[torch_name].T if leaf == "kernel" else start[torch_name]
            params.setdefault(module, {})[leaf] = jnp.asarray(value)
            moved = np.swapaxes(targets[torch_name], 1, 2) if leaf == "kernel" else targets[torch_name]
            flax_targets.setdefault(module, {})[leaf] = jnp.asarray(moved)
        tx = paramwise(
            sgd,
            params,
            CFG,
            lr=0.1,
            weight_decay=1e-2,
            momentum=0.9,
            module_kinds={"norm": "norm"},
            schedules=dict(lr=functools.partial(cosine_annealing_lr, T_max=T_MAX, eta_min=ETA_MIN)),
        )
        state = tx.init(params)
        for k in range(STEPS):
            grads = jax.tree.map(lambda p, t: 2 * (p - t[k]), params, flax_targets)
            updates, state = tx.update(grads, state, params)
            params = optax.apply_updates(params, updates)
        for torch_name, p in model.named_parameters():
            module, leaf = names[torch_name].split(".")
            actual = params[module][leaf].T if leaf == "kernel" else params[module][leaf]
            assert relative_error(actual, p.detach()) <= OPTIMIZER_RTOL["x64"], torch_name
        in_force = hyperparams_in_force(state)
        group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
        labels = paramwise_labels(params, CFG, weight_decay=1e-2, module_kinds={"norm": "norm"})[0]
        for torch_name, p in model.named_parameters():
            module, leaf = names[torch_name].split(".")
            hp = in_force[labels[module][leaf]]
            # the lr in force at the last update is torch's before its last scheduler.step()
            last = ETA_MIN + (group_of[id(p)]["initial_lr"] - ETA_MIN) * (1 + np.cos(np.pi * (STEPS - 1) / T_MAX)) / 2
            assert abs(float(hp["lr"]) - last) <= 1e-15
            assert float(hp["weight_decay"]) == group_of[id(p)]["weight_decay"]


def resnet50_tree():
    """The 161 leaves of a flax ResNet-50 (convs without bias) and its module kinds."""
    params, kinds = (
        {
            "backbone": {
                "conv1": {"kernel": jnp.zeros((7, 7, 3, 64))},
                "bn1": {"scale": jnp.zeros(64), "bias": jnp.zeros(64)},
            }
        },
        {"backbone.bn1": "norm"},
    )
    kinds["backbone.conv1"] = "conv"
    for stage, blocks in enumerate((3, 4, 6, 3), 1):
        layer = params["backbone"][f"layer{stage}"] = {}
        for b in range(blocks):
            block = layer[str(b)] = {}
            for i in (1, 2, 3):
                block[f"conv{i}"] = {"kernel": jnp.zeros((3, 3, 4, 4))}
                block[f"bn{i}"] = {"scale": jnp.zeros(4), "bias": jnp.zeros(4)}
                kinds[f"backbone.layer{stage}.{b}.bn{i}"] = "norm"
                kinds[f"backbone.layer{stage}.{b}.conv{i}"] = "conv"
            if b == 0:
                block["downsample"] = {
                    "0": {"kernel": jnp.zeros((1, 1, 4, 4))},
                    "1": {"scale": jnp.zeros(4), "bias": jnp.zeros(4)},
                }
                kinds[f"backbone.layer{stage}.0.downsample.1"] = "norm"
    params["head"] = {"fc": {"kernel": jnp.zeros((2048, 1000)), "bias": jnp.zeros(1000)}}
    return params, kinds


def test_resnet50_gets_a_handful_of_labels():
    params, kinds = resnet50_tree()
    assert len(jax.tree.leaves(params)) == 161
    cfg = dict(norm_decay_mult=0.0, bias_decay_mult=0.0, custom_keys={"backbone": dict(lr_mult=0.1)})
    labels, settings = paramwise_labels(
        params, cfg, weight_decay=1e-4, module_kinds=kinds, frozen=["backbone.conv1", "backbone.bn1", "backbone.layer1"]
    )
    assert len(settings) <= 8 and set(jax.tree.leaves(labels)) == set(settings)
    assert settings.keys() == {"frozen", "lr_mult=0.1", "default", "decay_mult=0.0"}
    labels, settings = paramwise_labels(params, dict(norm_decay_mult=0.0), weight_decay=1e-4, module_kinds=kinds)
    assert settings.keys() == {"default", "decay_mult=0.0"}


def test_nnx_module_kinds_and_names():
    class Net(nnx.Module):
        def __init__(self, rngs):
            self.stem = nnx.Conv(3, 8, (3, 3), rngs=rngs)
            self.dw = nnx.Conv(8, 8, (3, 3), feature_group_count=8, rngs=rngs)
            self.bn = nnx.BatchNorm(8, rngs=rngs)
            self.norm = nnx.RMSNorm(8, rngs=rngs)
            self.head = nnx.Linear(8, 2, rngs=rngs)

    net = Net(nnx.Rngs(0))
    kinds = module_kinds(net)
    assert kinds == {"stem": "conv", "dw": "dwconv", "bn": "norm", "norm": "norm"}
    state = nnx.state(net, nnx.Param)
    labels, settings = paramwise_labels(
        state, dict(norm_decay_mult=0.0, dwconv_decay_mult=0.5), weight_decay=1e-4, module_kinds=kinds
    )
    flat = dict(zip(dotted_names(state), jax.tree.leaves(labels)))
    assert flat == {
        "bn.bias": "decay_mult=0.0",
        "bn.scale": "decay_mult=0.0",
        "dw.bias": "decay_mult=0.5",
        "dw.kernel": "decay_mult=0.5",
        "head.bias": "default",
        "head.kernel": "default",
        "norm.scale": "decay_mult=0.0",
        "stem.bias": "default",
        "stem.kernel": "default",
    }
    tx = paramwise(sgd, state, dict(norm_decay_mult=0.0), lr=0.1, weight_decay=1e-4, module_kinds=kinds, frozen="stem")
    optimizer = nnx.Optimizer(net, tx, wrt=nnx.Param)  # init sees Params, update plain arrays
    stem = np.asarray(net.stem.kernel[...])
    grads = jax.tree.map(jnp.ones_like, nnx.state(net, nnx.Param))
    optimizer.update(net, grads)
    assert np.array_equal(net.stem.kernel[...], stem) and not np.array_equal(net.head.bias[...], 0)


PARAMS = {"fc": {"kernel": jnp.zeros((2, 2)), "bias": jnp.zeros(2)}}


@pytest.mark.parametrize(
    "cfg, kwargs, error, message",
    [
        (dict(custom_keys=["fc"]), {}, TypeError, "paramwise_cfg.custom_keys must be a dict, got ['fc']"),
        (dict(custom_keys={"fc": 0.1}), {}, TypeError, "paramwise_cfg.custom_keys['fc'] must be a dict, got 0.1"),
        (
            dict(custom_keys={"fc": dict(decay_mult=0.0)}),
            dict(weight_decay=None),
            ValueError,
            "paramwise_cfg.custom_keys['fc'].decay_mult = 0.0 needs a base weight_decay",
        ),
        (
            dict(norm_decay_mult=0.0),
            dict(weight_decay=None),
            ValueError,
            "paramwise_cfg.norm_decay_mult = 0.0 needs a base weight_decay",
        ),
        (
            dict(bias_lr_mul=2.0),
            {},
            ValueError,
            "unknown paramwise_cfg key 'bias_lr_mul' (= 2.0); known keys for mmcv: [",
        ),
        (dict(flat_decay_mult=0.0), {}, ValueError, "unknown paramwise_cfg key 'flat_decay_mult'"),
        (dict(bias_lr_mult="2"), {}, TypeError, "paramwise_cfg.bias_lr_mult must be a number, got '2'"),
        ([], {}, TypeError, "paramwise_cfg must be None or a dict, got []"),
        ({}, dict(style="mmdet"), ValueError, "style must be one of ['mmcv', 'mmengine'], got 'mmdet'"),
        ({}, dict(module_kinds={"fc": "bn"}), ValueError, "module_kinds['fc'] must be one of"),
        (
            {},
            dict(module_kinds={"fc2": "norm"}),
            ValueError,
            "module_kinds['fc2'] = 'norm': no parameter lies under 'fc2'",
        ),
        ({}, dict(frozen="fc2"), ValueError, "frozen = 'fc2' matches no parameter"),
    ],
)
def test_bad_input(cfg, kwargs, error, message):
    kwargs = dict(dict(weight_decay=1e-4), **kwargs)
    with pytest.raises(error) as raised:
        paramwise_labels(PARAMS, cfg, **kwargs)
    assert message in str(raised.value)


def test_schedule_without_base_value():
    with pytest.raises(ValueError, match=r"schedules\['weight_decay'\] needs a base value"):
        paramwise(sgd, PARAMS, {}, lr=0.1, schedules=dict(weight_decay=lambda base: base))
