"""Twins of ``torch.optim`` as ``optax.GradientTransformation``s, step for step.

Each takes torch's keyword names and defaults; every number may be a constant or a schedule
(``step -> value``, read at update ``count``); ``state.hyperparams`` holds the values used at the
last update. Gradient clipping with torch's arithmetic: ``clip_grad_norm``, ``clip_grad_value``;
skipping non-finite steps: ``skip_nonfinite``. May import ``purelr.schedules`` only.
"""

from purelr.optim.adabelief import adabelief
from purelr.optim.adadelta import adadelta
from purelr.optim.adafactor import adafactor
from purelr.optim.adafactor_big_vision import adafactor_big_vision
from purelr.optim.adagrad import adagrad
from purelr.optim.adahessian import adahessian
from purelr.optim.adam import adam
from purelr.optim.adam_low_bit import adam_4bit, adam_8bit, adam_fp8, adamw_4bit, adamw_8bit, adamw_fp8, adamw_torchao
from purelr.optim.adamax import adamax
from purelr.optim.adamp import adamp
from purelr.optim.adamw import adamw
from purelr.optim.adamw_legacy import adamw_legacy
from purelr.optim.adan import adan
from purelr.optim.adopt import adopt
from purelr.optim.asgd import asgd
from purelr.optim.clip import clip_grad_norm, clip_grad_value
from purelr.optim.dadapt_adagrad import dadapt_adagrad
from purelr.optim.dadapt_adam import dadapt_adam
from purelr.optim.dadapt_adan import dadapt_adan
from purelr.optim.dadapt_lion import dadapt_lion
from purelr.optim.dadapt_sgd import dadapt_sgd
from purelr.optim.fused_adam import fused_adam
from purelr.optim.fused_lamb import fused_lamb
from purelr.optim.hf_adafactor import adafactor_schedule_lr, hf_adafactor
from purelr.optim.kron import kron
from purelr.optim.lamb import grad_clip as lamb_grad_clip
from purelr.optim.lamb import lamb
from purelr.optim.laprop import laprop
from purelr.optim.lars import lars
from purelr.optim.lbfgs import lbfgs
from purelr.optim.lbfgs import minimize as lbfgs_minimize
from purelr.optim.lion import lion
from purelr.optim.lookahead import lookahead
from purelr.optim.madgrad import madgrad
from purelr.optim.mars import mars
from purelr.optim.muon import muon
from purelr.optim.muon_aux_adam import muon_with_aux_adam, single_device_muon
from purelr.optim.nadam import nadam
from purelr.optim.nadam_legacy import nadam_legacy
from purelr.optim.nadamw import nadamw
from purelr.optim.novograd import novograd
from purelr.optim.openmmlab import mmpretrain_adan, mmpretrain_lamb, mmpretrain_lars
from purelr.optim.prodigy import prodigy
from purelr.optim.psgd_kron import psgd_kron
from purelr.optim.radam import radam
from purelr.optim.radam_legacy import radam_legacy
from purelr.optim.rmsprop import rmsprop
from purelr.optim.rmsprop_tf import rmsprop_tf
from purelr.optim.rprop import rprop
from purelr.optim.schedule_free import (
    adamw_schedule_free,
    adamw_schedule_free_paper,
    radam_schedule_free,
    schedule_free_eval_params,
    schedule_free_train_params,
    sgd_schedule_free,
)
from purelr.optim.schedule_free_closure import (
    adamw_schedule_free_closure,
    radam_schedule_free_closure,
    sgd_schedule_free_closure,
)
from purelr.optim.schedule_free_reference import adamw_schedule_free_reference, sgd_schedule_free_reference
from purelr.optim.schedule_free_wrapper import schedule_free_wrapper, schedule_free_wrapper_reference
from purelr.optim.sgd import sgd
from purelr.optim.sgdp import sgdp
from purelr.optim.sgdw import sgdw
from purelr.optim.skip import skip_nonfinite
from purelr.optim.soap import soap
from purelr.optim.timm_adafactor import timm_adafactor
from purelr.optim.timm_muon import timm_muon

__all__ = [
    "adadelta",
    "adafactor",
    "adagrad",
    "adam",
    "adamax",
    "adamw",
    "asgd",
    "clip_grad_norm",
    "clip_grad_value",
    "lbfgs",
    "lbfgs_minimize",
    "muon",
    "nadam",
    "radam",
    "rmsprop",
    "rprop",
    "sgd",
    "skip_nonfinite",
]
__all__ += ["lamb", "lamb_grad_clip", "lars", "lion", "nadamw", "rmsprop_tf", "sgdw", "timm_adafactor"]  # timm's
__all__ += ["adafactor_schedule_lr", "hf_adafactor"]  # transformers' own
__all__ += ["adabelief", "adamp", "adan", "adopt", "laprop", "lookahead", "madgrad", "mars", "novograd", "sgdp"]
__all__ += ["fused_adam", "fused_lamb"]  # DeepSpeed's
__all__ += ["mmpretrain_adan", "mmpretrain_lamb", "mmpretrain_lars"]  # MMPretrain's
__all__ += ["adam_4bit", "adam_8bit", "adam_fp8", "adamw_4bit", "adamw_8bit", "adamw_fp8", "adamw_torchao"]  # torchao's
__all__ += ["soap", "psgd_kron"]  # heavyball's
__all__ += ["adafactor_big_vision", "adahessian", "kron"]  # timm's (issue 21)
__all__ += ["dadapt_adagrad", "dadapt_adam", "dadapt_adan", "dadapt_lion", "dadapt_sgd", "prodigy"]  # global d estimate
__all__ += [
    "adamw_legacy",
    "nadam_legacy",
    "timm_muon",
    "muon_with_aux_adam",
    "single_device_muon",
]  # timm's legacy names and Muon
__all__ += [
    "adamw_schedule_free",
    "adamw_schedule_free_paper",
    "radam_schedule_free",
    "sgd_schedule_free",
]  # schedulefree's
__all__ += ["adamw_schedule_free_closure", "radam_schedule_free_closure", "sgd_schedule_free_closure"]
__all__ += ["adamw_schedule_free_reference", "sgd_schedule_free_reference"]
__all__ += ["schedule_free_eval_params", "schedule_free_train_params"]
__all__ += ["radam_legacy", "schedule_free_wrapper", "schedule_free_wrapper_reference"]
