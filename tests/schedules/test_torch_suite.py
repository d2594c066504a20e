"""torch 2.13's own scheduler scenarios, side by side with the purelr twins.

`SCENARIOS` lists every test of torch's ``test/optim/test_lrscheduler.py`` (class TestLRScheduler)
by name: the ones that concern a scheduler purelr twins are rebuilt here (the project's own code,
torch's settings) and run on a two-group SGD (lr 0.05 and 0.5, as torch's ``setUp``) or the
optimizer the scenario names, stepped as that test steps it, against the twin evaluated eagerly
and jitted (``jax.jit(jax.vmap(...))``; plateau twins under ``lax.scan``), in x64 (1e-12) and
float32 (1e-6). The others carry the reason they are not covered. `test_covered_count` keeps the
count honest.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch.optim import SGD, Adam, swa_utils
from torch.optim import lr_scheduler as tl

from purelr.schedules import join_schedules
from purelr.schedules import torch as pt
from purelr.training import plateau as pp
from tests.parity import assert_schedule_matches, jitted

GROUP_LRS = (0.05, 0.5)


def run_torch(make, n, lrs=GROUP_LRS, *, adam=False, epochs=None, metrics=None):
    """``(lr, momentum)`` of each group after construction and after each of ``n`` steps:
    ``step()``, ``step(epochs[i])`` or, for a ReduceLROnPlateau, ``step(metrics[i])``; an array
    ``(n + 1, groups, 2)``. ``make`` returns a scheduler or a list stepped in order."""
    params = [torch.zeros(1, requires_grad=True) for _ in lrs]
    groups = [{"params": [p], "lr": lr} for p, lr in zip(params, lrs)]
    optimizer = Adam(groups, lr=lrs[0]) if adam else SGD(groups, lr=lrs[0], momentum=0.9)

    def record():
        return [[g["lr"], g["betas"][0] if adam else g["momentum"]] for g in optimizer.param_groups]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        schedulers = make(optimizer)
        schedulers = schedulers if isinstance(schedulers, list) else [schedulers]
        rows = [record()]
        for i in range(n):
            for scheduler in schedulers:
                if isinstance(scheduler, tl.ReduceLROnPlateau):
                    scheduler.step(metrics[i])
                elif epochs is not None:
                    scheduler.step(epochs[i])
                else:
                    scheduler.step()
            rows.append(record())
    return np.asarray(rows, dtype=np.float64)


def per_group(twins, lrs=GROUP_LRS):
    """``twins``: one function ``base -> schedule`` for every group, or a list of schedules."""
    return twins if isinstance(twins, list) else [twins(lr) for lr in lrs]


def schedule_cases(make, twins, n, *, lrs=GROUP_LRS, momenta=None, adam=False, epochs=None):
    """Comparisons ``(label, expected, schedule, steps)``: each group's lr (and momentum) curve."""
    rows = run_torch(make, n, lrs, adam=adam, epochs=epochs)
    steps = np.arange(n + 1) if epochs is None else np.asarray([0.0] + list(epochs))
    cases = [(f"group {g} lr", rows[:, g, 0], s, steps) for g, s in enumerate(per_group(twins, lrs))]
    if momenta is not None:
        cases += [(f"group {g} momentum", rows[:, g, 1], s, steps) for g, s in enumerate(per_group(momenta, lrs))]
    return cases


def plateau_cases(make, twin, metrics, lrs=(0.5, 0.5)):
    """Comparisons ``(label, expected, plateau twin, metrics)`` of every group's lr."""
    rows = run_torch(make, len(metrics), lrs, metrics=metrics)
    return [(f"group {g} lr", rows[:, g, 0], (twin, g), np.asarray(metrics)) for g in range(len(lrs))]


def plateau_curve(twin, group, metrics, jit):
    """The lr of ``group`` after ``init()`` and each ``step``: a Python loop, or ``lax.scan``."""
    state = twin.init()
    if jit:

        def body(state, metric):
            state = twin.step(state, metric)
            return state, jnp.atleast_1d(state.lr)[group]

        _, lrs = jax.jit(lambda s, m: jax.lax.scan(body, s, m))(state, jnp.asarray(metrics))
        return np.concatenate([[np.atleast_1d(state.lr)[group]], np.asarray(lrs)])
    values = [np.atleast_1d(state.lr)[group]]
    for metric in metrics:
        state = twin.step(state, metric)
        values.append(np.atleast_1d(state.lr)[group])
    return np.asarray(values)


def raises(*builds, error=ValueError):
    """A bad-input scenario: torch raises, and so does the twin, at construction."""

    def check():
        for build in builds:
            with pytest.raises(error):
                build()
        return []

    return check


def closed_form(make, twins, epoch, n=10):
    """``scheduler.step(epoch)`` repeated ``n`` times keeps the twin's value at ``epoch``."""
    return schedule_cases(make, twins, n, epochs=[epoch] * n)


def _tenths(stop):
    """torch's ``round(e, 1)`` for ``e`` in ``torch.arange(0.1, stop, 0.1)``, each then rounded to
    the nearest float32: the float32 twin is given float32 epochs, and torch the same numbers (a
    tenth rounded to float32 moves a value near a cycle's end by up to 8e-6 of itself)."""
    return [float(np.float32(round(e.item(), 1))) for e in torch.arange(0.1, stop, 0.1)]


