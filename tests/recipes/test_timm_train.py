"""timm's train.py as ``purelr.build(dict(timm=ARGS))`` builds it, against train.py's own code.

``tests/data/timm_train_py-1.0.29.dev0-aa4b5850.py.txt`` holds train.py's statements that matter
here, verbatim (its header names the commit: timm 1.0.31's wheel and sdist ship no train.py): the
argument parsers, the lr scaling from ``lr_base`` and ``train_one_epoch``. They are run as they
are (``exec`` of the parsed file) with timm 1.0.31's library: ``create_optimizer_v2`` +
``optimizer_kwargs``, ``create_scheduler_v2`` + ``scheduler_kwargs``, ``TrainingTask`` (its
``setup_ema`` / ``update_ema`` with ``ModelEmaV3``, ``get_clip_parameters``) and
``dispatch_clip_grad`` (``adaptive_clip_grad``), on the torch twins of ``tests/recipes/twins.py``
(loss ``sum(G_k * p + c / 2 * p ** 2)`` for batch ``k``). ``run_train_py`` is the side-by-side
runner of ``test_timm_recipes.py``: it builds whatever ``create_optimizer_v2`` builds, so recipes
with optimizers twinned later need no change here.
"""

import argparse
import ast
import importlib.util
import logging
import os
import sys
import time
import types
from collections import OrderedDict
from contextlib import suppress

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import purelr
from purelr.optim.adaptive_clip import adaptive_clip_grad
from purelr.params.groups import hyperparams_in_force
from purelr.params.module_kinds import dotted_names
from purelr.recipes import timm as timm_recipe
from tests.bad_inputs import assert_rejects
from tests.params import reference
from tests.params.test_timm import MANIPULATE, _stubs
from tests.parity import OPTIMIZER_RTOL, relative_error, trajectory_floor
from tests.recipes import twins

EXCERPT = os.path.join(os.path.dirname(__file__), "..", "data", "timm_train_py-1.0.29.dev0-aa4b5850.py.txt")
TIMM_ROOT = list(sys.modules["timm"].__path__)[0]  # the stub timm package of tests/conftest.py


def _load(name, relative):
    spec = importlib.util.spec_from_file_location(name, os.path.join(TIMM_ROOT, relative))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _timm_parts():
    """timm 1.0.31's files that train.py's loop calls, loaded on their own: ``timm.utils`` and
    ``timm.task`` import torchvision (no CPU build here) through ``timm.utils.model``, which the
    base ``TrainingTask`` needs only for checkpoints (stood in)."""
    utils = types.ModuleType("timm.utils")
    utils.__path__ = [os.path.join(TIMM_ROOT, "utils")]
    with _stubs(**{"timm.utils": utils}):
        agc = _load("timm.utils.agc", "utils/agc.py")
        clip_grad = _load("timm.utils.clip_grad", "utils/clip_grad.py")
        model_ema = _load("timm.utils.model_ema", "utils/model_ema.py")
        metrics = _load("timm.utils.metrics", "utils/metrics.py")
        misc = _load("timm.utils.misc", "utils/misc.py")
        model = types.SimpleNamespace(get_state_dict=None, unwrap_model=lambda module: module)
        with _stubs(**{"timm.utils.model": model}):
            task = _load("_timm_task", "task/task.py")
    with _stubs(**{"timm.models": types.SimpleNamespace(group_parameters=MANIPULATE.group_parameters)}):
        import timm.optim as optim
    import timm.scheduler as scheduler

    utils = types.SimpleNamespace(
        ParseKwargs=misc.ParseKwargs,
        AverageMeter=metrics.AverageMeter,
        dispatch_clip_grad=clip_grad.dispatch_clip_grad,
        is_primary=lambda args: False,
        reduce_tensor=None,
    )
    return types.SimpleNamespace(agc=agc, model_ema=model_ema, task=task, optim=optim, scheduler=scheduler, utils=utils)


TIMM = _timm_parts()


