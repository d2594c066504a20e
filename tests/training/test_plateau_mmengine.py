"""MMEngine 0.10.7 ``param_scheduler`` lists holding a ``ReduceOnPlateauLR`` against the real
schedulers, built as the runner builds them (default ``end`` from the train loop) and stepped as
``ParamSchedulerHook`` steps them: iteration-based ones after each iteration, epoch-based ones
after each epoch, the plateau's ``step(metrics)`` after each validation. The twin runs the same
script of events under ``jax.jit`` + ``lax.scan``; the lr of every group during every iteration
is compared (x64 1e-12, float32 1e-6, ``tests/parity.py``). Random seeded configurations (warmup,
multistep, cosine, step, exponential, poly, restarts, one-cycle, ``convert_to_iter_based``, each
before or after the plateau, epoch- and iteration-based train loops, one or two groups, metric
sequences with ties, plateaus and NaN) plus hand-picked ones; then the bad inputs.
"""

import copy
import warnings

import jax
import jax.numpy as jnp
import mmengine.optim.scheduler  # noqa: F401  (registers the schedulers)
import numpy as np
import pytest
import torch
from mmengine.registry import PARAM_SCHEDULERS

import purelr
from purelr.training import plateau_mmengine as pm
from tests.bad_inputs import assert_rejects
from tests.parity import SCHEDULE_RTOL, assert_schedule_matches, rounding_floor

ITER, EPOCH, VAL = 0, 1, 2


def script(*, epoch_len, max_epochs=None, max_iters=None, val_interval=1, val_begin=1):
    """The hook calls of a run, as ``EpochBasedTrainLoop`` / ``IterBasedTrainLoop`` make them."""
    events = []
    if max_epochs is not None:
        for epoch in range(1, max_epochs + 1):
            events += [ITER] * epoch_len + [EPOCH]
            if epoch >= val_begin and (epoch % val_interval == 0 or epoch == max_epochs):
                events.append(VAL)
        return events
    for it in range(1, max_iters + 1):
        events.append(ITER)
        if it % val_interval == 0 or it == max_iters:
            events.append(VAL)
    return events + [EPOCH]


def mmengine_lrs(cfgs, lr, events, metrics, *, epoch_len, max_epochs=None, max_iters=None, monitor="loss", param="lr"):
    """The lr (or ``param``) of each group during each iteration under MMEngine's schedulers, and
    the schedulers."""
    lrs = lr if isinstance(lr, list) else [lr]
    optimizer = torch.optim.SGD([{"params": [torch.zeros(1)], param: v} for v in lrs], lr=0.1, momentum=0.9)
    schedulers = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for cfg in cfgs:
            cfg = copy.deepcopy(cfg)
            if max_epochs is not None or max_iters is not None:  # Runner._build_param_scheduler
                by_epoch = cfg.get("by_epoch", True)
                cfg.setdefault(
                    "end",
                    (max_epochs if max_epochs is not None else 1)
                    if by_epoch
                    else (max_iters if max_iters is not None else max_epochs * epoch_len),
                )
            schedulers.append(
                PARAM_SCHEDULERS.build(cfg, default_args=dict(optimizer=optimizer, epoch_length=epoch_len))
            )
        seen = []
        for kind, metric in zip(events, metrics):
            if kind == ITER:
                seen.append([g[param] for g in optimizer.param_groups])
            for scheduler in schedulers:  # ParamSchedulerHook.after_train_iter / _epoch / after_val_epoch
                if kind == ITER and not scheduler.by_epoch:
                    scheduler.step()
                elif kind == EPOCH and scheduler.by_epoch:
                    scheduler.step()
                elif kind == VAL and getattr(scheduler, "need_val_args", False):
                    scheduler.step({monitor: float(metric)})
    seen = np.asarray(seen, dtype=np.float64)
    return (seen if isinstance(lr, list) else seen[:, 0]), schedulers


def twin_lrs(chain, events, metrics, monitor="loss"):
    """The twin's lr during each iteration (one jitted ``lax.scan`` over the events), and its last state."""

    def body(state, x):
        kind, metric = x
        branches = [chain.step_iteration, chain.step_epoch, lambda s: chain.step_validation(s, {monitor: metric})]
        return jax.lax.switch(kind, branches, state), state.lr

    run = jax.jit(lambda kinds, ms: jax.lax.scan(body, chain.init(), (kinds, ms)))
    state, lrs = run(jnp.asarray(events, jnp.int32), jnp.asarray(metrics))
    return np.asarray(lrs)[np.asarray(events) == ITER], state


