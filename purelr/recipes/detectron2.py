"""detectron2's solver (``SOLVER`` config keys) as one optax transformation.

Twins of ``build_optimizer``, ``build_lr_scheduler`` and ``maybe_add_gradient_clipping``
(``detectron2/solver/build.py``) with the ``SOLVER`` defaults of ``detectron2/config/defaults.py``
(``DEFAULTS``; both at facebookresearch/detectron2@02b5c4e2, ``SOURCE``). A recipe is a
``detectron2=`` entry: the SOLVER keys as a dict (upper case, as detectron2's CfgNode), a whole
config dict holding ``SOLVER``, or the path of a detectron2 YAML config (``_BASE_`` files merged
under it, as ``CfgNode.merge_from_file`` does); a LazyConfig's ``optimizer`` / ``lr_multiplier`` /
``train`` as dicts go to ``purelr.recipes.detectron2_lazy``::

    purelr.build(dict(detectron2=dict(BASE_LR=0.02, STEPS=(60000, 80000), MAX_ITER=90000)), params,
                 module_kinds=module_kinds(model, x))
    purelr.build(dict(detectron2="configs/COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml"), params)

At each update ``t`` (one detectron2 iteration): frozen leaves dropped, gradients clipped
(``CLIP_GRADIENTS``: ``"value"`` / ``"norm"`` per parameter as detectron2 does, or ``"full_model"``,
the global norm clip of detectron2's DETR / Mask2Former projects, with ``CLIP_VALUE`` as the max
norm and norm type 2), then SGD (``MOMENTUM``, ``NESTEROV``, ``WEIGHT_DECAY``) on the groups of
``get_default_optimizer_params`` (``WEIGHT_DECAY_NORM``, ``BIAS_LR_FACTOR``, ``WEIGHT_DECAY_BIAS``),
each group's lr its base times ``multiplier(t / MAX_ITER)`` (``LRMultiplier``).
``REFERENCE_WORLD_SIZE`` with ``world_size=`` rescales as ``DefaultTrainer.auto_scale_workers``.
``IMS_PER_BATCH``, ``CHECKPOINT_PERIOD`` and ``AMP`` change no update (AMP's loss scaler only skips
steps whose gradients overflow) and are read and ignored.
"""

from __future__ import annotations

import ast
import copy
import os

import jax
import optax

from purelr import optim
from purelr.optim import clip_grad_norm, clip_grad_value
from purelr.params import detectron2 as params_detectron2
from purelr.params.paramwise import paramwise_transform
from purelr.recipes import detectron2_lazy
from purelr.recipes import recipe as recipe_lib
from purelr.schedules import fvcore, validate

SOURCE = "facebookresearch/detectron2@02b5c4e295e990042a714712c21dc79b731e8833"
CLIP_DEFAULTS = {"ENABLED": False, "CLIP_TYPE": "value", "CLIP_VALUE": 1.0, "NORM_TYPE": 2.0}
DEFAULTS = {
    "LR_SCHEDULER_NAME": "WarmupMultiStepLR",
    "MAX_ITER": 40000,
    "BASE_LR": 0.001,
    "BASE_LR_END": 0.0,
    "MOMENTUM": 0.9,
    "NESTEROV": False,
    "WEIGHT_DECAY": 0.0001,
    "WEIGHT_DECAY_NORM": 0.0,
    "GAMMA": 0.1,
    "STEPS": (30000,),
    "NUM_DECAYS": 3,
    "WARMUP_FACTOR": 1.0 / 1000,
    "WARMUP_ITERS": 1000,
    "WARMUP_METHOD": "linear",
    "RESCALE_INTERVAL": False,
    "CHECKPOINT_PERIOD": 5000,
    "IMS_PER_BATCH": 16,
    "REFERENCE_WORLD_SIZE": 0,
    "BIAS_LR_FACTOR": 1.0,
    "WEIGHT_DECAY_BIAS": None,
    "CLIP_GRADIENTS": CLIP_DEFAULTS,
    "AMP": {"ENABLED": False},
}
SCHEDULERS = ("WarmupMultiStepLR", "WarmupCosineLR", "WarmupStepWithFixedGammaLR")
CLIP_TYPES = ("value", "norm", "full_model")


