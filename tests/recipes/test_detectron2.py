"""``purelr.build(dict(detectron2=...))`` end to end against torch SGD driven as detectron2 drives it.

detectron2 has no wheel here. The reference is torch 2.13's ``SGD(foreach=True)`` with
``get_default_optimizer_params``'s groups, detectron2's per-parameter (or full-model) gradient
clipping and its ``LRMultiplier`` over fvcore's real schedulers: ``_torch_groups`` and
``_torch_clip`` below, and ``purelr.references.detectron2``, re-state for the test (written for
purelr, not copied) ``detectron2/solver/build.py`` (``get_default_optimizer_params``,
``reduce_param_groups``, ``maybe_add_gradient_clipping``, ``build_lr_scheduler``) and
``detectron2/solver/lr_scheduler.py`` (``WarmupParamScheduler``, ``LRMultiplier``) at
facebookresearch/detectron2@02b5c4e295e990042a714712c21dc79b731e8833.

Model-zoo configs (``tests/data/detectron2/``, the SOLVER parts of 17 published configs, their
``_BASE_`` files merged): each group's lr at every milestone, warmup and random iteration of the
whole run (1e-12), and 100 updates of a tiny model's params (convs, BatchNorm, GroupNorm,
LayerNorm, biases; its torch twin names the norm modules) with random gradients (1e-10 relative,
float64), with each group's lr in force (``hyperparams_in_force``) against torch's. Random SOLVER
settings (clipping of every type, bias and norm overrides, every scheduler, short runs so
milestones fall inside the 100 updates) the same way, in float64 and float32.
"""

import functools
import itertools
import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import purelr
from purelr.params.groups import hyperparams_in_force
from purelr.params.module_kinds import dotted_names, module_kinds
from purelr.recipes import detectron2 as recipe
from purelr.references import detectron2 as reference
from purelr.schedules import fvcore
from tests.params import detectron2_reference
from tests.parity import OPTIMIZER_RTOL, assert_schedule_matches, jitted, relative_error, trajectory_floor
from tests.schedules.test_fvcore import cosine_floor

DATA = os.path.join(os.path.dirname(__file__), "..", "data", "detectron2")
ZOO = [
    "configs/COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml",
    "configs/COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml",
    "configs/COCO-Detection/faster_rcnn_R_101_C4_3x.yaml",
    "configs/COCO-Detection/retinanet_R_50_FPN_3x.yaml",
    "configs/COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml",
    "configs/COCO-InstanceSegmentation/mask_rcnn_X_101_32x8d_FPN_3x.yaml",
    "configs/COCO-Keypoints/keypoint_rcnn_R_50_FPN_3x.yaml",
    "configs/COCO-PanopticSegmentation/panoptic_fpn_R_50_3x.yaml",
    "configs/LVISv1-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml",
    "configs/LVISv0.5-InstanceSegmentation/mask_rcnn_R_101_FPN_1x.yaml",
    "configs/Cityscapes/mask_rcnn_R_50_FPN.yaml",
    "configs/PascalVOC-Detection/faster_rcnn_R_50_FPN.yaml",
    "configs/Misc/scratch_mask_rcnn_R_50_FPN_9x_gn.yaml",
    "configs/Misc/cascade_mask_rcnn_X_152_32x8d_FPN_IN5k_gn_dconv.yaml",
    "configs/Detectron1-Comparisons/faster_rcnn_R_50_FPN_noaug_1x.yaml",
    "projects/DensePose/configs/densepose_rcnn_R_50_FPN_WC1M_s1x.yaml",
    "projects/DensePose/configs/HRNet/densepose_rcnn_HRFPN_HRNet_w32_s1x.yaml",
]
UPDATES = 100
RANDOM_SOLVERS = {"x64": 6, "f32": 3}
NIGHTLY_SOLVERS = 60


class FlaxTiny(nn.Module):
    """A conv with a bias, one without, BatchNorm, GroupNorm, LayerNorm and a linear head."""

    @nn.compact
    def __call__(self, x):
        x = nn.BatchNorm(use_running_average=True, name="bn")(nn.Conv(4, (3, 3), name="conv")(x))
        x = nn.GroupNorm(2, name="gn")(nn.Conv(4, (1, 1), use_bias=False, name="conv2")(x))
        return nn.Dense(3, name="fc")(nn.LayerNorm(name="ln")(x.mean((1, 2))))


