"""timm's ``train.py`` (optimizer, lr schedule and scaling, clipping, accumulation, model EMA) as
one optax transformation, and its optimizer and scheduler factories with timm's argument names.

Twins of timm 1.0.31's ``timm.optim.create_optimizer_v2`` and ``timm.scheduler.create_scheduler_v2``
for the optimizer names in ``SUPPORTED``, and of what ``train.py`` (``TRAIN_PY``: the newest
train.py available, timm 1.0.31's packages ship none) does around them. A timm recipe in a config
file is a ``timm=dict(...)`` entry holding train.py's arguments (its whole namespace, as its
``args.yaml`` holds it, or any part: ``train_args`` puts train.py's defaults, ``DEFAULTS``, in for
the rest; arguments of data, augmentation, loss and logging are ignored, ``ignored_keys``)::

    timm = dict(opt='adamw', lr=5e-4, weight_decay=0.05, opt_eps=1e-8, opt_betas=(0.9, 0.999),
                layer_decay=0.65, group_matcher=dict(stem=r'^cls_token|^pos_embed|^patch_embed',
                                                     blocks=[(r'^blocks\\.(\\d+)', None), (r'^norm', (99999,))]),
                sched='cosine', epochs=100, warmup_epochs=5, warmup_lr=1e-6, min_lr=1e-6,
                clip_grad=1.0, model_ema=True, model_ema_decay=0.9998, grad_accum_steps=2,
                drop_path=0.1, mixup=0.8)

``purelr.build(cfg, params, epoch_len=len(loader_train), world_size=N, head=...)`` builds it
(``build_timm``); ``ema_params(opt_state)`` reads the model EMA. timm reads the layers of
``layer_decay`` from ``model.group_matcher`` and the no-decay names from ``model.no_weight_decay()``;
here ``group_matcher`` (the same dict, its regular expressions matched against flax dotted names)
or an explicit ``layer_map``, and ``no_weight_decay_list``.
"""

from __future__ import annotations

import collections
import difflib
import functools
import inspect
import os
import re
from typing import Any, Callable, Mapping, NamedTuple

import jax
import optax

from purelr import optim
from purelr.optim import adaptive_clip
from purelr.params import groups as groups_lib
from purelr.params import paramwise as paramwise_lib
from purelr.params import timm as paramwise_timm
from purelr.params.module_kinds import dotted_names
from purelr.recipes import recipe as recipe_lib
from purelr.schedules import timm as timm_schedules
from purelr.schedules import validate
from purelr.training import averaging

MATCH_PREV_GROUP = 99999  # timm.models._manipulate.MATCH_PREV_GROUP[0]


class OptimInfo(NamedTuple):
    """timm's ``OptimInfo`` for a supported name: the purelr twin and timm's flags and defaults."""

    optimizer: Callable
    has_eps: bool = True
    has_momentum: bool = False
    has_betas: bool = False
    defaults: tuple = ()
    global_grad_clip: Callable | None = None  # timm's Lamb: its max_grad_norm pre-clip spans all groups