def load_yaml(path) -> dict:
    """A detectron2 YAML config as a dict, its ``_BASE_`` (a path relative to the file) merged
    under it recursively; string values read as Python literals where they are (``"(60000, 80000)"``),
    as yacs decodes them."""
    import yaml

    path = os.fspath(path)
    try:
        with open(path) as file:
            cfg = yaml.load(file, Loader=_loader()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"detectron2 config {path!r} cannot be read: {error}") from error
    cfg = dict(validate.mapping(f"detectron2 config {path!r}", cfg))
    base = cfg.pop("_BASE_", None)
    if base is None:
        return _decoded(cfg)
    base = os.path.expanduser(base)
    if not os.path.isabs(base):
        base = os.path.join(os.path.dirname(path), base)
    return _merged(load_yaml(base), _decoded(cfg))


def _loader():
    """PyYAML's safe loader reading the ``!!python/...`` tags some detectron2 configs use outside
    ``SOLVER`` (``ANCHOR_GENERATOR.SIZES: !!python/object/apply:eval [...]``) as None, never run."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("tag:yaml.org,2002:python/", lambda loader, suffix, node: None)
    return Loader


def is_detectron2_yaml(path) -> bool:
    """Whether ``path`` is a detectron2 YAML config: a ``.yaml`` / ``.yml`` file whose top level
    has ``SOLVER`` or ``_BASE_`` (upper case, where MMCV/MMEngine configs say ``_base_``)."""
    import yaml

    if not str(path).endswith((".yaml", ".yml")) or not os.path.isfile(path):
        return False
    try:
        with open(path) as file:
            cfg = yaml.load(file, Loader=_loader())
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(cfg, dict) and ("SOLVER" in cfg or "_BASE_" in cfg)


def _decoded(value):
    if isinstance(value, dict):
        return {key: _decoded(item) for key, item in value.items()}
    if isinstance(value, str):
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
    return value


def _merged(base: dict, top: dict) -> dict:
    merged = dict(base)
    for key, value in top.items():
        both = isinstance(merged.get(key), dict) and isinstance(value, dict)
        merged[key] = _merged(merged[key], value) if both else value
    return merged


def solver_of(cfg, world_size: int | None = None) -> dict:
    """The ``SOLVER`` keys of ``cfg`` (a SOLVER dict, a config dict holding ``SOLVER``, or a YAML
    path) over detectron2's defaults, checked, rescaled for ``world_size`` (``auto_scale_workers``)."""
    if isinstance(cfg, (str, os.PathLike)):
        cfg = load_yaml(cfg)
    cfg = validate.mapping("detectron2", cfg)
    if "SOLVER" in cfg:
        cfg = validate.mapping("detectron2['SOLVER']", cfg["SOLVER"])
    for key in cfg:
        if isinstance(key, str) and key not in DEFAULTS and key.upper() in DEFAULTS:
            raise ValueError(
                f"detectron2 SOLVER keys are upper case, as in detectron2's CfgNode: {key!r} -> {key.upper()!r}"
            )
    validate.known_keys("detectron2 SOLVER", cfg, DEFAULTS, " (keys of detectron2's SOLVER that purelr models)")
    clip = validate.mapping("SOLVER.CLIP_GRADIENTS", cfg.get("CLIP_GRADIENTS", {}))
    clip = validate.known_keys("SOLVER.CLIP_GRADIENTS", {**CLIP_DEFAULTS, **clip}, CLIP_DEFAULTS)
    solver = {**copy.deepcopy(DEFAULTS), **cfg, "CLIP_GRADIENTS": clip}
    _check(solver)
    return _scaled(solver, world_size)


