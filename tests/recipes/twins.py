"""The torch twins of tests/paramwise trained side by side with ``purelr.build``.

Both sides start from the same float64 parameters (drawn in torch's layout, transposed to flax's:
conv ``OIHW -> HWIO``, linear ``(out, in) -> (in, out)``) and minimise the same loss at each
iteration ``k``: ``sum(G_k * p + c / 2 * p ** 2)`` over every parameter, each framework computing
its own gradient ``G_k + c * p``. MMCV 1.7.2 is driven as its EpochBasedRunner / IterBasedRunner
drive hooks (``before_run``, ``before_train_epoch``, ``before_train_iter``, then OptimizerHook's
``after_train_iter``: zero_grad, backward, clip, step); MMEngine as its train loops do
(``OptimWrapper.update_params`` then ``ParamSchedulerHook``: iteration-based schedulers after every
iteration, epoch-based ones after every epoch).
"""

import copy
import functools
import logging
import types
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch

import purelr
from purelr.params.module_kinds import dotted_names
from purelr.references.mmengine import scoped
from purelr.training.loss_scale import loss_scale
from tests.optim.torch_reference import torch_dtype
from tests.params import models, reference

CURVATURE = 0.1


def to_flax(array):
    array = np.asarray(array)
    if array.ndim == 4:
        return array.transpose(2, 3, 1, 0)
    return array.T if array.ndim == 2 else array


def torch_model(name):
    return copy.deepcopy(reference.MODELS[name][2]).double()


@functools.lru_cache(maxsize=None)
def problem(name, steps, seed):
    """``(torch names, flax names in torch order, initial torch-layout arrays, gradients per step)``."""
    model = reference.MODELS[name][2]
    rng = np.random.default_rng(seed)
    torch_names = [n for n, _ in model.named_parameters()]
    shapes = [tuple(p.shape) for _, p in model.named_parameters()]
    initial = [rng.normal(0, 0.5, shape) for shape in shapes]
    gradients = [rng.normal(0, 1.0, (steps,) + shape) for shape in shapes]
    return torch_names, [models.flax_name(model, n) for n in torch_names], initial, gradients


def warm(name):
    """Reads the flax twin's structure and module kinds (cached) outside ``jax_enable_x64``: flax
    initialises in float32."""
    reference.flax_params(name)
    reference.kinds(name)


def flax_tree(name, flax_names, arrays):
    template = reference.flax_params(name)
    by_name = dict(zip(flax_names, arrays))
    leaves = [jnp.asarray(to_flax(by_name[n]), jnp.float64) for n in dotted_names(template)]
    for leaf, expected in zip(leaves, jax.tree.leaves(template)):
        assert leaf.shape == expected.shape
    return jax.tree.unflatten(jax.tree.structure(template), leaves)


def run_purelr(cfg, name, steps, seed, *, epoch_len, frozen=()):
    """The flax parameters after ``steps`` iterations of ``purelr.build(cfg, ...)``, torch layout
    names -> arrays in flax layout."""
    _, flax_names, initial, gradients = problem(name, steps, seed)
    params = flax_tree(name, flax_names, initial)
    grads = [flax_tree(name, flax_names, [g[k] for g in gradients]) for k in range(steps)]
    frozen_selector = [p for p in frozen] or None
    tx = purelr.build(cfg, params, epoch_len=epoch_len, module_kinds=reference.kinds(name), frozen=frozen_selector)

    @jax.jit
    def step(params, state, g):  # the gradient of the loss times the scale (1 without loss scaling)
        scale = loss_scale(state)
        loss_grad = jax.tree.map(lambda gk, p: (gk + CURVATURE * p) * scale.astype(p.dtype), g, params)
        updates, state = tx.update(loss_grad, state, params)
        return optax.apply_updates(params, updates), state

    state = tx.init(params)
    for k in range(steps):
        params, state = step(params, state, grads[k])
    return dict(zip(dotted_names(params), (np.asarray(leaf) for leaf in jax.tree.leaves(params))))


def loss(model, gradients, k):
    return sum(
        (torch.from_numpy(g[k]) * p + CURVATURE / 2 * p * p).sum() for p, g in zip(model.parameters(), gradients)
    )


def _prepare(name, steps, seed, frozen):
    return prepare_model(torch_model(name), name, steps, seed, frozen)


def prepare_model(model, name, steps, seed, frozen=()):
    """``(model, flax names, gradients)``: ``model`` (a copy of the twin) set to the problem's start."""
    torch_names, flax_names, initial, gradients = problem(name, steps, seed)
    with torch.no_grad():
        for p, value in zip(model.parameters(), initial):
            p.copy_(torch.from_numpy(value))
    for n, p in model.named_parameters():
        p.requires_grad_(not any(n.startswith(f + ".") for f in frozen))
    return model, flax_names, gradients


def result(model, flax_names):
    return {n: to_flax(p.detach().numpy()) for n, p in zip(flax_names, model.parameters())}


def _torch_float64(run):
    """``run`` under torch's float64 default dtype: torch keeps scalar optimizer state (NAdam's
    ``mu_product``, ``step``) in the default dtype, which float32 would round to 1e-8."""

    @functools.wraps(run)
    def wrapped(*args, **kwargs):
        with torch_dtype(True):
            return run(*args, **kwargs)

    return wrapped


