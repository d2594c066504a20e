"""Parity of `purelr.schedules.mmengine.param_scheduler` with MMEngine 0.10.7's real schedulers.

The reference builds the scheduler list the way ``Runner.build_param_scheduler`` does (default
``end`` from the train loop, ``PARAM_SCHEDULERS.build`` with ``epoch_length``, which routes
``convert_to_iter_based`` to ``build_iter_from_epoch``) on a torch SGD/Adam optimizer, and steps it
the way ``ParamSchedulerHook`` does under ``EpochBasedTrainLoop`` / ``IterBasedTrainLoop``,
recording the value the optimizer holds during each iteration.
"""

import copy
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import mmengine.optim.scheduler  # noqa: F401  (registers the schedulers)
from mmengine.registry import PARAM_SCHEDULERS

from purelr.schedules import mmengine as pm
from tests.parity import assert_schedule_matches

FAMILIES = ["Constant", "CosineAnnealing", "Exponential", "Linear", "MultiStep", "Step", "Poly", "CosineRestart", "OneCycle"]


def reference(cfgs, base, *, epoch_len, iters, max_epochs=None, max_iters=None, momentum=False, adam=False):
    """MMEngine's value during iterations ``0..iters-1``."""
    weight = torch.nn.Parameter(torch.zeros(1))
    if adam:
        optimizer = torch.optim.Adam([weight], lr=0.1, betas=(base, 0.999))
    else:
        optimizer = torch.optim.SGD([weight], lr=0.1 if momentum else base, momentum=base if momentum else 0.9)
    loop = "epoch" if max_epochs is not None else "iter" if max_iters is not None else None
    schedulers = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for cfg in cfgs:
            cfg = copy.deepcopy(cfg)
            if loop:
                by_epoch = cfg.get("by_epoch", True)
                cfg.setdefault("end", (max_epochs if by_epoch else max_epochs * epoch_len) if loop == "epoch" else (1 if by_epoch else max_iters))
            schedulers.append(PARAM_SCHEDULERS.build(cfg, default_args=dict(optimizer=optimizer, epoch_length=epoch_len)))
        group = optimizer.param_groups[0]
        values = []
        for k in range(iters):
            values.append(group["betas"][0] if adam else group["momentum" if momentum else "lr"])
            for s in schedulers:
                if not s.by_epoch:
                    s.step()
            if loop != "iter" and (k + 1) % epoch_len == 0:
                for s in schedulers:
                    if s.by_epoch:
                        s.step()
    return np.asarray(values, dtype=np.float64)


def curve(cfgs, base, iters, **kwargs):
    """purelr's values at ``0..iters-1``, evaluated (eagerly) on an array of 512 (or a power of two) so
    that JAX's per-shape caches serve every configuration."""
    size = max(512, 1 << max(iters - 1, 1).bit_length())
    return np.asarray(pm.param_scheduler(cfgs, base, **kwargs)(jnp.arange(size)))[:iters]


def check(cfgs, base, precision, *, epoch_len, iters, max_epochs=None, max_iters=None, momentum=False, adam=False, context=""):
    expected = reference(cfgs, base, epoch_len=epoch_len, iters=iters, max_epochs=max_epochs, max_iters=max_iters, momentum=momentum, adam=adam)
    actual = curve(cfgs, base, iters, epoch_len=epoch_len, max_epochs=max_epochs, max_iters=max_iters)
    return assert_schedule_matches(actual, expected, precision, context=context or repr(cfgs))


RETINANET = [
    dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type="MultiStepLR", begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1),
]


def test_retinanet_1x(precision):
    epoch_len = 733
    check(RETINANET, 0.01, precision, epoch_len=epoch_len, iters=12 * epoch_len, max_epochs=12)
    values = curve(RETINANET, 0.01, 12 * epoch_len, epoch_len=epoch_len, max_epochs=12)
    assert values[0] == pytest.approx(1e-5)
    assert values[499] == pytest.approx(0.01) and values[8 * epoch_len - 1] == pytest.approx(0.01)
    assert values[8 * epoch_len] == pytest.approx(1e-3) and values[11 * epoch_len] == pytest.approx(1e-4)


