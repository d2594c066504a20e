"""What a recipe asks for, read and checked (``Recipe``), and the optax transformation it becomes.

Shared by the per-framework readers (``purelr.recipes.mmcv``, ``purelr.recipes.mmengine``): each
turns its config into a ``Recipe``; ``transformation`` builds any ``Recipe`` the same way.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import optax

from purelr.optim import clip_grad_norm, clip_grad_value, openmmlab
from purelr.params import paramwise as paramwise_lib
from purelr.recipes import registry
from purelr.schedules import validate
from purelr.training import accumulate as accumulate_lib
from purelr.training import averaging
from purelr.training import loss_scale as loss_scale_lib


class Recipe(NamedTuple):
    """What a config asks for, read and checked, before anything is built."""

    optimizer: Callable
    hyperparams: dict
    paramwise_cfg: dict
    constructor: str
    style: str
    clip: Any  # None, ("norm", max_norm, norm_type, error_if_nonfinite) or ("value", clip_value)
    cumulative_iters: int
    schedules: dict  # {"lr" | "momentum" | any other hyperparameter ("weight_decay"): (base -> schedule)}
    max_iters: int | None
    scaler: Any = None  # a ``purelr.training.loss_scale.Scaler`` (float16 training), or None
    fixed_lr: Any = None  # the lr of the ``fix_lr`` groups (MMPretrain's SimSiamHook), or None


def transformation(recipe: Recipe, params, *, module_kinds=None, frozen=None) -> optax.GradientTransformation:
    """The optimizer ``recipe`` describes, for ``params``: gradients of frozen parameters dropped,
    accumulated, unscaled (``recipe.scaler``), clipped, then each parameter group's optimizer with its
    scheduled hyperparameters."""
    labels, settings = labels_of(recipe, params, module_kinds, frozen)
    schedules = dict(recipe.schedules)
    if recipe.cumulative_iters > 1:
        at_iteration = functools.partial(
            accumulate_lib.update_iteration, every=recipe.cumulative_iters, total=recipe.max_iters
        )
        schedules = {name: _read_at(factory, at_iteration) for name, factory in schedules.items()}
    if recipe.scaler is not None:  # the schedulers step at every iteration, skipped or not
        schedules = {name: _counting_skipped(factory) for name, factory in schedules.items()}
    # MMPretrain's Lamb / Adan clip over every group inside their step: done once, before the groups
    global_clip, hyperparams = openmmlab.global_grad_clip(recipe.optimizer, dict(recipe.hyperparams))
    lr = hyperparams.pop("lr")
    weight_decay = hyperparams.pop("weight_decay", None)
    schedules = _schedule_targets(schedules, hyperparams)
    transform = paramwise_lib.paramwise_transform(
        recipe.optimizer,
        labels,
        settings,
        lr=lr,
        weight_decay=weight_decay,
        schedules=schedules,
        fixed_lr=recipe.fixed_lr,
        **hyperparams,
    )
    if global_clip is not None:
        transform = optax.chain(global_clip, transform)
    clip = None
    if recipe.clip is not None:
        clip = clip_grad_norm(*recipe.clip[1:]) if recipe.clip[0] == "norm" else clip_grad_value(recipe.clip[1])
    return wrapped(transform, labels, clip, every=recipe.cumulative_iters, total=recipe.max_iters, scaler=recipe.scaler)


def wrapped(
    transform,
    labels,
    clip=None,
    *,
    every: int = 1,
    total: int | None = None,
    repeat: bool = False,
    averager=None,
    first_update: int = 0,
    scaler=None,
) -> optax.GradientTransformation:
    """``transform`` as a runner applies it at each iteration: gradients of the ``"frozen"``
    labels dropped, unscaled by ``scaler`` (``purelr.training.loss_scale.loss_scaled``: the step
    skipped when they overflow), ``clip`` (a transformation) applied, the optimizer stepped, the
    params averaged (``with_average``), all of it after ``every`` iterations' gradients are
    accumulated (``purelr.training.accumulate``, ``total`` and ``repeat`` its arguments)."""
    if clip is not None:
        transform = optax.chain(clip, transform)
    if scaler is not None:
        transform = loss_scale_lib.loss_scaled(transform, scaler)
    frozen_mask = jax.tree.map(lambda label: label == "frozen", labels)
    if any(jax.tree.leaves(frozen_mask)):
        transform = optax.chain(optax.masked(optax.set_to_zero(), frozen_mask), transform)
    if averager is not None:
        transform = with_average(transform, averager, first_update)
    if every > 1:
        transform = accumulate_lib.accumulate(transform, every, total, repeat=repeat)
    return transform


class AverageState(NamedTuple):
    inner_state: Any
    average: averaging.AveragedState  # the params averaged after each update: ``average_of(state)``


def with_average(
    inner: optax.GradientTransformation, averager: averaging.Averager, first_update: int = 0
) -> optax.GradientTransformation:
    """``inner``, and after each of its updates ``averager.update(average, new_params, step)`` with
    ``new_params = optax.apply_updates(params, updates)`` (the params the caller gets) and ``step``
    the updates made so far, counting this one, plus ``first_update``: timm's ``train.py`` stepping
    ``ModelEmaV3.update(model, step=num_updates)`` after ``optimizer.step()``. The average starts
    as a copy of the params given to ``init`` (``deepcopy(model)``); ``average_of(state)`` reads it."""

    def init_fn(params):
        return AverageState(inner.init(params), averager.init(params))

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("averaging the params needs them: call update(grads, state, params)")
        updates, inner_state = inner.update(updates, state.inner_state, params)
        step = state.average.n_averaged + 1 + first_update
        average = averager.update(state.average, optax.apply_updates(params, updates), step)
        return updates, AverageState(inner_state, average)

    return optax.GradientTransformation(init_fn, update_fn)


def average_of(state):
    """The averaged params (model EMA) held in an optimizer state built with ``with_average``
    (``purelr.build`` of a timm recipe with ``model_ema=True``), whatever wraps it."""
    found = [
        node
        for node in jax.tree.leaves(state, is_leaf=lambda node: isinstance(node, AverageState))
        if isinstance(node, AverageState)
    ]
    if len(found) != 1:
        raise ValueError(
            f"average_of: the state holds {len(found)} averaged params, expected one "
            f"(build with model EMA on: timm's model_ema=True)"
        )
    return found[0].average.average


DEFAULT_CONSTRUCTORS = ("DefaultOptimizerConstructor", "DefaultOptimWrapperConstructor")
# The loops of each framework, and the keys of their config that purelr reads or may ignore.
LOOPS = {
    "runner": (("EpochBasedRunner", "IterBasedRunner"), ("type", "max_epochs", "max_iters")),
    "train_cfg": (
        ("EpochBasedTrainLoop", "IterBasedTrainLoop"),
        ("type", "by_epoch", "max_epochs", "max_iters", "val_interval", "val_begin", "dynamic_intervals"),
    ),
}


def section(cfg: dict, key: str) -> dict:
    """``cfg[key]`` as a dict (``{}`` when absent or None); anything but a dict raises naming it."""
    value = cfg.get(key)
    return {} if value is None else dict(validate.mapping(key, value))


def optimizer_of(optimizer_cfg, where: str):
    """``(optimizer, arguments)`` of an optimizer config, checked by building it once: the base
    ``lr`` and ``weight_decay`` are finite and >= 0, every key is an argument of the optimizer
    and the optimizer accepts the values (errors name ``where.key`` and the value)."""
    if not isinstance(optimizer_cfg, dict) or "type" not in optimizer_cfg:
        raise ValueError(f"{where} must be a dict with a 'type', got {optimizer_cfg!r}")
    kwargs = {k: v for k, v in optimizer_cfg.items() if k not in ("type", "paramwise_cfg", "constructor")}
    if "lr" not in kwargs:
        raise ValueError(f"{where}.lr is missing: give the base learning rate")
    validate.nonnegative(f"{where}.lr", kwargs["lr"])
    if kwargs.get("weight_decay") is not None:
        validate.nonnegative(f"{where}.weight_decay", kwargs["weight_decay"])
    optimizer = registry.lookup("optimizer", optimizer_cfg["type"], f"{where}.type")
    paramwise_lib.checked_call(optimizer, where, kwargs)
    return optimizer, kwargs


def run_length(where: str, runner: dict, epoch_len):
    """``(max_epochs, max_iters)`` of an MMCV ``runner`` or MMEngine ``train_cfg`` (``where``)."""
    loops, known = LOOPS[where]
    validate.known_keys(where, runner, known)
    if "type" in runner:
        validate.one_of(f"{where}.type", runner["type"], loops)
    max_epochs = runner.get("max_epochs")
    max_iters = runner.get("max_iters")
    if max_epochs is not None and max_iters is not None:
        raise ValueError(
            f"{where}: only one of max_epochs and max_iters can be set, got "
            f"max_epochs={max_epochs!r}, max_iters={max_iters!r}"
        )
    _check_loop(where, runner)
    if max_epochs is not None:
        max_epochs = validate.positive_int(f"{where}.max_epochs", max_epochs)
    if max_iters is not None:
        max_iters = validate.positive_int(f"{where}.max_iters", max_iters)
    if max_iters is None and max_epochs is not None and epoch_len is not None:
        max_iters = max_epochs * validate.positive_int("epoch_len", epoch_len)
    return max_epochs, max_iters


def _check_loop(where: str, runner: dict) -> None:
    """The loop a ``type`` or (MMEngine) ``by_epoch`` names counts what its length says: MMEngine's
    ``Runner.build_train_loop`` takes one of ``type`` and ``by_epoch``, and EpochBasedTrainLoop
    (EpochBasedRunner) takes ``max_epochs``, IterBasedTrainLoop (IterBasedRunner) ``max_iters``."""
    if "type" in runner and "by_epoch" in runner:
        raise ValueError(
            f"{where}: only one of type and by_epoch can be set, got type={runner['type']!r}, "
            f"by_epoch={runner['by_epoch']!r}"
        )
    by_epoch = runner.get("by_epoch", "Epoch" in runner["type"] if "type" in runner else None)
    if by_epoch is None:
        return
    length = "max_epochs" if validate.flag(f"{where}.by_epoch", by_epoch) else "max_iters"
    wrong = "max_iters" if length == "max_epochs" else "max_epochs"
    if wrong in runner:
        loop = f"type={runner['type']!r}" if "type" in runner else f"by_epoch={by_epoch!r}"
        raise ValueError(f"{where}: {loop} counts its length in {length}, got {wrong}={runner[wrong]!r}")


def clip_of(clip_cfg, where: str, *, mmengine_style: bool):
    """``None``, ``("norm", max_norm, norm_type, error_if_nonfinite)`` or ``("value", clip_value)``
    (the keyword arguments of torch's ``clip_grad_norm_`` / ``clip_grad_value_``). An infinite
    ``max_norm`` or ``clip_value`` is accepted, as torch's clipping accepts it (it never clips)."""
    if clip_cfg is None:
        return None
    if not isinstance(clip_cfg, dict):
        raise ValueError(f"{where} must be a dict, got {clip_cfg!r}")
    clip_cfg = dict(clip_cfg)
    kind = clip_cfg.pop("type", "norm") if mmengine_style else "norm"
    validate.one_of(f"{where}.type", kind, ("norm", "value"))
    keys = ("clip_value",) if kind == "value" else ("max_norm", "norm_type", "error_if_nonfinite")
    validate.known_keys(where, clip_cfg, keys)
    if keys[0] not in clip_cfg:
        raise ValueError(f"{where}.{keys[0]} is missing")
    bound = validate.nonnegative(f"{where}.{keys[0]}", clip_cfg[keys[0]], finite=False)
    if kind == "value":
        return ("value", bound)
    return (
        "norm",
        bound,
        validate.real(f"{where}.norm_type", clip_cfg.get("norm_type", 2.0)),
        validate.flag(f"{where}.error_if_nonfinite", clip_cfg.get("error_if_nonfinite", False)),
    )


GRAD_SCALER_KEYS = ("init_scale", "growth_factor", "backoff_factor", "growth_interval", "enabled")


def grad_scaler_of(loss_scale, where: str):
    """The ``torch.cuda.amp.GradScaler`` that MMEngine's ``AmpOptimWrapper`` and MMCV's
    ``Fp16OptimizerHook`` build from their ``loss_scale``: ``'dynamic'`` (GradScaler's defaults), a
    float (a static scale: ``update(new_scale=loss_scale)`` after each step) or a dict of
    GradScaler's arguments. Both originals refuse an int (``512``: give ``512.``)."""
    if isinstance(loss_scale, str):
        validate.one_of(where, loss_scale, ("dynamic",))
        return loss_scale_lib.grad_scaler()
    if isinstance(loss_scale, dict):
        validate.known_keys(where, loss_scale, GRAD_SCALER_KEYS)
        try:
            return loss_scale_lib.grad_scaler(**loss_scale)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{where}.{error}") from None
    if not isinstance(loss_scale, float):
        raise TypeError(
            f"{where} must be 'dynamic', a float or a dict of GradScaler's arguments "
            f"(the original refuses anything else, an int included: write 512.), got {loss_scale!r}"
        )
    return loss_scale_lib.grad_scaler(init_scale=validate.positive(where, loss_scale), static=True)


def custom_schedule(kind, cfg: dict, lengths: dict):
    """A registered schedule named by ``policy`` / ``type``, as ``base -> schedule``, or None."""
    if not isinstance(kind, str) or kind not in registry.registered("schedule"):
        return None
    make = registry.registered("schedule")[kind]
    kwargs = {k: v for k, v in cfg.items() if k not in ("policy", "type")}
    return lambda base: make(base, **lengths, **kwargs)


def checked_factory(factory, name: str):
    """Builds the schedule once now, so that a config error is raised here naming its key."""
    factory(1.0 if name == "lr" else 0.9)
    return factory


def _read_at(factory, at_iteration):
    def make(base):
        schedule = factory(base)
        return lambda update: schedule(at_iteration(update))

    return make


def _counting_skipped(factory):
    return lambda base: loss_scale_lib.counting_skipped(factory(base))


def _schedule_targets(schedules: dict, hyperparams: dict) -> dict:
    """Maps a ``momentum`` schedule onto the optimizer's own argument: ``momentum`` (SGD,
    RMSprop) or ``betas[0]`` (the Adam family), as MMCV's and MMEngine's momentum schedulers do."""
    if "momentum" not in schedules:
        return schedules
    schedules = dict(schedules)
    momentum = schedules.pop("momentum")
    if "betas" in hyperparams:
        schedules["betas"] = lambda betas: (momentum(betas[0]), *betas[1:])
    elif "momentum" in hyperparams:
        schedules["momentum"] = momentum
    else:
        raise ValueError(
            "a momentum schedule needs the optimizer's momentum or betas: give "
            "optimizer.momentum=... or optimizer.betas=(...)"
        )
    return schedules


def labels_of(recipe: Recipe, params, module_kinds, frozen):
    """``(labels, settings)`` of the config's constructor (paramwise_cfg rules or a registered one)."""
    if recipe.constructor in DEFAULT_CONSTRUCTORS:
        return paramwise_lib.paramwise_labels(
            params,
            recipe.paramwise_cfg,
            weight_decay=recipe.hyperparams.get("weight_decay"),
            module_kinds=module_kinds,
            frozen=frozen,
            style=recipe.style,
            optimizer=functools.partial(recipe.optimizer, **recipe.hyperparams),
        )
    constructor = registry.lookup("constructor", recipe.constructor, "constructor", builtin=DEFAULT_CONSTRUCTORS)
    return constructor(params, recipe.hyperparams, recipe.paramwise_cfg, module_kinds=module_kinds, frozen=frozen)


def auto_scaled(recipe: Recipe, cfg: dict, world_size) -> Recipe:
    """``auto_scale_lr=dict(enable=True, base_batch_size=B)``: the base lr scaled by the real batch
    size over ``B`` before any scheduler reads it. MMEngine's ``Runner.scale_lr``:
    ``lr * (world_size * train_dataloader.batch_size / B)``; MMDetection 2.x's ``auto_scale_lr``:
    ``(world_size * data.train_dataloader.samples_per_gpu / B) * lr`` (``data.samples_per_gpu``
    where the config has no ``train_dataloader`` entry), unscaled when the sizes are equal.
    ``enable=False`` (most configs) changes nothing."""
    scaling = section(cfg, "auto_scale_lr")
    if not scaling.get("enable", False):
        return recipe
    base = validate.positive("auto_scale_lr.base_batch_size", scaling.get("base_batch_size"))
    if world_size is None:
        raise ValueError(
            "auto_scale_lr.enable=True scales the lr by world_size * batch size / "
            f"base_batch_size ({base}): give the number of processes the original ran on, "
            "purelr.build(..., world_size=N) (--world-size N); the '8xb2' in a config's "
            "name is a naming convention, not read"
        )
    world_size = validate.positive_int("world_size", world_size)
    lr = recipe.hyperparams["lr"]
    if recipe.style == "mmengine":
        batch = validate.positive_int("train_dataloader.batch_size", section(cfg, "train_dataloader").get("batch_size"))
        lr = lr * (float(world_size * batch) / float(base))
    else:
        data = section(cfg, "data")
        where, given = (
            ("data.train_dataloader.samples_per_gpu", section(data, "train_dataloader").get("samples_per_gpu"))
            if "samples_per_gpu" in section(data, "train_dataloader")
            else ("data.samples_per_gpu", data.get("samples_per_gpu"))
        )
        batch = validate.positive_int(where, given) * world_size
        lr = lr if batch == base else (batch / base) * lr
    return recipe._replace(hyperparams={**recipe.hyperparams, "lr": lr})