def _train_py():
    """The excerpt's three parts, compiled: the parsers, the lr scaling, ``train_one_epoch``."""
    with open(EXCERPT) as f:
        tree = ast.parse(f.read())
    cut = next(i for i, node in enumerate(tree.body) if "batch_size_reference" in ast.unparse(node))
    parsers = compile(ast.Module(tree.body[:cut], []), "train.py", "exec")
    scaling = compile(ast.Module(tree.body[cut : cut + 2], []), "train.py", "exec")
    names = dict(
        argparse=argparse,
        utils=TIMM.utils,
        torch=torch,
        time=time,
        os=os,
        suppress=suppress,
        OrderedDict=OrderedDict,
        _logger=logging.getLogger("train"),
        torchvision=None,
    )
    exec(parsers, names)
    exec(compile(ast.Module(tree.body[cut + 2 :], []), "train.py", "exec"), names)
    return names, scaling


TRAIN_PY, LR_SCALING = _train_py()


def train_py_defaults() -> dict:
    """train.py's namespace with no argument given: every argument's default."""
    return vars(TRAIN_PY["parser"].parse_args([]))


def train_py_namespace(args: dict, world_size: int) -> argparse.Namespace:
    """What train.py's ``main`` holds in ``args`` before the optimizer is made from ``args`` (a
    recipe's train.py arguments, as ``--config`` sets them): the lr scaled from ``lr_base``."""
    purelr_keys = {*timm_recipe.MODEL_KEYS, *timm_recipe.LIBRARY_DEFAULTS}
    namespace = argparse.Namespace(**{**train_py_defaults(), **{k: v for k, v in args.items() if k not in purelr_keys}})
    namespace.prefetcher = not namespace.no_prefetcher
    namespace.grad_accum_steps = max(1, namespace.grad_accum_steps)
    namespace.distributed, namespace.world_size, namespace.rank = False, world_size, 0
    exec(LR_SCALING, dict(TRAIN_PY, args=namespace))
    return namespace


class Task(TIMM.task.TrainingTask):
    """A ``TrainingTask`` whose loss at batch ``k`` (the input holds ``k``) is the twins' loss."""

    def __init__(self, model, gradients):
        super().__init__(verbose=False)
        self.trainable_module = model
        self.gradients = gradients

    def forward(self, input, target):
        return {"loss": twins.loss(self.trainable_module, self.gradients, int(input[0]))}


def run_train_py(args: dict, model_name: str, *, epoch_len: int, epochs: int, world_size: int = 1, seed: int = 0):
    """train.py's run of ``epochs`` epochs of ``epoch_len`` batches: ``(params, EMA params or None,
    lrs)``, params as ``{flax name: array in flax layout}`` and ``lrs`` one sorted array of the
    groups' distinct lrs per optimizer update."""
    args = dict(args)
    namespace = train_py_namespace(args, world_size)
    model = twins.torch_model(model_name)
    if args.get("group_matcher") is not None:
        model.group_matcher = lambda coarse=False: args["group_matcher"]
    if args.get("no_weight_decay_list"):
        model.no_weight_decay = lambda: set(args["no_weight_decay_list"])
    model, flax_names, gradients = twins.prepare_model(model, model_name, epochs * epoch_len, seed)
    task = Task(model, gradients)
    optimizer = TIMM.optim.create_optimizer_v2(
        model,
        **TIMM.optim.optimizer_kwargs(cfg=namespace),
        **namespace.opt_kwargs,
        filter_bias_and_bn=args.get("filter_bias_and_bn", True),
    )
    if namespace.model_ema:
        task.setup_ema(
            decay=namespace.model_ema_decay,
            use_warmup=namespace.model_ema_warmup,
            device="cpu" if namespace.model_ema_force_cpu else None,
        )
    updates_per_epoch = (epoch_len + namespace.grad_accum_steps - 1) // namespace.grad_accum_steps
    scheduler, _ = TIMM.scheduler.create_scheduler_v2(
        optimizer,
        **TIMM.scheduler.scheduler_kwargs(namespace, decreasing_metric=None),
        updates_per_epoch=updates_per_epoch,
    )
    lrs = []
    step = optimizer.step

    def recording_step(*a, **k):
        lrs.append(np.unique([group["lr"] for group in optimizer.param_groups if group["params"]]))
        return step(*a, **k)

    optimizer.step = recording_step
    start_epoch = namespace.start_epoch or 0  # main(): the schedule moved on, a fresh optimizer
    if scheduler is not None and start_epoch > 0:
        if namespace.sched_on_updates:
            scheduler.step_update(start_epoch * updates_per_epoch)
        else:
            scheduler.step(start_epoch)
    for epoch in range(start_epoch, start_epoch + epochs):
        first = (epoch - start_epoch) * epoch_len
        loader = [(torch.full((1,), first + b), torch.zeros(1)) for b in range(epoch_len)]
        TRAIN_PY["train_one_epoch"](
            epoch, model, loader, optimizer, namespace, task=task, device=torch.device("cpu"), lr_scheduler=scheduler
        )
        if scheduler is not None:
            scheduler.step(epoch + 1, metric=None)
    ema = task.get_trainable_module(ema=True)
    return (twins.result(model, flax_names), None if ema is None else twins.result(ema.module, flax_names), lrs)