@_torch_float64
def run_mmcv(cfg, name, steps, seed, *, epoch_len, frozen=()):
    """MMCV 1.7.2: DefaultOptimizerConstructor, LrUpdaterHook, MomentumUpdaterHook and OptimizerHook /
    GradientCumulativeOptimizerHook on the torch twin, driven as MMCV's runners drive them."""
    from mmcv.runner import DefaultOptimizerConstructor
    from mmcv.runner.hooks import HOOKS
    from mmcv.utils import build_from_cfg

    model, flax_names, gradients = _prepare(name, steps, seed, frozen)
    optimizer_cfg = dict(cfg["optimizer"])
    paramwise_cfg = optimizer_cfg.pop("paramwise_cfg", None)
    with reference.dcn_ops():
        optimizer = DefaultOptimizerConstructor(optimizer_cfg, paramwise_cfg)(model)
    hooks = []
    for key, kind in (("lr_config", "LrUpdaterHook"), ("momentum_config", "MomentumUpdaterHook")):
        if cfg.get(key) is not None:  # BaseRunner.register_lr_hook / register_momentum_hook
            hook_cfg = dict(cfg[key])
            policy = hook_cfg.pop("policy")
            hook_cfg["type"] = (policy.title() if policy == policy.lower() else policy) + kind
            hooks.append(build_from_cfg(hook_cfg, HOOKS))
    hook_cfg = dict(cfg.get("optimizer_config") or {})
    hook_cfg.setdefault("type", "OptimizerHook")
    hooks.append(build_from_cfg(hook_cfg, HOOKS))
    runner_cfg = cfg["runner"]
    iter_based = runner_cfg["type"] == "IterBasedRunner"
    max_iters = runner_cfg["max_iters"] if iter_based else runner_cfg["max_epochs"] * epoch_len
    assert max_iters == steps
    runner = types.SimpleNamespace(
        model=model,
        optimizer=optimizer,
        data_loader=range(epoch_len),
        epoch=0,
        iter=0,
        inner_iter=0,
        max_epochs=None if iter_based else runner_cfg["max_epochs"],
        max_iters=max_iters,
        _max_iters=max_iters,
        logger=logging.getLogger("mmcv-twin"),
        log_buffer=types.SimpleNamespace(update=lambda *a: None),
        meta={},
    )
    for hook in hooks:
        hook.before_run(runner)
    for k in range(steps):
        if iter_based:
            runner.epoch = max(k - 1, 0) // epoch_len  # IterLoader's epoch lags by one fetch
            runner.inner_iter = k
        else:
            runner.epoch, runner.inner_iter = divmod(k, epoch_len)
            if runner.inner_iter == 0:
                for hook in hooks:
                    hook.before_train_epoch(runner)
        for hook in hooks:
            hook.before_train_iter(runner)
        runner.outputs = dict(loss=loss(model, gradients, k), num_samples=1)
        for hook in hooks:
            hook.after_train_iter(runner)
        runner.iter += 1
    return result(model, flax_names)


@_torch_float64
def run_mmengine(cfg, name, steps, seed, *, epoch_len, frozen=()):
    """MMEngine: DefaultOptimWrapperConstructor -> OptimWrapper (clip_grad, accumulative_counts),
    param schedulers built as the Runner builds them, stepped as ParamSchedulerHook steps them."""
    import mmengine.optim.scheduler  # noqa: F401  (registers the schedulers)
    from mmengine.logging import MMLogger
    from mmengine.optim import DefaultOptimWrapperConstructor
    from mmengine.registry import PARAM_SCHEDULERS

    MMLogger.get_current_instance().setLevel("ERROR")
    model, flax_names, gradients = _prepare(name, steps, seed, frozen)
    wrapper_cfg = dict(cfg["optim_wrapper"])
    wrapper_cfg["optimizer"] = dict(
        wrapper_cfg["optimizer"], type=scoped(wrapper_cfg["optimizer"]["type"], "optimizers")
    )
    paramwise_cfg = wrapper_cfg.pop("paramwise_cfg", None)
    with reference.dcn_ops(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wrapper = DefaultOptimWrapperConstructor(wrapper_cfg, paramwise_cfg)(model)
        train_cfg = cfg["train_cfg"]
        epoch_loop = train_cfg["type"] == "EpochBasedTrainLoop"
        max_iters = train_cfg["max_epochs"] * epoch_len if epoch_loop else train_cfg["max_iters"]
        assert max_iters == steps
        wrapper.initialize_count_status(model, 0, max_iters)
        schedulers = []
        for scheduler_cfg in cfg.get("param_scheduler", []):
            scheduler_cfg = copy.deepcopy(scheduler_cfg)
            scheduler_cfg["type"] = scoped(scheduler_cfg["type"])
            by_epoch = scheduler_cfg.get("by_epoch", True)
            if epoch_loop:  # Runner._build_param_scheduler's default end
                scheduler_cfg.setdefault("end", train_cfg["max_epochs"] if by_epoch else max_iters)
            else:
                scheduler_cfg.setdefault("end", 1 if by_epoch else max_iters)
            schedulers.append(
                PARAM_SCHEDULERS.build(scheduler_cfg, default_args=dict(optimizer=wrapper, epoch_length=epoch_len))
            )
        for k in range(steps):
            wrapper.update_params(loss(model, gradients, k))
            for scheduler in schedulers:
                if not scheduler.by_epoch:
                    scheduler.step()
            if epoch_loop and (k + 1) % epoch_len == 0:
                for scheduler in schedulers:
                    if scheduler.by_epoch:
                        scheduler.step()
    return result(model, flax_names)