def torch_tiny():
    model = torch.nn.Module()
    model.conv, model.bn = torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)
    model.conv2, model.gn = torch.nn.Conv2d(4, 4, 1, bias=False), torch.nn.GroupNorm(2, 4)
    model.ln, model.fc = torch.nn.LayerNorm(4), torch.nn.Linear(4, 3)
    return model


@functools.lru_cache(maxsize=None)
def tiny():
    """``(param shapes, module kinds)`` of ``FlaxTiny``, traced in float32."""
    with jax.enable_x64(False):
        model, x = FlaxTiny(), jnp.zeros((1, 8, 8, 3))
        return jax.eval_shape(lambda: model.init(jax.random.key(0), x))["params"], module_kinds(model, x)


def _torch_groups(solver, tensors):
    """detectron2's ``build_optimizer`` groups on the torch twin of the model."""
    found = detectron2_reference.settings(
        torch_tiny(),
        base_lr=solver["BASE_LR"],
        weight_decay_norm=solver["WEIGHT_DECAY_NORM"],
        bias_lr_factor=solver["BIAS_LR_FACTOR"],
        weight_decay_bias=solver["WEIGHT_DECAY_BIAS"],
    )
    return detectron2_reference.groups(found, tensors)


def _torch_clip(clip, params):
    if not clip["ENABLED"]:
        return
    if clip["CLIP_TYPE"] == "full_model":
        torch.nn.utils.clip_grad_norm_(params, clip["CLIP_VALUE"])
    for p in params if clip["CLIP_TYPE"] != "full_model" else ():
        if clip["CLIP_TYPE"] == "value":
            torch.nn.utils.clip_grad_value_(p, clip["CLIP_VALUE"])
        else:
            torch.nn.utils.clip_grad_norm_(p, clip["CLIP_VALUE"], clip["NORM_TYPE"])


def torch_steps(optimizer, scheduler, tensors: dict, grads: list, dtype, clip=None):
    """``({name: (UPDATES, *shape)}, {group name: (UPDATES,)})``: the params after each update of
    detectron2's loop (the optimizer's step, then the hook's scheduler step), ``clip(params)``
    before each step, and the lr each group used."""
    params = list(itertools.chain(*[g["params"] for g in optimizer.param_groups]))
    trajectory, lrs = {name: [] for name in tensors}, {g["name"]: [] for g in optimizer.param_groups}
    for update, grad in enumerate(grads):
        if update:  # the hook's step after the previous update (not after the last: where = 1 there)
            scheduler.step()
        for name, tensor in tensors.items():
            tensor.grad = torch.tensor(grad[name], dtype=dtype)
        if clip is not None:
            clip(params)
        optimizer.step()
        for name, tensor in tensors.items():
            trajectory[name].append(tensor.detach().numpy().copy())
        for group in optimizer.param_groups:
            lrs[group["name"]].append(group["lr"])
    return {name: np.stack(values) for name, values in trajectory.items()}, {k: np.asarray(v) for k, v in lrs.items()}


def torch_run(solver, tensors: dict, grads: list, dtype):
    """detectron2's ``DefaultTrainer`` on ``solver``: SGD, clipping, ``LRMultiplier``."""
    optimizer = torch.optim.SGD(
        _torch_groups(solver, tensors),
        lr=solver["BASE_LR"],
        momentum=solver["MOMENTUM"],
        nesterov=solver["NESTEROV"],
        weight_decay=solver["WEIGHT_DECAY"],
        foreach=True,
    )
    scheduler = reference.LRMultiplier(optimizer, reference.multiplier(solver), solver["MAX_ITER"])
    return torch_steps(
        optimizer, scheduler, tensors, grads, dtype, lambda params: _torch_clip(solver["CLIP_GRADIENTS"], params)
    )


def _named(tree):
    return dict(zip(dotted_names(tree), jax.tree.leaves(tree)))


