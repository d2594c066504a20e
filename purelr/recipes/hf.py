"""The Hugging Face ``Trainer``'s optimizer, lr schedule, clipping and accumulation, from its
``TrainingArguments``, as one optax transformation.

A recipe is an ``hf=dict(...)`` entry holding ``TrainingArguments`` fields (the ``args.to_dict()``
of a run, its ``training_args.json``, or the flags of an example script's command line as a
dict); the defaults of transformers 5.24.0 (``DEFAULTS``) fill in the rest::

    hf = dict(learning_rate=2e-5, weight_decay=0.01, warmup_steps=0.1, lr_scheduler_type='cosine',
              num_train_epochs=3, gradient_accumulation_steps=4, optim='adamw_torch')

``purelr.build(cfg, params, epoch_len=len(train_dataloader), layer_norms=...)`` builds it
(``build_hf``). The other ``TrainingArguments`` fields (data, logging, saving, devices, mixed
precision: the twin computes in the params' dtype) and an example script's own arguments
(``model_name_or_path``, ``dataset_name``...) are ignored (``ignored_keys``); a key one letter or so
from a key read here raises. ``warmup_ratio`` (transformers 4.x) is read as 5.x reads a
``warmup_steps`` below 1: a fraction of the training steps.
"""

from __future__ import annotations

import difflib
import json
import math
import os
from typing import Any, Callable, Mapping, NamedTuple

import optax

from purelr import optim
from purelr.params import hf as params_hf
from purelr.params import paramwise as paramwise_lib
from purelr.recipes import recipe as recipe_lib
from purelr.schedules import hf as hf_schedules
from purelr.schedules import validate

TRANSFORMERS = "transformers 5.24.0"
# TrainingArguments defaults (TRANSFORMERS) of the fields read here.
DEFAULTS = {
    "learning_rate": 5e-5,
    "weight_decay": 0.0,
    "adam_beta1": 0.9,
    "adam_beta2": 0.999,
    "adam_epsilon": 1e-8,
    "max_grad_norm": 1.0,
    "num_train_epochs": 3.0,
    "max_steps": -1,
    "lr_scheduler_type": "linear",
    "lr_scheduler_kwargs": None,
    "warmup_steps": 0,
    "optim": "adamw_torch_fused",
    "optim_args": None,
    "gradient_accumulation_steps": 1,
}
LEGACY = {"warmup_ratio": None}  # read from transformers 4.x recipes
# The other TrainingArguments fields of TRANSFORMERS, and fields of 4.x that 5.x removed: ignored.
IGNORED = frozenset(
    """
accelerator_config activation_checkpointing activation_checkpointing_kwargs auto_find_batch_size
average_tokens_across_devices batch_eval_metrics bf16 bf16_full_eval data_seed dataloader_drop_last
dataloader_in_order dataloader_multiprocessing_context dataloader_num_workers dataloader_persistent_workers
dataloader_pin_memory dataloader_prefetch_factor ddp_backend ddp_broadcast_buffers ddp_bucket_cap_mb
ddp_find_unused_parameters ddp_static_graph ddp_timeout debug deepspeed disable_tqdm do_eval do_predict do_train
enable_jit_checkpoint eval_accumulation_steps eval_delay eval_do_concat_batches eval_on_start eval_steps
eval_strategy eval_use_gather_object fp16 fp16_full_eval fsdp fsdp_config full_determinism
gradient_checkpointing gradient_checkpointing_kwargs greater_is_better hub_always_push hub_model_id
hub_private_repo hub_revision hub_strategy hub_token ignore_data_skip include_for_metrics
include_num_input_tokens_seen label_names label_smoothing_factor length_column_name liger_kernel_config
load_best_model_at_end local_rank log_level log_level_replica log_on_each_node logging_first_step
logging_nan_inf_filter logging_steps logging_strategy metric_for_best_model neftune_noise_alpha
optim_target_modules output_dir parallelism_config per_device_eval_batch_size per_device_train_batch_size
prediction_loss_only project push_to_hub remove_unused_columns report_to restore_callback_states_from_checkpoint
resume_from_checkpoint run_name save_on_each_node save_only_model save_steps save_strategy save_total_limit seed
skip_memory_metrics tf32 torch_compile torch_compile_backend torch_compile_mode torch_empty_cache_steps
trackio_bucket_id trackio_space_id trackio_static_space_id train_sampling_strategy use_cache use_cpu
use_liger_kernel
evaluation_strategy overwrite_output_dir logging_dir fp16_opt_level fp16_backend half_precision_backend
per_gpu_train_batch_size per_gpu_eval_batch_size no_cuda use_mps_device jit_mode_eval use_ipex sharded_ddp
tpu_num_cores tpu_metrics_debug past_index xpu_backend mp_parameters ray_scope push_to_hub_model_id
push_to_hub_organization push_to_hub_token include_inputs_for_metrics torchdynamo save_safetensors
use_legacy_prediction_loop split_batches dispatch_batches include_tokens_per_second fsdp_min_num_params
fsdp_transformer_layer_cls_to_wrap
""".split()
)