def swalr_cases(swa_lrs, anneal, strategy, factor=0.9, epochs=15, swa_start=5):
    """torch's ``_test_swalr``: MultiplicativeLR (or nothing, ``factor=None``) stepped until
    ``swa_start``, then SWALR (built at the start, ``_step_count`` 1) stepped; the lr is read
    before each step. The twin joins the multiplicative curve with ``swa_lr`` started from the lr
    in force, its step ``k`` being SWALR's ``k``-th ``step()``."""
    params = [torch.zeros(1, requires_grad=True) for _ in GROUP_LRS]
    optimizer = SGD([{"params": [p], "lr": lr} for p, lr in zip(params, GROUP_LRS)], lr=GROUP_LRS[0])
    decay = tl.MultiplicativeLR(optimizer, lambda e: factor) if factor else None
    swa = swa_utils.SWALR(optimizer, swa_lr=swa_lrs, anneal_epochs=anneal, anneal_strategy=strategy)
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no optimizer.step() between scheduler steps
        for epoch in range(epochs):
            rows.append([g["lr"] for g in optimizer.param_groups])
            if epoch >= swa_start:
                swa.step()
            elif decay is not None:
                decay.step()
    rows = np.asarray(rows)
    cases = []
    for g, (base, target) in enumerate(zip(GROUP_LRS, swa_lrs)):
        before = pt.multiplicative_lr(base, lambda k: factor or 1.0)
        annealed = pt.swa_lr(base * (factor or 1.0) ** swa_start, target, anneal, strategy)
        twin = join_schedules([before, lambda t, annealed=annealed: annealed(t + 1)], [swa_start + 1])
        cases.append((f"group {g} lr", rows[:, g], twin, np.arange(epochs)))
    return cases


def _plateau(**kwargs):
    return lambda o: tl.ReduceLROnPlateau(o, **kwargs)


def _compound_plateau(plateau_kwargs, make_scheduler, twin, metrics):
    """ReduceLROnPlateau and a scheduler stepped in turn (torch's two groups both hold 0.5: one here)."""
    make = lambda o: [tl.ReduceLROnPlateau(o, **plateau_kwargs), make_scheduler(o)]  # noqa: E731
    plateau = pp.with_scheduler(pp.reduce_lr_on_plateau(0.5, **plateau_kwargs), twin(0.5))
    return plateau_cases(make, plateau, metrics, lrs=(0.5,))


COS = dict(T_max=10, eta_min=1e-10)
DOWN = [10 - i * 0.0165 for i in range(22)]
FLAT = [10 - i * 0.0167 for i in range(20)]
PLATEAU2 = dict(patience=5, cooldown=0, threshold_mode="abs", mode="min", threshold=0.1)
CYCLIC = dict(base_lr=1, max_lr=5, step_size_up=4, cycle_momentum=True, base_momentum=1, max_momentum=5)
ONE_CYCLE = dict(max_lr=25, final_div_factor=2, base_momentum=1, max_momentum=22, total_steps=10)


def _cyclic(torch_kwargs, n, lrs=GROUP_LRS, adam=False, momentum=True):
    """CyclicLR scenarios: per-group base/max lists become one twin per group."""
    kw = dict(torch_kwargs)
    groups = len(lrs)
    defaults = dict(base_momentum=0.8, max_momentum=0.9)
    listed = lambda key: kw[key] if isinstance(kw.get(key), list) else [kw.get(key, defaults.get(key))] * groups  # noqa: E731
    shape = dict(
        step_size_up=kw.get("step_size_up", 2000),
        step_size_down=kw.get("step_size_down"),
        mode=kw.get("mode", "triangular"),
        gamma=kw.get("gamma", 1.0),
    )
    lr_twins = [pt.cyclic_lr(b, m, **shape) for b, m in zip(listed("base_lr"), listed("max_lr"))]
    momenta = None
    if momentum:
        momenta = [pt.cyclic_momentum(b, m, **shape) for b, m in zip(listed("base_momentum"), listed("max_momentum"))]
    return schedule_cases(lambda o: tl.CyclicLR(o, **kw), lr_twins, n, lrs=lrs, momenta=momenta, adam=adam)


def _one_cycle(torch_kwargs, adam=False):
    kw = dict(torch_kwargs)
    low, high = kw.pop("base_momentum"), kw.pop("max_momentum")
    lr = pt.one_cycle_lr(**kw)
    momentum = pt.one_cycle_momentum(
        low,
        high,
        kw["total_steps"],
        pct_start=kw.get("pct_start", 0.3),
        anneal_strategy=kw.get("anneal_strategy", "cos"),
        three_phase=kw.get("three_phase", False),
    )
    make = lambda o: tl.OneCycleLR(o, base_momentum=low, max_momentum=high, **kw)  # noqa: E731
    return schedule_cases(make, [lr, lr], 9, momenta=[momentum, momentum], adam=adam)


GC = "Python garbage collection of torch objects: a pure function holds no references"
WARN = "torch's warning about the order of optimizer.step() and scheduler.step(): a pure schedule has no call order"
STATE = "state_dict / load_state_dict of a torch scheduler object: a twin is a pure function (plateau states are NamedTuples, saved by purelr.training.checkpoint)"
TENSOR = (
    "tensor-valued lr / hyperparameters mutated in place and aliasing of initial_lr: no such objects in a pure function"
)
RESUME = "constructing a scheduler with last_epoch >= 0 (resuming): purelr.training.from_torch.resume_schedule, not a schedule twin"