SUPPORTED = {
    "sgd": OptimInfo(optim.sgd, has_eps=False, has_momentum=True, defaults=(("nesterov", True),)),
    "nesterov": OptimInfo(optim.sgd, has_eps=False, has_momentum=True, defaults=(("nesterov", True),)),
    "momentum": OptimInfo(optim.sgd, has_eps=False, has_momentum=True, defaults=(("nesterov", False),)),
    "adam": OptimInfo(optim.adam, has_betas=True),
    "adamw": OptimInfo(optim.adamw, has_betas=True),
    "nadam": OptimInfo(optim.nadam, has_betas=True),
    "radam": OptimInfo(optim.radam, has_betas=True),
    "radamw": OptimInfo(optim.radam, has_betas=True, defaults=(("decoupled_weight_decay", True),)),
    "adamax": OptimInfo(optim.adamax, has_betas=True),
    "adagrad": OptimInfo(optim.adagrad, defaults=(("eps", 1e-8),)),
    "adadelta": OptimInfo(optim.adadelta),
    "rmsprop": OptimInfo(optim.rmsprop, has_momentum=True, defaults=(("alpha", 0.9),)),
    "rmsproptf": OptimInfo(optim.rmsprop_tf, has_momentum=True, defaults=(("alpha", 0.9),)),
    "rmsproptfw": OptimInfo(optim.rmsprop_tf, has_momentum=True, defaults=(("alpha", 0.9), ("decoupled_decay", True))),
    "crmsproptf": OptimInfo(optim.rmsprop_tf, has_momentum=True, defaults=(("alpha", 0.9), ("caution", True))),
    "lamb": OptimInfo(optim.lamb, has_betas=True, global_grad_clip=optim.lamb_grad_clip),
    "lambc": OptimInfo(
        optim.lamb, has_betas=True, defaults=(("trust_clip", True),), global_grad_clip=optim.lamb_grad_clip
    ),
    "lambw": OptimInfo(
        optim.lamb, has_betas=True, defaults=(("decoupled_decay", True),), global_grad_clip=optim.lamb_grad_clip
    ),
    "lambcw": OptimInfo(
        optim.lamb,
        has_betas=True,
        defaults=(("trust_clip", True), ("decoupled_decay", True)),
        global_grad_clip=optim.lamb_grad_clip,
    ),
    "clamb": OptimInfo(
        optim.lamb, has_betas=True, defaults=(("caution", True),), global_grad_clip=optim.lamb_grad_clip
    ),
    "clambw": OptimInfo(
        optim.lamb,
        has_betas=True,
        defaults=(("caution", True), ("decoupled_decay", True)),
        global_grad_clip=optim.lamb_grad_clip,
    ),
    "lars": OptimInfo(optim.lars, has_momentum=True),
    "larc": OptimInfo(optim.lars, has_momentum=True, defaults=(("trust_clip", True),)),
    "nlars": OptimInfo(optim.lars, has_momentum=True, defaults=(("nesterov", True),)),
    "nlarc": OptimInfo(optim.lars, has_momentum=True, defaults=(("nesterov", True), ("trust_clip", True))),
    "lion": OptimInfo(optim.lion, has_eps=False, has_betas=True),
    "clion": OptimInfo(optim.lion, has_eps=False, has_betas=True, defaults=(("caution", True),)),
    "sgdw": OptimInfo(optim.sgdw, has_eps=False, has_momentum=True, defaults=(("nesterov", True),)),
    "nesterovw": OptimInfo(optim.sgdw, has_eps=False, has_momentum=True, defaults=(("nesterov", True),)),
    "csgdw": OptimInfo(optim.sgdw, has_eps=False, has_momentum=True, defaults=(("nesterov", True), ("caution", True))),
    "nadamw": OptimInfo(optim.nadamw, has_betas=True),
    "cnadamw": OptimInfo(optim.nadamw, has_betas=True, defaults=(("caution", True),)),
    "adafactor": OptimInfo(optim.timm_adafactor, has_betas=True),
    "cadafactor": OptimInfo(
        optim.timm_adafactor, has_betas=True, defaults=(("caution", True), ("betas", (0.9, 0.999)))
    ),
    # timm's own optimizers; adamp / sgdp read flax kernels' output channels on their last axis
    "adamp": OptimInfo(
        optim.adamp, has_betas=True, defaults=(("wd_ratio", 0.01), ("nesterov", True), ("layout", "flax"))
    ),
    "cadamp": OptimInfo(
        optim.adamp,
        has_betas=True,
        defaults=(("wd_ratio", 0.01), ("nesterov", True), ("caution", True), ("layout", "flax")),
    ),
    "sgdp": OptimInfo(optim.sgdp, has_momentum=True, defaults=(("nesterov", True), ("layout", "flax"))),
    "csgdp": OptimInfo(
        optim.sgdp, has_momentum=True, defaults=(("nesterov", True), ("caution", True), ("layout", "flax"))
    ),
    "adabelief": OptimInfo(optim.adabelief, has_betas=True, defaults=(("rectify", False),)),
    "radabelief": OptimInfo(optim.adabelief, has_betas=True, defaults=(("rectify", True),)),
    "madgrad": OptimInfo(optim.madgrad, has_momentum=True),
    "madgradw": OptimInfo(optim.madgrad, has_momentum=True, defaults=(("decoupled_decay", True),)),
    "adan": OptimInfo(optim.adan, has_betas=True, defaults=(("no_prox", False),)),
    "adanw": OptimInfo(optim.adan, has_betas=True, defaults=(("no_prox", True),)),
    "cadan": OptimInfo(optim.adan, has_betas=True, defaults=(("caution", True), ("no_prox", False))),
    "cadanw": OptimInfo(optim.adan, has_betas=True, defaults=(("caution", True), ("no_prox", True))),
    "adopt": OptimInfo(optim.adopt, has_betas=True),
    "adoptw": OptimInfo(optim.adopt, has_betas=True, defaults=(("decoupled", True),)),
    "cadopt": OptimInfo(optim.adopt, has_betas=True, defaults=(("caution", True),)),
    "cadoptw": OptimInfo(optim.adopt, has_betas=True, defaults=(("decoupled", True), ("caution", True))),
    "laprop": OptimInfo(optim.laprop, has_betas=True),
    "claprop": OptimInfo(optim.laprop, has_betas=True, defaults=(("caution", True),)),
    "novograd": OptimInfo(optim.novograd, has_betas=True),
    "novogradw": OptimInfo(optim.novograd, has_betas=True, defaults=(("decoupled_decay", True),)),
    "mars": OptimInfo(optim.mars, has_betas=True),
    "cmars": OptimInfo(optim.mars, has_betas=True, defaults=(("caution", True),)),
    # timm's corrected weight decay (``lr ** 2 / max_lr_snapshot``), with and without caution
    "lambcd": OptimInfo(
        optim.lamb,
        has_betas=True,
        defaults=(("decoupled_decay", True), ("corrected_weight_decay", True)),
        global_grad_clip=optim.lamb_grad_clip,
    ),
    "rmsproptfc": OptimInfo(
        optim.rmsprop_tf,
        has_momentum=True,
        defaults=(("alpha", 0.9), ("decoupled_decay", True), ("corrected_weight_decay", True)),
    ),
    "lionc": OptimInfo(optim.lion, has_eps=False, has_betas=True, defaults=(("corrected_weight_decay", True),)),
    "clionc": OptimInfo(
        optim.lion, has_eps=False, has_betas=True, defaults=(("caution", True), ("corrected_weight_decay", True))
    ),
    "sgdc": OptimInfo(
        optim.sgdw, has_eps=False, has_momentum=True, defaults=(("nesterov", True), ("corrected_weight_decay", True))
    ),
    "csgdc": OptimInfo(
        optim.sgdw,
        has_eps=False,
        has_momentum=True,
        defaults=(("nesterov", True), ("caution", True), ("corrected_weight_decay", True)),
    ),
    "nadamc": OptimInfo(optim.nadamw, has_betas=True, defaults=(("corrected_weight_decay", True),)),
    "cnadamc": OptimInfo(optim.nadamw, has_betas=True, defaults=(("caution", True), ("corrected_weight_decay", True))),
    "adoptc": OptimInfo(optim.adopt, has_betas=True, defaults=(("decoupled", True), ("corrected_weight_decay", True))),
    "cadoptc": OptimInfo(
        optim.adopt, has_betas=True, defaults=(("decoupled", True), ("caution", True), ("corrected_weight_decay", True))
    ),
    "adamwlegacy": OptimInfo(optim.adamw_legacy, has_betas=True),
    "nadamlegacy": OptimInfo(optim.nadam_legacy, has_betas=True),
    "radamlegacy": OptimInfo(optim.radam_legacy, has_betas=True),
    "cadamw": OptimInfo(optim.adamw_legacy, has_betas=True, defaults=(("caution", True),)),
    "adamc": OptimInfo(optim.adamw_legacy, has_betas=True, defaults=(("corrected_weight_decay", True),)),
    "cadamc": OptimInfo(
        optim.adamw_legacy, has_betas=True, defaults=(("caution", True), ("corrected_weight_decay", True))
    ),
    # timm's Muon: Muon / AdaMuon on the leaves it suits, AdamW / NAdamW (nesterov) on the rest
    "muon": OptimInfo(optim.timm_muon, has_momentum=True, has_betas=True, defaults=(("layout", "flax"),)),
    "nmuon": OptimInfo(
        optim.timm_muon, has_momentum=True, has_betas=True, defaults=(("nesterov", True), ("layout", "flax"))
    ),
    "adamuon": OptimInfo(
        optim.timm_muon, has_momentum=True, has_betas=True, defaults=(("algo", "adamuon"), ("layout", "flax"))
    ),
    "nadamuon": OptimInfo(
        optim.timm_muon,
        has_momentum=True,
        has_betas=True,
        defaults=(("algo", "adamuon"), ("nesterov", True), ("layout", "flax")),
    ),
    "lapropc": OptimInfo(optim.laprop, has_betas=True, defaults=(("corrected_weight_decay", True),)),
    "novogradc": OptimInfo(
        optim.novograd, has_betas=True, defaults=(("decoupled_decay", True), ("corrected_weight_decay", True))
    ),
    # AdafactorBigVision, Kron (draws: see purelr.optim.kron), Adahessian (update takes value_fn or hessian)
    "adafactorbv": OptimInfo(optim.adafactor_big_vision, has_momentum=True),
    "adafactorbvc": OptimInfo(
        optim.adafactor_big_vision, has_momentum=True, defaults=(("corrected_weight_decay", True),)
    ),
    "cadafactorbv": OptimInfo(optim.adafactor_big_vision, has_momentum=True, defaults=(("caution", True),)),
    "cadafactorbvc": OptimInfo(
        optim.adafactor_big_vision,
        has_momentum=True,
        defaults=(("caution", True), ("corrected_weight_decay", True)),
    ),
    "kron": OptimInfo(optim.kron, has_eps=False, has_momentum=True),
    "kronw": OptimInfo(optim.kron, has_eps=False, has_momentum=True, defaults=(("decoupled_decay", True),)),
    "kronc": OptimInfo(
        optim.kron,
        has_eps=False,
        has_momentum=True,
        defaults=(("decoupled_decay", True), ("corrected_weight_decay", True)),
    ),
    "adahessian": OptimInfo(optim.adahessian, has_betas=True),
}