def run_purelr(
    args: dict, model_name: str, *, epoch_len: int, epochs: int, world_size: int = 1, seed: int = 0, head=None
):
    """``purelr.build(dict(timm=args), ...)`` over the same batches, jitted: the same triple."""
    _, flax_names, initial, gradients = twins.problem(model_name, epochs * epoch_len, seed)
    twins.warm(model_name)
    with jax.enable_x64(True):
        params = twins.flax_tree(model_name, flax_names, initial)
        tx = purelr.build(dict(timm=args), params, epoch_len=epoch_len, world_size=world_size, head=head)
        accumulation = timm_recipe.train_args(args)["grad_accum_steps"]

        @jax.jit
        def step(params, state, batch):
            grads = jax.tree.map(lambda g, p: g + twins.CURVATURE * p, batch, params)
            updates, state = tx.update(grads, state, params)
            return optax.apply_updates(params, updates), state

        state, lrs = tx.init(params), []
        for k in range(epochs * epoch_len):
            params, state = step(params, state, twins.flax_tree(model_name, flax_names, [g[k] for g in gradients]))
            b = k % epoch_len
            if (b + 1) % accumulation == 0 or b == epoch_len - 1:
                lrs.append(np.unique([float(h["lr"]) for h in hyperparams_in_force(state).values()]))
        ema = timm_recipe.ema_params(state) if timm_recipe.train_args(args)["model_ema"] else None
        as_dict = lambda tree: dict(zip(dotted_names(tree), (np.asarray(leaf) for leaf in jax.tree.leaves(tree))))
        return as_dict(params), None if ema is None else as_dict(ema), lrs


def vit_params():
    """The ViT twin's params (float32, all ones), for tests that need a tree but no trajectory."""
    return jax.tree.map(jnp.ones_like, reference.flax_params("vit"))


def assert_same_run(expected, actual, rtol=OPTIMIZER_RTOL["x64"]):
    """Params and EMA params to ``rtol`` (relative to each leaf's scale, at least 1), and at every
    update the same distinct group lrs to ``rtol``; returns the worst error."""
    (params, ema, lrs), (params_ours, ema_ours, lrs_ours) = expected, actual
    assert (ema is None) == (ema_ours is None)
    worst = 0.0
    for name, value in {**params, **{f"ema:{n}": v for n, v in (ema or {}).items()}}.items():
        ours = (ema_ours if name.startswith("ema:") else params_ours)[name.removeprefix("ema:")]
        error = relative_error(ours, value, floor=trajectory_floor())
        assert error <= rtol, (name, error)
        worst = max(worst, error)
    assert len(lrs) == len(lrs_ours), (len(lrs), len(lrs_ours))
    for update, (lr, ours) in enumerate(zip(lrs, lrs_ours)):
        assert lr.shape == ours.shape, (update, lr, ours)
        error = relative_error(ours, lr)
        assert error <= rtol, (update, lr, ours)
        worst = max(worst, error)
    return worst


