"""Plateau twins against torch 2.13 ReduceLROnPlateau, MMEngine ReduceOnPlateauLR and timm
PlateauLRScheduler: the lr of every parameter group after every step, for random configurations
and metric sequences (with ties, plateaus, NaN and inf), x64 to 1e-12; a training run whose SGD
reads the plateau lr against torch; and the bad-input errors.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from mmengine.optim.scheduler import ReduceOnPlateauLR
from timm.scheduler.plateau_lr import PlateauLRScheduler
from torch.optim import lr_scheduler as tl

from purelr import optim
from purelr.schedules import torch as pt
from purelr.training import plateau
from tests.optim import torch_reference as ref
from tests.parity import assert_schedule_matches

CASES = 120
EPOCHS = 40
GROUPS = 2


def metrics(rng):
    """A metric sequence: a noisy drift rounded to a coarse grid (ties, plateaus), some NaN/inf."""
    drift = rng.choice([-1.0, 1.0]) * rng.uniform(0, 0.3)
    values = np.cumsum(drift + rng.normal(0, rng.choice([0.05, 0.5, 2.0]), EPOCHS)) + 10
    values = np.round(values, int(rng.integers(0, 3)))
    spoiled = rng.random(EPOCHS) < rng.choice([0.0, 0.05])
    values[spoiled] = rng.choice([np.nan, np.inf, -np.inf], spoiled.sum())
    return values


def draw(rng):
    """Numbers of a configuration (traced below) and the strings (one compilation each)."""
    numbers = dict(
        lr=[float(rng.choice([0.1, 1e-3, 0.05 * rng.random()])) for _ in range(GROUPS)],
        factor=float(rng.choice([0.1, 0.5, rng.uniform(0, 0.99)])),
        patience=int(rng.integers(0, 5)),
        threshold=float(rng.choice([0.0, 1e-4, 0.01, 0.3])),
        cooldown=int(rng.integers(0, 4)),
        min_lr=[float(rng.choice([0.0, 1e-4, 0.01])) for _ in range(GROUPS)],
        eps=float(rng.choice([1e-8, 0.0, 1e-3])),
    )
    return numbers, str(rng.choice(["min", "max"])), str(rng.choice(["rel", "abs"]))


@pytest.fixture
def x64():
    """Random metrics sit on threshold boundaries, where float32 and torch's double part ways:
    these run under x64 only (float32: ``test_float32_and_defaults``)."""
    with jax.enable_x64(True):
        yield


def torch_optimizer(lrs):
    return torch.optim.SGD([{"params": [torch.zeros(1)], "lr": lr} for lr in lrs])


def sweep(make, cases, data):
    """Runs the twin ``make(numbers)`` over each case's ``data`` (leading axis: epochs) with
    ``body(twin, state, x) -> state``; cases sharing their static key run vmapped in one compile.
    Returns the lr after every epoch, per case."""
    groups = {}
    for index, (numbers, static) in enumerate(cases):
        groups.setdefault(static, []).append(index)
    out = [None] * len(cases)
    for static, indices in groups.items():

        def run(numbers, xs, static=static):
            twin, body = make(numbers, *static)
            return jax.lax.scan(lambda s, x: (body(twin, s, x),) * 2, twin.init(), xs)[1]

        numbers = jax.tree.map(lambda *v: jnp.asarray(np.stack(v)), *[cases[i][0] for i in indices])
        xs = jax.tree.map(lambda *v: jnp.asarray(np.stack(v)), *[data[i] for i in indices])
        states = jax.jit(jax.vmap(run))(numbers, xs)
        for row, i in enumerate(indices):
            out[i] = jax.tree.map(lambda a: np.asarray(a[row]), states)
    return out


def traced(numbers):
    return {k: jnp.asarray(v) for k, v in numbers.items()}


def test_torch_random(x64):
    rng = np.random.default_rng(7)
    cases = [draw(rng) for _ in range(CASES)]
    seqs = [metrics(rng) for _ in range(CASES)]

    def make(numbers, mode, threshold_mode):
        return (
            plateau.reduce_lr_on_plateau(**numbers, mode=mode, threshold_mode=threshold_mode),
            lambda twin, s, m: twin.step(s, m),
        )

    results = sweep(make, [(n, (m, t)) for n, m, t in cases], seqs)
    for case, ((numbers, mode, threshold_mode), seq, states) in enumerate(zip(cases, seqs, results)):
        opt = torch_optimizer(numbers["lr"])
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode=mode, threshold_mode=threshold_mode, **{k: v for k, v in numbers.items() if k != "lr"}
        )
        expected, bad = [], []
        for m in seq:
            scheduler.step(float(m))
            expected.append([g["lr"] for g in opt.param_groups])
            bad.append(scheduler.num_bad_epochs)
        context = f"case {case} {numbers} {mode} {threshold_mode}"
        assert_schedule_matches(states.lr, expected, "x64", context=context)
        assert list(states.num_bad_epochs) == bad, context
        assert states.epoch[-1] == scheduler.last_epoch
        assert states.cooldown_counter[-1] == scheduler.cooldown_counter
        assert states.best[-1] == scheduler.best


def test_mmengine_random(x64):
    rng = np.random.default_rng(8)
    cases, data, windows = [], [], [(0, 2**31 - 1), (3, 25)]
    for _ in range(CASES):
        numbers, mode, threshold_mode = draw(rng)
        window = windows[int(rng.integers(0, 2))]
        validated = (np.arange(EPOCHS) + 1) % int(rng.integers(1, 3)) == 0
        cases.append((numbers, ({"min": "less", "max": "greater"}[mode], threshold_mode, window)))
        data.append((metrics(rng), validated))

    def make(numbers, rule, threshold_rule, window):
        numbers = dict(numbers, min_value=numbers["min_lr"])
        del numbers["min_lr"]
        twin = plateau.reduce_on_plateau_lr(
            **numbers, monitor="acc", rule=rule, threshold_rule=threshold_rule, begin=window[0], end=window[1]
        )

        def body(twin, state, x):
            m, validated = x
            state = twin.step(state)
            after = twin.step(state, {"acc": m})
            return jax.tree.map(lambda a, b: jnp.where(validated, a, b), after, state)

        return twin, body

    results = sweep(make, cases, data)
    for case, ((numbers, (rule, threshold_rule, (begin, end))), (seq, validated), states) in enumerate(
        zip(cases, data, results)
    ):
        opt = torch_optimizer(numbers["lr"])
        kwargs = {k: v for k, v in numbers.items() if k not in ("lr", "min_lr")}
        scheduler = ReduceOnPlateauLR(
            opt,
            monitor="acc",
            rule=rule,
            threshold_rule=threshold_rule,
            min_value=numbers["min_lr"],
            begin=begin,
            end=end,
            **kwargs,
        )
        expected = []
        for m, val in zip(seq, validated):
            scheduler.step()
            if val:
                scheduler.step({"acc": float(m)})
            expected.append([g["lr"] for g in opt.param_groups])
        assert_schedule_matches(states.lr, expected, "x64", context=f"case {case} {cases[case]}")
        assert states.epoch[-1] == scheduler._global_step


def test_timm_random(x64):
    rng = np.random.default_rng(9)
    cases, data = [], []
    for _ in range(CASES):
        numbers, mode, _ = draw(rng)
        numbers = dict(
            lr=numbers["lr"],
            decay_rate=numbers["factor"],
            patience_t=numbers["patience"],
            threshold=numbers["threshold"],
            cooldown_t=numbers["cooldown"],
            lr_min=numbers["min_lr"][0],
        )
        cases.append((numbers, (mode, int(rng.choice([0, 3, 7])), float(rng.choice([0.0, 1e-5])))))
        data.append((metrics(rng), rng.random(EPOCHS) < 0.9))

    def make(numbers, mode, warmup_t, warmup_lr_init):
        twin = plateau.plateau_lr_scheduler(**numbers, mode=mode, warmup_t=warmup_t, warmup_lr_init=warmup_lr_init)

        def body(twin, state, x):
            m, given = x
            return jax.tree.map(lambda a, b: jnp.where(given, a, b), twin.step(state, m), twin.step(state))

        return twin, body

    results = sweep(make, cases, data)
    for case, ((numbers, (mode, warmup_t, warmup_lr_init)), (seq, given), states) in enumerate(
        zip(cases, data, results)
    ):
        opt = torch_optimizer(numbers["lr"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            scheduler = PlateauLRScheduler(
                opt,
                mode=mode,
                warmup_t=warmup_t,
                warmup_lr_init=warmup_lr_init,
                **{k: v for k, v in numbers.items() if k != "lr"},
            )
        first, expected = [g["lr"] for g in opt.param_groups], []
        for epoch, (m, g) in enumerate(zip(seq, given)):
            scheduler.step(epoch + 1, float(m) if g else None)
            expected.append([g["lr"] for g in opt.param_groups])
        twin = plateau.plateau_lr_scheduler(**numbers, mode=mode, warmup_t=warmup_t, warmup_lr_init=warmup_lr_init)
        assert_schedule_matches(twin.init().lr, first, "x64", context=f"init {case}")
        assert_schedule_matches(states.lr, expected, "x64", context=f"case {case} {cases[case]}")


def test_float32_and_defaults(precision):
    """Well-separated metrics: float32 follows torch too; a scalar lr gives a scalar state."""
    seq = [5.0, 4.0, 4.0, 4.0, 3.0, 3.0, 3.0, 3.0, float("nan"), 3.0, 1.0] * 3
    opt = torch_optimizer([0.1])
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=1, cooldown=1)
    twin = plateau.reduce_lr_on_plateau(0.1, patience=1, cooldown=1)
    state, expected, actual = twin.init(), [], []
    assert state.lr.shape == () and state.lr.dtype == (jnp.float64 if precision == "x64" else jnp.float32)
    for m in seq:
        scheduler.step(m)
        state = twin.step(state, jnp.asarray(m))
        expected.append(opt.param_groups[0]["lr"])
        actual.append(state.lr)
    assert_schedule_matches(np.stack(actual), expected, precision)
    assert min(expected) < 0.1 * 0.1 * 0.1 * 1.01


def test_nan_metric_is_a_bad_epoch():
    twin = plateau.reduce_lr_on_plateau(1.0, patience=1)
    state = twin.step(twin.init(), 1.0)
    state = twin.step(state, float("nan"))
    assert float(state.best) == 1.0 and int(state.num_bad_epochs) == 1
    state = twin.step(state, float("nan"))
    assert float(state.lr) == pytest.approx(0.1) and int(state.num_bad_epochs) == 0


def test_sgd_reads_the_plateau_lr():
    """SGD with momentum, its lr driven by ReduceLROnPlateau on the training loss every 10 steps,
    against torch (x64, 1e-10)."""
    with jax.enable_x64(True):
        twin = plateau.reduce_lr_on_plateau(0.2, patience=1, factor=0.5, threshold=0.05)

        def make(lr):
            return optim.sgd(lr=lambda count: lr, momentum=0.9)

        @jax.jit
        def train_step(params, opt_state, p_state, batch):
            loss, grads = jax.value_and_grad(ref.jax_loss)(params, batch, 1.0)
            updates, opt_state = make(p_state.lr).update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

        params = jax.tree.map(jnp.asarray, ref.PARAMS)
        data = jax.tree.map(jnp.asarray, ref.MLP_DATA)
        p_state = twin.init()
        opt_state = make(p_state.lr).init(params)
        total = 0.0
        for k in range(ref.STEPS):
            params, opt_state, loss = train_step(params, opt_state, p_state, jax.tree.map(lambda a: a[k], data))
            total += float(loss)
            if k % 10 == 9:
                p_state, total = jax.jit(twin.step)(p_state, total), 0.0

        with ref.torch_dtype(True):
            tparams = jax.tree.map(lambda a: torch.tensor(a, requires_grad=True), ref.PARAMS)
            leaves = [ref._leaf(tparams, path) for path in ref.LEAVES]
            opt = torch.optim.SGD(leaves, lr=0.2, momentum=0.9)
            scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=1, factor=0.5, threshold=0.05)
            tdata = jax.tree.map(torch.tensor, ref.MLP_DATA)
            total = 0.0
            for k in range(ref.STEPS):
                opt.zero_grad()
                loss = ref.losses(tparams, jax.tree.map(lambda a: a[k], tdata), torch.tanh)
                loss.backward()
                opt.step()
                total += float(loss)
                if k % 10 == 9:
                    scheduler.step(total)
                    total = 0.0
        assert opt.param_groups[0]["lr"] < 0.2 / 4, "the plateau never fired twice"
        assert float(p_state.lr) == opt.param_groups[0]["lr"]
        for path in ref.LEAVES:
            error = ref.relative_error(ref._leaf(params, path), ref._leaf(tparams, path).detach())
            assert error <= 1e-10, (path, error)


WITH_SCHEDULERS = {
    "linear warmup": (lambda o: tl.LinearLR(o, 0.1, total_iters=8), lambda b: pt.linear_lr(b, 0.1, total_iters=8)),
    "step": (lambda o: tl.StepLR(o, 7, 0.5), lambda b: pt.step_lr(b, 7, 0.5)),
    "multistep": (lambda o: tl.MultiStepLR(o, [5, 5, 20], 0.3), lambda b: pt.multistep_lr(b, [5, 5, 20], 0.3)),
    "exponential": (lambda o: tl.ExponentialLR(o, 0.97), lambda b: pt.exponential_lr(b, 0.97)),
    "constant": (lambda o: tl.ConstantLR(o, 0.25, 6), lambda b: pt.constant_lr(b, 0.25, 6)),
}


@pytest.mark.parametrize("name", sorted(WITH_SCHEDULERS))
def test_with_scheduler_matches_torch_stepping_both(name, x64):
    """ReduceLROnPlateau and a scheduler on one torch optimizer, ``plateau.step(metric)`` then
    ``scheduler.step()`` each epoch (a warmup under the plateau, decays on top of it), against
    ``with_scheduler`` run under ``lax.scan``: random plateau settings and metrics, two groups."""
    make_torch, make_twin = WITH_SCHEDULERS[name]
    rng = np.random.default_rng([11, sorted(WITH_SCHEDULERS).index(name)])
    for case in range(8):
        numbers, mode, threshold_mode = draw(rng)
        seq = metrics(rng)
        twin = plateau.with_scheduler(
            plateau.reduce_lr_on_plateau(**numbers, mode=mode, threshold_mode=threshold_mode),
            make_twin(numbers["lr"][0]),
        )
        run = jax.jit(lambda s, ms: jax.lax.scan(lambda s, m: (twin.step(s, m),) * 2, s, ms)[1])
        state = twin.init()
        actual = np.concatenate([np.asarray(state.lr)[None], np.asarray(run(state, jnp.asarray(seq)).lr)])
        opt = torch_optimizer(numbers["lr"])
        reducer = tl.ReduceLROnPlateau(
            opt, mode=mode, threshold_mode=threshold_mode, **{k: v for k, v in numbers.items() if k != "lr"}
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scheduler = make_torch(opt)
            expected = [[g["lr"] for g in opt.param_groups]]
            for m in seq:
                reducer.step(float(m))
                scheduler.step()
                expected.append([g["lr"] for g in opt.param_groups])
        assert_schedule_matches(
            actual, expected, "x64", context=f"{name} case {case} {numbers} {mode} {threshold_mode}"
        )


def test_with_scheduler_rejects_what_it_cannot_follow():
    with pytest.raises(TypeError, match="needs a purelr.schedules.torch twin"):
        plateau.with_scheduler(plateau.reduce_lr_on_plateau(0.1), lambda t: t)
    with pytest.raises(ValueError, match="'affine' twin .* several parameter groups"):
        plateau.with_scheduler(plateau.reduce_lr_on_plateau([0.1, 0.2]), pt.cosine_annealing_lr(0.1, 10))


@pytest.mark.parametrize(
    "make, kwargs, name",
    [
        (plateau.reduce_lr_on_plateau, dict(mode="mean"), "mode"),
        (plateau.reduce_lr_on_plateau, dict(threshold_mode="relative"), "threshold_mode"),
        (plateau.reduce_lr_on_plateau, dict(factor=1.0), "factor"),
        (plateau.reduce_lr_on_plateau, dict(factor=2.5), "factor"),
        (plateau.reduce_lr_on_plateau, dict(patience=-1), "patience"),
        (plateau.reduce_lr_on_plateau, dict(min_lr=[0.0, 0.1]), "min_lr"),
        (plateau.reduce_on_plateau_lr, dict(rule="min"), "rule"),
        (plateau.reduce_on_plateau_lr, dict(threshold_rule="x"), "threshold_rule"),
        (plateau.reduce_on_plateau_lr, dict(begin=5, end=5), "end"),
        (plateau.plateau_lr_scheduler, dict(decay_rate=1.5), "decay_rate"),
        (plateau.plateau_lr_scheduler, dict(mode="less"), "mode"),
    ],
)
def test_rejects(make, kwargs, name):
    with pytest.raises(ValueError) as error:
        make(0.1, **kwargs)
    (value,) = kwargs.values() if len(kwargs) == 1 else (kwargs[name],)
    assert name in str(error.value) and repr(value) in str(error.value), str(error.value)


def test_mmengine_missing_monitor():
    twin = plateau.reduce_on_plateau_lr(0.1, monitor="acc")
    with pytest.raises(KeyError, match="'acc'.*\\['loss'\\]"):
        twin.step(twin.init(), {"loss": 1.0})