# timm 1.0.31 registry names purelr refuses, with the reason (the others it does not list raise as unknown)
_APEX = "apex's CUDA kernels (timm asserts torch.cuda.is_available()); the same arithmetic on the CPU:"
_BNB = "bitsandbytes' CUDA kernels (timm asserts torch.cuda.is_available()), 8-bit states not twinned"
UNAVAILABLE = {
    "fusedsgd": f"{_APEX} 'sgd'",
    "fusedadam": f"{_APEX} 'adam' / 'adamw' (adam_w_mode), or purelr.optim.fused_adam (DeepSpeed's)",
    "fusedadamw": f"{_APEX} 'adamw'",
    "fusedlamb": f"{_APEX} 'lamb', or purelr.optim.fused_lamb (DeepSpeed's)",
    "fusednovograd": f"{_APEX} 'novograd'",
    **{
        name: _BNB
        for name in (
            "bnbsgd",
            "bnbsgd8bit",
            "bnbadam",
            "bnbadam8bit",
            "bnbadamw",
            "bnbadamw8bit",
            "bnblion",
            "bnblion8bit",
            "bnbademamix",
            "bnbademamix8bit",
        )
    },
}

TRAIN_PY = "timm 1.0.29.dev0 (huggingface/pytorch-image-models@aa4b5850)"
# train.py's argparse defaults (TRAIN_PY's train.py; the timm 1.0.31 wheel and sdist ship no train.py)
# of the arguments that set the optimizer, the lr schedule and its scaling, clipping, accumulation
# and model EMA.
DEFAULTS: dict[str, Any] = {
    "opt": "sgd",
    "opt_eps": None,
    "opt_betas": None,
    "momentum": 0.9,
    "weight_decay": 2e-5,
    "clip_grad": None,
    "clip_mode": "norm",
    "layer_decay": None,
    "layer_decay_min_scale": 0,
    "layer_decay_no_opt_scale": None,
    "opt_kwargs": {},
    "sched": "cosine",
    "sched_on_updates": False,
    "lr": None,
    "lr_base": 0.1,
    "lr_base_size": 256,
    "lr_base_scale": "",
    "lr_noise": None,
    "lr_noise_pct": 0.67,
    "lr_noise_std": 1.0,
    "lr_cycle_mul": 1.0,
    "lr_cycle_decay": 0.5,
    "lr_cycle_limit": 1,
    "lr_k_decay": 1.0,
    "warmup_lr": 1e-5,
    "min_lr": 0,
    "epochs": 300,
    "start_epoch": None,
    "decay_milestones": [90, 180, 270],
    "decay_epochs": 90,
    "warmup_epochs": 5,
    "warmup_prefix": False,
    "cooldown_epochs": 0,
    "patience_epochs": 10,
    "decay_rate": 0.1,
    "seed": 42,
    "batch_size": 128,
    "grad_accum_steps": 1,
    "model_ema": False,
    "model_ema_decay": 0.9998,
    "model_ema_warmup": False,
}
# Read with getattr by timm 1.0.31's optimizer_kwargs / scheduler_kwargs, absent from TRAIN_PY's
# train.py: their getattr defaults.
LIBRARY_DEFAULTS = {"lr_decay_fn": None, "lr_stable_timescale": None, "opt_args": None, "opt_foreach": None}
# purelr's keys for what timm reads from the model (``model.group_matcher``,
# ``model.no_weight_decay()``) and create_optimizer_v2's ``filter_bias_and_bn`` (train.py: True).
MODEL_KEYS = {"group_matcher": None, "no_weight_decay_list": (), "filter_bias_and_bn": True}
# The other arguments of TRAIN_PY's train.py (data, model, augmentation, loss, devices, logging):
# accepted and ignored (``ignored_keys``). ``model_ema_force_cpu`` only moves the EMA to the CPU.
IGNORED = frozenset(
    """
aa amp amp_dtype aug_repeats aug_splits bce_loss bce_pos_weight bce_sum bce_target_thresh bn_eps
bn_momentum channels_last checkpoint_hist class_map color_jitter color_jitter_prob crop_pct cutmix
cutmix_minmax data data_dir dataset dataset_download dataset_trust_remote_code device device_modules
dist_bn distill_loss_weight drop drop_block drop_connect drop_path epoch_repeats eval_metric
experiment fast_norm fuser gaussian_blur_prob gp grad_checkpointing grayscale_prob head_init_bias
head_init_scale hflip img_size in_chans initial_checkpoint input_img_mode input_key input_size
interpolation jsd_loss kd_distill_type kd_loss_type kd_model_name kd_student_feature_dim
kd_teacher_feature_dim kd_temperature kd_token_distill_type local_rank log_interval log_wandb mean
mixup mixup_mode mixup_off_epoch mixup_prob mixup_switch_prob model model_dtype model_ema_force_cpu
model_kwargs naflex_loader naflex_loss_scale naflex_max_seq_len naflex_patch_size_probs
naflex_patch_sizes naflex_patchify_channels_first naflex_train_seq_lens no_aug no_ddp_bb
no_prefetcher no_resume_opt num_classes output pin_mem pretrained pretrained_path ratio recount
recovery_interval remode reprob resplit resume save_images scale smoothing split_bn std sync_bn
synchronize_step target_key task_loss_weight torchcompile torchcompile_mode torchscript
train_batch_sizes train_batches_per_epoch train_crop_mode train_img_sizes train_interpolation
train_num_samples train_size_probs train_size_random_mix train_size_schedule
train_size_schedule_spread train_split tta use_multi_epochs_loader val_interval val_num_samples
val_split validation_batch_size variable_batch_loss_scale vflip wandb_project wandb_resume_id
wandb_tags worker_seeding workers
""".split()
)
CLIP_MODES = ("norm", "value", "agc")
LR_BASE_SCALES = ("", "sqrt", "linear")
# timm.scheduler.scheduler_kwargs: train.py argument -> (create_scheduler_v2 argument, its getattr default).
SCHEDULER_ARGS = {
    "sched": ("sched", "cosine"),
    "epochs": ("num_epochs", 100),
    "decay_epochs": ("decay_epochs", 30),
    "decay_milestones": ("decay_milestones", [30, 60]),
    "warmup_epochs": ("warmup_epochs", 5),
    "cooldown_epochs": ("cooldown_epochs", 0),
    "patience_epochs": ("patience_epochs", 10),
    "decay_rate": ("decay_rate", 0.1),
    "min_lr": ("min_lr", 0.0),
    "warmup_lr": ("warmup_lr", 1e-5),
    "warmup_prefix": ("warmup_prefix", False),
    "lr_noise": ("noise", None),
    "lr_noise_pct": ("noise_pct", 0.67),
    "lr_noise_std": ("noise_std", 1.0),
    "seed": ("noise_seed", 42),
    "lr_cycle_mul": ("cycle_mul", 1.0),
    "lr_cycle_decay": ("cycle_decay", 0.1),
    "lr_cycle_limit": ("cycle_limit", 1),
    "lr_k_decay": ("k_decay", 1.0),
    "lr_decay_fn": ("decay_fn", None),
    "lr_stable_timescale": ("stable_timescale", None),
}