SCENARIOS = {
    "test_error_when_getlr_has_epoch": "a user subclass of torch's LRScheduler base class with a wrong get_lr signature: no twin",
    "test_no_cyclic_references": GC,
    "test_no_cyclic_references_in_step": GC,
    "test_old_pattern_warning": WARN,
    "test_old_pattern_warning_with_arg": WARN,
    "test_old_pattern_warning_resuming": WARN,
    "test_old_pattern_warning_resuming_with_arg": WARN,
    "test_old_pattern_warning_with_overridden_optim_step": WARN,
    "test_new_pattern_no_warning": WARN,
    "test_new_pattern_no_warning_with_arg": WARN,
    "test_new_pattern_no_warning_with_overridden_optim_step": WARN,
    "test_step_lr_is_constant_for_constant_epoch": lambda: closed_form(
        lambda o: tl.StepLR(o, 2), lambda b: pt.step_lr(b, 2), 2
    ),
    "test_exponential_lr_is_constant_for_constant_epoch": lambda: closed_form(
        lambda o: tl.ExponentialLR(o, 0.9), lambda b: pt.exponential_lr(b, 0.9), 2
    ),
    "test_constantlr_is_constant_for_constant_epoch": lambda: closed_form(tl.ConstantLR, pt.constant_lr, 2),
    "test_linear_linearlr_is_constant_for_constant_epoch": lambda: closed_form(tl.LinearLR, pt.linear_lr, 2),
    "test_polynomial_lr_is_constant_for_constant_epoch": lambda: closed_form(
        lambda o: tl.PolynomialLR(o, power=0.9), lambda b: pt.polynomial_lr(b, power=0.9), 2
    ),
    "test_step_lr": lambda: schedule_cases(lambda o: tl.StepLR(o, 3, 0.1), lambda b: pt.step_lr(b, 3, 0.1), 10),
    "test_get_last_lr_step_lr": lambda: schedule_cases(
        lambda o: tl.StepLR(o, 3, 0.1), [pt.step_lr(0.1, 3, 0.1)], 10, lrs=(0.1,)
    ),
    "test_get_last_lr_multi_step_lr": lambda: schedule_cases(
        lambda o: tl.MultiStepLR(o, [2, 5, 9], 0.1), lambda b: pt.multistep_lr(b, [2, 5, 9], 0.1), 10
    ),
    "test_raise_error_when_last_epoch_is_greater_than_0_and_initial_lr_is_not_specified": RESUME,
    "test_multi_step_lr": lambda: schedule_cases(
        lambda o: tl.MultiStepLR(o, [2, 5, 9], 0.1), lambda b: pt.multistep_lr(b, [2, 5, 9], 0.1), 12
    ),
    "test_multi_step_lr_with_epoch": lambda: schedule_cases(
        lambda o: tl.MultiStepLR(o, [2, 5, 9], 0.1),
        lambda b: pt.multistep_lr(b, [2, 5, 9], 0.1),
        10,
        epochs=list(range(10)),
    ),
    "test_get_last_lr_constantlr": lambda: schedule_cases(
        lambda o: tl.ConstantLR(o, 0.5, 5), lambda b: pt.constant_lr(b, 0.5, 5), 10
    ),
    "test_get_last_lr_linearlr": lambda: schedule_cases(
        lambda o: tl.LinearLR(o, 0.25, 0.6, 4), lambda b: pt.linear_lr(b, 0.25, 0.6, 4), 10
    ),
    "test_constantlr": lambda: schedule_cases(
        lambda o: tl.ConstantLR(o, 0.5, 5), lambda b: pt.constant_lr(b, 0.5, 5), 10
    ),
    "test_linearlr": lambda: schedule_cases(
        lambda o: tl.LinearLR(o, 0.5, total_iters=4), lambda b: pt.linear_lr(b, 0.5, total_iters=4), 10
    ),
    "test_linearlr_start_factor_limits1": raises(lambda: pt.linear_lr(0.05, start_factor=0.0, total_iters=4)),
    "test_linearlr_start_factor_limits2": raises(lambda: pt.linear_lr(0.05, start_factor=1.1, total_iters=4)),
    "test_constantlr_with_epoch": lambda: schedule_cases(
        lambda o: tl.ConstantLR(o, 0.5, 5), lambda b: pt.constant_lr(b, 0.5, 5), 10, epochs=list(range(10))
    ),
    "test_linearlr_with_epoch": lambda: schedule_cases(
        lambda o: tl.LinearLR(o, 0.5, 1.0, 4), lambda b: pt.linear_lr(b, 0.5, 1.0, 4), 10, epochs=list(range(10))
    ),
    "test_exp_lr": lambda: schedule_cases(lambda o: tl.ExponentialLR(o, 0.9), lambda b: pt.exponential_lr(b, 0.9), 10),
    "test_poly_lr": lambda: schedule_cases(
        lambda o: tl.PolynomialLR(o, 5, 0.9), lambda b: pt.polynomial_lr(b, 5, 0.9), 10
    ),
    "test_cos_anneal_lr": lambda: schedule_cases(
        lambda o: tl.CosineAnnealingLR(o, **COS), lambda b: pt.cosine_annealing_lr(b, **COS), 10
    ),
    "test_closed_form_step_lr": lambda: schedule_cases(
        lambda o: tl.StepLR(o, 3, 0.1), lambda b: pt.step_lr(b, 3, 0.1), 20, epochs=list(range(20))
    ),
    "test_closed_form_linearlr": lambda: schedule_cases(
        lambda o: tl.LinearLR(o, 1 / 3, 0.7, 4), lambda b: pt.linear_lr(b, 1 / 3, 0.7, 4), 20, epochs=list(range(20))
    ),
    "test_closed_form_constantlr": lambda: schedule_cases(
        lambda o: tl.ConstantLR(o, 1 / 3, 4), lambda b: pt.constant_lr(b, 1 / 3, 4), 20, epochs=list(range(20))
    ),
    "test_closed_form_multi_step_lr": lambda: schedule_cases(
        lambda o: tl.MultiStepLR(o, [2, 5, 9], 0.1),
        lambda b: pt.multistep_lr(b, [2, 5, 9], 0.1),
        20,
        epochs=list(range(20)),
    ),
    "test_closed_form_exp_lr": lambda: schedule_cases(
        lambda o: tl.ExponentialLR(o, 0.9), lambda b: pt.exponential_lr(b, 0.9), 20, epochs=list(range(20))
    ),
    "test_closed_form_poly_lr": lambda: schedule_cases(
        lambda o: tl.PolynomialLR(o, power=0.9), lambda b: pt.polynomial_lr(b, power=0.9), 20, epochs=list(range(20))
    ),
    "test_closed_form_cos_anneal_lr": lambda: schedule_cases(
        lambda o: tl.CosineAnnealingLR(o, 5, 1e-10), lambda b: pt.cosine_annealing_lr(b, 5, 1e-10), 20
    ),
    "test_cos_anneal_lr_continue": RESUME,
    "test_reduce_lr_on_plateau1": lambda: plateau_cases(
        _plateau(threshold_mode="abs", mode="min", threshold=0.01, patience=5, cooldown=5),
        pp.reduce_lr_on_plateau([0.5, 0.5], threshold_mode="abs", mode="min", threshold=0.01, patience=5, cooldown=5),
        FLAT,
    ),
    "test_reduce_lr_on_plateau2": lambda: plateau_cases(
        _plateau(**PLATEAU2), pp.reduce_lr_on_plateau([0.5, 0.5], **PLATEAU2), DOWN
    ),
    "test_reduce_lr_on_plateau3": lambda: plateau_cases(
        _plateau(mode="max", patience=5, cooldown=5, threshold_mode="abs"),
        pp.reduce_lr_on_plateau([0.5, 0.5], mode="max", patience=5, cooldown=5, threshold_mode="abs"),
        [-0.8] * 2 + [-0.234] * 20,
    ),
    "test_reduce_lr_on_plateau4": lambda: plateau_cases(
        _plateau(mode="max", patience=3, threshold_mode="rel", threshold=0.1),
        pp.reduce_lr_on_plateau([0.5, 0.5], mode="max", patience=3, threshold_mode="rel", threshold=0.1),
        [1.5 * 1.025**i for i in range(20)],
    ),
    "test_reduce_lr_on_plateau5": lambda: plateau_cases(
        _plateau(mode="max", threshold_mode="rel", threshold=0.1, patience=5, cooldown=5),
        pp.reduce_lr_on_plateau([0.5, 0.5], mode="max", threshold_mode="rel", threshold=0.1, patience=5, cooldown=5),
        [1.5 * 1.005**i for i in range(20)],
    ),
    "test_reduce_lr_on_plateau6": lambda: plateau_cases(
        _plateau(mode="min", threshold_mode="rel", threshold=0.1),
        pp.reduce_lr_on_plateau([0.5, 0.5], mode="min", threshold_mode="rel", threshold=0.1),
        [1.5 * 0.85**i for i in range(20)],
    ),
    "test_reduce_lr_on_plateau7": lambda: plateau_cases(
        _plateau(mode="min", threshold_mode="rel", threshold=0.1, patience=5, cooldown=5),
        pp.reduce_lr_on_plateau([0.5, 0.5], mode="min", threshold_mode="rel", threshold=0.1, patience=5, cooldown=5),
        [1] * 7 + [0.6] + [0.5] * 12,
    ),
    "test_reduce_lr_on_plateau8": lambda: plateau_cases(
        _plateau(mode="max", threshold_mode="rel", min_lr=[0.4, 0.3], threshold=0.1, patience=5, cooldown=5),
        pp.reduce_lr_on_plateau(
            [0.5, 0.5], mode="max", threshold_mode="rel", min_lr=[0.4, 0.3], threshold=0.1, patience=5, cooldown=5
        ),
        [1.5 * 1.005**i for i in range(20)],
    ),
    "test_reduce_lr_on_plateau_get_last_lr_before_step": lambda: plateau_cases(
        _plateau(), pp.reduce_lr_on_plateau([0.5, 0.5]), []
    ),
    "test_reduce_lr_on_plateau_preserves_lr_type": TENSOR,
    "test_sequentiallr1": lambda: schedule_cases(
        lambda o: tl.SequentialLR(o, [tl.ExponentialLR(o, 0.8), tl.StepLR(o, 4, 0.1)], [3]),
        lambda b: pt.sequential_lr([pt.exponential_lr(b, 0.8), pt.step_lr(b, 4, 0.1)], [3]),
        19,
    ),
    "test_sequentiallr2": lambda: schedule_cases(
        lambda o: tl.SequentialLR(o, [tl.ConstantLR(o, 0.1, 3), tl.ExponentialLR(o, 0.9)], [3]),
        lambda b: pt.sequential_lr([pt.constant_lr(b, 0.1, 3), pt.exponential_lr(b, 0.9)], [3]),
        13,
    ),
    "test_sequentiallr3": lambda: schedule_cases(
        lambda o: tl.SequentialLR(
            o, [tl.ConstantLR(o, 0.1, 3), tl.ExponentialLR(o, 0.8), tl.StepLR(o, 2, 0.1)], [3, 6]
        ),
        lambda b: pt.sequential_lr(
            [pt.constant_lr(b, 0.1, 3), pt.exponential_lr(b, 0.8), pt.step_lr(b, 2, 0.1)], [3, 6]
        ),
        12,
    ),
    "test_sequentiallr4": lambda: schedule_cases(
        lambda o: tl.SequentialLR(o, [tl.ConstantLR(o, 1.0), tl.ConstantLR(o, 0.1)], [10]),
        [pt.sequential_lr([pt.constant_lr(0.1, 1.0), pt.constant_lr(0.1, 0.1)], [10])],
        15,
        lrs=(0.1,),
    ),
    "test_sequentiallr5": lambda: schedule_cases(
        lambda o: tl.SequentialLR(
            o,
            [
                tl.ChainedScheduler([tl.LinearLR(o, 0.1, total_iters=5), tl.ConstantLR(o, 0.1, 5)]),
                tl.ConstantLR(o, 0.5, 5),
            ],
            [5],
        ),
        lambda b: pt.sequential_lr(
            [
                pt.chained_scheduler([pt.linear_lr(b, 0.1, total_iters=5), pt.constant_lr(b, 0.1, 5)]),
                pt.constant_lr(b, 0.5, 5),
            ],
            [5],
        ),
        14,
    ),
    "test_sequentiallr_no_warnings": WARN,
    "test_get_last_lr_sequentiallr": lambda: schedule_cases(
        lambda o: tl.SequentialLR(
            o, [tl.ConstantLR(o, 0.1, 3), tl.ExponentialLR(o, 0.8), tl.StepLR(o, 2, 0.1)], [3, 6]
        ),
        lambda b: pt.sequential_lr(
            [pt.constant_lr(b, 0.1, 3), pt.exponential_lr(b, 0.8), pt.step_lr(b, 2, 0.1)], [3, 6]
        ),
        12,
        lrs=(0.05, 0.5),
    ),
    "test_sequentiallr_does_not_alias_lr_and_initial_lr": lambda: schedule_cases(
        lambda o: tl.SequentialLR(o, [tl.LinearLR(o, 0.1, 0.8, 4), tl.LinearLR(o, 0.8, 0.1, 4)], [4]),
        lambda b: pt.sequential_lr([pt.linear_lr(b, 0.1, 0.8, 4), pt.linear_lr(b, 0.8, 0.1, 4)], [4]),
        8,
        lrs=(2.0,),
    ),
    "test_chained_lr2_get_last_lr_before_step": lambda: schedule_cases(
        lambda o: tl.ChainedScheduler([tl.LinearLR(o, 0.4, total_iters=3), tl.MultiStepLR(o, [4, 8, 10], 0.1)]),
        lambda b: pt.chained_scheduler([pt.linear_lr(b, 0.4, total_iters=3), pt.multistep_lr(b, [4, 8, 10], 0.1)]),
        0,
    ),
    "test_chained_lr1": lambda: schedule_cases(
        lambda o: tl.ChainedScheduler([tl.StepLR(o, 3, 0.1)]),
        lambda b: pt.chained_scheduler([pt.step_lr(b, 3, 0.1)]),
        12,
    ),
    "test_chained_lr2": lambda: schedule_cases(
        lambda o: tl.ChainedScheduler([tl.LinearLR(o, 0.4, total_iters=3)]),
        lambda b: pt.chained_scheduler([pt.linear_lr(b, 0.4, total_iters=3)]),
        12,
    ),
    "test_chained_lr3": lambda: schedule_cases(
        lambda o: tl.ChainedScheduler([tl.LinearLR(o, 0.4, total_iters=3), tl.MultiStepLR(o, [4, 8, 10], 0.1)]),
        lambda b: pt.chained_scheduler([pt.linear_lr(b, 0.4, total_iters=3), pt.multistep_lr(b, [4, 8, 10], 0.1)]),
        14,
    ),
    "test_chained_lr4": lambda: schedule_cases(
        lambda o: tl.ChainedScheduler([tl.ExponentialLR(o, 0.9), tl.ConstantLR(o, 0.2, 4), tl.StepLR(o, 3, 0.1)]),
        lambda b: pt.chained_scheduler([pt.exponential_lr(b, 0.9), pt.constant_lr(b, 0.2, 4), pt.step_lr(b, 3, 0.1)]),
        9,
    ),
    "test_chained_lr5": lambda: schedule_cases(
        lambda o: tl.ChainedScheduler([tl.PolynomialLR(o, 5, 0.9), tl.ConstantLR(o, 0.1)]),
        lambda b: pt.chained_scheduler([pt.polynomial_lr(b, 5, 0.9), pt.constant_lr(b, 0.1)]),
        10,
    ),
    "test_compound_step_and_multistep_lr": lambda: schedule_cases(
        lambda o: [tl.StepLR(o, 3, 0.1), tl.MultiStepLR(o, [2, 5, 9], 0.1)],
        lambda b: pt.chained_scheduler([pt.step_lr(b, 3, 0.1), pt.multistep_lr(b, [2, 5, 9], 0.1)]),
        10,
    ),
    "test_compound_step_and_exp_lr": lambda: schedule_cases(
        lambda o: [tl.StepLR(o, 3, 0.1), tl.ExponentialLR(o, 0.9)],
        lambda b: pt.chained_scheduler([pt.step_lr(b, 3, 0.1), pt.exponential_lr(b, 0.9)]),
        10,
    ),
    "test_compound_exp_and_multistep_lr": lambda: schedule_cases(
        lambda o: [tl.MultiStepLR(o, [2, 5, 9], 0.1), tl.ExponentialLR(o, 0.9)],
        lambda b: pt.chained_scheduler([pt.multistep_lr(b, [2, 5, 9], 0.1), pt.exponential_lr(b, 0.9)]),
        10,
    ),
    "test_compound_exp_and_linearlr": lambda: schedule_cases(
        lambda o: [tl.LinearLR(o, 0.4, 0.9, 4), tl.ExponentialLR(o, 0.9)],
        lambda b: pt.chained_scheduler([pt.linear_lr(b, 0.4, 0.9, 4), pt.exponential_lr(b, 0.9)]),
        10,
    ),
    "test_compound_step_and_constantlr": lambda: schedule_cases(
        lambda o: [tl.StepLR(o, 3, 0.1), tl.ConstantLR(o, 0.4, 4)],
        lambda b: pt.chained_scheduler([pt.step_lr(b, 3, 0.1), pt.constant_lr(b, 0.4, 4)]),
        10,
    ),
    "test_compound_linearlr_and_multistep_lr": lambda: schedule_cases(
        lambda o: [tl.MultiStepLR(o, [2, 5, 9], 0.1), tl.LinearLR(o, 0.4, total_iters=4)],
        lambda b: pt.chained_scheduler([pt.multistep_lr(b, [2, 5, 9], 0.1), pt.linear_lr(b, 0.4, total_iters=4)]),
        10,
    ),
    "test_compound_cosanneal_and_step_lr": lambda: schedule_cases(
        lambda o: [tl.CosineAnnealingLR(o, **COS), tl.StepLR(o, 3, 0.1)],
        lambda b: pt.chained_scheduler([pt.cosine_annealing_lr(b, **COS), pt.step_lr(b, 3, 0.1)]),
        10,
    ),
    "test_compound_cosanneal_and_multistep_lr": lambda: schedule_cases(
        lambda o: [tl.CosineAnnealingLR(o, **COS), tl.MultiStepLR(o, [2, 5, 9], 0.1)],
        lambda b: pt.chained_scheduler([pt.cosine_annealing_lr(b, **COS), pt.multistep_lr(b, [2, 5, 9], 0.1)]),
        10,
    ),
    "test_compound_cosanneal_and_linearlr": lambda: schedule_cases(
        lambda o: [tl.LinearLR(o, 0.4, total_iters=4), tl.CosineAnnealingLR(o, **COS)],
        lambda b: pt.chained_scheduler([pt.linear_lr(b, 0.4, total_iters=4), pt.cosine_annealing_lr(b, **COS)]),
        10,
    ),
    "test_compound_cosanneal_and_exp_lr": lambda: schedule_cases(
        lambda o: [tl.CosineAnnealingLR(o, **COS), tl.ExponentialLR(o, 0.1)],
        lambda b: pt.chained_scheduler([pt.cosine_annealing_lr(b, **COS), pt.exponential_lr(b, 0.1)]),
        10,
    ),
    "test_compound_reduce_lr_on_plateau1": lambda: _compound_plateau(
        dict(threshold_mode="abs", mode="min", threshold=0.01, patience=5, cooldown=5),
        lambda o: tl.StepLR(o, 3, 0.1),
        lambda b: pt.step_lr(b, 3, 0.1),
        FLAT[:10],
    ),
    "test_compound_reduce_lr_on_plateau2": lambda: _compound_plateau(
        PLATEAU2, lambda o: tl.MultiStepLR(o, [3, 8, 12], 0.1), lambda b: pt.multistep_lr(b, [3, 8, 12], 0.1), DOWN
    ),
    "test_compound_reduce_lr_on_plateau3": lambda: _compound_plateau(
        dict(mode="max", patience=5, cooldown=5, threshold_mode="abs"),
        lambda o: tl.ExponentialLR(o, 0.1),
        lambda b: pt.exponential_lr(b, 0.1),
        [-0.8] * 2 + [-0.234] * 20,
    ),
    "test_compound_reduce_lr_on_plateau4": lambda: _compound_plateau(
        dict(mode="max", patience=3, threshold_mode="rel", threshold=0.1),
        lambda o: tl.CosineAnnealingLR(o, 10, 1e-10),
        lambda b: pt.cosine_annealing_lr(b, 10, 1e-10),
        [1.5 * 1.025**i for i in range(10)],
    ),
    "test_compound_reduce_lr_on_plateau5": lambda: _compound_plateau(
        PLATEAU2, lambda o: tl.LinearLR(o, 0.4, total_iters=4), lambda b: pt.linear_lr(b, 0.4, total_iters=4), DOWN
    ),
    "test_cycle_lr_invalid_mode": raises(lambda: pt.cyclic_lr(0, 0, mode="CATS")),
    "test_cycle_lr_triangular_mode_one_lr": lambda: _cyclic(dict(CYCLIC, mode="triangular"), 10),
    "test_cycle_lr_triangular_mode_one_lr_no_momentum": lambda: _cyclic(
        dict(base_lr=1, max_lr=5, step_size_up=4, cycle_momentum=False), 10, momentum=False
    ),
    "test_cycle_lr_triangular2_mode_one_lr": lambda: _cyclic(dict(CYCLIC, mode="triangular2"), 21),
    "test_cycle_lr_exp_range_mode_one_lr": lambda: _cyclic(dict(CYCLIC, mode="exp_range", gamma=0.9), 12),
    "test_cycle_lr_triangular_mode": lambda: _cyclic(
        dict(base_lr=[1, 2], max_lr=[5, 6], step_size_up=4, base_momentum=[1, 2], max_momentum=[5, 6]), 10
    ),
    "test_cycle_lr_triangular2_mode": lambda: _cyclic(
        dict(
            base_lr=[1, 3], max_lr=[5, 7], step_size_up=4, base_momentum=[1, 3], max_momentum=[5, 7], mode="triangular2"
        ),
        21,
    ),
    "test_cycle_lr_exp_range_mode": lambda: _cyclic(
        dict(
            base_lr=[1, 5],
            max_lr=[5, 12],
            step_size_up=4,
            base_momentum=[1, 5],
            max_momentum=[5, 12],
            mode="exp_range",
            gamma=0.9,
        ),
        12,
    ),
    "test_cycle_lr_triangular_mode_step_size_up_down": lambda: _cyclic(dict(CYCLIC, step_size_down=6), 10),
    "test_cycle_lr_triangular2_mode_step_size_up_down": lambda: _cyclic(
        dict(
            base_lr=[1, 3],
            max_lr=[5, 7],
            step_size_up=2,
            step_size_down=6,
            base_momentum=[1, 3],
            max_momentum=[5, 7],
            mode="triangular2",
        ),
        23,
    ),
    "test_cycle_lr_exp_range_mode_step_size_up_down": lambda: _cyclic(
        dict(CYCLIC, step_size_up=2, step_size_down=6, mode="exp_range", gamma=0.9), 12
    ),
    "test_cycle_lr_with_momentumless_optimizer": lambda: _cyclic(
        dict(base_lr=1, max_lr=5, step_size_up=4, cycle_momentum=False), 10, adam=True, momentum=False
    ),
    "test_cycle_lr_cycle_momentum_fail_with_momentumless_optimizer": (
        "Rprop has no momentum for CyclicLR to cycle: purelr's cyclic_momentum is a separate schedule, given to "
        "an optimizer that takes one"
    ),
    "test_cycle_lr_cycle_momentum_with_beta1_optimizer": lambda: _cyclic(dict(base_lr=1, max_lr=5), 40, adam=True),
    "test_cycle_lr_removed_after_out_of_scope": GC,
    "test_cycle_lr_state_dict_picklable": STATE,
    "test_cycle_lr_scale_fn_restored_from_state_dict": STATE,
    "test_onecycle_lr_invalid_anneal_strategy": raises(lambda: pt.one_cycle_lr(1e-3, 10, anneal_strategy="CATS")),
    "test_onecycle_lr_invalid_pct_start": raises(lambda: pt.one_cycle_lr(1e-3, 10, pct_start=1.1)),
    "test_onecycle_lr_cannot_calculate_total_steps": raises(lambda: pt.one_cycle_lr(1e-3)),
    "test_onecycle_lr_linear_annealing": lambda: _one_cycle(dict(ONE_CYCLE, anneal_strategy="linear")),
    "test_onecycle_lr_linear_annealing_three_phases": lambda: _one_cycle(
        dict(ONE_CYCLE, div_factor=25, anneal_strategy="linear", pct_start=0.4, final_div_factor=4, three_phase=True)
    ),
    "test_onecycle_lr_cosine_annealing": lambda: _one_cycle(ONE_CYCLE),
    "test_onecycle_lr_legacy_state_dict": STATE,
    "test_cycle_lr_with_adam": lambda: _one_cycle(dict(ONE_CYCLE, anneal_strategy="linear"), adam=True),
    "test_lambda_lr": lambda: schedule_cases(
        lambda o: tl.LambdaLR(o, [lambda k: 0.9**k, lambda k: 0.8**k]),
        [pt.lambda_lr(0.05, lambda k: 0.9**k), pt.lambda_lr(0.4, lambda k: 0.8**k)],
        10,
        lrs=(0.05, 0.4),
    ),
    "test_multiplicative_lr": lambda: schedule_cases(
        lambda o: tl.MultiplicativeLR(o, [lambda k: 0.9, lambda k: 0.8]),
        [pt.multiplicative_lr(0.05, lambda k: 0.9), pt.multiplicative_lr(0.4, lambda k: 0.8)],
        10,
        lrs=(0.05, 0.4),
    ),
    "test_multiplicative_lr_with_lr_lambda": raises(lambda: pt.multiplicative_lr(0.05, 0.95), error=TypeError),
    "test_CosineAnnealingWarmRestarts_lr1": lambda: [
        case
        for mult in (1, 2, 4)
        for case in schedule_cases(
            lambda o: tl.CosineAnnealingWarmRestarts(o, 10, mult, 1e-10),
            lambda b: pt.cosine_annealing_warm_restarts(b, 10, mult, 1e-10),
            99,
        )
    ],
    "test_CosineAnnealingWarmRestarts_lr2": lambda: [
        case
        for mult in (1, 2, 4)
        for case in schedule_cases(
            lambda o: tl.CosineAnnealingWarmRestarts(o, 10, mult, 1e-10),
            lambda b: pt.cosine_annealing_warm_restarts_at_epoch(b, 10, mult, 1e-10),
            len(_tenths(30)),
            epochs=_tenths(30),
        )
    ],
    "test_CosineAnnealingWarmRestarts_lr3": lambda: [
        case
        for mult, epochs in (
            (1, [0, 1, 2, 3, 4, 5, 12, 27, 3, 4, 5, 6, 13]),
            (2, [0, 1, 2, 3, 4, 5, 25, 32, 33, 34, 80, 81, 3]),
            (3, [0, 0.1, 0.2, 0.3, 1.3, 2.3, 17.5, 18.5, 19.5, 29.5, 30.5, 31.5, 50]),
        )
        for case in schedule_cases(
            lambda o: tl.CosineAnnealingWarmRestarts(o, 10, mult, 1e-10),
            lambda b: pt.cosine_annealing_warm_restarts_at_epoch(b, 10, mult, 1e-10),
            len(epochs),
            epochs=epochs,
        )
    ],
    "test_CosineAnnealingWarmRestarts_T_cur_reset": "assigns the scheduler's internal T_cur by hand: a pure schedule has no internals to set",
    "test_swalr_no_anneal": lambda: swalr_cases([0.01, 0.01], 1, "cos", factor=None),
    "test_swalr_cosine_anneal_after_multiplicative": lambda: swalr_cases([0.01, 0.01], 5, "cos"),
    "test_swalr_linear_anneal_after_multiplicative": lambda: swalr_cases([0.01, 0.02], 4, "linear"),
    "test_swalr_hypers": raises(
        lambda: pt.swa_lr(0.05, 1.0, anneal_strategy="exponential"),
        lambda: pt.swa_lr(0.05, 1.0, anneal_epochs=-1),
        lambda: pt.swa_lr(0.05, 1.0, anneal_epochs=1.7),
    ),
    "test_step_lr_state_dict": STATE,
    "test_multi_step_lr_state_dict": STATE,
    "test_exp_step_lr_state_dict": STATE,
    "test_cosine_lr_state_dict": STATE,
    "test_reduce_lr_on_plateau_state_dict": STATE,
    "test_lambda_lr_state_dict_fn": STATE,
    "test_lambda_lr_state_dict_obj": STATE,
    "test_CosineAnnealingWarmRestarts_lr_state_dict": STATE,
    "test_swa_lr_state_dict": STATE,
    "test_cosine_then_cyclic": (
        "two schedulers stepped by hand in turn on one optimizer (neither SequentialLR nor ChainedScheduler), "
        "CyclicLR's constructor overwriting the lr CosineAnnealingLR then recurses on; torch asserts only lr <= max_lr"
    ),
    "test_lr_scheduler_state_dict_load": STATE,
    "test_add_param_group_does_not_break_reduce_lr_on_plateau": "optimizer.add_param_group in mid-run: a plateau twin's groups are fixed at construction",
    "test_add_param_group_errors_reduce_lr_on_plateau": "optimizer.add_param_group in mid-run: a plateau twin's groups are fixed at construction",
    "test_constant_initial_lr": TENSOR,
    "test_constant_initial_params_cyclelr": TENSOR,
    "test_constant_initial_params_onecyclelr": TENSOR,
    "test_constant_initial_params_swalr": TENSOR,
    "test_lr_scheduler_checkpoint": RESUME,
    "test_lr_scheduler_checkpoint_on_plateau": RESUME,
}

COVERED = sorted(name for name, scenario in SCENARIOS.items() if callable(scenario))


def test_covered_count():
    """Every test of torch 2.13's TestLRScheduler is listed; the covered ones run below."""
    assert len(SCENARIOS) == 135
    assert len(COVERED) == 95, sorted(set(SCENARIOS) - set(COVERED))


@pytest.mark.parametrize("name", COVERED)
def test_torch_scenario(name):
    cases = SCENARIOS[name]()
    for precision in ("x64", "f32"):
        with jax.enable_x64(precision == "x64"):
            for label, expected, twin, steps in cases:
                context = f"{name} {label} [{precision}"
                if isinstance(twin, tuple):
                    paths = {"eager": plateau_curve(*twin, steps, False), "scan": plateau_curve(*twin, steps, True)}
                else:
                    paths = {"eager": np.asarray(twin(jnp.asarray(steps))), "jit": jitted(twin, steps)}
                for path, values in paths.items():
                    assert_schedule_matches(values, expected, precision, context=f"{context}, {path}]")