def metric_sequence(rng, events, coarse):
    """A validation metric per event: a noisy drift on a grid (ties, plateaus), some NaN."""
    n = len(events)
    drift = rng.choice([-1.0, 1.0]) * rng.uniform(0, 0.3)
    values = np.cumsum(drift + rng.normal(0, rng.choice([0.05, 0.5, 2.0]), n)) + 20
    values = np.round(values, 1 if coarse else int(rng.integers(0, 3)))
    values[rng.random(n) < rng.choice([0.0, 0.05])] = np.nan
    return values


def draw_schedulers(rng, *, epoch_len, max_epochs, max_iters, groups):
    """A warmup, a main schedule and the plateau, in a random order, with random settings."""
    iter_loop = max_epochs is None
    warmups = [
        dict(
            type="LinearLR",
            start_factor=float(rng.choice([1e-3, 0.1, rng.uniform(0.01, 1)])),
            by_epoch=False,
            begin=0,
            end=int(rng.integers(2, 3 * epoch_len)),
        ),
        dict(
            type="ConstantLR",
            factor=float(rng.uniform(0.1, 1)),
            by_epoch=False,
            begin=0,
            end=int(rng.integers(2, 2 * epoch_len)),
        ),
        dict(type="LinearLR", start_factor=0.25, begin=0, end=int(rng.integers(1, 4)), by_epoch=not iter_loop),
    ]
    length = 3 * epoch_len if iter_loop else max_epochs
    by_epoch = bool(rng.random() < 0.6) and not iter_loop
    mains = [
        dict(
            type="MultiStepLR",
            milestones=sorted(int(m) for m in rng.integers(1, length, 2)),
            gamma=float(rng.choice([0.1, 0.5])),
            by_epoch=by_epoch,
        ),
        dict(
            type="CosineAnnealingLR",
            T_max=int(rng.integers(2, length + 2)),
            eta_min=float(rng.choice([0.0, 1e-4])),
            by_epoch=by_epoch,
            begin=int(rng.integers(0, 3)),
        ),
        dict(type="StepLR", step_size=int(rng.integers(1, 4)), gamma=float(rng.uniform(0.3, 0.9)), by_epoch=by_epoch),
        dict(type="ExponentialLR", gamma=float(rng.uniform(0.8, 1.0)), by_epoch=by_epoch),
        dict(
            type="PolyLR",
            power=float(rng.choice([0.5, 1.0, 2.0])),
            eta_min=float(rng.choice([0.0, 1e-4])),
            by_epoch=by_epoch,
            begin=int(rng.integers(0, 2)),
            end=length + int(rng.integers(0, 3)),
        ),
        dict(
            type="CosineRestartLR",
            periods=[int(rng.integers(2, 5)), int(rng.integers(2, 5))],
            restart_weights=[1.0, 0.5],
            eta_min=float(rng.choice([0.0, 1e-4])),
            by_epoch=by_epoch,
        ),
        dict(type="OneCycleLR", eta_max=0.05, total_steps=max_iters or max_epochs * epoch_len, by_epoch=False),
    ]
    main = mains[int(rng.choice(len(mains), p=[0.25, 0.25, 0.1, 0.1, 0.1, 0.1, 0.1]))]
    if main["by_epoch"] and rng.random() < 0.3 and main["type"] != "OneCycleLR":
        main["convert_to_iter_based"] = True
    plateau = dict(
        type="ReduceOnPlateauLR",
        monitor="loss",
        rule=str(rng.choice(["less", "greater"])),
        factor=float(rng.choice([0.1, 0.5, rng.uniform(0, 0.99)])),
        patience=int(rng.integers(0, 4)),
        threshold=float(rng.choice([0.0, 1e-4, 0.01])),
        threshold_rule=str(rng.choice(["rel", "abs"])),
        cooldown=int(rng.integers(0, 3)),
        begin=int(rng.integers(0, 3)) if not iter_loop else 0,
        min_value=[float(rng.choice([0.0, 1e-4])) for _ in range(groups)]
        if groups and rng.random() < 0.5
        else float(rng.choice([0.0, 1e-4])),
    )
    if not iter_loop and rng.random() < 0.3:
        plateau["end"] = int(rng.integers(plateau["begin"] + 1, max_epochs + 2))
    chosen = [warmups[int(rng.integers(0, len(warmups)))]] if rng.random() < 0.8 else []
    chosen += [main] if rng.random() < 0.9 else []
    chosen.insert(int(rng.integers(0, len(chosen) + 1)), plateau)
    return chosen


