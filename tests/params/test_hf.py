"""Parity of purelr.params.hf with transformers 5.24.0's ``Trainer.get_decay_parameter_names``.

A torch model whose names exercise every rule (``nn.LayerNorm`` by type under a name no pattern
takes, ``bias``, ``LayerNorm``, ``RMSNorm``-style modules named ``norm``, ``q_norm``,
``post_attention_layernorm``, names that only look like them: ``normalizer``, ``enorm``,
``norm_out_proj``...) against the same names on a flax params tree (``weight`` -> ``kernel`` /
``scale`` / ``embedding`` as flax names them).
"""

import flax.linen as linen
import jax
import jax.numpy as jnp
import pytest
import torch
from flax import nnx
from torch import nn
from transformers import Trainer

from purelr.params import hf
from purelr.params.module_kinds import param_names


class RMSNorm(nn.Module):  # like LlamaRMSNorm: not an nn.LayerNorm
    def __init__(self, size):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.dense = nn.Linear(4, 4)
        self.ln_1 = nn.LayerNorm(4)  # excluded by type only
        self.post_attention_layernorm = RMSNorm(4)
        self.q_norm = RMSNorm(4)
        self.normalizer = nn.Linear(4, 4)  # 'normalizer' is not a component 'norm'
        self.enorm = RMSNorm(4)  # 'enorm' neither
        self.norm_out_proj = nn.Linear(4, 4, bias=False)  # 'norm_out_proj' neither


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.embeddings = nn.ModuleDict(dict(word_embeddings=nn.Embedding(10, 4), LayerNorm=nn.LayerNorm(4)))
        self.layer = nn.ModuleList([Block(), Block()])
        self.norm = RMSNorm(4)
        self.head = nn.Linear(4, 2)
        self.logit_scale = nn.Parameter(torch.ones(()))
        self.pos_bias = nn.Parameter(torch.zeros(3))


def flax_name(model, name):
    owner = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
    leaf = name.rpartition(".")[2]
    if leaf != "weight":
        return name
    kind = "kernel" if isinstance(owner, nn.Linear) else "embedding" if isinstance(owner, nn.Embedding) else "scale"
    return name[: -len("weight")] + kind


def as_flax(model):
    tree = {}
    for name, p in model.named_parameters():
        node = tree
        parts = flax_name(model, name).split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = jnp.zeros(tuple(p.shape))
    return {"params": tree}


def test_decay_parameter_names_match_the_trainer():
    model = Model()
    expected = {flax_name(model, name) for name in Trainer.get_decay_parameter_names(None, model)}
    layer_norms = [name for name, module in model.named_modules() if isinstance(module, nn.LayerNorm)]
    got = set(hf.decay_parameter_names(as_flax(model), layer_norms))
    assert got == expected
    assert "layer.0.ln_1.scale" not in got and "layer.0.normalizer.kernel" in got and "layer.1.enorm.scale" in got
    # without the layer-type rule only ln_1 (named by no pattern) would be decayed
    assert set(hf.decay_parameter_names(as_flax(model))) - expected == {"layer.0.ln_1.scale", "layer.1.ln_1.scale"}


def test_param_groups_labels():
    model = Model()
    params = as_flax(model)
    labels, settings = hf.param_groups(
        params, 0.01, ["layer.0.ln_1", "layer.1.ln_1", "embeddings.LayerNorm"], frozen="head"
    )
    flat = dict(zip(param_names(params), jax.tree.leaves(labels)))
    assert flat["head.kernel"] == flat["head.bias"] == "frozen"
    assert flat["layer.0.dense.kernel"] == "decay" and flat["layer.0.dense.bias"] == "no_decay"
    assert settings["no_decay"].decay_mult == 0.0
    labels, _ = hf.param_groups(params, 0.0)
    assert set(jax.tree.leaves(labels)) == {"no_decay"}


class LinenBlock(linen.Module):
    @linen.compact
    def __call__(self, x):
        x = linen.Dense(4, name="dense")(x)
        x = linen.LayerNorm(name="ln_1")(x)
        return linen.RMSNorm(name="rms")(x)


class LinenModel(linen.Module):
    @linen.compact
    def __call__(self, x):
        return LinenBlock(name="block")(linen.LayerNorm()(x))


class NnxModel(nnx.Module):
    def __init__(self, rngs):
        self.ln = nnx.LayerNorm(4, rngs=rngs)
        self.rms = nnx.RMSNorm(4, rngs=rngs)
        self.dense = nnx.Linear(4, 4, rngs=rngs)


def test_layer_norm_modules_from_flax():
    assert hf.layer_norm_modules(LinenModel(), jnp.zeros((1, 4))) == ["LayerNorm_0", "block.ln_1"]
    assert hf.layer_norm_modules(NnxModel(nnx.Rngs(0))) == ["ln"]
    with pytest.raises(TypeError, match="flax"):
        hf.layer_norm_modules(Model())