class OptimSpec(NamedTuple):
    """How the Trainer makes one ``optim``: the purelr twin and its arguments from the args."""

    optimizer: Callable
    arguments: Callable[[Mapping[str, Any], Mapping[str, str]], dict]  # (args, optim_args) -> kwargs


def _betas(args, optim_args):
    return dict(betas=(args["adam_beta1"], args["adam_beta2"]))


def _adam(args, optim_args):
    return dict(_betas(args, optim_args), eps=args["adam_epsilon"])


def _floats(*names, flags=()):
    """optim_args parsed as the Trainer parses them for torch's SGD / Adagrad / RMSprop: ``float``
    for ``names``, ``'true'/'1'/'yes'`` for ``flags``; ``weight_decay`` there is overridden by the
    Trainer's groups, so it is not read."""

    def arguments(args, optim_args):
        kwargs = {name: float(optim_args[name]) for name in names if name in optim_args}
        kwargs.update((flag, optim_args[flag].lower() in ("true", "1", "yes")) for flag in flags if flag in optim_args)
        return kwargs

    return arguments


def _schedule_free(adam: bool, warmup: bool):
    """The Trainer's schedulefree kwargs: ``adam_*`` (AdamW, RAdam), ``warmup_steps`` as the args
    hold it (not RAdam), ``weight_lr_power`` and ``r`` from optim_args (``float``, defaults 2 and 0)."""

    def arguments(args, optim_args):
        kwargs = _adam(args, optim_args) if adam else {}
        if warmup:
            steps = args["warmup_steps"]
            if isinstance(steps, bool) or not isinstance(steps, (int, float)) or steps < 0 or steps != int(steps):
                raise ValueError(
                    f"hf.warmup_steps={steps!r}: the Trainer hands it to schedulefree as it is, as its warmup in "
                    f"steps (a fraction below 1 would multiply the first lr by 1 / warmup_steps): give a whole number"
                )
            kwargs["warmup_steps"] = int(steps)
        return dict(
            kwargs,
            weight_lr_power=float(optim_args.get("weight_lr_power", 2.0)),
            r=float(optim_args.get("r", 0.0)),
        )

    return arguments


def _torchao(args, optim_args):
    """The Trainer's torchao kwargs: ``adam_*``, ``block_size`` (256 unless in optim_args) and
    ``bf16_stochastic_round`` (transformers' ``strtobool`` of optim_args, False)."""
    flag = optim_args.get("bf16_stochastic_round", "False").lower()
    truth = {"y": True, "yes": True, "t": True, "true": True, "on": True, "1": True}
    truth.update(dict.fromkeys(("n", "no", "f", "false", "off", "0"), False))
    if flag not in truth:
        raise ValueError(f"hf.optim_args bf16_stochastic_round={flag!r}: invalid truth value")
    return dict(
        _adam(args, optim_args), block_size=int(optim_args.get("block_size", 256)), bf16_stochastic_round=truth[flag]
    )