def draw_case(rng):
    groups = int(rng.choice([0, 2]))  # 0: a scalar lr
    epoch_len = int(rng.integers(2, 9))
    if rng.random() < 0.8:
        loop = dict(max_epochs=int(rng.integers(5, 13)))
        val = dict(val_interval=int(rng.choice([1, 1, 2])), val_begin=int(rng.choice([1, 1, 2])))
    else:
        loop = dict(max_iters=int(rng.integers(20, 60)))
        val = dict(val_interval=int(rng.integers(2, 6)))
    cfgs = draw_schedulers(
        rng, epoch_len=epoch_len, max_epochs=loop.get("max_epochs"), max_iters=loop.get("max_iters"), groups=groups
    )
    lr = [float(rng.choice([0.1, 0.02])), float(rng.uniform(1e-3, 0.05))] if groups else float(rng.choice([0.1, 0.02]))
    return cfgs, lr, dict(epoch_len=epoch_len, **loop), val


def check(cfgs, lr, lengths, val, metrics_of, precision, context):
    events = script(
        epoch_len=lengths["epoch_len"], max_epochs=lengths.get("max_epochs"), max_iters=lengths.get("max_iters"), **val
    )
    metrics = metrics_of(events)
    expected, schedulers = mmengine_lrs(cfgs, lr, events, metrics, **lengths)
    chain = pm.param_scheduler_with_plateau(cfgs, lr, **lengths)
    actual, state = twin_lrs(chain, events, metrics)
    context = f"{context} {cfgs} lr={lr} {lengths} {val}"
    # floor: 8 float64 units of the peak: MMEngine's chained cosine recursion cancels near its end
    # (measured 0.03 units: the example, iteration 1999, 6.9e-8 of the peak)
    assert_schedule_matches(
        actual, expected, precision, context=context, floor=rounding_floor(SCHEDULE_RTOL[precision], 8)
    )
    (reference,) = [s for s in schedulers if getattr(s, "need_val_args", False)]
    counters = [int(state.plateau.epoch), int(state.plateau.num_bad_epochs), int(state.plateau.cooldown_counter)]
    assert counters == [reference._global_step, reference.num_bad_epochs, reference.cooldown_counter], context
    assert float(state.plateau.best) == pytest.approx(reference.best, rel=1e-6, nan_ok=True), context
    for other in schedulers:
        assert other._global_step == int(state.plateau.epoch if other.by_epoch else state.iteration), context
    return expected


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


CASES = 24


def random_case(seed):
    rng = np.random.default_rng([151, seed])
    cfgs, lr, lengths, val = draw_case(rng)
    check(cfgs, lr, lengths, val, lambda events: metric_sequence(rng, events, coarse=False), "x64", f"seed {seed}")


@pytest.mark.parametrize("seed", range(CASES))
def test_random_lists(seed, x64):
    """Random configurations and metrics (values on a fine grid sit on threshold boundaries, where
    float32 parts from MMEngine's double comparisons: float32 runs ``test_float32``)."""
    random_case(seed)


@pytest.mark.nightly
@pytest.mark.parametrize("seed", range(CASES, 20 * CASES))
def test_random_lists_nightly(seed, x64):
    random_case(seed)


def test_random_lists_fire():
    """The random cases exercise the plateau: in most of them a reduction changes the lr."""
    fired = 0
    for seed in range(CASES):
        rng = np.random.default_rng([151, seed])
        cfgs, lr, lengths, val = draw_case(rng)
        events = script(
            epoch_len=lengths["epoch_len"],
            max_epochs=lengths.get("max_epochs"),
            max_iters=lengths.get("max_iters"),
            **val,
        )
        metrics = metric_sequence(rng, events, coarse=False)
        idle = [dict(c, eps=1.0) if c["type"] == "ReduceOnPlateauLR" else c for c in cfgs]
        fired += not np.array_equal(
            mmengine_lrs(cfgs, lr, events, metrics, **lengths)[0], mmengine_lrs(idle, lr, events, metrics, **lengths)[0]
        )
    assert fired >= CASES // 2, fired