def test_defaults_are_train_py_defaults():
    """Every default purelr applies is train.py's (the excerpt's parser, run), and every train.py
    argument is either read (``DEFAULTS``) or ignored (``IGNORED``)."""
    defaults = train_py_defaults()
    for key, value in timm_recipe.DEFAULTS.items():
        assert key in defaults, key
        assert type(value) is type(defaults[key]) and value == defaults[key], (key, value, defaults[key])
    assert set(timm_recipe.DEFAULTS) | timm_recipe.IGNORED == set(defaults)
    assert not set(timm_recipe.DEFAULTS) & timm_recipe.IGNORED
    assert not (set(timm_recipe.LIBRARY_DEFAULTS) | set(timm_recipe.MODEL_KEYS)) & set(defaults)
    # The keys train.py lacks are read by timm 1.0.31's helpers with getattr: those defaults.
    bare = types.SimpleNamespace(**{k: v for k, v in defaults.items()})
    assert TIMM.optim.optimizer_kwargs(bare) == timm_recipe.optimizer_kwargs({**defaults, "opt_kwargs": {}})
    assert TIMM.scheduler.scheduler_kwargs(bare) | {"plateau_mode": None} == timm_recipe.scheduler_kwargs(defaults) | {
        "plateau_mode": None
    }


def test_wrong_defaults_of_purelr_0_1_are_fixed():
    args = timm_recipe.train_args({})
    assert (
        args["weight_decay"],
        args["epochs"],
        args["lr_cycle_decay"],
        args["decay_epochs"],
        args["decay_milestones"],
    ) == (2e-5, 300, 0.5, 90, [90, 180, 270])


def test_a_whole_args_namespace_reads_and_ignored_keys_lists_the_rest(tmp_path):
    """A whole train.py namespace (every argument, as train.py's args.yaml holds it) builds; the
    keys that are not the optimizer's, the schedule's, clipping's, accumulation's or EMA's are
    listed by ``ignored_keys``; the YAML file itself is read too."""
    import yaml

    namespace = {**train_py_defaults(), "lr": 0.1, "drop_path": 0.1, "aa": "rand-m9-mstd0.5"}
    assert timm_recipe.ignored_keys(namespace) == sorted(timm_recipe.IGNORED)
    assert "drop_path" in timm_recipe.ignored_keys(dict(drop_path=0.1))
    assert "lr" not in timm_recipe.ignored_keys(namespace)
    path = tmp_path / "args.yaml"
    path.write_text(yaml.safe_dump(namespace))
    params = vit_params()
    for args in (namespace, str(path)):
        tx = purelr.build(dict(timm=args), params, epoch_len=3)
        tx.update(params, tx.init(params), params)
    assert timm_recipe.ignored_keys(str(path)) == sorted(timm_recipe.IGNORED)


@pytest.mark.parametrize("opt", ["sgd", "adamw", "lamb", "nadam", "lookahead_adam", "rmsproptf", "adafactor"])
@pytest.mark.parametrize("scale", ["", "sqrt", "linear"])
def test_lr_from_lr_base_as_train_py(opt, scale):
    """train.py's own scaling code (the excerpt's ``if not args.lr`` block) against ``scaled_lr``,
    for each default scale rule (``ada``/``lamb`` names: sqrt) and the explicit ones."""
    rng = np.random.default_rng(len(opt) * 7 + len(scale))
    args = dict(
        opt=opt,
        lr_base_scale=scale,
        lr_base=float(rng.uniform(1e-4, 1)),
        lr_base_size=int(rng.integers(64, 1024)),
        batch_size=int(rng.integers(1, 512)),
        grad_accum_steps=int(rng.integers(1, 5)),
    )
    world_size = int(rng.integers(1, 64))
    expected = train_py_namespace(args, world_size).lr
    assert relative_error(timm_recipe.scaled_lr(args, world_size), expected) <= 1e-15
    assert timm_recipe.scaled_lr({**args, "lr": 0.3}, None) == 0.3


AGC_SHAPES = {"conv": (6, 3, 3, 3), "dw": (4, 1, 3, 3), "fc": (5, 7), "bias": (5,), "scalar": (), "embed": (9, 4)}