def random_scheduler(rng, family, suffix, horizon_epochs, epoch_len, loop):
    """One random scheduler config; begin/end in its own unit (epochs when by_epoch)."""
    by_epoch = bool(rng.random() < 0.5)
    convert = by_epoch and bool(rng.random() < 0.4)
    horizon = horizon_epochs if by_epoch else horizon_epochs * epoch_len
    cfg = dict(type=family + suffix, by_epoch=by_epoch)
    if convert:
        cfg["convert_to_iter_based"] = True
    begin = int(rng.integers(0, max(1, horizon // 2))) if rng.random() < 0.6 else 0
    if rng.random() < 0.8 or loop is None:
        cfg["end"] = int(rng.integers(begin + 1, horizon + 2))
    elif loop == "iter" and by_epoch:
        begin = 0  # IterBasedTrainLoop's default end for an epoch-based scheduler is 1
    if begin or rng.random() < 0.5:
        cfg["begin"] = begin
    length = cfg.get("end", horizon if loop == "epoch" or not by_epoch else 1) - begin
    length = max(length, 1)
    if family == "Constant":
        cfg["factor"] = float(rng.uniform(0.05, 1.0))
    elif family == "CosineAnnealing":
        if rng.random() < 0.4:
            cfg["T_max"] = int(rng.integers(1, length + 2))
        pick = rng.random()
        if pick < 0.35:
            cfg["eta_min"] = float(rng.uniform(0, 0.05))
        elif pick < 0.6:
            cfg["eta_min_ratio"] = float(rng.uniform(0, 0.5))
    elif family == "Exponential":
        cfg["gamma"] = float(rng.uniform(0.9, 1.0))
    elif family == "Linear":
        cfg["start_factor"] = float(rng.uniform(0.01, 1.0))
        cfg["end_factor"] = float(rng.uniform(0.0, 1.0)) if rng.random() < 0.5 else 1.0
    elif family == "MultiStep":
        count = int(rng.integers(1, 4))
        cfg["milestones"] = sorted(int(m) for m in rng.integers(0, length + 1, count))
        cfg["gamma"] = float(rng.uniform(0.1, 0.9))
    elif family == "Step":
        cfg["step_size"] = int(rng.integers(1, max(2, length // 2 + 1)))
        cfg["gamma"] = float(rng.uniform(0.1, 0.9))
    elif family == "Poly":
        cfg["power"] = float(rng.uniform(0.5, 2.0))
        cfg["eta_min"] = float(rng.uniform(0, 0.01)) if rng.random() < 0.5 else 0.0
    elif family == "CosineRestart":
        count = int(rng.integers(1, 4))
        cfg["periods"] = [int(p) for p in rng.integers(1, max(2, length // count + 2), count)]
        cfg["restart_weights"] = [float(w) for w in rng.uniform(0.3, 1.0, count)]
        if rng.random() < 0.5:
            cfg["eta_min"] = float(rng.uniform(0, 0.01))
        else:
            cfg["eta_min_ratio"] = float(rng.uniform(0, 0.3))
    elif family == "OneCycle":
        cfg["eta_max"] = float(rng.uniform(0.05, 0.5))
        cfg["end"] = cfg.get("end", horizon + 1)
        length = cfg["end"] - begin
        cfg["pct_start"] = float(rng.uniform(0.1, 0.9))
        cfg["anneal_strategy"] = "cos" if rng.random() < 0.5 else "linear"
        cfg["three_phase"] = bool(rng.random() < 0.3)
        if rng.random() < 0.3:
            cfg["total_steps"] = length + int(rng.integers(0, 3))
    return cfg


def random_case(seed):
    rng = np.random.default_rng(seed)
    epoch_len = int(rng.integers(1, 40))
    epochs = int(rng.integers(1, 10))
    loop = rng.choice(["epoch", "epoch", "epoch", "iter", None])
    kind = rng.choice(["lr", "lr", "momentum", "adam", "generic"])
    families = [f for f in FAMILIES if not (f == "OneCycle" and kind in ("momentum", "adam"))]
    suffix = {"lr": "LR", "momentum": "Momentum", "adam": "Momentum", "generic": "ParamScheduler"}[kind]
    cfgs = []
    for _ in range(int(rng.integers(1, 5))):
        cfg = random_scheduler(rng, str(rng.choice(families)), suffix, epochs, epoch_len, loop)
        if kind == "generic":
            cfg["param_name"] = "lr"
        cfgs.append(cfg)
    kwargs = dict(epoch_len=epoch_len)
    if loop == "epoch":
        kwargs["max_epochs"] = epochs
    elif loop == "iter":
        kwargs["max_iters"] = epochs * epoch_len
    iters = epochs * epoch_len + int(rng.integers(0, 2 * epoch_len))
    base = float(rng.uniform(0.5, 0.99)) if kind in ("momentum", "adam") else float(rng.uniform(0.001, 0.5))
    return cfgs, base, iters, kwargs, dict(momentum=kind == "momentum", adam=kind == "adam")


@pytest.mark.parametrize("block", range(4))
def test_random_lists(precision, block):
    """100 random scheduler lists a run (25 per block): overlaps, by_epoch mixes, conversions."""
    worst = 0.0
    for seed in range(block * 25, block * 25 + 25):
        cfgs, base, iters, kwargs, where = random_case(seed)
        context = f"seed {seed}: {cfgs} {kwargs} base={base}"
        worst = max(worst, check(cfgs, base, precision, iters=iters, context=context, **kwargs, **where))
    print(f"max relative error ({precision}): {worst:.3g}")