def stepped_down(seq):
    """Well-separated metrics (float32 compares them as MMEngine's double does): improving, then
    flat (a plateau), a NaN, improving again, flat again."""
    return lambda events: np.asarray(
        [seq[min(i, len(seq) - 1)] for i in np.cumsum(np.asarray(events) == VAL) - 1], dtype=np.float64
    )


PLATEAU = dict(type="ReduceOnPlateauLR", monitor="loss", rule="less", factor=0.5, patience=1, begin=1)
SEQ = [9.0, 8.0, 8.0, 8.0, 7.0, float("nan"), 7.0, 7.0, 6.0, 6.0, 6.0, 6.0, 6.0, 6.0]
HAND_PICKED = {
    "warmup then plateau (the issue's example, scaled)": (
        [dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=50), PLATEAU],
        [0.02, 0.002],
        dict(epoch_len=10, max_epochs=12),
        dict(),
    ),
    "the issue's example, full scale: 500 warmup iterations, cosine after": (
        [
            dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=500),
            dict(PLATEAU, patience=2),
            dict(type="CosineAnnealingLR", T_max=1500, by_epoch=False, begin=500),
        ],
        0.02,
        dict(epoch_len=100, max_epochs=20),
        dict(),
    ),
    "multistep and plateau": (
        [PLATEAU, dict(type="MultiStepLR", milestones=[8, 11], gamma=0.1)],
        0.01,
        dict(epoch_len=4, max_epochs=12),
        dict(),
    ),
    "plateau then cosine by iteration": (
        [
            dict(PLATEAU, cooldown=1, min_value=[1e-3, 0.0]),
            dict(type="CosineAnnealingLR", T_max=40, eta_min=1e-4, by_epoch=False, begin=30),
        ],
        [0.1, 0.05],
        dict(epoch_len=6, max_epochs=12),
        dict(val_interval=2),
    ),
    "warmup by epoch, cosine converted to iterations": (
        [
            dict(type="LinearLR", start_factor=0.1, begin=0, end=2),
            dict(PLATEAU, rule="greater", begin=0, end=9),
            dict(type="CosineAnnealingLR", begin=2, T_max=10, convert_to_iter_based=True),
        ],
        0.1,
        dict(epoch_len=5, max_epochs=12),
        dict(),
    ),
    "iteration-based loop": (
        [
            dict(type="LinearLR", start_factor=0.01, by_epoch=False, end=20),
            dict(PLATEAU, begin=0),
            dict(type="PolyLR", eta_min=1e-4, by_epoch=False, begin=20),
        ],
        [0.1, 0.01],
        dict(epoch_len=10, max_iters=90),
        dict(val_interval=6),
    ),
}


@pytest.mark.parametrize("name", sorted(HAND_PICKED))
def test_hand_picked(name, precision):
    """In float32 too: between replayed events the twin takes the rules' closed forms from the
    last one, so 2000 iterations do not accumulate a rounding each (replayed one by one, the
    full-scale warmup drifts to 1.3e-6)."""
    cfgs, lr, lengths, val = HAND_PICKED[name]
    seq = [10.0 - m for m in SEQ] if any(c.get("rule") == "greater" for c in cfgs) else SEQ
    expected = check(cfgs, lr, lengths, val, stepped_down(seq), precision, name)
    idle = [dict(c, eps=1.0) if c["type"] == "ReduceOnPlateauLR" else c for c in cfgs]
    events = script(
        epoch_len=lengths["epoch_len"], max_epochs=lengths.get("max_epochs"), max_iters=lengths.get("max_iters"), **val
    )
    unreduced, _ = mmengine_lrs(idle, lr, events, stepped_down(seq)(events), **lengths)
    assert not np.array_equal(expected, unreduced), "the plateau never fired"