@pytest.mark.parametrize("seed", range(4))
def test_adaptive_clip_matches_timm(seed):
    """``adaptive_clip_grad`` on flax layouts (a conv kernel ``(kh, kw, in, out)`` and a Dense
    kernel ``(in, out)`` normed per output channel, an ``nn.Embed`` table per row as in torch) and
    in torch's layout, jitted, against timm's ``adaptive_clip_grad`` on the torch tensors; the
    gradients are drawn so that some units clip and some do not (x64: 1e-12)."""
    rng = np.random.default_rng(seed)
    factor, eps = float(rng.choice([0.01, 0.1, 1.0])), float(rng.choice([1e-3, 0.5]))
    norm_type = float(rng.choice([2.0, 1.0, 3.0]))
    torch_params = {k: torch.tensor(rng.normal(0, 1, s)) for k, s in AGC_SHAPES.items()}
    torch_grads = {
        k: torch.tensor(rng.normal(0, 1, s) * rng.choice([1e-3, 1e-2, 1.0], s)) for k, s in AGC_SHAPES.items()
    }
    leaves = {k: torch.nn.Parameter(p.clone()) for k, p in torch_params.items()}
    for k, p in leaves.items():
        p.grad = torch_grads[k].clone()
    TIMM.agc.adaptive_clip_grad(list(leaves.values()), factor, eps=eps, norm_type=norm_type)

    def flax(tree):
        layout = {k: twins.to_flax(v.numpy()) for k, v in tree.items()}
        return {
            "conv": {"kernel": layout["conv"]},
            "dw": {"kernel": layout["dw"]},
            "fc": {"kernel": layout["fc"]},
            "bias": layout["bias"],
            "scalar": layout["scalar"],
            "embed": {"embedding": tree["embed"].numpy()},
        }

    with jax.enable_x64(True):
        for layout, make in (("flax", flax), ("torch", lambda tree: {k: v.numpy() for k, v in tree.items()})):
            tx = adaptive_clip_grad(factor, eps, norm_type, layout=layout)
            params, grads = make(torch_params), make(torch_grads)
            clipped, _ = jax.jit(tx.update)(grads, tx.init(params), params)
            expected = make({k: p.grad for k, p in leaves.items()})
            for got, want in zip(jax.tree.leaves(clipped), jax.tree.leaves(expected)):
                assert relative_error(got, want) <= 1e-12
    changed = [not torch.equal(leaves[k].grad, torch_grads[k]) for k in AGC_SHAPES]
    assert any(changed)


def test_agc_leaves_the_head_out_and_needs_it():
    """train.py clips all parameters but the model's last two (``[:-2]``, the classifier) in agc
    mode: ``head`` names them; without it the build refuses."""
    params = vit_params()
    args = dict(lr=0.1, clip_grad=1e-4, clip_mode="agc", sched="none")
    assert_rejects(lambda: purelr.build(dict(timm=args), params, epoch_len=3), ValueError, "clip_mode='agc'", "head=")
    with jax.enable_x64(True):
        tx = purelr.build(
            dict(timm={**args, "opt": "momentum", "momentum": 0.0, "weight_decay": 0.0}),
            params,
            epoch_len=3,
            head="head",
        )
        grads = jax.tree.map(jnp.ones_like, params)
        updates, _ = tx.update(grads, tx.init(params), params)
    assert np.allclose(updates["head"]["kernel"], -0.1)
    assert not np.allclose(updates["blocks"]["0"]["mlp"]["fc1"]["kernel"], -0.1)