def _check(solver: dict) -> None:
    name = lambda key: f"SOLVER.{key}"
    validate.one_of(name("LR_SCHEDULER_NAME"), solver["LR_SCHEDULER_NAME"], SCHEDULERS)
    validate.one_of(name("WARMUP_METHOD"), solver["WARMUP_METHOD"], fvcore.WARMUP_METHODS)
    for key in ("MAX_ITER", "NUM_DECAYS"):
        validate.positive_int(name(key), solver[key])
    for key in ("WARMUP_ITERS", "REFERENCE_WORLD_SIZE", "IMS_PER_BATCH", "CHECKPOINT_PERIOD"):
        validate.nonnegative_int(name(key), solver[key])
    for key in ("BASE_LR", "BASE_LR_END", "MOMENTUM", "WEIGHT_DECAY", "GAMMA", "WARMUP_FACTOR", "BIAS_LR_FACTOR"):
        validate.nonnegative(name(key), solver[key])
    for key in ("WEIGHT_DECAY_NORM", "WEIGHT_DECAY_BIAS"):
        if solver[key] is not None:
            validate.nonnegative(name(key), solver[key])
    for key in ("NESTEROV", "RESCALE_INTERVAL"):
        validate.flag(name(key), solver[key])
    validate.step_list(name("STEPS"), list(solver["STEPS"]))
    clip = solver["CLIP_GRADIENTS"]
    validate.flag(name("CLIP_GRADIENTS.ENABLED"), clip["ENABLED"])
    validate.one_of(name("CLIP_GRADIENTS.CLIP_TYPE"), clip["CLIP_TYPE"], CLIP_TYPES)
    validate.nonnegative(name("CLIP_GRADIENTS.CLIP_VALUE"), clip["CLIP_VALUE"])
    validate.real(name("CLIP_GRADIENTS.NORM_TYPE"), clip["NORM_TYPE"])
    if solver["LR_SCHEDULER_NAME"] == "WarmupCosineLR" and not 0 <= solver["BASE_LR_END"] <= solver["BASE_LR"] > 0:
        raise ValueError(
            f"SOLVER.BASE_LR_END must lie in [0, BASE_LR] and BASE_LR be > 0 for WarmupCosineLR "
            f"(detectron2 divides by BASE_LR), got BASE_LR_END = {solver['BASE_LR_END']!r}, "
            f"BASE_LR = {solver['BASE_LR']!r}"
        )


def _scaled(solver: dict, world_size) -> dict:
    reference = solver["REFERENCE_WORLD_SIZE"]
    if world_size is None or reference == 0 or reference == world_size:
        return solver
    world_size = validate.positive_int("world_size", world_size)
    if solver["IMS_PER_BATCH"] % reference:
        raise ValueError(
            f"SOLVER.IMS_PER_BATCH = {solver['IMS_PER_BATCH']} is not a multiple of "
            f"SOLVER.REFERENCE_WORLD_SIZE = {reference} (detectron2: invalid REFERENCE_WORLD_SIZE)"
        )
    scale = world_size / reference
    return {
        **solver,
        "IMS_PER_BATCH": int(round(solver["IMS_PER_BATCH"] * scale)),
        "BASE_LR": solver["BASE_LR"] * scale,
        "MAX_ITER": int(round(solver["MAX_ITER"] / scale)),
        "WARMUP_ITERS": int(round(solver["WARMUP_ITERS"] / scale)),
        "STEPS": tuple(int(round(s / scale)) for s in solver["STEPS"]),
        "CHECKPOINT_PERIOD": int(round(solver["CHECKPOINT_PERIOD"] / scale)),
        "REFERENCE_WORLD_SIZE": world_size,
    }


def lr_curves(solver: dict, params=None, module_kinds=None) -> dict:
    """``{group label: (base lr, schedule)}`` of ``solver`` (``solver_of``'s) for ``params``
    (default: a tree with a conv kernel and bias and a norm layer's scale and bias)."""
    if params is None:
        import jax.numpy as jnp

        params = {
            "conv": {"kernel": jnp.zeros((3, 3, 2, 2)), "bias": jnp.zeros(2)},
            "norm": {"scale": jnp.zeros(2), "bias": jnp.zeros(2)},
        }
        module_kinds = {"conv": "conv", "norm": "norm"}
    _, settings = params_detectron2.get_default_optimizer_params(
        params, base_lr=solver["BASE_LR"], bias_lr_factor=solver["BIAS_LR_FACTOR"], module_kinds=module_kinds
    )
    multiplier = build_lr_scheduler(solver)
    bases = {label: dict(setting.options)["lr"] for label, setting in settings.items() if not setting.frozen}
    return {label: (base, fvcore.lr_multiplier(base, multiplier, solver["MAX_ITER"])) for label, base in bases.items()}