@pytest.mark.parametrize("rule", ["less", "greater"])
def test_best_starts_at_mmengine_inf(rule, x64):
    """MMEngine's ``best`` starts at its ``INF = 1e9`` (``-1e9``), not at infinity: metrics beyond
    it are never an improvement, so the plateau fires from the first validations."""
    sign = 1.0 if rule == "less" else -1.0
    cfgs = [dict(type="LinearLR", start_factor=0.5, by_epoch=False, end=6), dict(PLATEAU, rule=rule, begin=0)]
    big = [sign * m for m in (3e9, 2e9, 1e9, 1e9 - 1, 5e8, 5e8, 5e8, 5e8)]
    check(cfgs, 0.1, dict(epoch_len=3, max_epochs=8), {}, stepped_down(big), "x64", rule)


@pytest.fixture
def f32():
    with jax.enable_x64(False):
        yield


def test_float32_random(f32):
    """Random lists in float32, with metrics on a coarse grid and thresholds away from it
    (``threshold`` 1e-4 relative or 0.05 absolute), so float32 compares as MMEngine's double."""
    for seed in range(6):
        rng = np.random.default_rng([152, seed])
        cfgs, lr, lengths, val = draw_case(rng)
        for cfg in cfgs:
            if cfg["type"] == "ReduceOnPlateauLR":
                cfg["threshold"] = 1e-4 if cfg["threshold_rule"] == "rel" else 0.05
        check(cfgs, lr, lengths, val, lambda events: metric_sequence(rng, events, coarse=True), "f32", f"seed {seed}")


def test_momentum():
    """``ReduceOnPlateauMomentum`` with the momentum schedulers of a mixed list (``param_name``),
    and the generic ``ReduceOnPlateauParamScheduler``."""
    cfgs = [
        dict(type="LinearLR", start_factor=0.1, by_epoch=False, end=10),
        dict(type="LinearMomentum", start_factor=0.5, by_epoch=False, end=12),
        dict(PLATEAU, type="ReduceOnPlateauMomentum", factor=0.9),
        dict(type="StepMomentum", step_size=3, gamma=0.95),
        dict(type="ReduceOnPlateauParamScheduler", param_name="weight_decay", monitor="loss"),
    ]
    lengths = dict(epoch_len=4, max_epochs=10)
    events = script(**lengths)
    metrics = stepped_down(SEQ)(events)
    with jax.enable_x64(True):
        chain = pm.param_scheduler_with_plateau(cfgs, [0.9, 0.8], **lengths, param_name="momentum")
        actual, _ = twin_lrs(chain, events, metrics)
    expected, _ = mmengine_lrs(cfgs[:4], [0.9, 0.8], events, metrics, **lengths, param="momentum")
    assert_schedule_matches(actual, expected, "x64")
    unreduced, _ = mmengine_lrs(cfgs[:2] + cfgs[3:4], [0.9, 0.8], events, metrics, **lengths, param="momentum")
    assert not np.array_equal(expected, unreduced), "the plateau never fired"


def test_state_and_metrics_forms():
    """``state.lr`` is the lr in force; a bare metric is taken as the monitored one, ``None`` is
    skipped (as the hook skips it); the twin's steps are pure (the state given is not changed)."""
    chain = pm.param_scheduler_with_plateau([dict(PLATEAU, begin=0, patience=0)], [0.1, 0.2], max_epochs=3)
    state = chain.init()
    assert state.lr.shape == (2,) and int(state.iteration) == 0 and int(state.plateau.epoch) == 0
    first = chain.step_validation(state, 1.0)
    second = chain.step_validation(first, {"loss": 2.0, "acc": 0.5})
    np.testing.assert_allclose(np.asarray(second.lr), [0.05, 0.1])
    np.testing.assert_allclose(np.asarray(first.lr), [0.1, 0.2])
    assert chain.step_validation(second, None) is second


BASE = [
    dict(type="LinearLR", start_factor=0.1, by_epoch=False, end=10),
    PLATEAU,
    dict(type="MultiStepLR", milestones=[3]),
]
LENGTHS = dict(epoch_len=5, max_epochs=6)


def with_plateau(**changes):
    return [BASE[0], {**PLATEAU, **changes}, BASE[2]]


