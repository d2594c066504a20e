"""A DeepSpeed config (``ds_config.json``) as one optax transformation: what DeepSpeed 0.19.8's
engine does with the ``optimizer``, ``scheduler``, ``gradient_clipping``, batch sizes and
``fp16`` / ``bf16`` sections at each ``engine.step()``.

``purelr.build(dict(deepspeed=DS_CONFIG), params, world_size=1)``; ``DS_CONFIG`` is the config as a
dict or the path of its JSON file. Applied once per micro-batch (``engine.backward`` +
``engine.step``), the transformation does what the engine does:

- ``gradient_accumulation_steps`` (from the batch sizes, ``batch_sizes``): the engine divides each
  micro-batch's loss by it and steps at every ``gradient_accumulation_steps``-th micro-batch on
  the sum (``purelr.training.accumulate``; no remainder rule: DeepSpeed counts micro-batches over
  the whole run);
- ``gradient_clipping`` (default 1.0, DeepSpeed's: a config that leaves it out clips; 0 turns it
  off): ``deepspeed.runtime.utils.clip_grad_norm_``, i.e.
  ``g *= min(1, max_norm / (total_norm + 1e-6))`` over every parameter, torch's arithmetic
  (``purelr.optim.clip_grad_norm``; DeepSpeed takes the norm in float32, the same as this in
  float32 training);
- the optimizer (``optimizer_of``) with the scheduler's lr (``purelr.schedules.deepspeed``) read at
  the update's count: the engine calls ``lr_scheduler.step()`` once after each optimizer step, and
  not after a step that fp16's loss scaler skips;
- ``fp16.enabled``: DeepSpeed's loss scaler around it (``purelr.training.loss_scale.deepspeed_fp16``,
  issue 18); ``bf16.enabled``: no scaling; the transformation steps the float32 master weights
  that DeepSpeed's BF16 optimizer keeps (run the model in bfloat16 yourself).

Every leaf of ``params`` is trained, as one parameter group (the ``model_parameters`` a script
hands ``deepspeed.initialize``). Keys that change the update and are not modelled raise; keys of
logging, communication, checkpoints, ZeRO partitioning and the like (``IGNORED``) do not change
the arithmetic of one process and are ignored.
"""

from __future__ import annotations

import difflib
import inspect
import os
import warnings
from typing import Any, Callable, Mapping

import optax

from purelr import optim
from purelr.schedules import core, validate
from purelr.schedules import deepspeed as ds_schedules
from purelr.training import accumulate as accumulate_lib
from purelr.training import loss_scale

VERSION = "deepspeed 0.19.8"
READ = (
    "optimizer",
    "scheduler",
    "gradient_clipping",
    "gradient_accumulation_steps",
    "train_batch_size",
    "train_micro_batch_size_per_gpu",
    "fp16",
    "bf16",
    "zero_optimization",
)
# Sections that change the update when enabled, and purelr does not model.
REFUSED = (
    "amp",
    "torch_autocast",
    "elasticity",
    "progressive_layer_drop",
    "quantize_training",
    "eigenvalue",
    "compression_training",
    "data_efficiency",
    "curriculum_learning",
)
IGNORED = frozenset(
    """
steps_per_print wall_clock_breakdown memory_breakdown dump_state zero_allow_untested_optimizer
zero_force_ds_cpu_optimizer activation_checkpointing flops_profiler tensorboard wandb csv_monitor comet
comms_logger monitor_config prescale_gradients gradient_predivide_factor communication_data_type
seq_parallel_communication_data_type fp32_allreduce sparse_gradients disable_allgather checkpoint aio
pipeline timers autotuning compile nebula hybrid_engine sparse_attention data_types
optimizer_legacy_fusion graph_harvesting use_data_before_expert_parallel_ load_universal_checkpoint
use_node_local_storage zero_optimization_stage
""".split()
)
# The other names: torch.optim's class of that name (DeepSpeed's getattr(torch.optim, type)).
TORCH_OPTIMIZERS: dict[str, Callable[..., Any]] = {
    "SGD": optim.sgd,
    "Adagrad": optim.adagrad,
    "Adadelta": optim.adadelta,
    "Adamax": optim.adamax,
    "NAdam": optim.nadam,
    "RAdam": optim.radam,
    "RMSprop": optim.rmsprop,
    "Rprop": optim.rprop,
    "ASGD": optim.asgd,
}
GRADIENT_CLIPPING_DEFAULT = 1.0  # deepspeed.runtime.constants: a config without the key clips at 1.0
NOT_TWINNED = ("OneBitAdam", "ZeroOneAdam", "OneBitLamb", "MuAdam", "MuAdamW", "MuSGD", "Muon")
DEEPSPEED_NAMES = (
    "adam",
    "adamw",
    "lamb",
    "lion",
    "muadam",
    "muadamw",
    "musgd",
    "muon",
    "adagrad",
    "onebitadam",
    "zerooneadam",
    "onebitlamb",
)


