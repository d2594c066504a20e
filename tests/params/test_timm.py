"""timm's param_groups_weight_decay / param_groups_layer_decay on the torch ViT twin against the
purelr helpers on the flax twin: the same partition, weight decay and lr_scale per parameter."""

import contextlib
import importlib.util
import sys
import types

import jax
import pytest

from purelr.params.module_kinds import dotted_names
from purelr.params.timm import param_groups_layer_decay, param_groups_weight_decay
from tests.params import models, reference

MATCHER = dict(stem=r"^cls_token|^pos_embed|^embed", blocks=[(r"^blocks\.(\d+)", None), (r"^norm", (99999,))])


@contextlib.contextmanager
def _stubs(**modules):
    saved = {name: sys.modules.get(name) for name in modules}
    sys.modules.update(modules)
    try:
        yield
    finally:
        for name, module in saved.items():
            sys.modules.pop(name) if module is None else sys.modules.__setitem__(name, module)


def _load(name, relative):
    root = list(sys.modules["timm"].__path__)[0]  # the stub timm package of tests/conftest.py
    spec = importlib.util.spec_from_file_location(name, f"{root}/{relative}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def timm_param_groups():
    """timm/optim/_param_groups.py and timm/models/_manipulate.py loaded on their own: their
    packages' ``__init__`` import torchvision, which has no CPU build here."""
    with _stubs(**{"timm.layers": types.SimpleNamespace(use_reentrant_ckpt=lambda: False)}):
        manipulate = _load("_timm_manipulate", "models/_manipulate.py")
    with _stubs(**{"timm.models": types.SimpleNamespace(group_parameters=manipulate.group_parameters)}):
        return _load("_timm_param_groups", "optim/_param_groups.py"), manipulate


TIMM, MANIPULATE = timm_param_groups()


def torch_model():
    model = reference.MODELS["vit"][2]
    model.group_matcher = lambda coarse=False: MATCHER
    return model


def timm_settings(model, groups):
    """``{flax name: (weight_decay, lr_scale, group index)}``; ``'frozen'`` for params left out."""
    index = {id(p): (g["weight_decay"], g.get("lr_scale", 1.0), i) for i, g in enumerate(groups) for p in g["params"]}
    return {models.flax_name(model, n): index.get(id(p), "frozen") for n, p in model.named_parameters()}


def purelr_settings(labels, settings, weight_decay):
    params = reference.flax_params("vit")
    order = {}
    out = {}
    for name, label in zip(dotted_names(params), jax.tree.leaves(labels)):
        s = settings[label]
        out[name] = (
            "frozen" if s.frozen else (weight_decay * s.decay_mult, s.lr_scale, order.setdefault(label, len(order)))
        )
    return out


def _same_partition(a, b):
    """The same values per parameter and the same parameters together in a group."""
    members = lambda d, v: sorted(n for n in d if d[n] != "frozen" and d[n][2] == v[2])
    relabel = lambda d: {k: v if v == "frozen" else v[:2] + (members(d, v),) for k, v in d.items()}
    assert relabel(a) == relabel(b)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(weight_decay=0.05, no_weight_decay_list=["pos_embed", "cls*"]),
        dict(weight_decay=0.0),
        dict(weight_decay=0.1, weight_decay_exclude_1d=False),
    ],
)
def test_weight_decay_groups(kwargs):
    model = torch_model()
    expected = timm_settings(model, TIMM.param_groups_weight_decay(model, **kwargs))
    labels, settings = param_groups_weight_decay(reference.flax_params("vit"), **kwargs)
    _same_partition(purelr_settings(labels, settings, kwargs.get("weight_decay", 1e-5)), expected)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(layer_decay=0.5, min_scale=0.2, no_weight_decay_list=["pos_embed"]),
        dict(layer_decay=0.6, no_opt_scale=0.5),
        dict(weight_decay_exclude_1d=False),
    ],
)
def test_layer_decay_groups(kwargs):
    model = torch_model()
    layer_map = MANIPULATE.group_parameters(model, MATCHER, reverse=True)
    expected = timm_settings(model, TIMM.param_groups_layer_decay(model, **kwargs))
    for p in model.parameters():
        p.requires_grad_(True)  # timm freezes those below no_opt_scale
    flax_map = {models.flax_name(model, n): layer for n, layer in layer_map.items()}
    labels, settings = param_groups_layer_decay(reference.flax_params("vit"), flax_map, **kwargs)
    _same_partition(purelr_settings(labels, settings, kwargs.get("weight_decay", 0.05)), expected)
    assert set(settings) - {"frozen"} <= {f"layer_{i}_{d}" for i in range(5) for d in ("decay", "no_decay")}


def test_layer_map_as_function_and_errors():
    params = reference.flax_params("vit")
    layer_of = (
        lambda name: 0
        if name.split(".")[0] in ("embed", "cls_token", "pos_embed")
        else (int(name.split(".")[1]) + 1 if name.startswith("blocks.") else None)
    )
    labels, settings = param_groups_layer_decay(params, layer_of, layer_decay=0.5)
    assert settings["layer_0_decay"].lr_scale == 0.25 and settings["layer_2_no_decay"].lr_scale == 1.0
    assert jax.tree.leaves(labels)[dotted_names(params).index("head.kernel")] == "layer_2_decay"
    with pytest.raises(ValueError, match=r"layer_map names parameters that do not exist: \['blocks.9.x'\]"):
        param_groups_layer_decay(params, {"blocks.9.x": 1})