# timm 1.0.31's VisionTransformer.group_matcher (timm/models/vision_transformer.py) and the depth of
# its vit_{tiny,small,base,large,huge}_patch*_{224,384} models: enough to draw each layer-decay
# group's lr without the model (``model_layers``).
VIT_GROUP_MATCHER = dict(
    stem=r"^cls_token|reg_token|pos_embed|patch_embed|norm_pre",
    blocks=[(r"^blocks\.(\d+)", None), (r"^norm", (MATCH_PREV_GROUP,))],
)
VIT_DEPTHS = {
    **{
        f"vit_{size}_patch{patch}_{res}": depth
        for size, depth, patches in (
            ("tiny", 12, (16,)),
            ("small", 12, (16, 32)),
            ("base", 12, (16, 32)),
            ("large", 24, (16, 32)),
        )
        for patch in patches
        for res in (224, 384)
    },
    "vit_small_patch8_224": 12,
    "vit_base_patch8_224": 12,
    "vit_large_patch14_224": 24,
    "vit_huge_patch14_224": 32,
}


def model_layers(model):
    """``(params, group_matcher)`` standing for the timm model named ``model`` (a pretrained tag
    after ``.`` is dropped) when purelr knows its layers (``VIT_DEPTHS``): a tree of 2-D leaves
    with the model's layer structure (stem, ``blocks.i``, head); None otherwise."""
    depth = VIT_DEPTHS.get(str(model).partition(".")[0])
    if depth is None:
        return None
    leaf = jax.numpy.zeros((1, 1))
    params = {
        "cls_token": leaf,
        "pos_embed": leaf,
        "patch_embed": {"proj": {"kernel": leaf}},
        "blocks": {str(i): {"mlp": {"fc1": {"kernel": leaf}}} for i in range(depth)},
        "head": {"kernel": leaf},
    }
    return params, VIT_GROUP_MATCHER