def read_config(cfg) -> dict:
    """The config as a dict (a path is read as JSON), its keys checked: ``READ`` and ``IGNORED``
    are known, ``REFUSED`` sections raise when enabled, a key a letter or so away from a ``READ``
    one raises naming it, and other keys (which DeepSpeed ignores as well) warn."""
    if isinstance(cfg, (str, os.PathLike)):
        from purelr.recipes.config import load_config

        cfg = load_config(cfg)
    cfg = dict(validate.mapping("deepspeed", cfg))
    for key, value in cfg.items():
        if key in REFUSED:
            if isinstance(value, Mapping) and not value.get("enabled", False):
                continue
            raise ValueError(
                f"deepspeed.{key} = {value!r}: purelr does not model DeepSpeed's {key} "
                f"(it changes the update); remove it or disable it"
            )
        if key not in READ and key not in IGNORED:
            close = difflib.get_close_matches(str(key), READ, n=1, cutoff=0.9)
            if close:
                raise ValueError(f"deepspeed: unknown key {key!r} (= {value!r}): did you mean {close[0]!r}?")
            warnings.warn(
                f"deepspeed: key {key!r} (= {value!r}) is not read: neither purelr nor {VERSION} knows it", stacklevel=3
            )
    _no_auto(cfg, "deepspeed")
    return cfg


def is_deepspeed_config(cfg) -> bool:
    """Whether a loaded config file is a bare DeepSpeed config (its batch sizes, or an
    ``optimizer`` of DeepSpeed's ``{"type", "params"}`` form) rather than another framework's."""
    if not isinstance(cfg, Mapping) or "deepspeed" in cfg:
        return False
    optimizer = cfg.get("optimizer")
    return (
        "train_batch_size" in cfg
        or "train_micro_batch_size_per_gpu" in cfg
        or (isinstance(optimizer, Mapping) and "params" in optimizer and "lr" not in optimizer)
    )