OPTIMIZERS = {
    "adamw_torch": OptimSpec(optim.adamw, _adam),
    "adamw_torch_fused": OptimSpec(optim.adamw, _adam),
    "adafactor": OptimSpec(
        optim.hf_adafactor, lambda args, optim_args: dict(scale_parameter=False, relative_step=False)
    ),
    "sgd": OptimSpec(optim.sgd, _floats("momentum", "dampening", flags=("nesterov",))),
    "adagrad": OptimSpec(optim.adagrad, _floats("lr_decay", "eps")),
    "rmsprop": OptimSpec(optim.rmsprop, _floats("momentum", "alpha", "eps", flags=("centered",))),
    "lion_32bit": OptimSpec(optim.lion, _betas),
    "paged_lion_32bit": OptimSpec(optim.lion, _betas),
    "schedule_free_adamw": OptimSpec(optim.adamw_schedule_free, _schedule_free(adam=True, warmup=True)),
    "schedule_free_sgd": OptimSpec(optim.sgd_schedule_free, _schedule_free(adam=False, warmup=True)),
    "schedule_free_radam": OptimSpec(optim.radam_schedule_free, _schedule_free(adam=True, warmup=False)),
    "adamw_torch_4bit": OptimSpec(optim.adamw_4bit, _torchao),
    "adamw_torch_8bit": OptimSpec(optim.adamw_8bit, _torchao),
}
"""``optim`` names with a purelr twin of the optimizer the Trainer makes (``lion_32bit``:
bitsandbytes' 32-bit Lion, ``purelr.optim.lion``; paging only moves its state). The
``schedule_free_*`` twins' params are schedulefree's train-mode ``y``, as the Trainer calls
``optimizer.train()`` before training; its ``optimizer.eval()`` before evaluating is
``purelr.optim.schedule_free_eval_params(state, params)``. ``adamw_torch_4bit`` / ``_8bit``:
torchao's AdamW4bit / AdamW8bit, which step in float32 whatever the params' dtype."""
REFUSED = {
    **dict.fromkeys(("adamw_torch_xla", "adamw_torch_npu_fused"), "a device-specific AdamW: use adamw_torch"),
    "adamw_anyprecision": "torchdistx's AnyPrecisionAdamW (Kahan summation, low-precision states) has no twin",
    **dict.fromkeys(
        (
            "adamw_bnb_8bit",
            "adamw_8bit",
            "paged_adamw_32bit",
            "paged_adamw_8bit",
            "lion_8bit",
            "paged_lion_8bit",
            "rmsprop_bnb",
            "rmsprop_bnb_8bit",
            "rmsprop_bnb_32bit",
        ),
        "bitsandbytes' blockwise-quantized or fused kernels have no twin (lion_32bit has)",
    ),
    **dict.fromkeys(
        ("ademamix", "ademamix_8bit", "paged_ademamix_32bit", "paged_ademamix_8bit"), "AdEMAMix has no twin yet"
    ),
    **dict.fromkeys(
        (
            "galore_adamw",
            "galore_adamw_8bit",
            "galore_adafactor",
            "galore_adamw_layerwise",
            "galore_adamw_8bit_layerwise",
            "galore_adafactor_layerwise",
        ),
        "GaLore's low-rank projections have no twin",
    ),
    **dict.fromkeys(("apollo_adamw", "apollo_adamw_layerwise"), "APOLLO's low-rank projections have no twin"),
    **dict.fromkeys(("lomo", "adalomo"), "LOMO fuses the update into the backward pass: no optax form"),
    "grokadamw": "GrokAdamW has no twin yet",
    "stable_adamw": "torch_optimizer's StableAdamW has no twin yet",
}
"""The other ``OptimizerNames`` of TRANSFORMERS, each with the reason it is refused."""


def read_keys() -> frozenset:
    return frozenset({*DEFAULTS, *LEGACY})