def purelr_run(cfg, params, grads, kinds=None):
    """The params after each of ``purelr.build(dict(detectron2=cfg))``'s updates (one ``lax.scan``),
    and each group's lr in force (``hyperparams_in_force``) at each update."""
    transform = purelr.build(dict(detectron2=cfg), params, module_kinds=tiny()[1] if kinds is None else kinds)
    stacked = jax.tree.map(lambda *g: jnp.stack(g), *grads)

    @jax.jit
    def run(params, stacked):
        def one(carry, grad):
            params, state = carry
            updates, state = transform.update(grad, state, params)
            params = jax.tree.map(lambda p, u: p + u, params, updates)
            lrs = {label: hyperparams["lr"] for label, hyperparams in hyperparams_in_force(state).items()}
            return (params, state), (params, lrs)

        return jax.lax.scan(one, (params, transform.init(params)), stacked)[1]

    trajectory, lrs = run(params, stacked)
    return _named(trajectory), {label: np.asarray(values) for label, values in lrs.items()}


def start_and_grads(seed, dtype, shapes=None):
    """Random params and ``UPDATES`` gradients (of three scales) shaped as ``shapes`` (the tiny model's)."""
    rng = np.random.default_rng(seed)
    shapes = tiny()[0] if shapes is None else shapes
    params = jax.tree.map(lambda s: jnp.asarray(rng.normal(0, 0.5, s.shape), dtype), shapes)
    grads = [
        jax.tree.map(lambda s: jnp.asarray(rng.normal(0, 1, s.shape) * rng.choice([0.01, 1, 30]), dtype), shapes)
        for _ in range(UPDATES)
    ]
    return params, grads


def torch_tensors(params, dtype):
    return {name: torch.tensor(np.asarray(value), dtype=dtype) for name, value in _named(params).items()}


def assert_trajectories_match(cfg, seed, precision):
    """100 updates of both sides from the same params and gradients; worst relative error."""
    dtype = jnp.float64 if precision == "x64" else jnp.float32
    torch_dtype = torch.float64 if precision == "x64" else torch.float32
    params, grads = start_and_grads(seed, dtype)
    ours = purelr_run(cfg, params, grads)
    theirs = torch_run(
        recipe.solver_of(cfg), torch_tensors(params, torch_dtype), [_named(g) for g in grads], torch_dtype
    )
    return assert_same(ours, theirs, precision, cfg)


def assert_same(ours, theirs, precision, context):
    """Every leaf's trajectory to 1e-10 (x64) / 1e-5 (float32), every group's lr to 1e-12 / 1e-6
    (cosines: ``cosine_floor``); the worst relative error of the params."""
    (ours, our_lrs), (theirs, their_lrs) = ours, theirs
    assert sorted(our_lrs) == sorted(their_lrs), (context, sorted(our_lrs), sorted(their_lrs))
    for label, expected in their_lrs.items():
        assert_schedule_matches(
            our_lrs[label],
            expected,
            precision,
            floor=cosine_floor(precision),
            context=f"{context}: lr of group {label}",
        )
    worst = 0.0
    for name, expected in theirs.items():
        error = relative_error(ours[name], expected, floor=trajectory_floor(precision))
        assert error <= OPTIMIZER_RTOL[precision], f"{context}: {name} relative error {error:.3g}"
        worst = max(worst, error)
    return worst


def lr_points(solver, rng):
    """Iterations where the lr changes or may: warmup, around every milestone, the end, random."""
    max_iter = solver["MAX_ITER"]
    points = set(range(0, min(solver["WARMUP_ITERS"] + 3, max_iter)))
    for step in list(solver["STEPS"]) + [max_iter - 1]:
        points.update(t for t in range(step - 3, step + 3) if 0 <= t < max_iter)
    points.update(rng.integers(0, max_iter, 500).tolist())
    return np.asarray(sorted(points))