def build_lr_scheduler(solver: dict) -> fvcore.ParamScheduler:
    """Twin of ``build_lr_scheduler``'s multiplier: the main schedule of ``LR_SCHEDULER_NAME``
    (``MultiStepParamScheduler`` over ``GAMMA ** k`` at the ``STEPS <= MAX_ITER``,
    ``CosineParamScheduler(1, BASE_LR_END / BASE_LR)`` or ``StepWithFixedGammaParamScheduler``)
    under ``WarmupParamScheduler`` of length ``min(WARMUP_ITERS / MAX_ITER, 1)``. ``solver``:
    ``solver_of``'s."""
    name, max_iter = solver["LR_SCHEDULER_NAME"], solver["MAX_ITER"]
    if fails_in_detectron2(solver):
        raise ValueError(
            f"SOLVER.LR_SCHEDULER_NAME = {name!r} with WARMUP_ITERS = {solver['WARMUP_ITERS']} >= "
            f"MAX_ITER = {max_iter} and RESCALE_INTERVAL False: detectron2 fails to build it (its warmup "
            f"ends at StepWithFixedGammaParamScheduler(where=1), which indexes past its values)"
        )
    if name == "WarmupMultiStepLR":
        steps = [step for step in solver["STEPS"] if step <= max_iter]
        main = fvcore.multi_step_param_scheduler(
            [solver["GAMMA"] ** k for k in range(len(steps) + 1)], num_updates=max_iter, milestones=steps
        )
    elif name == "WarmupCosineLR":
        main = fvcore.cosine_param_scheduler(1, solver["BASE_LR_END"] / solver["BASE_LR"])
    else:
        main = fvcore.step_with_fixed_gamma_param_scheduler(1.0, solver["NUM_DECAYS"], solver["GAMMA"], max_iter)
    return fvcore.warmup_param_scheduler(
        main,
        solver["WARMUP_FACTOR"],
        min(solver["WARMUP_ITERS"] / max_iter, 1.0),
        solver["WARMUP_METHOD"],
        solver["RESCALE_INTERVAL"],
    )


def fails_in_detectron2(solver: dict) -> bool:
    """Whether ``build_lr_scheduler`` raises: ``WarmupStepWithFixedGammaLR`` whose warmup (not
    rescaled) reaches ``where`` where fvcore's ``StepParamScheduler`` indexes past its list."""
    length = min(solver["WARMUP_ITERS"] / solver["MAX_ITER"], 1.0)
    count = solver["NUM_DECAYS"] + 1
    return (
        solver["LR_SCHEDULER_NAME"] == "WarmupStepWithFixedGammaLR"
        and not solver["RESCALE_INTERVAL"]
        and int((length + fvcore.WHERE_EPSILON) * count) >= count
    )


def build_detectron2(
    cfg, params, *, module_kinds=None, frozen=None, world_size: int | None = None
) -> optax.GradientTransformation:
    """Twin of detectron2's ``build_optimizer`` and ``build_lr_scheduler`` for ``params``:
    ``cfg`` as ``solver_of`` takes it; ``module_kinds`` for ``WEIGHT_DECAY_NORM``; ``frozen``, a
    selector of the parameters with ``requires_grad=False``. A lazy config (``optimizer``,
    ``lr_multiplier``, ``train`` as dicts) is built by ``purelr.recipes.detectron2_lazy``."""
    if detectron2_lazy.is_lazy(cfg):
        return detectron2_lazy.build_lazy(cfg, params, module_kinds=module_kinds, frozen=frozen)
    solver = solver_of(cfg, world_size)
    labels, settings = params_detectron2.get_default_optimizer_params(
        params,
        base_lr=solver["BASE_LR"],
        weight_decay_norm=solver["WEIGHT_DECAY_NORM"],
        bias_lr_factor=solver["BIAS_LR_FACTOR"],
        weight_decay_bias=solver["WEIGHT_DECAY_BIAS"],
        module_kinds=module_kinds,
        frozen=frozen,
    )
    multiplier = build_lr_scheduler(solver)
    schedule = lambda base: fvcore.lr_multiplier(base, multiplier, solver["MAX_ITER"])
    transform = paramwise_transform(
        optim.sgd,
        labels,
        settings,
        lr=solver["BASE_LR"],
        weight_decay=solver["WEIGHT_DECAY"],
        schedules={"lr": schedule},
        momentum=solver["MOMENTUM"],
        nesterov=solver["NESTEROV"],
    )
    return recipe_lib.wrapped(transform, labels, _clip(solver["CLIP_GRADIENTS"]))


def _clip(clip: dict):
    if not clip["ENABLED"]:
        return None
    if clip["CLIP_TYPE"] == "value":
        return clip_grad_value(clip["CLIP_VALUE"])
    if clip["CLIP_TYPE"] == "full_model":
        return clip_grad_norm(clip["CLIP_VALUE"])
    return per_parameter(clip_grad_norm(clip["CLIP_VALUE"], clip["NORM_TYPE"]))


def per_parameter(clip: optax.GradientTransformation) -> optax.GradientTransformation:
    """A stateless clip applied to each leaf on its own (detectron2 calls ``clip_grad_norm_`` on
    every parameter separately: each is scaled by its own norm)."""

    def update_fn(updates, state, params=None):
        del params
        clipped = lambda g: clip.update(g, clip.init(g))[0]
        return jax.tree.map(clipped, updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)
