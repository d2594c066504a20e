"""Parity of `purelr.schedules.torch` with torch 2.13's `torch.optim.lr_scheduler`, side by side.

Every case builds the scheduler in torch on a one-parameter SGD optimizer, steps it ``n`` times
(recording ``param_groups[0]['lr']``, and the momentum where the scheduler drives it, after
construction and after each ``step()``), and compares with the purelr twin evaluated on
``arange(n + 1)`` in float64 (``jax_enable_x64``, 1e-12) and float32 (1e-6).
"""

import math
import subprocess
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch.optim import lr_scheduler as tl
from torch.optim import swa_utils

from purelr.schedules import torch as pt
from tests.parity import SCHEDULE_RTOL, assert_schedule_matches, jitted, rounding_floor

SEEDS_PER_TWIN = 14  # random configurations per twin: the first 8 by default, the rest nightly
DEFAULT_SEEDS = 8


def torch_curve(make_scheduler, steps, base_lr, *, momentum=False, betas=False):
    """lr (and momentum) of a torch scheduler after construction and after each of ``steps`` steps."""
    param = torch.zeros(1, requires_grad=True)
    if betas:
        optimizer = torch.optim.Adam([param], lr=base_lr)
    else:
        optimizer = torch.optim.SGD([param], lr=base_lr, momentum=0.9)
    group = optimizer.param_groups[0]
    read_momentum = (lambda: group["betas"][0]) if betas else (lambda: group["momentum"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scheduler = make_scheduler(optimizer)
        lrs, momenta = [group["lr"]], [read_momentum()]
        for _ in range(steps):
            scheduler.step()
            lrs.append(group["lr"])
            momenta.append(read_momentum())
    return (np.array(lrs), np.array(momenta)) if momentum else np.array(lrs)


def assert_twin_matches(schedule, expected, context, *, replayed=False):
    """Compares in x64 and f32, eagerly and jitted (``jax.jit(jax.vmap(schedule))``). ``replayed``
    twins (a loop over the steps: multiplicative_lr, chained_scheduler with an affine twin)
    accumulate float32 rounding step by step, as torch's own recursion would in float32: their
    float32 bound is 3e-5 instead of 1e-6 (a product of up to 2400 rounded float32 factors, each
    value held to itself: measured 1.6e-5, multiplicative seed 10 at step 2399). Returns the worst
    error of each precision.

    Floor: 8 float64 rounding units of the peak (8.9e-4 of it under x64). Torch computes cosine
    phases by cancellation, ``eta_min + (base - eta_min) * (1 + cos) / 2`` (OneCycleLR,
    CosineAnnealingWarmRestarts) and the chainable ``(1 + cos(t)) / (1 + cos(t - 1))`` recursion
    (CosineAnnealingLR, inside SequentialLR), so its values near a cosine's minimum are known to
    units of the peak, not of themselves: measured up to 1.1 units (one_cycle seed 6, step 836:
    9.0426494519e-09 of a peak 4.4e-4), 0.1 to 0.24 units for the cosine twins."""
    steps = np.arange(len(expected))
    worst = {}
    for precision in ("x64", "f32"):
        with jax.enable_x64(precision == "x64"):
            rtol = 3e-5 if replayed and precision == "f32" else SCHEDULE_RTOL[precision]
            for path, values in (("eager", schedule(jnp.asarray(steps))), ("jit", jitted(schedule, steps))):
                error = assert_schedule_matches(
                    values,
                    expected,
                    precision,
                    rtol=rtol,
                    context=f"{context} [{precision}, {path}]",
                    floor=rounding_floor(rtol, 8),
                )
                worst[precision] = max(worst.get(precision, 0.0), error)
    return worst


# ---- random configurations: each returns (purelr schedule, torch factory, steps, base) -----------


def _base(rng):
    return float(10 ** rng.uniform(-4, 0))


def _lambda(rng):
    a, b = rng.uniform(0.001, 0.05), rng.integers(2, 9)
    options = [
        lambda k: 1.0 / (1.0 + a * k),
        lambda k: 0.5 + 0.5 * ((k % b) == 0),
        lambda k: 0.5 ** (k // b),
    ]
    return options[rng.integers(len(options))]


def _mult_lambda(rng):
    a, b = rng.uniform(0.95, 1.0), rng.integers(2, 7)
    options = [lambda k: a, lambda k: 1.0 - 0.05 * ((k % b) == 0), lambda k: 1.0 / (1.0 + 0.001 * k)]
    return options[rng.integers(len(options))]


def cfg_step(rng, base):
    size, gamma = int(rng.integers(1, 300)), float(rng.uniform(0.1, 0.99))
    return pt.step_lr(base, step_size=size, gamma=gamma), lambda o: tl.StepLR(o, size, gamma)


def cfg_multistep(rng, base):
    milestones = sorted(int(m) for m in rng.integers(0, 1100, size=rng.integers(1, 6)))
    gamma = float(rng.uniform(0.1, 0.99))
    return pt.multistep_lr(base, milestones, gamma), lambda o: tl.MultiStepLR(o, milestones, gamma)


def cfg_constant(rng, base):
    factor, total = float(rng.uniform(0.01, 1.0)), int(rng.integers(0, 900))
    return pt.constant_lr(base, factor, total), lambda o: tl.ConstantLR(o, factor, total)


def cfg_linear(rng, base):
    start, end = float(rng.uniform(0.001, 1.0)), float(rng.uniform(0.0, 1.0))
    total = int(rng.integers(1, 900))
    return pt.linear_lr(base, start, end, total), lambda o: tl.LinearLR(o, start, end, total)


def cfg_exponential(rng, base):
    gamma = float(rng.uniform(0.99, 1.0))
    return pt.exponential_lr(base, gamma), lambda o: tl.ExponentialLR(o, gamma)


def cfg_polynomial(rng, base):
    total, power = int(rng.integers(1, 1100)), float(rng.uniform(0.0, 3.0))
    return pt.polynomial_lr(base, total, power), lambda o: tl.PolynomialLR(o, total, power)


def cfg_cosine(rng, base):
    t_max, eta_min = int(rng.integers(1, 700)), float(base * rng.uniform(0, 0.5) * rng.integers(0, 2))
    return pt.cosine_annealing_lr(base, t_max, eta_min), lambda o: tl.CosineAnnealingLR(o, t_max, eta_min)


def cfg_warm_restarts(rng, base):
    t0, mult, eta_min = int(rng.integers(1, 200)), int(rng.integers(1, 4)), float(base * rng.uniform(0, 0.3))
    return (
        pt.cosine_annealing_warm_restarts(base, t0, mult, eta_min),
        lambda o: tl.CosineAnnealingWarmRestarts(o, t0, mult, eta_min),
    )


def cfg_cyclic(rng, base):
    peak = base * float(rng.uniform(1.0, 10.0))
    up = int(rng.integers(1, 300))
    down = None if rng.random() < 0.3 else int(rng.integers(1, 300))
    mode = ["triangular", "triangular2", "exp_range"][rng.integers(3)]
    gamma = float(rng.uniform(0.99, 1.0))
    return (
        pt.cyclic_lr(base, peak, up, down, mode, gamma),
        lambda o: tl.CyclicLR(o, base, peak, up, down, mode, gamma, cycle_momentum=False),
    )


def cfg_one_cycle(rng, base):
    total, pct = int(rng.integers(10, 1100)), float(rng.uniform(0.05, 0.45))
    strategy, three = ["cos", "linear"][rng.integers(2)], bool(rng.integers(2))
    div, final = float(rng.uniform(5, 50)), float(10 ** rng.uniform(1, 5))
    kwargs = dict(
        total_steps=total,
        pct_start=pct,
        anneal_strategy=strategy,
        div_factor=div,
        final_div_factor=final,
        three_phase=three,
    )
    return (pt.one_cycle_lr(base, **kwargs), lambda o: tl.OneCycleLR(o, base, cycle_momentum=False, **kwargs), total)


def cfg_lambda(rng, base):
    fn = _lambda(rng)
    return pt.lambda_lr(base, fn), lambda o: tl.LambdaLR(o, fn)


def cfg_multiplicative(rng, base):
    fn = _mult_lambda(rng)
    return pt.multiplicative_lr(base, fn), lambda o: tl.MultiplicativeLR(o, fn)


def cfg_swa(rng, base):
    swa, epochs, strategy = _base(rng), int(rng.integers(0, 400)), ["cos", "linear"][rng.integers(2)]
    return pt.swa_lr(base, swa, epochs, strategy), lambda o: swa_utils.SWALR(o, swa, epochs, strategy)


SIMPLE = {
    "step": cfg_step,
    "multistep": cfg_multistep,
    "constant": cfg_constant,
    "linear": cfg_linear,
    "exponential": cfg_exponential,
    "polynomial": cfg_polynomial,
    "cosine": cfg_cosine,
    "warm_restarts": cfg_warm_restarts,
    "cyclic": cfg_cyclic,
    "lambda": cfg_lambda,
    "multiplicative": cfg_multiplicative,
    "swa": cfg_swa,
}
# Components for compositions: the ones torch can restart in SequentialLR and chain.
COMPONENTS = [
    "step",
    "multistep",
    "constant",
    "linear",
    "exponential",
    "polynomial",
    "cosine",
    "warm_restarts",
    "cyclic",
    "lambda",
    "multiplicative",
    "swa",
]


def _component_names(rng, low, high):
    """Random components; at most one swa (torch shares one group['swa_lr'] between SWALRs)."""
    names = [COMPONENTS[i] for i in rng.integers(len(COMPONENTS), size=rng.integers(low, high))]
    return [n for i, n in enumerate(names) if n != "swa" or "swa" not in names[:i]]


def cfg_sequential(rng, base):
    names = _component_names(rng, 2, 5)
    names = names if len(names) > 1 else names + ["step"]
    built = [SIMPLE[n](rng, base) for n in names]
    milestones = sorted(int(m) for m in rng.integers(0, 1000, size=len(names) - 1))
    schedule = pt.sequential_lr([b[0] for b in built], milestones)
    return schedule, lambda o: tl.SequentialLR(o, [b[1](o) for b in built], milestones)


def cfg_chained(rng, base):
    names = _component_names(rng, 2, 4)
    built = [SIMPLE[n](rng, base) for n in names]
    schedule = pt.chained_scheduler([b[0] for b in built])
    return schedule, lambda o: tl.ChainedScheduler([b[1](o) for b in built])


RANDOM = dict(SIMPLE, one_cycle=cfg_one_cycle, sequential=cfg_sequential, chained=cfg_chained)
# Boundaries of the random draws lie below 1100 steps, sequential_lr's after a milestone below 2100:
# the curves run well past every one of them.
STEPS = 2400


@pytest.mark.parametrize(
    "seed",
    [
        *range(DEFAULT_SEEDS),
        *(pytest.param(s, marks=pytest.mark.nightly) for s in range(DEFAULT_SEEDS, SEEDS_PER_TWIN)),
    ],
)
@pytest.mark.parametrize("name", sorted(RANDOM))
def test_random_configs_match_torch(name, seed):
    rng = np.random.default_rng([seed, sorted(RANDOM).index(name)])
    base = _base(rng)
    schedule, make, *steps = RANDOM[name](rng, base)
    steps = steps[0] if steps else STEPS
    expected = torch_curve(make, steps, base)
    assert_twin_matches(schedule, expected, f"{name} seed {seed}", replayed=replays(schedule))


def replays(schedule):
    """Whether a twin is evaluated by replaying torch's steps in a loop (see assert_twin_matches)."""
    return "fori_loop" in str(jax.make_jaxpr(schedule)(jnp.arange(3))) or "while" in str(
        jax.make_jaxpr(schedule)(jnp.arange(3))
    )


# ---- momentum curves --------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_cyclic_momentum_matches_torch(seed):
    rng = np.random.default_rng([seed, 101])
    base, low, high = _base(rng), float(rng.uniform(0.5, 0.85)), float(rng.uniform(0.85, 0.99))
    up, down = int(rng.integers(1, 300)), int(rng.integers(1, 300))
    mode, gamma, betas = ["triangular", "triangular2", "exp_range"][seed % 3], 0.999, bool(seed % 2)
    lrs, momenta = torch_curve(
        lambda o: tl.CyclicLR(o, base, 2 * base, up, down, mode, gamma, base_momentum=low, max_momentum=high),
        STEPS,
        base,
        momentum=True,
        betas=betas,
    )
    assert_twin_matches(pt.cyclic_lr(base, 2 * base, up, down, mode, gamma), lrs, "cyclic lr")
    assert_twin_matches(pt.cyclic_momentum(low, high, up, down, mode, gamma), momenta, "cyclic momentum")


@pytest.mark.parametrize("seed", range(6))
def test_one_cycle_momentum_matches_torch(seed):
    rng = np.random.default_rng([seed, 102])
    base, low, high = _base(rng), float(rng.uniform(0.5, 0.85)), float(rng.uniform(0.85, 0.99))
    total, pct, three = int(rng.integers(10, 1100)), float(rng.uniform(0.05, 0.45)), bool(seed % 2)
    strategy = ["cos", "linear"][seed % 3 % 2]
    kwargs = dict(total_steps=total, pct_start=pct, anneal_strategy=strategy, three_phase=three)
    _, momenta = torch_curve(
        lambda o: tl.OneCycleLR(o, base, base_momentum=low, max_momentum=high, **kwargs),
        total,
        base,
        momentum=True,
        betas=bool(seed % 3 == 0),
    )
    assert_twin_matches(pt.one_cycle_momentum(low, high, **kwargs), momenta, "one_cycle momentum")


def test_custom_scale_fn_matches_torch():
    fn = lambda x: 1.0 / (1.0 + 0.1 * x)  # noqa: E731
    for mode in ("cycle", "iterations"):
        expected = torch_curve(
            lambda o: tl.CyclicLR(o, 0.01, 0.1, 7, 13, scale_fn=fn, scale_mode=mode, cycle_momentum=False), 300, 0.01
        )
        assert_twin_matches(pt.cyclic_lr(0.01, 0.1, 7, 13, scale_fn=fn, scale_mode=mode), expected, mode)


# ---- hand-picked edges ---------------------------------------------------------------------------

EDGES = {
    "step size 1": (lambda: pt.step_lr(0.1, 1, 0.5), lambda o: tl.StepLR(o, 1, 0.5), 60),
    "milestone at 0 and repeated": (
        lambda: pt.multistep_lr(0.1, [0, 5, 5, 9], 0.5),
        lambda o: tl.MultiStepLR(o, [0, 5, 5, 9], 0.5),
        20,
    ),
    "constant total 0": (lambda: pt.constant_lr(0.1, 0.25, 0), lambda o: tl.ConstantLR(o, 0.25, 0), 10),
    "linear total 1": (lambda: pt.linear_lr(0.1, 0.5, 1.0, 1), lambda o: tl.LinearLR(o, 0.5, 1.0, 1), 10),
    "polynomial to zero": (lambda: pt.polynomial_lr(0.1, 10, 2.0), lambda o: tl.PolynomialLR(o, 10, 2.0), 30),
    "cosine T_max 1": (lambda: pt.cosine_annealing_lr(0.1, 1), lambda o: tl.CosineAnnealingLR(o, 1), 20),
    "cosine passed T_max": (
        lambda: pt.cosine_annealing_lr(0.1, 50, 0.01),
        lambda o: tl.CosineAnnealingLR(o, 50, 0.01),
        1200,
    ),
    "cosine eta_min above base": (
        lambda: pt.cosine_annealing_lr(0.1, 30, 0.3),
        lambda o: tl.CosineAnnealingLR(o, 30, 0.3),
        200,
    ),
    "restarts T_0 1": (
        lambda: pt.cosine_annealing_warm_restarts(0.1, 1, 2),
        lambda o: tl.CosineAnnealingWarmRestarts(o, 1, 2),
        1100,
    ),
    "one_cycle three_phase": (
        lambda: pt.one_cycle_lr(0.1, 100, three_phase=True),
        lambda o: tl.OneCycleLR(o, 0.1, 100, three_phase=True),
        100,
    ),
    "one_cycle epochs": (
        lambda: pt.one_cycle_lr(0.1, epochs=7, steps_per_epoch=13, pct_start=0.25),
        lambda o: tl.OneCycleLR(o, 0.1, epochs=7, steps_per_epoch=13, pct_start=0.25),
        91,
    ),
    "swa no annealing": (lambda: pt.swa_lr(0.1, 0.02, 0), lambda o: swa_utils.SWALR(o, 0.02, 0), 10),
    "sequential milestone 0": (
        lambda: pt.sequential_lr([pt.constant_lr(0.1, 0.5, 3), pt.exponential_lr(0.1, 0.9)], [0]),
        lambda o: tl.SequentialLR(o, [tl.ConstantLR(o, 0.5, 3), tl.ExponentialLR(o, 0.9)], [0]),
        20,
    ),
    "sequential warmup then cosine": (
        lambda: pt.sequential_lr([pt.linear_lr(0.1, 0.01, 1.0, 50), pt.cosine_annealing_lr(0.1, 950)], [50]),
        lambda o: tl.SequentialLR(o, [tl.LinearLR(o, 0.01, 1.0, 50), tl.CosineAnnealingLR(o, 950)], [50]),
        1100,
    ),
    "sequential constant restarted": (
        lambda: pt.sequential_lr([pt.step_lr(0.1, 3), pt.constant_lr(0.1, 0.3, 0)], [7]),
        lambda o: tl.SequentialLR(o, [tl.StepLR(o, 3), tl.ConstantLR(o, 0.3, 0)], [7]),
        20,
    ),
    "sequential holding a chained": (
        lambda: pt.sequential_lr(
            [
                pt.chained_scheduler(
                    [pt.linear_lr(0.1, 0.1, total_iters=5), pt.step_lr(0.1, 3, 0.5), pt.cyclic_lr(0.01, 0.1, 4)]
                ),
                pt.polynomial_lr(0.1, 9, 0.5),
            ],
            [12],
        ),
        lambda o: tl.SequentialLR(
            o,
            [
                tl.ChainedScheduler(
                    [
                        tl.LinearLR(o, 0.1, total_iters=5),
                        tl.StepLR(o, 3, 0.5),
                        tl.CyclicLR(o, 0.01, 0.1, 4, cycle_momentum=False),
                    ]
                ),
                tl.PolynomialLR(o, 9, 0.5),
            ],
            [12],
        ),
        40,
    ),
    "sequential holding a sequential": (
        lambda: pt.sequential_lr(
            [pt.sequential_lr([pt.exponential_lr(0.1, 0.9), pt.step_lr(0.1, 2)], [3]), pt.constant_lr(0.1, 0.5, 5)], [7]
        ),
        lambda o: tl.SequentialLR(
            o, [tl.SequentialLR(o, [tl.ExponentialLR(o, 0.9), tl.StepLR(o, 2)], [3]), tl.ConstantLR(o, 0.5, 5)], [7]
        ),
        30,
    ),
    "chained cosine reset drops decay": (
        lambda: pt.chained_scheduler([pt.cosine_annealing_lr(0.1, 10), pt.exponential_lr(0.1, 0.9)]),
        lambda o: tl.ChainedScheduler([tl.CosineAnnealingLR(o, 10), tl.ExponentialLR(o, 0.9)]),
        60,
    ),
    "chained absolute then scale": (
        lambda: pt.chained_scheduler(
            [pt.exponential_lr(0.1, 0.9), pt.one_cycle_lr(0.1, 50), pt.multistep_lr(0.1, [10, 20])]
        ),
        lambda o: tl.ChainedScheduler(
            [tl.ExponentialLR(o, 0.9), tl.OneCycleLR(o, 0.1, 50, cycle_momentum=False), tl.MultiStepLR(o, [10, 20])]
        ),
        50,
    ),
}


@pytest.mark.parametrize("name", sorted(EDGES))
def test_edges_match_torch(name):
    make_purelr, make_torch, steps = EDGES[name]
    schedule = make_purelr()
    base = 0.1 / 25 if "one_cycle" in name and "chained" not in name else 0.1
    assert_twin_matches(schedule, torch_curve(make_torch, steps, base), name)


def test_one_cycle_past_total_steps_is_nan_where_torch_raises():
    schedule = pt.one_cycle_lr(0.1, total_steps=20)
    param = torch.zeros(1, requires_grad=True)
    scheduler = tl.OneCycleLR(torch.optim.SGD([param], lr=0.1, momentum=0.9), 0.1, total_steps=20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(20):
            scheduler.step()
        with pytest.raises(ValueError, match="Tried to step 21 times"):
            scheduler.step()
    values = np.asarray(schedule(jnp.arange(23)))
    assert np.all(np.isfinite(values[:21])) and np.all(np.isnan(values[21:]))


@pytest.mark.parametrize("seed", range(6))
def test_warm_restarts_at_fractional_epochs_match_torch(seed):
    """``scheduler.step(epoch + i / iters)`` (CosineAnnealingWarmRestarts' documented use) against
    ``cosine_annealing_warm_restarts_at_epoch``, through several restarts and past them."""
    rng = np.random.default_rng([seed, 103])
    base, t0, mult, iters = _base(rng), int(rng.integers(1, 12)), int(rng.integers(1, 4)), int(rng.integers(1, 9))
    eta_min = float(base * rng.uniform(0, 0.3))
    # float32 numbers, so that the float32 twin is given the epochs torch is given
    epochs = [float(np.float32(e + i / iters)) for e in range(60) for i in range(iters)][1:]
    expected = torch_curve_at(lambda o: tl.CosineAnnealingWarmRestarts(o, t0, mult, eta_min), epochs, base)
    schedule = pt.cosine_annealing_warm_restarts_at_epoch(base, t0, mult, eta_min)
    for precision in ("x64", "f32"):
        with jax.enable_x64(precision == "x64"):
            steps = np.asarray([0.0] + epochs)
            for path, values in (("eager", schedule(jnp.asarray(steps))), ("jit", jitted(schedule, steps))):
                assert_schedule_matches(values, expected, precision, context=f"seed {seed} [{precision}, {path}]")


def torch_curve_at(make_scheduler, epochs, base_lr):
    """lr after construction and after each ``scheduler.step(epoch)`` for ``epoch`` in ``epochs``."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base_lr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scheduler = make_scheduler(optimizer)
        lrs = [optimizer.param_groups[0]["lr"]]
        for epoch in epochs:
            scheduler.step(epoch)
            lrs.append(optimizer.param_groups[0]["lr"])
    return np.array(lrs)


# ---- huge steps against exact integer arithmetic ---------------------------------------------------

HUGE = [2**24 - 1, 2**24, 2**24 + 1, 2**31 - 3, 2**31 - 2]


def exact_cosine(base, eta_min, position, period):
    return eta_min + (base - eta_min) * (1 + math.cos(math.pi * position / period)) / 2


def huge_expectations():
    T = 997
    restarts_starts = [0]
    while restarts_starts[-1] * 2 + 3 <= 2**31:
        restarts_starts.append(restarts_starts[-1] * 2 + 3)  # T_0 = 3, T_mult = 2

    def restart_value(t):
        start = max(s for s in restarts_starts if s <= t)
        return exact_cosine(0.1, 0.0, t - start, 3 * 2 ** restarts_starts.index(start))

    def cyclic_value(t):
        within = t % 1000
        rise = within / 300 if within <= 300 else (1000 - within) / 700
        return 0.01 + (0.1 - 0.01) * rise * 2.0 ** -(t // 1000)

    return [
        (
            "multistep",
            pt.multistep_lr(0.1, [2**24, 2**31 - 2], 0.5),
            lambda t: 0.1 * 0.5 ** ((t >= 2**24) + (t >= 2**31 - 2)),
        ),
        ("step", pt.step_lr(0.1, 2**24 + 1, 0.5), lambda t: 0.1 * 0.5 ** (t // (2**24 + 1))),
        ("cosine", pt.cosine_annealing_lr(0.1, T, 0.001), lambda t: exact_cosine(0.1, 0.001, t % (2 * T), T)),
        ("warm_restarts", pt.cosine_annealing_warm_restarts(0.1, 3, 2), restart_value),
        ("cyclic", pt.cyclic_lr(0.01, 0.1, 300, 700, "triangular2"), cyclic_value),
        (
            "linear",
            pt.linear_lr(0.1, 0.25, 1.0, 2**31 - 2),
            lambda t: 0.1 * (0.25 + 0.75 * min(t, 2**31 - 2) / (2**31 - 2)),
        ),
    ]


@pytest.mark.parametrize("name,schedule,exact", huge_expectations(), ids=lambda x: x if isinstance(x, str) else "")
def test_huge_steps_are_exact(name, schedule, exact, precision):
    expected = np.array([exact(t) for t in HUGE])
    steps = np.asarray(HUGE, dtype=np.int64 if precision == "x64" else np.int32)
    assert_schedule_matches(schedule(jnp.asarray(steps)), expected, precision, context=name)
    assert_schedule_matches(jitted(schedule, steps), expected, precision, context=f"{name} jitted")


# ---- transformations ---------------------------------------------------------------------------------

TRANSFORMED = {
    "cyclic": pt.cyclic_lr(0.01, 0.1, 7, 11, "exp_range", 0.99),
    "one_cycle": pt.one_cycle_lr(0.1, 300, three_phase=True),
    "warm_restarts": pt.cosine_annealing_warm_restarts(0.1, 5, 3, 0.001),
    "sequential": pt.sequential_lr(
        [pt.linear_lr(0.1, 0.1, 1.0, 20), pt.multiplicative_lr(0.1, lambda k: 0.99), pt.swa_lr(0.1, 0.05, 10)],
        [20, 120],
    ),
    "chained": pt.chained_scheduler([pt.linear_lr(0.1, 0.1, 1.0, 20), pt.cosine_annealing_lr(0.1, 40, 0.01)]),
}


@pytest.mark.parametrize("name", sorted(TRANSFORMED))
def test_jit_vmap_and_scalar_calls_agree(name, precision):
    schedule = TRANSFORMED[name]
    steps = jnp.arange(300)
    batched = np.asarray(jax.jit(jax.vmap(schedule))(steps))
    elementwise = np.asarray(schedule(steps))
    scalars = np.array([schedule(int(t)) for t in range(0, 300, 37)])
    assert_schedule_matches(batched, elementwise, precision, context=f"{name} jit(vmap)")
    assert_schedule_matches(scalars, elementwise[::37], precision, context=f"{name} scalar calls")
    assert batched.dtype == (np.float64 if precision == "x64" else np.float32)


def test_schedules_compose_with_optax_join():
    import optax

    warmup = pt.linear_lr(0.1, 0.01, 1.0, 10)
    joined = optax.join_schedules([warmup, pt.cosine_annealing_lr(0.1, 90)], [10])
    values = jax.jit(jax.vmap(joined))(jnp.arange(100))
    assert values.shape == (100,) and float(values[10]) == pytest.approx(0.1)


# ---- bad input ------------------------------------------------------------------------------------------

BAD = [
    (lambda: pt.step_lr(0.1, 0), ValueError, "step_size must be positive, got 0"),
    (lambda: pt.step_lr(-0.1, 3), ValueError, "base_lr must be >= 0, got -0.1"),
    (lambda: pt.step_lr(0.1, 2.5), ValueError, "step_size must be an integer, got 2.5"),
    (lambda: pt.multistep_lr(0.1, [11, 8]), ValueError, r"milestones must be increasing, got \[11, 8\]"),
    (lambda: pt.multistep_lr(0.1, [-1, 8]), ValueError, r"milestones\[0\] must be >= 0, got -1"),
    (lambda: pt.constant_lr(0.1, 1.5), ValueError, r"factor must be in \[0.0, 1.0\], got 1.5"),
    (lambda: pt.constant_lr(0.1, 0.0, 5), ValueError, "factor must be > 0 when total_iters > 0"),
    (lambda: pt.linear_lr(0.1, 0.0), ValueError, r"start_factor must be in \(0.0, 1.0\], got 0.0"),
    (lambda: pt.linear_lr(0.1, total_iters=0), ValueError, "total_iters must be positive, got 0"),
    (lambda: pt.cosine_annealing_lr(0.1, 0), ValueError, "T_max must be positive, got 0"),
    (lambda: pt.cosine_annealing_warm_restarts(0.1, -2), ValueError, "T_0 must be positive, got -2"),
    (lambda: pt.cosine_annealing_warm_restarts(0.1, 10, 0), ValueError, "T_mult must be positive, got 0"),
    (lambda: pt.cosine_annealing_warm_restarts(0.1, 10, 1.5), ValueError, "T_mult must be an integer, got 1.5"),
    (lambda: pt.cyclic_lr(0.1, 1.0, mode="sawtooth"), ValueError, "mode must be one of .*got 'sawtooth'"),
    (
        lambda: pt.cyclic_lr(0.1, 1.0, scale_fn=lambda x: x, scale_mode="epochs"),
        ValueError,
        "scale_mode must be one of .*got 'epochs'",
    ),
    (lambda: pt.cyclic_lr(0.1, 1.0, step_size_up=0), ValueError, "step_size_up must be positive, got 0"),
    (lambda: pt.one_cycle_lr(0.1), ValueError, "needs total_steps, or epochs and steps_per_epoch"),
    (lambda: pt.one_cycle_lr(0.1, 0), ValueError, "total_steps must be positive, got 0"),
    (lambda: pt.one_cycle_lr(0.1, 100, pct_start=1.0), ValueError, r"pct_start must be in \(0.0, 1.0\), got 1.0"),
    (lambda: pt.one_cycle_lr(0.1, 100, anneal_strategy="exp"), ValueError, "anneal_strategy must be one of"),
    (lambda: pt.lambda_lr(0.1, 3.0), TypeError, "lr_lambda must be a function, got 3.0"),
    (lambda: pt.swa_lr(0.1, 0.05, anneal_strategy="step"), ValueError, "anneal_strategy must be one of"),
    (lambda: pt.swa_lr(0.1, 0.05, anneal_epochs=-1), ValueError, "anneal_epochs must be >= 0, got -1"),
    (
        lambda: pt.sequential_lr([pt.step_lr(0.1, 3), pt.step_lr(0.1, 5)], [3, 6]),
        ValueError,
        r"len\(milestones\) == len\(schedules\) - 1, got 2 milestones for 2 schedules",
    ),
    (
        lambda: pt.sequential_lr([pt.step_lr(0.1, 3), pt.step_lr(0.1, 5), pt.step_lr(0.1, 5)], [6, 3]),
        ValueError,
        r"milestones must be increasing, got \[6, 3\]",
    ),
    (lambda: pt.sequential_lr([pt.step_lr(0.1, 3), lambda t: t], [3]), TypeError, r"schedules\[1\] must be"),
    (lambda: pt.chained_scheduler([pt.step_lr(0.1, 3), pt.step_lr(0.2, 3)]), ValueError, "same base value"),
    (
        lambda: pt.chained_scheduler([pt.swa_lr(0.1, 0.05), pt.swa_lr(0.1, 0.01)]),
        ValueError,
        r"different swa_lr values \[0.01, 0.05\]",
    ),
    (
        lambda: pt.chained_scheduler([pt.chained_scheduler([pt.step_lr(0.1, 3)])]),
        TypeError,
        "nesting sequential_lr/chained_scheduler is not supported",
    ),
    (
        lambda: pt.sequential_lr([pt.chained_scheduler([pt.cosine_annealing_lr(0.1, 7)]), pt.step_lr(0.1, 3)], [4]),
        TypeError,
        "stepping an affine twin",
    ),
    (
        lambda: pt.sequential_lr([pt.step_lr(0.1, 3), pt.chained_scheduler([pt.step_lr(0.1, 3)])], [4]),
        TypeError,
        r"schedules\[1\] is a composite.*not supported after the first",
    ),
]


@pytest.mark.parametrize("build,error,message", BAD, ids=[m[:40] for _, _, m in BAD])
def test_bad_input_raises_clear_errors(build, error, message):
    with pytest.raises(error, match=message):
        build()


def test_importing_schedules_pulls_in_no_optax_flax_or_torch():
    code = (
        "import sys, purelr.schedules, purelr.schedules.torch\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('optax', 'flax', 'torch'))\n"
        "print(loaded)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout
