"""purelr.recipes.timm against timm 1.0.31's create_optimizer_v2 + create_scheduler_v2 on the ViT twin,
stepped as timm's train.py steps them (``step_update`` after each update, ``step`` after each
epoch), through ``purelr.build(dict(timm=...))``, train.py's defaults (its parser's) on both sides
for the arguments a case leaves out; x64 <= 1e-10 on the parameters."""

import copy
import sys
import types

import jax
import pytest

import purelr
from purelr.recipes.timm import SUPPORTED, optimizer_info
from tests.optim.torch_reference import torch_dtype
from tests.params import reference
from tests.params.test_timm import MANIPULATE, MATCHER
from tests.parity import OPTIMIZER_RTOL, relative_error, trajectory_floor
from tests.recipes import twins
from tests.recipes.test_timm_train import train_py_defaults

saved = sys.modules.get("timm.models")
sys.modules["timm.models"] = types.SimpleNamespace(group_parameters=MANIPULATE.group_parameters)
import timm.optim as timm_optim  # noqa: E402  (timm.models needs torchvision: stood in while importing)

if saved is None:
    del sys.modules["timm.models"]
import timm.scheduler as timm_scheduler  # noqa: E402

CASES = [
    dict(opt="sgd", lr=0.05, weight_decay=1e-3, sched="cosine", epochs=3, warmup_epochs=1, warmup_lr=1e-4),
    dict(
        opt="momentum",
        lr=0.05,
        momentum=0.8,
        weight_decay=1e-3,
        sched="step",
        epochs=3,
        decay_epochs=1,
        decay_rate=0.5,
        warmup_epochs=0,
    ),
    dict(
        opt="nesterov",
        lr=0.02,
        filter_bias_and_bn=False,
        weight_decay=1e-3,
        sched="cosine",
        epochs=3,
        warmup_epochs=0,
        sched_on_updates=True,
    ),
    dict(
        opt="adamw",
        lr=1e-2,
        weight_decay=0.05,
        opt_betas=(0.85, 0.99),
        layer_decay=0.6,
        group_matcher=MATCHER,
        sched="cosine",
        epochs=3,
        warmup_epochs=1,
        sched_on_updates=True,
    ),
    dict(opt="adam", lr=1e-2, weight_decay=1e-3, opt_eps=1e-6, sched="poly", epochs=3, warmup_epochs=1),
    dict(
        opt="nadam",
        lr=1e-2,
        weight_decay=1e-3,
        layer_decay=0.5,
        group_matcher=MATCHER,
        sched="cosine",
        epochs=3,
        warmup_epochs=0,
    ),
    dict(
        opt="radam", lr=1e-2, weight_decay=1e-3, sched="multistep", decay_milestones=[1, 2], epochs=3, warmup_epochs=0
    ),
    dict(opt="adamax", lr=1e-2, sched="cosine", epochs=3, warmup_epochs=1),
    dict(opt="adagrad", lr=1e-2, weight_decay=1e-3, sched="cosine", epochs=3, warmup_epochs=0),
    dict(opt="adadelta", lr=1.0, weight_decay=1e-3, sched="tanh", epochs=3, warmup_epochs=1),
    dict(
        opt="rmsprop", lr=1e-3, weight_decay=1e-4, opt_eps=1e-3, sched="step", epochs=3, decay_epochs=2, warmup_epochs=1
    ),
]
EPOCH_LEN = 3


def run_timm(args, steps, frozen=()):
    model = twins.torch_model("vit")
    model.group_matcher = lambda coarse=False: MATCHER
    model, flax_names, gradients = twins.prepare_model(model, "vit", steps, 0, frozen)
    # train.py's namespace: its defaults (read from its parser) for every argument not given
    namespace = types.SimpleNamespace(
        **{**train_py_defaults(), **{k: v for k, v in args.items() if k not in ("group_matcher", "filter_bias_and_bn")}}
    )
    optimizer_args = timm_optim.optimizer_kwargs(namespace)
    optimizer = timm_optim.create_optimizer_v2(
        model, filter_bias_and_bn=args.get("filter_bias_and_bn", True), **optimizer_args
    )
    scheduler, _ = timm_scheduler.create_scheduler_v2(
        optimizer, **timm_scheduler.scheduler_kwargs(namespace), updates_per_epoch=EPOCH_LEN
    )
    num_updates = 0
    for epoch in range(steps // EPOCH_LEN):
        for _ in range(EPOCH_LEN):
            optimizer.zero_grad()
            twins.loss(model, gradients, num_updates).backward()
            optimizer.step()
            num_updates += 1
            scheduler.step_update(num_updates=num_updates)
        scheduler.step(epoch + 1)
    return twins.result(model, flax_names)


@pytest.mark.parametrize("args", CASES, ids=[f"{c['opt']}-{c['sched']}" for c in CASES])
def test_build_matches_timm_factories(args):
    steps = 3 * EPOCH_LEN
    with torch_dtype(True):  # torch keeps NAdam's mu_product in the default dtype
        expected = run_timm(copy.deepcopy(args), steps)
    twins.warm("vit")
    with jax.enable_x64(True):
        actual = twins.run_purelr(dict(timm=args), "vit", steps, 0, epoch_len=EPOCH_LEN)
    for name, value in expected.items():
        error = relative_error(actual[name], value, floor=trajectory_floor())
        bound = OPTIMIZER_RTOL["x64"]
        assert error <= bound, (name, error)


def test_unsupported_names_raise_listing_the_supported():
    assert optimizer_info("Nesterov")[1] == SUPPORTED["sgd"]
    with pytest.raises(ValueError, match=r"opt='shampoo' is not supported.*'adadelta'"):
        optimizer_info("shampoo")
    with pytest.raises(ValueError, match=r"did you mean \['adamw'"):
        optimizer_info("adamww")
    with pytest.raises(ValueError, match=r"opt='lookahead_adamww' is not supported"):
        optimizer_info("lookahead_adamww")
    params = reference.flax_params("vit")
    with pytest.raises(ValueError, match="layer_decay needs layer_map"):
        purelr.recipes.timm.create_optimizer_v2(params, "adamw", lr=1e-3, layer_decay=0.7)
    with pytest.raises(ValueError, match=r"timm: unknown keys \['learning_rate'\]"):
        purelr.build(dict(timm=dict(opt="sgd", learning_rate=0.1)), params)
    with pytest.raises(ValueError, match="timm.sched = 'cosine' needs epoch_len"):
        purelr.build(dict(timm=dict(opt="sgd", lr=0.1)), params)
