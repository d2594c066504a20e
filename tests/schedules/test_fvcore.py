"""Parity of purelr.schedules.fvcore with fvcore 0.1.5.post20221221's ParamSchedulers, side by side.

Every scheduler class with seeded random arguments (30 per class under x64, 10 in float32), each
evaluated by fvcore and by the twin (``jax.jit`` over an array of ``where``, one compilation per
class for all its configurations) at random progress values and at the edges: ``where = 0``, the
points where ``(where + 1e-6) * n`` crosses a MultiStep / Step boundary (float64 only: float32
rounding moves them), and a composite's running totals (``"rescaled"`` and ``"fixed"``).
``lr_multiplier`` over detectron2's warmup composition is compared with the same composition of
fvcore's real classes (``purelr.references.detectron2``) stepped by torch, and next to the
boundaries of long runs where float32 progress values would misplace them.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fvcore.common import param_scheduler as ref

from purelr.references import detectron2 as reference
from purelr.schedules import fvcore
from tests.parity import SCHEDULE_RTOL, assert_schedule_matches, jitted, rounding_floor

CASES = {"x64": 30, "f32": 10}
RANDOM_WHERES = 300


def cosine_floor(precision):
    """fvcore forms ``1 + cos(pi * where)`` by cancellation next to ``where = 1`` (the twin
    evaluates from the nearer end): its values there are known to a few units of the start value
    (measured below 1 float64 unit); 4 units stated."""
    return rounding_floor(SCHEDULE_RTOL[precision], 4, reference=precision)


def _values(rng, size):
    return [float(v) for v in 10 ** rng.uniform(-4, 0, size)]


def _boundaries(count, n):
    """``where`` just below, at and above the points where ``int((where + 1e-6) * n)`` reaches ``count``."""
    point = count / n - 1e-6
    return [np.nextafter(point, -1), point, np.nextafter(point, 2)]


def random_case(rng, kind):
    """``(fvcore scheduler, twin, edge wheres)`` of class ``kind``."""
    if kind == "constant":
        value = float(rng.uniform(-1, 1))
        return ref.ConstantParamScheduler(value), fvcore.constant_param_scheduler(value), []
    if kind in ("cosine", "linear"):
        start, end = _values(rng, 2) if rng.random() < 0.8 else (float(rng.uniform(0, 1)), 0.0)
        if rng.random() < 0.3:
            start, end = end, start
        classes = {
            "cosine": (ref.CosineParamScheduler, fvcore.cosine_param_scheduler),
            "linear": (ref.LinearParamScheduler, fvcore.linear_param_scheduler),
        }[kind]
        return classes[0](start, end), classes[1](start, end), [1 - 1e-9, 1 - 2**-40]
    if kind == "exponential":
        start, decay = float(rng.uniform(0.01, 2)), float(10 ** rng.uniform(-4, 1))
        return ref.ExponentialParamScheduler(start, decay), fvcore.exponential_param_scheduler(start, decay), []
    if kind == "polynomial":
        base, power = float(rng.uniform(0.01, 2)), float(rng.choice([0.0, 1.0, 2.0, rng.uniform(0.1, 3)]))
        return (
            ref.PolynomialDecayParamScheduler(base, power),
            fvcore.polynomial_decay_param_scheduler(base, power),
            [1 - 1e-9],
        )
    if kind == "multistep":
        count = int(rng.integers(1, 5))
        values = _values(rng, count)
        num_updates = int(rng.integers(count, 400))
        form = rng.integers(3)
        milestones = (
            sorted(rng.choice(np.arange(1, num_updates), size=count - 1, replace=False).tolist())
            if num_updates > count
            else list(range(1, count))
        )
        kwargs = [
            dict(num_updates=num_updates, milestones=milestones),
            dict(num_updates=num_updates),
            dict(milestones=milestones + [num_updates]),
        ][form]
        try:
            theirs = ref.MultiStepParamScheduler(values, **kwargs)
        except ValueError:  # equal ranges that end at num_updates: fvcore refuses them (so does the twin)
            with pytest.raises(ValueError, match="milestones must lie"):
                fvcore.multi_step_param_scheduler(values, **kwargs)
            return random_case(rng, kind)
        ours = fvcore.multi_step_param_scheduler(values, **kwargs)
        edges = [w for m in theirs._milestones for w in _boundaries(m, num_updates)]
        return theirs, ours, edges
    if kind == "step":
        values, num_updates = _values(rng, int(rng.integers(1, 6))), int(rng.integers(1, 500))
        edges = [w for k in range(1, len(values)) for w in _boundaries(k, len(values))]
        return ref.StepParamScheduler(num_updates, values), fvcore.step_param_scheduler(num_updates, values), edges
    if kind == "step_with_fixed_gamma":
        args = dict(
            base_value=float(rng.uniform(0.01, 2)),
            num_decays=int(rng.integers(1, 5)),
            gamma=float(rng.uniform(0.05, 0.9)),
            num_updates=int(rng.integers(1, 500)),
        )
        edges = [w for k in range(1, args["num_decays"] + 1) for w in _boundaries(k, args["num_decays"] + 1)]
        return (
            ref.StepWithFixedGammaParamScheduler(**args),
            fvcore.step_with_fixed_gamma_param_scheduler(**args),
            edges,
        )
    # composite: 1 to 4 random inner schedulers (none a composite)
    count = int(rng.integers(1, 5))
    inner = [random_case(rng, str(rng.choice(KINDS[:-1]))) for _ in range(count)]
    lengths = [float(v) for v in rng.dirichlet(np.ones(count))]
    if rng.random() < 0.3:
        lengths[-1] += 5e-4  # fvcore replaces the last length when the sum is not exactly 1
    scaling = [str(rng.choice(fvcore.INTERVAL_SCALINGS)) for _ in range(count)]
    theirs = ref.CompositeParamScheduler([s[0] for s in inner], list(lengths), scaling)
    ours = fvcore.composite_param_scheduler([s[1] for s in inner], list(lengths), scaling)
    totals = np.cumsum(theirs._lengths)[:-1]
    edges = [w for t in totals for w in (t - 1e-6, np.nextafter(t - 1e-6, 2), t, t + 1e-3)]
    return theirs, ours, edges


def _fvcore(scheduler, where):
    try:
        return scheduler(where)
    except IndexError:
        return np.nan


KINDS = (
    "constant",
    "cosine",
    "exponential",
    "linear",
    "polynomial",
    "multistep",
    "step",
    "step_with_fixed_gamma",
    "composite",
)


@pytest.mark.parametrize("kind", KINDS)
def test_random_schedulers(kind, precision):
    rng = np.random.default_rng(KINDS.index(kind) + (100 if precision == "f32" else 0))
    cases = [random_case(rng, kind) for _ in range(CASES[precision])]
    wheres = [0.0, 0.5, 1 - 1e-7] + rng.uniform(0, 1, RANDOM_WHERES).tolist()
    if precision == "x64":
        wheres += [float(w) for case in cases for w in case[2] if 0 <= w < 1]
    # float32 runs see float32 progress values: fvcore is given the same numbers
    wheres = np.asarray(wheres, np.float64 if precision == "x64" else np.float32).astype(np.float64)
    both = jax.jit(lambda w: jnp.stack([case[1](w) for case in cases]))
    ours = np.asarray(both(jnp.asarray(wheres)))
    floor = cosine_floor(precision) if kind in ("cosine", "composite") else None
    worst = 0.0
    for i, (theirs, _, _) in enumerate(cases):
        expected = np.asarray([_fvcore(theirs, float(w)) for w in wheres])
        past = np.isnan(expected)  # fvcore's Step schedulers index past their list for where >= 1 - 1e-6
        worst = max(
            worst,
            assert_schedule_matches(
                ours[i][~past], expected[~past], precision, floor=floor, context=f"{kind} case {i}"
            ),
        )
    print(f"{kind} {precision}: worst {worst:.3g}")


def random_solver(rng):
    name = str(rng.choice(["WarmupMultiStepLR", "WarmupCosineLR", "WarmupStepWithFixedGammaLR"]))
    max_iter = int(rng.integers(5, 400))
    solver = dict(
        LR_SCHEDULER_NAME=name,
        MAX_ITER=max_iter,
        BASE_LR=float(10 ** rng.uniform(-3, -1)),
        BASE_LR_END=0.0,
        GAMMA=float(rng.uniform(0.05, 0.5)),
        NUM_DECAYS=int(rng.integers(1, 4)),
        STEPS=tuple(sorted(set(rng.integers(1, max_iter + 40, int(rng.integers(0, 4))).tolist()))),
        WARMUP_FACTOR=float(rng.choice([0.001, rng.uniform(0, 1)])),
        WARMUP_ITERS=int(rng.choice([0, rng.integers(1, max_iter + 50)])),
        WARMUP_METHOD=str(rng.choice(fvcore.WARMUP_METHODS)),
        RESCALE_INTERVAL=bool(rng.random() < 0.3),
    )
    if name == "WarmupCosineLR" and rng.random() < 0.6:
        solver["BASE_LR_END"] = solver["BASE_LR"] * float(rng.uniform(0, 1))
    solver["STEPS"] = tuple(s for s in solver["STEPS"] if s != max_iter)  # fvcore: milestone < num_updates
    return solver


def test_lr_multiplier_over_warmup(precision):
    """detectron2's ``LRMultiplier(WarmupParamScheduler(...))`` of ``build_lr_scheduler``, random
    SOLVER settings: ``lr_multiplier(base, build_lr_scheduler(solver), MAX_ITER)`` at every update
    against fvcore's classes composed as detectron2 does, stepped by torch."""
    from purelr.recipes import detectron2 as recipe

    rng = np.random.default_rng(7 if precision == "x64" else 8)
    worst = 0.0
    for case in range(CASES[precision]):
        solver = recipe.solver_of(random_solver(rng))
        if recipe.fails_in_detectron2(solver):
            with pytest.raises(ValueError, match="detectron2 fails"):
                recipe.build_lr_scheduler(solver)
            continue
        iters = solver["MAX_ITER"]
        expected = reference.lr_curve(solver, [solver["BASE_LR"]], iters)[:, 0]
        schedule = fvcore.lr_multiplier(solver["BASE_LR"], recipe.build_lr_scheduler(solver), iters)
        steps = np.arange(iters)
        floor = cosine_floor(precision)
        worst = max(
            worst,
            assert_schedule_matches(
                jitted(schedule, steps), expected, precision, floor=floor, context=f"case {case}: {solver}"
            ),
        )
    print(f"lr_multiplier {precision}: worst {worst:.3g}")