def training_arguments(args) -> dict:
    """``args`` (a dict of ``TrainingArguments`` fields, or a JSON/YAML file of them) with the
    defaults of TRANSFORMERS for the fields read here. A key close to a read key that is not given
    (``learning_rat``) raises naming it."""
    if isinstance(args, (str, os.PathLike)):
        from purelr.recipes.config import load_config

        args = load_config(args)
    if not isinstance(args, Mapping):
        raise TypeError(f"hf must be a dict of TrainingArguments fields (or a JSON/YAML path), got {args!r}")
    missing = read_keys() - set(args)
    for key in args:
        close = difflib.get_close_matches(str(key), missing, n=1, cutoff=0.85)
        if key not in read_keys() and key not in IGNORED and close:
            raise ValueError(f"hf: key {key!r} is not a TrainingArguments field read here: did you mean {close[0]!r}?")
    return {**DEFAULTS, **LEGACY, **args}


def ignored_keys(args) -> list[str]:
    """The keys of ``args`` that do not set the optimizer, the schedule, clipping or accumulation."""
    return sorted(key for key in training_arguments(args) if key not in read_keys())


def _optim_args(value) -> dict[str, str]:
    """The Trainer's ``optim_args`` parsing: ``'a=1, b=2'`` -> ``{'a': '1', 'b': '2'}``."""
    if not value:
        return {}
    if not isinstance(value, str):
        raise TypeError(f"hf.optim_args must be a string 'key=value,...', got {value!r}")
    pairs = [mapping.split("=") for mapping in value.replace(" ", "").split(",")]
    if any(len(pair) != 2 for pair in pairs):
        raise ValueError(f"hf.optim_args must be 'key=value,...', got {value!r}")
    return dict(pairs)


def optimizer_spec(name) -> OptimSpec:
    """The ``OptimSpec`` of an ``optim`` name; refused names raise with the reason, unknown ones
    with the closest known names."""
    name = getattr(name, "value", name)
    if name in OPTIMIZERS:
        return OPTIMIZERS[name]
    if name in REFUSED:
        raise ValueError(f"hf.optim={name!r} is not supported: {REFUSED[name]}; supported: {sorted(OPTIMIZERS)}")
    known = [*OPTIMIZERS, *REFUSED]
    raise ValueError(
        f"hf.optim={name!r} is not an optimizer name of {TRANSFORMERS}"
        f"{validate.close_to(name, known)}; supported: {sorted(OPTIMIZERS)}"
    )