def assert_lr_matches(solver, rng):
    """Each group's lr at ``lr_points``: the twin's schedule against ``LRMultiplier.get_lr`` over
    fvcore's schedulers (group base lr times ``multiplier(t / MAX_ITER)``)."""
    multiplier = reference.multiplier(solver)
    worst = 0.0
    bases = {solver["BASE_LR"], solver["BASE_LR"] * solver["BIAS_LR_FACTOR"]}
    steps = lr_points(solver, rng)
    ours_multiplier = recipe.build_lr_scheduler(solver)
    for base in bases:
        expected = [base * multiplier(t / solver["MAX_ITER"]) for t in steps]
        schedule = fvcore.lr_multiplier(base, ours_multiplier, solver["MAX_ITER"])
        worst = max(worst, assert_schedule_matches(jitted(schedule, steps), expected, "x64", context=str(solver)))
    return worst


def _key(solver):
    return json.dumps(solver, sort_keys=True, default=str)


@functools.lru_cache(maxsize=None)
def distinct_solvers():
    """``{solver: first config path}``: the 17 configs hold 10 distinct SOLVER settings."""
    first = {}
    for path in ZOO:
        first.setdefault(_key(recipe.solver_of(os.path.join(DATA, path))), path)
    return first


@pytest.mark.parametrize("path", ZOO)
def test_model_zoo_configs(path):
    """A published config (its YAML with ``_BASE_``) through ``purelr.build``: every group's lr
    over the whole run, and 100 updates (run once per distinct SOLVER setting)."""
    with jax.enable_x64(True):
        file = os.path.join(DATA, path)
        solver = recipe.solver_of(file)
        lr_error = assert_lr_matches(solver, np.random.default_rng(ZOO.index(path)))
        same = distinct_solvers()[_key(solver)]
        error = assert_trajectories_match(file, ZOO.index(path), "x64") if same == path else None
    print(f"{path}: lr {lr_error:.3g}, params " + (f"{error:.3g}" if same == path else f"as {same}"))


def random_cfg(rng):
    cfg = dict(
        LR_SCHEDULER_NAME=str(rng.choice(recipe.SCHEDULERS)),
        MAX_ITER=int(rng.integers(UPDATES, 150)),
        BASE_LR=float(10 ** rng.uniform(-3, -1)),
        MOMENTUM=float(rng.choice([0.0, 0.9, rng.uniform(0.5, 0.99)])),
        WEIGHT_DECAY=float(rng.choice([0.0, 1e-4, 10 ** rng.uniform(-5, -2)])),
        GAMMA=float(rng.uniform(0.1, 0.7)),
        WARMUP_ITERS=int(rng.integers(0, 40)),
        WARMUP_FACTOR=float(rng.uniform(0, 1)),
        WARMUP_METHOD=str(rng.choice(fvcore.WARMUP_METHODS)),
        NUM_DECAYS=int(rng.integers(1, 4)),
    )
    cfg["NESTEROV"] = bool(cfg["MOMENTUM"] > 0 and rng.random() < 0.4)
    cfg["STEPS"] = tuple(sorted(set(rng.integers(1, cfg["MAX_ITER"], int(rng.integers(1, 4))).tolist())))
    if cfg["LR_SCHEDULER_NAME"] == "WarmupCosineLR":
        cfg["BASE_LR_END"] = cfg["BASE_LR"] * float(rng.choice([0.0, rng.uniform(0, 1)]))
    if rng.random() < 0.5:
        cfg["BIAS_LR_FACTOR"] = float(rng.uniform(0.5, 2.0))
    for key in ("WEIGHT_DECAY_NORM", "WEIGHT_DECAY_BIAS"):
        if rng.random() < 0.5:
            cfg[key] = float(rng.choice([0.0, 10 ** rng.uniform(-5, -2)])) if rng.random() < 0.8 else None
    if rng.random() < 0.7:
        cfg["CLIP_GRADIENTS"] = dict(
            ENABLED=True,
            CLIP_TYPE=str(rng.choice(recipe.CLIP_TYPES)),
            CLIP_VALUE=float(rng.choice([0.05, 1.0, 5.0])),
            NORM_TYPE=float(rng.choice([1.0, 2.0, 3.0, np.inf])),
        )
    return cfg


def test_random_solvers(precision):
    check_random_solvers(precision, RANDOM_SOLVERS[precision], 20)