# Each case: a clipping / accumulation / EMA rule of train.py on its own, the ResNet twin (conv
# kernels, BatchNorm, depth-wise convs) or the ViT twin, epoch lengths that leave a remainder.
NIGHTLY = pytest.mark.nightly  # rules that the recipes of test_timm_recipes.py also run
CASES = [
    pytest.param(
        "norm-clip",
        "resnet",
        dict(opt="momentum", lr=0.05, clip_grad=0.5, sched="cosine", epochs=3, warmup_epochs=1),
        5,
        marks=NIGHTLY,
    ),
    (
        "value-clip",
        "vit",
        dict(
            opt="adamw",
            lr=1e-2,
            weight_decay=0.05,
            clip_grad=0.05,
            clip_mode="value",
            sched="step",
            decay_epochs=1,
            epochs=3,
            warmup_epochs=0,
        ),
        4,
    ),
    pytest.param(
        "agc",
        "resnet",
        dict(opt="sgd", lr=0.1, clip_grad=0.01, clip_mode="agc", epochs=3, warmup_epochs=1),
        5,
        marks=NIGHTLY,
    ),
    (
        "accumulate-3-of-7",
        "vit",
        dict(opt="adamw", lr=1e-2, grad_accum_steps=3, epochs=3, warmup_epochs=1, sched_on_updates=True, clip_grad=1.0),
        7,
    ),
    pytest.param(
        "accumulate-2-of-6",
        "resnet",
        dict(opt="nesterov", lr=0.05, grad_accum_steps=2, epochs=3, warmup_epochs=1),
        6,
        marks=NIGHTLY,
    ),
    pytest.param(
        "ema",
        "vit",
        dict(opt="adam", lr=1e-2, model_ema=True, model_ema_decay=0.9, epochs=3, warmup_epochs=0),
        4,
        marks=NIGHTLY,
    ),
    (
        "ema-warmup-accumulate",
        "resnet",
        dict(
            opt="momentum",
            lr=0.05,
            model_ema=True,
            model_ema_warmup=True,
            grad_accum_steps=4,
            epochs=3,
            warmup_epochs=1,
            model_ema_force_cpu=True,
        ),
        5,
    ),
    (
        "start-epoch",
        "vit",
        dict(
            opt="adamw",
            lr=1e-2,
            start_epoch=2,
            epochs=6,
            warmup_epochs=3,
            model_ema=True,
            model_ema_warmup=True,
            grad_accum_steps=2,
        ),
        5,
    ),
    (
        "no-opt-scale-clip",
        "vit",
        dict(
            opt="adamw",
            lr=1e-2,
            layer_decay=0.5,
            layer_decay_no_opt_scale=0.3,
            clip_grad=0.05,
            epochs=3,
            warmup_epochs=1,
            group_matcher=dict(stem=r"^cls_token|^pos_embed|^embed", blocks=[(r"^blocks\.(\d+)", None)]),
        ),
        4,
    ),
    (
        "lr-base-sqrt",
        "vit",
        dict(
            opt="adamw",
            lr_base=1e-3,
            lr_base_size=512,
            batch_size=64,
            epochs=3,
            warmup_epochs=1,
            grad_accum_steps=2,
            layer_decay=0.7,
            group_matcher=dict(
                stem=r"^cls_token|^pos_embed|^embed", blocks=[(r"^blocks\.(\d+)", None), (r"^norm", (99999,))]
            ),
        ),
        5,
    ),
]
HEADS = {"resnet": "fc", "vit": "head"}


@pytest.mark.parametrize(
    "name, model, args, epoch_len", CASES, ids=[(case.values if hasattr(case, "values") else case)[0] for case in CASES]
)
def test_train_rules_match_train_py(name, model, args, epoch_len):
    """Three epochs through train.py's ``train_one_epoch`` against ``purelr.build``: params, EMA
    params and every update's lrs, x64 <= 1e-10."""
    expected = run_train_py(args, model, epoch_len=epoch_len, epochs=3, world_size=4)
    actual = run_purelr(args, model, epoch_len=epoch_len, epochs=3, world_size=4, head=HEADS[model])
    assert_same_run(expected, actual)


def test_a_broken_rule_is_caught():
    """The comparison can fail: train.py with grad_accum_steps=3 against purelr's run without it."""
    args = dict(opt="adamw", lr=1e-2, grad_accum_steps=3, epochs=3, warmup_epochs=1)
    expected = run_train_py(args, "vit", epoch_len=7, epochs=3)
    actual = run_purelr({**args, "grad_accum_steps": 1}, "vit", epoch_len=7, epochs=3)
    with pytest.raises(AssertionError):
        assert_same_run(expected, actual)