def known_keys() -> frozenset:
    """Every key a ``timm=dict(...)`` entry may hold."""
    return frozenset({*DEFAULTS, *LIBRARY_DEFAULTS, *MODEL_KEYS, *IGNORED})


def train_args(args) -> dict:
    """The whole argument namespace of ``train.py`` (``TRAIN_PY``) for the arguments purelr reads:
    ``args`` (a dict with train.py's names, or the path of the args YAML that ``--config`` reads)
    with train.py's defaults (``DEFAULTS``) for every key left out. Keys ``train.py`` does not know
    raise, naming the closest known ones."""
    if isinstance(args, (str, os.PathLike)):
        from purelr.recipes.config import load_config

        args = load_config(args)
    if not isinstance(args, Mapping):
        raise TypeError(f"timm must be a dict of timm train.py arguments (or an args YAML path), got {args!r}")
    unknown = sorted(set(args) - known_keys(), key=str)
    if unknown:
        raise ValueError(
            f"timm: unknown keys {unknown} (not arguments of {TRAIN_PY}'s train.py)"
            f"{validate.close_to(unknown[0], known_keys())}"
        )
    return {**DEFAULTS, **LIBRARY_DEFAULTS, **MODEL_KEYS, **args}


def ignored_keys(args) -> list[str]:
    """The keys of ``args`` that do not set the optimizer, the schedule, clipping, accumulation or
    EMA (data, augmentation, loss, model, devices, logging), which ``purelr.build`` ignores."""
    keys = args if isinstance(args, Mapping) else train_args(args)
    train_args(keys)
    return sorted(key for key in keys if key in IGNORED)


def scaled_lr(args: Mapping[str, Any], world_size: int | None = None) -> float:
    """``args['lr']``, or where it is unset (None or 0) train.py's lr from ``lr_base``::

        lr = lr_base * (batch_size * world_size * grad_accum_steps / lr_base_size) ** power

    ``power`` 0.5 for ``lr_base_scale='sqrt'``, 1 for ``'linear'``; unset (``''``), ``sqrt`` when
    the optimizer name holds ``ada`` or ``lamb``, else ``linear``."""
    args = train_args(args)
    if args["lr"]:
        return validate.nonnegative("timm.lr", args["lr"])
    scale = validate.one_of("timm.lr_base_scale", args["lr_base_scale"], LR_BASE_SCALES)
    if world_size is None:
        raise ValueError(
            f"timm.lr is missing ({args['lr']!r}): train.py derives it from "
            f"lr_base={args['lr_base']!r} and the global batch size (batch_size * world_size * "
            f"grad_accum_steps): give the number of processes it ran on, "
            f"purelr.build(..., world_size=N) (--world-size N), or timm.lr"
        )
    if args.get("train_img_sizes") is not None:
        raise ValueError(
            f"timm.train_img_sizes={args['train_img_sizes']!r}: train.py then scales the lr by the "
            f"average of its scheduled batch sizes, which purelr does not derive: give timm.lr"
        )
    batch = (
        validate.positive_int("timm.batch_size", args["batch_size"])
        * validate.positive_int("world_size", world_size)
        * validate.positive_int("timm.grad_accum_steps", args["grad_accum_steps"])
    )
    ratio = float(batch) / validate.positive("timm.lr_base_size", args["lr_base_size"])
    if not scale:
        scale = "sqrt" if any(name in str(args["opt"]).lower() for name in ("ada", "lamb")) else "linear"
    if scale == "sqrt":
        ratio = ratio**0.5
    return validate.nonnegative("timm.lr_base", args["lr_base"]) * ratio


def optimizer_info(opt: str) -> tuple[str, OptimInfo]:
    """timm's name parsing (``opt.lower().split('_')[-1]``, a ``lookahead_`` prefix wrapping the
    optimizer in ``purelr.optim.lookahead``); unsupported names raise listing the supported ones,
    closest first."""
    if not isinstance(opt, str):
        raise TypeError(f"opt must be a timm optimizer name, got {opt!r}")
    parts = opt.lower().split("_")
    name = parts[-1]
    if name in UNAVAILABLE:
        raise ValueError(f"opt={opt!r} is not supported: it needs {UNAVAILABLE[name]}")
    if name not in SUPPORTED:
        close = difflib.get_close_matches(name, SUPPORTED, n=3, cutoff=0.6)
        hint = f" (did you mean {close}?)" if close else ""
        ranked = sorted(SUPPORTED, key=lambda known: (-difflib.SequenceMatcher(None, name, known).ratio(), known))
        raise ValueError(
            f"opt={opt!r} is not supported{hint}: purelr twins these timm optimizer names, closest first: {ranked}"
        )
    if len(parts) > 1 and parts[0] == "lookahead":
        return name, SUPPORTED[name]._replace(optimizer=_with_lookahead(SUPPORTED[name].optimizer))
    return name, SUPPORTED[name]