def _scheduler_kwargs(value) -> dict:
    """``lr_scheduler_kwargs``: a dict, or a JSON string of one (a command line's)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise ValueError(f"hf.lr_scheduler_kwargs must be a dict or its JSON, got {value!r}: {error}") from error
    return dict(validate.mapping("hf.lr_scheduler_kwargs", value or {}))


def training_steps(args: Mapping[str, Any], epoch_len: int | None) -> int:
    """The Trainer's ``max_steps``: ``args['max_steps']`` when positive, else
    ``ceil(num_train_epochs * max(ceil(epoch_len / gradient_accumulation_steps), 1))``."""
    if validate.integer("hf.max_steps", args["max_steps"]) > 0:
        return args["max_steps"]
    if epoch_len is None:
        raise ValueError(
            f"hf.max_steps={args['max_steps']!r}: the number of training steps comes from "
            f"num_train_epochs={args['num_train_epochs']!r} and the batches of an epoch: give "
            f"epoch_len (len(train_dataloader)) or hf.max_steps"
        )
    accumulation = validate.positive_int("hf.gradient_accumulation_steps", args["gradient_accumulation_steps"])
    updates_per_epoch = max(-(-validate.positive_int("epoch_len", epoch_len) // accumulation), 1)
    return math.ceil(validate.nonnegative("hf.num_train_epochs", args["num_train_epochs"]) * updates_per_epoch)


def warmup_steps(args: Mapping[str, Any], num_training_steps: int) -> int:
    """``TrainingArguments.get_warmup_steps``: ``int(warmup_steps)`` from 1 on, else
    ``ceil(num_training_steps * warmup_steps)``; a 4.x ``warmup_ratio`` (in [0, 1]) is that
    fraction where ``warmup_steps`` is 0."""
    steps = validate.nonnegative("hf.warmup_steps", args["warmup_steps"])
    if args.get("warmup_ratio") is not None and not steps:
        steps = validate.in_range("hf.warmup_ratio", args["warmup_ratio"], 0.0, 1.0)
    return int(steps) if steps >= 1 else math.ceil(num_training_steps * steps)


def lr_schedule(args: Mapping[str, Any], epoch_len: int | None) -> Callable:
    """``base_lr -> schedule``: ``Trainer.create_scheduler`` (``purelr.schedules.hf.get_scheduler``)."""
    total = training_steps(args, epoch_len)
    warmup = warmup_steps(args, total)
    kwargs = _scheduler_kwargs(args["lr_scheduler_kwargs"])
    name = getattr(args["lr_scheduler_type"], "value", args["lr_scheduler_type"])
    hf_schedules.get_scheduler(
        name, validate.positive("hf.learning_rate", args["learning_rate"]), warmup, total, kwargs
    )  # checks the arguments now, with the recipe's names
    return lambda base: hf_schedules.get_scheduler(name, base, warmup, total, kwargs)


def build_hf(
    args, params, *, epoch_len: int | None = None, layer_norms=(), frozen=None
) -> optax.GradientTransformation:
    """What the Trainer (TRANSFORMERS) does at each batch, from its ``TrainingArguments`` ``args``,
    as one transformation applied once per batch:

    - the optimizer of ``optim`` (``OPTIMIZERS``) with ``learning_rate``, ``adam_*`` and
      ``optim_args``, on the Trainer's two groups: ``weight_decay`` for
      ``purelr.params.hf.decay_parameter_names(params, layer_norms)``, 0 for the rest (bias, norms);
      ``frozen`` selects the parameters with ``requires_grad=False``;
    - the lr of ``lr_scheduler_type`` (``warmup_steps`` / ``warmup_ratio``, ``lr_scheduler_kwargs``,
      ``max_steps`` or ``num_train_epochs`` of ``epoch_len`` batches) read at each optimizer update;
    - ``max_grad_norm > 0``: ``clip_grad_norm`` over every gradient before each step;
    - ``gradient_accumulation_steps``: the mean of that many batches' gradients per update, and of
      the rest at an epoch's last batch (``epoch_len`` needed), as the Trainer divides a model's
      loss by the batches of the accumulation.
    """
    args = training_arguments(args)
    spec = optimizer_spec(args["optim"])
    accumulation = validate.positive_int("hf.gradient_accumulation_steps", args["gradient_accumulation_steps"])
    if accumulation > 1 and epoch_len is None:
        raise ValueError(
            f"hf.gradient_accumulation_steps={accumulation} needs epoch_len (len(train_dataloader)): "
            f"the Trainer steps on the last, partial accumulation of each epoch"
        )
    schedule = lr_schedule(args, epoch_len)
    weight_decay = validate.nonnegative("hf.weight_decay", args["weight_decay"])
    max_grad_norm = validate.real("hf.max_grad_norm", args["max_grad_norm"])
    labels, settings = params_hf.param_groups(params, weight_decay, layer_norms, frozen=frozen)
    optimizer = paramwise_lib.paramwise_transform(
        spec.optimizer,
        labels,
        settings,
        lr=args["learning_rate"],
        weight_decay=weight_decay,
        schedules={"lr": schedule},
        **spec.arguments(args, _optim_args(args["optim_args"])),
    )
    clip = optim.clip_grad_norm(max_grad_norm) if max_grad_norm > 0 else None
    return recipe_lib.wrapped(
        optimizer, labels, clip, every=accumulation, total=epoch_len, repeat=epoch_len is not None
    )