@pytest.mark.nightly
def test_random_solvers_nightly(precision):
    check_random_solvers(precision, NIGHTLY_SOLVERS, 1000)


def check_random_solvers(precision, count, seed):
    rng = np.random.default_rng(seed + (precision == "f32"))
    worst = 0.0
    for case in range(count):
        cfg = random_cfg(rng)
        if recipe.fails_in_detectron2(recipe.solver_of(cfg)):
            continue
        worst = max(worst, assert_trajectories_match(cfg, seed + case, precision))
    print(f"random solvers {precision}: worst {worst:.3g}")


def test_yaml_inheritance_and_dict_forms(tmp_path):
    """``_BASE_`` chains (two levels), string tuples decoded, the three forms of the entry, a YAML
    path given to ``purelr.build`` itself, and ``!!python/...`` tags outside SOLVER (detectron2's
    Base-RetinaNet.yaml) read without running them."""
    config = tmp_path / "retinanet.yaml"
    config.write_text(
        '_BASE_: "%s"\nMODEL:\n  ANCHOR_GENERATOR:\n    SIZES: !!python/object/apply:eval '
        '["[[x, x * 2**(1.0/3)] for x in [32, 64]]"]\nSOLVER:\n  BASE_LR: 0.01\n'
        % os.path.join(DATA, "configs/Base-RCNN-FPN.yaml")
    )
    assert recipe.solver_of(str(config))["BASE_LR"] == 0.01
    assert recipe.solver_of(str(config))["STEPS"] == (60000, 80000)
    assert purelr.build(str(config), tiny()[0], module_kinds=tiny()[1]) is not None
    path = os.path.join(DATA, "configs/Misc/scratch_mask_rcnn_R_50_FPN_9x_gn.yaml")
    solver = recipe.solver_of(path)
    assert (solver["BASE_LR"], solver["STEPS"], solver["MAX_ITER"], solver["IMS_PER_BATCH"]) == (
        0.08,
        (187500, 197500),
        202500,
        64,
    )
    assert recipe.solver_of({"SOLVER": {"BASE_LR": 0.08}})["BASE_LR"] == 0.08
    scaled = recipe.solver_of(
        dict(
            REFERENCE_WORLD_SIZE=16, IMS_PER_BATCH=32, BASE_LR=0.04, MAX_ITER=1000, STEPS=(600, 800), WARMUP_ITERS=100
        ),
        world_size=8,
    )
    assert (scaled["BASE_LR"], scaled["MAX_ITER"], scaled["STEPS"], scaled["WARMUP_ITERS"]) == (
        0.02,
        2000,
        (1200, 1600),
        200,
    )


@pytest.mark.parametrize(
    "cfg, message",
    [
        (dict(LR_SCHEDULER_NAME="WarmupPolyLR"), "LR_SCHEDULER_NAME must be one of"),
        (dict(OPTIMIZER="ADAM"), "unknown key 'OPTIMIZER'"),
        (dict(base_lr=0.1), "upper case, as in detectron2's CfgNode: 'base_lr' -> 'BASE_LR'"),
        (dict(BASE_LR=-1.0), "SOLVER.BASE_LR must be >= 0"),
        (dict(CLIP_GRADIENTS=dict(ENABLED=True, CLIP_TYPE="l2")), "CLIP_TYPE must be one of"),
        (dict(CLIP_GRADIENTS=dict(CLIP_NORM=1.0)), "unknown key 'CLIP_NORM'"),
        (dict(WARMUP_METHOD="cosine"), "WARMUP_METHOD must be one of"),
        (dict(LR_SCHEDULER_NAME="WarmupCosineLR", BASE_LR=0.1, BASE_LR_END=0.2), "BASE_LR_END must lie"),
        (dict(LR_SCHEDULER_NAME="WarmupStepWithFixedGammaLR", WARMUP_ITERS=40000), "detectron2 fails"),
        (dict(STEPS=(10, 5)), "STEPS must be increasing"),
    ],
)
def test_bad_solver(cfg, message):
    params = tiny()[0]
    with pytest.raises(ValueError, match=message):
        purelr.build(dict(detectron2=cfg), params)