def _with_lookahead(optimizer: Callable) -> Callable:
    """timm's ``lookahead_`` prefix: ``Lookahead(optimizer)`` with its defaults (``alpha=0.5``,
    ``k=6``), around each group's optimizer (timm's Lookahead steps every group alike)."""

    @functools.wraps(optimizer)
    def make(*args, **kwargs):
        return optim.lookahead(optimizer(*args, **kwargs))

    return make


def layer_map_from_matcher(params, group_matcher: Mapping[str, Any]) -> dict[str, int]:
    """Twin of ``timm.models.group_parameters(model, group_matcher, reverse=True)`` on dotted names:
    ``{name: layer id}``. Each entry of ``group_matcher`` is a regex or a list of ``(regex, suffix)``;
    a name takes the first regex that matches its start, keyed by (entry index, the regex's groups,
    the suffix); unmatched names come last; a suffix of ``(99999,)`` joins the previous layer."""
    compiled = []
    for ordinal, (group, spec) in enumerate(validate.mapping("group_matcher", group_matcher).items()):
        if spec is None:
            continue
        for pattern, suffix in spec if isinstance(spec, (list, tuple)) else [(spec, None)]:
            compiled.append((_compiled(f"group_matcher[{group!r}]", pattern), (ordinal,), suffix))

    def key(name):
        for pattern, prefix, suffix in compiled:
            match = pattern.match(name)
            if match:
                parts = (prefix, match.groups(), suffix)
                return tuple(float(x) for part in parts if part for x in part)
        return (float("inf"),)

    grouping = collections.defaultdict(list)
    for name in dotted_names(params):
        grouping[key(name)].append(name)
    layers: dict[str, int] = {}
    layer = -1
    for group in sorted(grouping):
        if layer < 0 or group[-1] != MATCH_PREV_GROUP:
            layer += 1
        layers.update((name, layer) for name in grouping[group])
    return layers


def _compiled(name: str, pattern) -> re.Pattern:
    try:
        return re.compile(pattern)
    except (re.error, TypeError) as error:
        raise ValueError(f"{name} must be a regular expression, got {pattern!r}: {error}") from error


def param_groups(
    params,
    weight_decay: float = 0.0,
    filter_bias_and_bn: bool = True,
    layer_decay: float | None = None,
    layer_decay_min_scale: float = 0.0,
    layer_decay_no_opt_scale: float | None = None,
    *,
    layer_map=None,
    no_weight_decay_list=(),
    frozen=None,
):
    """``(labels, settings)`` of the parameter groups ``create_optimizer_v2`` makes (below); the
    label ``"frozen"`` marks the leaves timm leaves without gradients (``frozen``, and layers whose
    scale is under ``layer_decay_no_opt_scale``)."""
    validate.flag("filter_bias_and_bn", filter_bias_and_bn)
    if layer_decay is None:
        return paramwise_timm.param_groups_weight_decay(
            params, weight_decay, filter_bias_and_bn, no_weight_decay_list, frozen=frozen
        )
    if layer_map is None:
        raise ValueError(
            f"layer_decay needs layer_map (timm reads it from model.group_matcher), got "
            f"layer_decay={layer_decay!r} and no layer_map: give layer_map={{name: layer}} or "
            f"layer_map_from_matcher(params, matcher)"
        )
    return paramwise_timm.param_groups_layer_decay(
        params,
        layer_map,
        weight_decay=weight_decay,
        no_weight_decay_list=no_weight_decay_list,
        weight_decay_exclude_1d=filter_bias_and_bn,
        layer_decay=layer_decay,
        min_scale=layer_decay_min_scale,
        no_opt_scale=layer_decay_no_opt_scale,
        frozen=frozen,
    )


def create_optimizer_v2(
    params,
    opt: str = "sgd",
    lr=None,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    foreach=None,
    filter_bias_and_bn: bool = True,
    layer_decay: float | None = None,
    layer_decay_min_scale: float = 0.0,
    layer_decay_no_opt_scale: float | None = None,
    *,
    layer_map=None,
    no_weight_decay_list=(),
    frozen=None,
    **kwargs,
) -> optax.GradientTransformation:
    """Twin of ``timm.optim.create_optimizer_v2(model, ...)`` for the names in ``SUPPORTED``.

    Groups as timm makes them from a model: ``param_groups_weight_decay`` (no decay for ``ndim <= 1``
    and ``.bias`` leaves when ``filter_bias_and_bn``, and for ``no_weight_decay_list``, timm's
    ``model.no_weight_decay()``), or ``param_groups_layer_decay`` when ``layer_decay`` is given (then
    ``layer_map``, ``{name: layer}`` or ``name -> layer``, is needed; see ``layer_map_from_matcher``).
    timm's defaults: ``sgd``/``nesterov`` are Nesterov SGD, ``momentum`` plain SGD with momentum,
    ``rmsprop`` has ``alpha=0.9``, ``adagrad`` ``eps=1e-8``; ``momentum`` goes only to optimizers
    that take it, ``eps``/``betas`` only to those that take them. ``lr`` is a number or a schedule
    (``create_scheduler_v2``); ``lr=None`` leaves the optimizer's default. Each group's lr is
    multiplied by its layer-decay ``lr_scale`` as every timm scheduler does (a timm optimizer used
    with no scheduler at all ignores ``lr_scale``). ``foreach`` is accepted and has no effect.
    """
    del foreach
    _, info = optimizer_info(opt)
    for name in ("fallback_list", "fallback_no_weight_decay"):
        if kwargs.get(name):
            raise ValueError(
                f"{name}={kwargs[name]!r}: timm's fallback param groups (use_fallback) are not made by "
                f"purelr's create_optimizer_v2; give timm_muon's use_fallback=True to the groups that need it"
            )
        kwargs.pop(name, None)
    labels, settings = param_groups(
        params,
        weight_decay,
        filter_bias_and_bn,
        layer_decay,
        layer_decay_min_scale,
        layer_decay_no_opt_scale,
        layer_map=layer_map,
        no_weight_decay_list=no_weight_decay_list,
        frozen=frozen,
    )
    hyperparams = {**dict(info.defaults), **kwargs}
    if info.has_momentum:
        hyperparams.setdefault("momentum", momentum)
    if not info.has_eps:
        hyperparams.pop("eps", None)
    if not info.has_betas:
        hyperparams.pop("betas", None)
    if lr is None:
        lr = inspect.signature(info.optimizer).parameters["lr"].default
    if hyperparams.get("corrected_weight_decay") and hyperparams.get("max_lr_snapshot") is None:
        if callable(lr):
            raise ValueError(
                f"opt={opt!r} (corrected_weight_decay) with a scheduled lr needs max_lr_snapshot "
                f"(the lr timm's constructor gets, the peak lr), got max_lr_snapshot=None"
            )
        hyperparams["max_lr_snapshot"] = lr  # timm's snapshot of the constructor lr, before lr_scale
    schedules = None
    if callable(lr):
        schedule, lr = lr, 1.0
        schedules = {"lr": lambda base: lambda step: base * schedule(step)}
    clip = None
    if info.global_grad_clip is not None:  # over every group's gradients, before the groups' steps
        max_grad_norm = hyperparams.get(
            "max_grad_norm", inspect.signature(info.optimizer).parameters["max_grad_norm"].default
        )
        hyperparams["max_grad_norm"] = None
        clip = None if max_grad_norm is None else info.global_grad_clip(max_grad_norm)
        if clip is not None and any(setting.frozen for setting in settings.values()):
            clip = optax.masked(clip, _trainable_mask(labels, settings))  # timm's groups hold no frozen leaf
    transform = paramwise_lib.paramwise_transform(
        info.optimizer, labels, settings, lr=lr, weight_decay=weight_decay, schedules=schedules, **hyperparams
    )
    return transform if clip is None else optax.chain(clip, transform)