BAD = [
    (dict(clip_grad=1.0, clip_mode="global"), ("timm.clip_mode", "'global'")),
    (dict(lr=None, lr_base_scale="log"), ("timm.lr_base_scale", "'log'")),
    (dict(grad_accum_steps=0), ("timm.grad_accum_steps", "0")),
    (dict(grad_accum_steps=-2), ("timm.grad_accum_steps", "-2")),
    (dict(opt="lambb"), ("opt='lambb'", "closest first")),
    (dict(model_ema=True, model_ema_decay=1.0), ("timm.model_ema_decay", "1.0")),
    (dict(model_ema=True, model_ema_decay=0), ("timm.model_ema_decay", "0")),
    (dict(learning_rate=0.1), ("unknown keys ['learning_rate']", "did you mean")),
    (dict(lr=None), ("world_size", "lr_base")),
    (dict(opt_kwargs=dict(momentum=0.5)), ("timm.opt_kwargs['momentum']", "0.5")),
]


@pytest.mark.parametrize("args, needles", BAD, ids=[case[1][0] for case in BAD])
def test_bad_input_is_refused_naming_it(args, needles):
    params = vit_params()
    args = {"lr": 0.1, **args}
    assert_rejects(lambda: purelr.build(dict(timm=args), params, epoch_len=3), ValueError, *needles)


def test_accumulate_repeat_needs_an_epoch():
    from purelr.training.accumulate import accumulate

    assert_rejects(lambda: accumulate(optax.sgd(0.1), 2, repeat=True), ValueError, "repeat=True", "total")


def test_unknown_optimizer_lists_supported_closest_first():
    with pytest.raises(ValueError) as raised:
        timm_recipe.optimizer_info("adamx")
    listed = str(raised.value).split("closest first: ")[1]
    assert listed.index("'adamax'") < listed.index("'sgd'")


def _vision_transformer_source():
    with open(os.path.join(TIMM_ROOT, "models", "vision_transformer.py")) as f:
        return ast.parse(f.read())


def test_vit_layers_are_timms():
    """``model_layers``' matcher is ``VisionTransformer.group_matcher`` of timm 1.0.31's source and
    each depth of ``VIT_DEPTHS`` is the ``depth`` its model function builds (read with ast: timm's
    models import torchvision)."""
    tree = _vision_transformer_source()
    vit = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "VisionTransformer")
    matcher = next(node for node in vit.body if isinstance(node, ast.FunctionDef) and node.name == "group_matcher")
    returned = next(node.value for node in ast.walk(matcher) if isinstance(node, ast.Return))
    ours = timm_recipe.VIT_GROUP_MATCHER
    assert {k.arg: ast.literal_eval(k.value) for k in returned.keywords} == {
        k: [tuple(entry) for entry in v] if isinstance(v, list) else v for k, v in ours.items()
    }
    functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    for name, depth in timm_recipe.VIT_DEPTHS.items():
        model_args = next(
            node.value
            for node in ast.walk(functions[name])
            if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "model_args"
        )
        assert {k.arg: ast.literal_eval(k.value) for k in model_args.keywords}["depth"] == depth, name


def test_plot_draws_each_layer_of_a_known_timm_model():
    """``purelr plot`` on a timm config naming a ViT: one lr curve per layer-decay group (stem,
    each block, head), each the schedule times ``layer_decay ** (layers - 1 - i)``; another model
    with ``layer_decay`` and no ``--model`` says which option to give."""
    from purelr.cli.curves import config_curves

    args = dict(model="vit_large_patch16_224.augreg_in21k", lr=1e-3, layer_decay=0.75, epochs=3, warmup_epochs=1)
    curves = config_curves(dict(timm=args), epoch_len=4)
    assert len(curves.values) == 24 + 2
    top = curves.values[("layer_25_decay", "lr")]
    for i in range(26):
        np.testing.assert_allclose(curves.values[(f"layer_{i}_decay", "lr")], top * 0.75 ** (25 - i), rtol=1e-6)
    assert_rejects(
        lambda: config_curves(dict(timm={**args, "model": "resnet50"}), epoch_len=4),
        ValueError,
        "timm.model='resnet50'",
        "--model",
    )