@pytest.mark.parametrize("max_iter", [999_999, 1_000_000, 3_000_000, 270_000])
def test_lr_multiplier_boundaries_at_long_runs(max_iter, precision):
    """Next to each milestone and the end of warmup of long runs, the lr is fvcore's, in float32
    too: ``(t / max_iter + 1e-6) * max_iter`` lands within float32 rounding of an integer when
    ``1e-6 * max_iter`` is near one (a float32 ``where`` moved the milestone of 999999 iterations by
    one step: an error of 0.9), so ``lr_multiplier`` places boundaries with fvcore's float64."""
    from purelr.recipes import detectron2 as recipe

    solver = recipe.solver_of(
        dict(MAX_ITER=max_iter, STEPS=(max_iter // 3, 2 * max_iter // 3 + 7), BASE_LR=0.02, WARMUP_ITERS=1000)
    )
    multiplier = reference.multiplier(solver)
    steps = np.asarray(sorted({t for s in solver["STEPS"] + (1000,) for t in range(s - 3, s + 4)}))
    expected = [0.02 * multiplier(t / max_iter) for t in steps]
    schedule = fvcore.lr_multiplier(0.02, recipe.build_lr_scheduler(solver), max_iter)
    assert_schedule_matches(jitted(schedule, steps), expected, precision, context=f"max_iter {max_iter}")


def test_where_zero_and_jit_paths():
    """``where = 0`` of every class, eager and jitted, a step array through ``lr_multiplier``, and
    a function of the user's own (a float ``where``, not a ``Progress``) inside a composite."""
    with jax.enable_x64(True):
        own = fvcore.composite_param_scheduler(
            [lambda w: 1 - w, fvcore.constant_param_scheduler(0.5)], [0.5, 0.5], ["fixed", "fixed"]
        )
        np.testing.assert_array_equal(
            jitted(fvcore.lr_multiplier(2.0, own, 10), np.arange(10)),
            [2.0 * (1 - t / 10) if t < 5 else 1.0 for t in range(10)],
        )
        multi = fvcore.multi_step_param_scheduler([1.0, 0.1], num_updates=10, milestones=[5])
        warm = fvcore.warmup_param_scheduler(multi, 0.25, 0.2)
        assert float(warm(0.0)) == 0.25
        assert float(jax.jit(warm)(jnp.asarray(0.0))) == 0.25
        schedule = fvcore.lr_multiplier(2.0, warm, 10)
        np.testing.assert_array_equal(
            jitted(schedule, np.arange(10)),
            [
                2.0
                * reference.warmup_param_scheduler(ref.MultiStepParamScheduler([1.0, 0.1], 10, [5]), 0.25, 0.2)(t / 10)
                for t in range(10)
            ],
        )


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: fvcore.multi_step_param_scheduler([1.0, 0.1]), "num_updates or milestones"),
        (lambda: fvcore.multi_step_param_scheduler([1.0, 0.1], num_updates=10, milestones=[10]), "milestones must lie"),
        (
            lambda: fvcore.multi_step_param_scheduler([1.0, 0.1], num_updates=10, milestones=[2, 3]),
            "milestones must hold 1",
        ),
        (lambda: fvcore.multi_step_param_scheduler([1.0, 0.1, 0.01], num_updates=2), "at least len"),
        (lambda: fvcore.step_param_scheduler(0, [1.0]), "num_updates must be > 0"),
        (lambda: fvcore.step_with_fixed_gamma_param_scheduler(1.0, 0, 0.1, 10), "num_decays must be positive"),
        (
            lambda: fvcore.composite_param_scheduler([fvcore.constant_param_scheduler(1.0)], [0.5], ["fixed"]),
            "must sum to 1",
        ),
        (
            lambda: fvcore.composite_param_scheduler([fvcore.constant_param_scheduler(1.0)], [1.0], ["scaled"]),
            "interval_scaling\\[0\\] must be one of",
        ),
        (
            lambda: fvcore.warmup_param_scheduler(fvcore.constant_param_scheduler(1.0), 0.1, 0.1, "cosine"),
            "warmup_method must be one of",
        ),
        (lambda: fvcore.lr_multiplier(0.1, fvcore.constant_param_scheduler(1.0), 0), "max_iter must be positive"),
    ],
)
def test_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()