def _trainable_mask(labels, settings):
    label_tree = groups_lib.by_name(labels)
    return lambda params: jax.tree.map(lambda label: not settings[label].frozen, label_tree(params))


def create_scheduler_v2(lr: float, *, updates_per_epoch: int, **kwargs):
    """``purelr.schedules.timm.create_scheduler_v2``: ``timm.scheduler.create_scheduler_v2``'s
    arguments (``sched``, ``num_epochs``, ``warmup_epochs``, ``warmup_lr``, ``min_lr``,
    ``decay_epochs``, ``decay_rate``, ``step_on_epochs``, ...); the lr of each optimizer update of
    timm's ``train.py`` loop, for ``create_optimizer_v2(..., lr=schedule)``."""
    return timm_schedules.create_scheduler_v2(lr, updates_per_epoch=updates_per_epoch, **kwargs)


def scheduler_kwargs(args: Mapping[str, Any]) -> dict:
    """Twin of ``timm.scheduler.scheduler_kwargs``: ``train.py`` argument names (``epochs``,
    ``lr_cycle_mul``, ``sched_on_updates``, ...) to ``create_scheduler_v2``'s, with that function's
    own defaults (``epochs=100``, ``lr_cycle_decay=0.1``, ...) for names not given; ``build_timm``
    gives it the whole ``train_args`` namespace, so train.py's defaults apply there."""
    kwargs = {name: args.get(arg, default) for arg, (name, default) in SCHEDULER_ARGS.items()}
    kwargs["step_on_epochs"] = not validate.flag("timm.sched_on_updates", args.get("sched_on_updates", False))
    return kwargs


def optimizer_kwargs(args: Mapping[str, Any]) -> dict:
    """Twin of ``timm.optim.optimizer_kwargs`` plus train.py's ``opt_kwargs``: ``opt_eps`` ->
    ``eps``, ``opt_betas`` -> ``betas``, ``opt_args`` and ``opt_kwargs`` merged (a name given twice
    raises, as the call ``create_optimizer_v2(**optimizer_kwargs(args), **args.opt_kwargs)`` does)."""
    kwargs = {name: args[name] for name in ("opt", "lr", "weight_decay", "momentum") if name in args}
    renamed = dict(
        opt_eps="eps",
        opt_betas="betas",
        layer_decay="layer_decay",
        layer_decay_min_scale="layer_decay_min_scale",
        layer_decay_no_opt_scale="layer_decay_no_opt_scale",
        opt_foreach="foreach",
        filter_bias_and_bn="filter_bias_and_bn",
        no_weight_decay_list="no_weight_decay_list",
    )
    kwargs.update((new, args[old]) for old, new in renamed.items() if args.get(old) is not None)
    kwargs.update(validate.mapping("timm.opt_args", args.get("opt_args") or {}))
    for name, value in validate.mapping("timm.opt_kwargs", args.get("opt_kwargs") or {}).items():
        if name in kwargs:
            raise ValueError(
                f"timm.opt_kwargs[{name!r}] = {value!r}: {name} is already set by the other "
                f"arguments ({kwargs[name]!r}); train.py's create_optimizer_v2 call refuses it too"
            )
        kwargs[name] = value
    return kwargs