BAD = [
    ("by_epoch", with_plateau(by_epoch=False), {}, ValueError, ("param_scheduler[1]", "by_epoch=False")),
    (
        "convert",
        with_plateau(convert_to_iter_based=True),
        {},
        ValueError,
        ("param_scheduler[1]", "convert_to_iter_based=True"),
    ),
    ("monitor none", with_plateau(monitor=None), {}, TypeError, ("param_scheduler[1].monitor", "None")),
    ("monitor empty", with_plateau(monitor=""), {}, TypeError, ("param_scheduler[1].monitor", "''")),
    ("factor 1", with_plateau(factor=1.0), {}, ValueError, ("param_scheduler[1]", "factor", "1.0")),
    ("factor 2.5", with_plateau(factor=2.5), {}, ValueError, ("param_scheduler[1]", "factor", "2.5")),
    ("factor str", with_plateau(factor="0.5"), {}, TypeError, ("param_scheduler[1]", "factor", "'0.5'")),
    ("threshold", with_plateau(threshold=-0.1), {}, ValueError, ("param_scheduler[1]", "threshold", "-0.1")),
    ("patience", with_plateau(patience=-1), {}, ValueError, ("param_scheduler[1]", "patience", "-1")),
    ("cooldown", with_plateau(cooldown=1.5), {}, ValueError, ("param_scheduler[1]", "cooldown", "1.5")),
    ("rule", with_plateau(rule="min"), {}, ValueError, ("param_scheduler[1]", "rule", "'min'")),
    (
        "threshold_rule",
        with_plateau(threshold_rule="relative"),
        {},
        ValueError,
        ("param_scheduler[1]", "threshold_rule", "'relative'"),
    ),
    ("min_value", with_plateau(min_value=-1.0), {}, ValueError, ("param_scheduler[1]", "min_value", "-1.0")),
    (
        "min_value groups",
        with_plateau(min_value=[0.0, 0.0, 0.0]),
        dict(lr=[0.1, 0.2]),
        ValueError,
        ("param_scheduler[1]", "min_value", "[0.0, 0.0, 0.0]"),
    ),
    ("begin end", with_plateau(begin=4, end=4), {}, ValueError, ("param_scheduler[1]", "end", "4")),
    ("last_step", with_plateau(last_step=3), {}, ValueError, ("param_scheduler[1].last_step", "3")),
    ("typo", with_plateau(patiance=2), {}, TypeError, ("param_scheduler[1].patiance", "2")),
    ("param_name", with_plateau(param_name="lr"), {}, TypeError, ("param_scheduler[1].param_name", "'lr'")),
    ("no plateau", [BASE[0], BASE[2]], {}, ValueError, ("one ReduceOnPlateau", "'lr'", "param_scheduler")),
    (
        "two plateaus",
        BASE + [PLATEAU],
        {},
        ValueError,
        ("one ReduceOnPlateau", "'ReduceOnPlateauLR', 'ReduceOnPlateauLR'"),
    ),
    (
        "other scheduler, index kept",
        [PLATEAU, BASE[0], dict(type="StepLR", step_size=0)],
        {},
        ValueError,
        ("param_scheduler[2].step_size", "0"),
    ),
    ("lr", BASE, dict(lr=-1.0), ValueError, ("lr", "-1.0")),
    ("lr group", BASE, dict(lr=[0.1, float("nan")]), ValueError, ("lr[1]", "nan")),
    ("not a list", "ReduceOnPlateauLR", {}, TypeError, ("param_scheduler", "'ReduceOnPlateauLR'")),
]


@pytest.mark.parametrize("cfgs, kwargs, exception, needles", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_rejects(cfgs, kwargs, exception, needles):
    kwargs = {"lr": 0.1, **LENGTHS, **kwargs}
    assert_rejects(lambda: pm.param_scheduler_with_plateau(cfgs, **kwargs), exception, *needles)


def test_missing_monitor_in_metrics():
    chain = pm.param_scheduler_with_plateau(with_plateau(monitor="acc"), 0.1, **LENGTHS)
    assert_rejects(lambda: chain.step_validation(chain.init(), {"loss": 1.0}), KeyError, "'acc'", "['loss']")


def test_build_names_this_api():
    """``purelr.build`` makes one optax transformation, which sees no metrics: a config with a
    ReduceOnPlateau is refused, naming ``param_scheduler_with_plateau``."""
    cfg = dict(
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.01, momentum=0.9)),
        param_scheduler=BASE,
        train_cfg=dict(by_epoch=True, max_epochs=6),
    )
    assert_rejects(
        lambda: purelr.build(cfg, {"w": jnp.zeros(3)}, epoch_len=5),
        ValueError,
        "param_scheduler[1].type",
        "'ReduceOnPlateauLR'",
        "param_scheduler_with_plateau",
    )
