"""timm's own optimizers of the famous recipes (rmsproptf, lamb, lars, lion, sgdw, nadamw, adafactor and
their registered variants) through ``purelr.build(dict(timm=...))`` against timm 1.0.31's
``create_optimizer_v2(model, NAME, lr=..., weight_decay=..., **opt_args)`` + ``create_scheduler_v2`` on
the ViT twin (weight decay and no-decay groups: biases and 1-d params undecayed), stepped as
``train.py`` steps them (``test_timm``'s check); x64 <= 1e-10 on the parameters after 3 epochs. One name
per twin by default, every registered variant nightly."""

import pytest

from purelr.recipes.timm import SUPPORTED
from tests.recipes.test_timm import test_build_matches_timm_factories as check_build

SCHEDULE = dict(sched="cosine", epochs=3, warmup_epochs=1, warmup_lr=1e-4)
NAMES = {  # name: the train.py arguments besides SCHEDULE
    "rmsproptf": dict(lr=1e-2, weight_decay=1e-3, opt_eps=1e-3),
    "rmsproptfw": dict(lr=1e-2, weight_decay=1e-2, momentum=0.8),
    "crmsproptf": dict(lr=1e-2, weight_decay=1e-3, opt_args=dict(centered=True, lr_in_momentum=False)),
    "lamb": dict(lr=1e-2, weight_decay=0.05),
    "lambc": dict(lr=1e-2, weight_decay=0.05, opt_betas=(0.8, 0.99), opt_args=dict(max_grad_norm=None)),
    "lambw": dict(lr=1e-2, weight_decay=0.05, opt_args=dict(max_grad_norm=0.5, always_adapt=True)),
    "lambcw": dict(lr=1e-2, weight_decay=0.05, opt_eps=1e-8),
    "clamb": dict(lr=1e-2, weight_decay=0.05, opt_args=dict(grad_averaging=False)),
    "clambw": dict(lr=1e-2, weight_decay=0.05, opt_args=dict(bias_correction=False)),
    "lars": dict(lr=0.5, weight_decay=1e-3),
    "larc": dict(lr=0.5, weight_decay=1e-3, opt_args=dict(trust_coeff=0.01)),
    "nlars": dict(lr=0.5, weight_decay=1e-3, opt_args=dict(always_adapt=True)),
    "nlarc": dict(lr=0.5, weight_decay=1e-3, momentum=0.8),
    "lion": dict(lr=1e-3, weight_decay=0.1),
    "clion": dict(lr=1e-3, weight_decay=0.1, opt_betas=(0.95, 0.98)),
    "sgdw": dict(lr=0.05, weight_decay=1e-3),
    "nesterovw": dict(lr=0.05, weight_decay=1e-3, momentum=0.8),
    "csgdw": dict(lr=0.05, weight_decay=1e-3),
    "nadamw": dict(lr=1e-2, weight_decay=0.05),
    "cnadamw": dict(lr=1e-2, weight_decay=0.05, opt_args=dict(clipping_threshold=1.0)),
    "adafactor": dict(lr=1e-2, weight_decay=1e-3),
    "cadafactor": dict(lr=1e-2, weight_decay=1e-3, opt_args=dict(min_dim_size_to_factor=4)),
}


def test_every_name_of_these_twins_is_covered():
    twins_here = {"rmsprop_tf", "lamb", "lars", "lion", "sgdw", "nadamw", "timm_adafactor"}
    assert {name for name, info in SUPPORTED.items() if info.optimizer.__name__ in twins_here} == set(NAMES)


DEFAULT = ("rmsproptf", "lamb", "nlarc", "lion", "sgdw", "nadamw", "adafactor")  # one per twin; the rest nightly


@pytest.mark.parametrize("name", [name if name in DEFAULT else pytest.param(name, marks=pytest.mark.nightly)
                                  for name in NAMES])
def test_build_matches_timm_create_optimizer_v2(name):
    check_build(dict(opt=name, **NAMES[name], **SCHEDULE))