def clip_transform(args: Mapping[str, Any], params, head=None):
    """train.py's clipping before each optimizer step, or None (``clip_grad`` None): ``clip_mode``
    ``norm`` (``clip_grad_norm(clip_grad)``), ``value`` (``clip_grad_value(clip_grad)``) over
    every parameter, or ``agc`` (``adaptive_clip.adaptive_clip_grad(clip_grad)``) over every
    parameter but the classifier, which timm leaves out (``model.parameters()[:-2]``): ``head`` is a
    selector of those leaves (``purelr.params.groups``: ``"head"`` takes ``head.kernel`` and
    ``head.bias``)."""
    mode = validate.one_of("timm.clip_mode", args["clip_mode"], CLIP_MODES)
    if args["clip_grad"] is None:
        return None
    bound = validate.nonnegative("timm.clip_grad", args["clip_grad"], finite=False)
    if mode == "norm":
        return optim.clip_grad_norm(bound)
    if mode == "value":
        return optim.clip_grad_value(bound)
    if head is None:
        raise ValueError(
            f"timm.clip_mode='agc' clips every parameter but the classifier (timm's last two, "
            f"model.parameters()[:-2]): give head=<selector of the classifier's params>, "
            f"e.g. purelr.build(..., head='head') (clip_grad={args['clip_grad']!r})"
        )
    rest = [not flag for flag in groups_lib.selected(head, params, "head")]
    mask = jax.tree.unflatten(jax.tree.structure(params), rest)
    return optax.masked(adaptive_clip.adaptive_clip_grad(bound), mask)


def model_ema(args: Mapping[str, Any]):
    """``ModelEmaV3(model, decay=model_ema_decay, use_warmup=model_ema_warmup)`` as train.py makes
    it (``purelr.training.averaging.model_ema_v3``), or None when ``model_ema`` is off."""
    if not validate.flag("timm.model_ema", args["model_ema"]):
        return None
    decay = validate.in_range("timm.model_ema_decay", args["model_ema_decay"], 0.0, 1.0, low_open=True, high_open=True)
    return averaging.model_ema_v3(decay, use_warmup=validate.flag("timm.model_ema_warmup", args["model_ema_warmup"]))


def build_timm(
    args, params, *, epoch_len: int | None, layer_map=None, frozen=None, world_size: int | None = None, head=None
) -> optax.GradientTransformation:
    """What timm's ``train.py`` (``TRAIN_PY``) does at each batch, from its arguments ``args`` (the
    ``timm=dict(...)`` entry of a config, or an args YAML path; ``train_args`` applies train.py's
    defaults), as one transformation applied once per batch:

    - ``create_optimizer_v2(**optimizer_kwargs(args))`` with the lr of ``scaled_lr(args, world_size)``
      following ``create_scheduler_v2(**scheduler_kwargs(args))`` (``sched='none'``: constant),
      read at each optimizer update (``start_epoch`` epochs of updates on, as train.py's resume);
    - ``clip_transform`` (``clip_grad``, ``clip_mode``, ``head``) before each optimizer step;
    - ``grad_accum_steps``: ``train_one_epoch``'s accumulation, each epoch of ``epoch_len`` batches
      (``len(loader_train)``) on its own: the optimizer steps every ``grad_accum_steps`` batches on
      the mean of their gradients, and at the epoch's last batch on the mean of the rest; the
      schedule counts ``ceil(epoch_len / grad_accum_steps)`` updates an epoch (train.py's
      ``updates_per_epoch``, equal to ``epoch_len`` without accumulation);
    - ``model_ema``: after each optimizer update the params' ``ModelEmaV3`` average with
      ``step=num_updates``; read it from the state with ``ema_params(opt_state)``. train.py also
      averages the BatchNorm statistics (the ``state_dict``): average ``batch_stats`` with
      ``purelr.training.averaging.model_ema_v3`` where the model has them.

    ``group_matcher`` in ``args`` gives the layer map of ``layer_decay``, or ``layer_map``.
    """
    args = train_args(args)
    lr = scaled_lr(args, world_size)
    accumulation = validate.integer("timm.grad_accum_steps", args["grad_accum_steps"], minimum=1)
    clip = clip_transform(args, params, head)
    averager = model_ema(args)
    kwargs = optimizer_kwargs({**args, "lr": lr})
    validate.nonnegative("timm.weight_decay", kwargs["weight_decay"])
    if args["group_matcher"] is not None:
        if layer_map is not None:
            raise ValueError("timm.group_matcher and layer_map are both given: give one")
        layer_map = layer_map_from_matcher(params, args["group_matcher"])
    updates_per_epoch = first_update = None
    if epoch_len is not None:
        epoch_len = validate.positive_int("epoch_len", epoch_len)
        updates_per_epoch = -(-epoch_len // accumulation)
        first_update = validate.nonnegative_int("timm.start_epoch", args["start_epoch"] or 0) * updates_per_epoch
    if args["sched"] is not None:
        if updates_per_epoch is None:
            raise ValueError(f"timm.sched = {args['sched']!r} needs epoch_len (batches per epoch, len(loader_train))")
        schedule = create_scheduler_v2(lr, updates_per_epoch=updates_per_epoch, **scheduler_kwargs(args))
        kwargs["lr"] = (lambda update: schedule(update + first_update)) if first_update else schedule
    elif accumulation > 1 and epoch_len is None:
        raise ValueError(
            f"timm.grad_accum_steps={accumulation} needs epoch_len (batches per epoch): "
            f"train.py steps on the last, partial accumulation of each epoch"
        )
    if dict(optimizer_info(args["opt"])[1].defaults, **kwargs).get("corrected_weight_decay"):
        kwargs.setdefault("max_lr_snapshot", lr)  # train.py builds the optimizer with the scaled lr
    optimizer = create_optimizer_v2(params, layer_map=layer_map, frozen=frozen, **kwargs)
    grouping = {name: kwargs[name] for name in inspect.signature(param_groups).parameters if name in kwargs}
    labels, _ = param_groups(params, layer_map=layer_map, frozen=frozen, **grouping)
    return recipe_lib.wrapped(
        optimizer,
        labels,
        clip,
        every=accumulation,
        total=epoch_len,
        repeat=True,
        averager=averager,
        first_update=first_update or 0,
    )


ema_params = recipe_lib.average_of