def _no_auto(value, where):
    """``"auto"`` is filled in by the Hugging Face Trainer's DeepSpeed integration from its
    ``TrainingArguments``; DeepSpeed itself cannot read it."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            _no_auto(item, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _no_auto(item, f"{where}[{i}]")
    elif value == "auto":
        raise ValueError(
            f"{where} = 'auto': the Hugging Face Trainer fills 'auto' in from its TrainingArguments; "
            f"give the value it would (DeepSpeed itself cannot read 'auto')"
        )


def batch_sizes(cfg: Mapping, world_size: int = 1) -> tuple[int, int, int]:
    """``(train_batch_size, train_micro_batch_size_per_gpu, gradient_accumulation_steps)`` as
    DeepSpeed completes and checks them (``DeepSpeedConfig._set_batch_related_parameters``): a
    missing one derived from the other two (``batch = micro * accumulation * world_size``), a
    missing accumulation 1 where only one batch size is given; inconsistent sizes raise."""
    world = validate.positive_int("world_size", world_size)
    names = ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps")
    batch, micro, accumulation = (
        None if cfg.get(name) is None else validate.positive_int(f"deepspeed.{name}", cfg[name]) for name in names
    )
    if batch is None:
        if micro is None:
            raise ValueError("deepspeed: give train_batch_size or train_micro_batch_size_per_gpu (DeepSpeed needs one)")
        accumulation = accumulation or 1
        batch = micro * accumulation * world
    elif micro is None:
        accumulation = accumulation or 1
        micro = batch // world // accumulation
    elif accumulation is None:
        accumulation = batch // micro // world
    if min(micro, accumulation) <= 0 or batch != micro * accumulation * world:
        raise ValueError(
            f"deepspeed: train_batch_size ({batch}) must equal train_micro_batch_size_per_gpu ({micro}) * "
            f"gradient_accumulation_steps ({accumulation}) * world_size ({world}), as DeepSpeed checks"
        )
    return batch, micro, accumulation


def deepspeed_lion(lr=1e-3, betas=(0.9, 0.999), weight_decay=0.0, fp32_optimizer_states=True, set_grad_none=True):
    """DeepSpeed's ``Lion`` (``FusedLion``; ``DeepSpeedCPULion`` when ZeRO offloads the optimizer):
    ``purelr.optim.lion`` with DeepSpeed's defaults. Both kernels compute Lion's step in float32
    (``param = param * (1 - lr * weight_decay) - lr * sign(beta1 * m + (1 - beta1) * g)``, then
    ``m = beta2 * m + (1 - beta2) * g``), the sign as ``copysign(1, .)``: where that interpolation is
    exactly 0 (a zero gradient on a zero momentum) DeepSpeed moves the param by ``-lr`` (``+lr`` at
    -0), ``lion`` by nothing. A negative ``weight_decay`` (DeepSpeed skips the decay unless it is
    > 0) is refused. ``fp32_optimizer_states`` (the state stays in the params' dtype) and
    ``set_grad_none`` are accepted and ignored."""
    del fp32_optimizer_states, set_grad_none
    return optim.lion(lr=lr, betas=betas, weight_decay=weight_decay)


def _optimizer_section(cfg: Mapping) -> tuple[str, dict]:
    section = validate.known_keys("deepspeed.optimizer", cfg["optimizer"], ("type", "params", "legacy_fusion"))
    name = section.get("type")
    if not isinstance(name, str):
        raise TypeError(f"deepspeed.optimizer.type must be a name, got {name!r}")
    params = dict(validate.mapping("deepspeed.optimizer.params", section.get("params") or {}))
    if "max_grad_norm" in params:
        raise ValueError(
            f"deepspeed.optimizer.params.max_grad_norm = {params['max_grad_norm']!r}: DeepSpeed refuses it; "
            f"use the top-level gradient_clipping"
        )
    return (name.lower() if name.lower() in DEEPSPEED_NAMES else name), params


def optimizer_of(cfg: Mapping):
    """``(make, lr, betas)``: the DeepSpeed engine's optimizer for ``cfg['optimizer']`` as a
    function of ``lr`` (a number or schedule; None: the config's) and ``betas`` (to override them,
    for ``OneCycle``'s momentum), the config's own lr, and its ``betas`` (None if it has none).
    Names are DeepSpeed's (case-insensitive for its own, ``DEEPSPEED_NAMES``):

    - ``Adam`` / ``AdamW``: with ``torch_adam``, ``torch.optim.AdamW`` (``adam_w_mode``, default
      True, or the name ``AdamW``) or ``torch.optim.Adam``, torch's defaults (AdamW's
      ``weight_decay=0.01``); else DeepSpeed's ``FusedAdam`` (``DeepSpeedCPUAdam`` when ZeRO offloads
      the optimizer: the same arithmetic and defaults, ``weight_decay=0``), ``purelr.optim.fused_adam``
      with ``adam_w_mode`` (so ``Adam`` without ``adam_w_mode: false`` decays decoupled, as AdamW).
    - ``Lamb``: DeepSpeed's ``FusedLamb``, ``purelr.optim.fused_lamb`` (its trust ratio clipped to
      ``[min_coeff, max_coeff]``).
    - ``Lion``: DeepSpeed's ``FusedLion`` / ``DeepSpeedCPULion``, ``deepspeed_lion``.
    - ``Adagrad`` and torch.optim's other class names (``TORCH_OPTIMIZERS``): the torch twin.
    - ``NOT_TWINNED`` names raise.
    """
    name, params = _optimizer_section(cfg)
    factory: Callable[..., Any]
    if name in ("adam", "adamw"):
        adam_w_mode = validate.flag("deepspeed.optimizer.params.adam_w_mode", params.pop("adam_w_mode", True))
        decoupled = name == "adamw" or adam_w_mode
        torch_adam = validate.flag("deepspeed.optimizer.params.torch_adam", params.pop("torch_adam", False))
        params.pop("fp32_optimizer_states", None)
        if torch_adam:
            params.pop("foreach", None)
            factory, defaults = (optim.adamw if decoupled else optim.adam), {}
        else:
            factory, defaults = optim.fused_adam, {"adam_w_mode": decoupled}
    elif name == "lamb":
        factory, defaults = optim.fused_lamb, {}
    elif name == "lion":
        factory, defaults = deepspeed_lion, {}
    elif name == "adagrad" or name in TORCH_OPTIMIZERS:
        factory, defaults = TORCH_OPTIMIZERS["Adagrad" if name == "adagrad" else name], {}
    else:
        known = (*NOT_TWINNED, "Adam", "AdamW", "Lamb", "Lion", *TORCH_OPTIMIZERS)
        hint = validate.close_to(name, known)
        raise ValueError(
            f"deepspeed.optimizer.type = {cfg['optimizer'].get('type')!r} is not twinned{hint}: purelr "
            f"builds Adam, AdamW (adam_w_mode, torch_adam), Lamb, Lion and torch.optim's {sorted(TORCH_OPTIMIZERS)}; "
            f"not yet {list(NOT_TWINNED)}"
        )
    accepted = inspect.signature(factory).parameters
    for key, value in params.items():
        if key not in accepted:
            raise ValueError(
                f"deepspeed.optimizer.params.{key} = {value!r} is not an argument of "
                f"{cfg['optimizer']['type']}{validate.close_to(key, accepted)}"
            )
    config_lr = params.pop("lr", accepted["lr"].default)
    config_betas = tuple(params.get("betas", accepted["betas"].default)) if "betas" in accepted else None

    def make(lr=None, betas=None):
        extra = {} if betas is None else {"betas": betas}
        return factory(lr=config_lr if lr is None else lr, **{**params, **defaults, **extra})

    return make, config_lr, config_betas


def build_deepspeed(cfg, params, *, world_size: int = 1) -> optax.GradientTransformation:
    """What DeepSpeed's engine does at each micro-batch for the config ``cfg`` (a dict or a JSON
    path): see the module docstring."""
    del params  # one group of every leaf: nothing to label
    cfg = read_config(cfg)
    _, _, accumulation = batch_sizes(cfg, world_size)
    if "optimizer" not in cfg:
        raise ValueError(
            "deepspeed: the config has no 'optimizer': the script then builds its own optimizer, which "
            "purelr cannot read from the config; give it one"
        )
    make, lr, betas = optimizer_of(cfg)
    lr, momentum = scheduled(cfg, lr, betas)
    transform = make(lr, None if momentum is None else (momentum, ds_schedules.ONE_CYCLE_BETA2))
    clipping = validate.nonnegative(
        "deepspeed.gradient_clipping", cfg.get("gradient_clipping", GRADIENT_CLIPPING_DEFAULT)
    )
    if clipping > 0:
        transform = optax.chain(optim.clip_grad_norm(clipping), transform)
    transform = _precision(cfg, transform)
    if accumulation > 1:
        transform = accumulate_lib.accumulate(transform, accumulation)
    return transform


def _precision(cfg: Mapping, transform):
    fp16 = dict(validate.mapping("deepspeed.fp16", cfg.get("fp16") or {}))
    bf16 = dict(validate.mapping("deepspeed.bf16", cfg.get("bf16") or {}))
    validate.flag("deepspeed.bf16.enabled", bf16.get("enabled", False))
    if not validate.flag("deepspeed.fp16.enabled", fp16.get("enabled", False)):
        return transform
    if bf16.get("enabled"):
        raise ValueError("deepspeed: fp16.enabled and bf16.enabled are both true; DeepSpeed refuses that too")
    return loss_scale.loss_scaled(transform, loss_scale.deepspeed_fp16(fp16))


def curves(cfg, updates: int | None = None) -> dict:
    """``{"lr": schedule, "momentum": schedule}`` of a DeepSpeed config (a dict or JSON path), the
    value at each optimizer update (``momentum``: Adam's beta1, where the optimizer has betas),
    and ``"updates"``: ``updates``, or where None a length that shows the whole schedule
    (``total_num_steps + 1``; warmups and cycles twice over; 10 range-test intervals; 100 without
    a scheduler)."""
    cfg = read_config(cfg)
    _, lr, betas = optimizer_of(cfg)
    lr, momentum = scheduled(cfg, lr, betas)
    found = {"lr": lr if callable(lr) else core.constant_schedule(lr)}
    if betas is not None:
        found["momentum"] = momentum or core.constant_schedule(betas[0])
    length = 100
    scheduler = cfg.get("scheduler")
    if scheduler is not None:
        params = dict(scheduler.get("params") or {})
        warmup = max(2, params.get("warmup_num_steps", 1000))
        first = params.get("cycle_first_step_size", 2000)
        length = {
            "WarmupLR": 2 * warmup,
            "WarmupDecayLR": max(params.get("total_num_steps", 0), warmup) + 1,
            "WarmupCosineLR": max(params.get("total_num_steps", 0), warmup) + 1,
            "OneCycle": 2 * (first + (params.get("cycle_second_step_size") or first)),
            "LRRangeTest": 10 * params.get("lr_range_test_step_size", 2000),
        }[scheduler["type"]]
    found["updates"] = length if updates is None else validate.positive_int("--max-iters", updates)
    return found


def scheduled(cfg: Mapping, lr, betas):
    """``(lr, momentum)``: the lr schedule of ``cfg['scheduler']`` (``lr`` where there is none) and
    the beta1 schedule of a ``OneCycle`` that cycles momentum (``cycle_momentum``, default True,
    with an optimizer that has ``betas``; DeepSpeed turns it off for others), beta2 then being
    ``ds_schedules.ONE_CYCLE_BETA2``; None otherwise."""
    if cfg.get("scheduler") is None:
        return lr, None
    scheduler = dict(validate.mapping("deepspeed.scheduler", cfg["scheduler"]))
    schedule = ds_schedules.scheduler(scheduler, lr)
    params = dict(scheduler.get("params") or {})
    cycling = scheduler.get("type") == "OneCycle" and bool(params.get("cycle_momentum", True)) and betas is not None
    return schedule, ds_schedules.one_cycle_momentum(**params) if cycling else None
