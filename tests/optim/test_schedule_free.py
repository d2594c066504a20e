"""Parity of purelr.optim.schedule_free (and its Reference and Closure forms) with schedulefree 1.4.1.

Each configuration is a model of two parameter groups (``hidden``, ``out``: ``optax.multi_transform``
on the purelr side, two param groups on torch's), each group with its own random numbers (lr,
betas or momentum, eps, weight decay, warmup_steps, r, weight_lr_power, and lr following
``torch_reference.LR_FACTOR`` through ``LambdaLR`` for half of them), run for ``STEPS`` updates on
``torch_reference``'s problem (the MLP under x64, the quadratic in float32). The purelr side
is one jitted, vmapped ``lax.scan`` per optimizer and flags, the numbers traced (given as
schedules). Compared: params, every buffer (``z``, ``exp_avg_sq``, the Reference forms' ``x``,
``y``), each group's ``k``, ``scheduled_lr``, ``lr_max``, ``weight_sum``, and then the params after
``optimizer.eval()`` (purelr: ``schedule_free_eval_params``) and after ``optimizer.train()`` again
(``schedule_free_train_params``). The Closure forms' gradient is taken at
``schedule_free_train_params(state, params)``: torch's ``step(closure)`` calls the closure there.
Bounds: ``OPTIMIZER_RTOL`` with the trajectory floor (``tests.parity.trajectory_floor``).
"""

from __future__ import annotations

import functools
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import schedulefree
import torch

from purelr.optim import schedule_free as sf
from purelr.optim import schedule_free_closure as sfc
from purelr.optim import schedule_free_reference as sfr
from purelr.training import batchnorm
from tests import last_json_line
from tests.optim import torch_reference as ref
from tests.parity import OPTIMIZER_RTOL, float_mode, relative_error, trajectory_floor
from tests.training.test_averaging import FEATURES, Net, to_flax, torch_net

STEPS = 100
NIGHTLY = pytest.mark.nightly
LABELS = ("hidden", "out")
PARTITION = {label: {"kernel": label, "bias": label} for label in LABELS}


def _common(rng, warmup=True):
    config = dict(
        lr=ref.loguniform(rng, 1e-3, 1e-1),
        weight_decay=float(rng.choice([0.0, ref.loguniform(rng, 1e-4, 1e-1)])),
        r=float(rng.choice([0.0, rng.uniform(0.0, 2.0)])),
        weight_lr_power=float(rng.choice([2.0, 0.0, rng.uniform(0.0, 4.0)])),
    )
    if warmup:
        config["warmup_steps"] = int(rng.choice([0, 1, int(rng.integers(2, 150))]))
    return config


def draw_sgd(rng):
    return dict(_common(rng), momentum=rng.uniform(0.3, 0.98))


def draw_adam(rng, warmup=True):
    betas = (rng.uniform(0.3, 0.98), rng.uniform(0.9, 0.9999))
    return dict(_common(rng, warmup), betas=betas, eps=ref.loguniform(rng, 1e-10, 1e-6))


def draw_radam(rng):
    return draw_adam(rng, warmup=False)


# (purelr, original, draw, flag combinations, closure)
CLASSES = {
    "SGDScheduleFree": (sf.sgd_schedule_free, schedulefree.SGDScheduleFree, draw_sgd, [{}], False),
    "AdamWScheduleFree": (sf.adamw_schedule_free, schedulefree.AdamWScheduleFree, draw_adam, [{}], False),
    "AdamWScheduleFreePaper": (
        sf.adamw_schedule_free_paper,
        schedulefree.AdamWScheduleFreePaper,
        draw_adam,
        [{}],
        False,
    ),
    "RAdamScheduleFree": (
        sf.radam_schedule_free,
        schedulefree.RAdamScheduleFree,
        draw_radam,
        [dict(silent_sgd_phase=True), dict(silent_sgd_phase=False)],
        False,
    ),
    "SGDScheduleFreeReference": (
        sfr.sgd_schedule_free_reference,
        schedulefree.SGDScheduleFreeReference,
        draw_sgd,
        [{}],
        False,
    ),
    "AdamWScheduleFreeReference": (
        sfr.adamw_schedule_free_reference,
        schedulefree.AdamWScheduleFreeReference,
        draw_adam,
        [dict(decay_at_z=True), dict(decay_at_z=False)],
        False,
    ),
    "SGDScheduleFreeClosure": (
        sfc.sgd_schedule_free_closure,
        schedulefree.SGDScheduleFreeClosure,
        draw_sgd,
        [{}],
        True,
    ),
    "AdamWScheduleFreeClosure": (
        sfc.adamw_schedule_free_closure,
        schedulefree.AdamWScheduleFreeClosure,
        draw_adam,
        [{}],
        True,
    ),
    "RAdamScheduleFreeClosure": (
        sfc.radam_schedule_free_closure,
        schedulefree.RAdamScheduleFreeClosure,
        draw_radam,
        [dict(silent_sgd_phase=False), dict(silent_sgd_phase=True)],
        True,
    ),
}


def _float32_exact(value):
    if isinstance(value, tuple):
        return tuple(_float32_exact(v) for v in value)
    return float(np.float32(value)) if isinstance(value, float) else value


def configurations(draw, flags, count, seed):
    """``count`` configurations per flag combination: ``(flags, [group numbers per label], schedule)``."""
    rng = np.random.default_rng(seed)
    return [
        (flag, [{k: _float32_exact(v) for k, v in draw(rng).items()} for _ in LABELS], bool(rng.random() < 0.5))
        for flag in flags
        for _ in range(count)
    ]


def _keys(numbers: dict):
    return tuple(
        (name, i)
        for name, value in numbers.items()
        for i in (range(len(value)) if isinstance(value, tuple) else [None])
    )


def _values(numbers: dict, keys):
    return [float(numbers[name] if i is None else numbers[name][i]) for name, i in keys]


# ---- purelr side --------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _compiled(make, flags: tuple, keys: tuple, closure: bool, x64: bool):
    """One jitted, vmapped run of ``STEPS`` updates of two groups; numbers traced."""

    def run(values, scheduled, params, data):
        transforms = {}
        for label, group_values in zip(LABELS, values):
            kwargs = dict(flags)
            for (name, index), value in zip(keys, group_values):
                const = (lambda v: lambda count: v)(value)
                if name == "lr":
                    const = (lambda v: lambda count: v * jnp.where(scheduled, ref.LR_FACTOR(count), 1.0))(value)
                kwargs[name] = const if index is None else kwargs.get(name, ()) + (const,)
            transforms[label] = make(**kwargs)
        optimizer = optax.multi_transform(transforms, PARTITION)

        def step(carry, batch):
            params, state = carry
            at = sf.schedule_free_train_params(state, params) if closure else params
            updates, state = optimizer.update(jax.grad(ref.jax_loss)(at, batch, 1.0), state, params)
            return (optax.apply_updates(params, updates), state), None

        (params, state), _ = jax.lax.scan(step, (params, optimizer.init(params)), data)
        eval_params = sf.schedule_free_eval_params(state, params)
        return params, state, eval_params, sf.schedule_free_train_params(state, eval_params)

    return jax.jit(jax.vmap(run, in_axes=(0, 0, None, None)))


def _data(x64):
    return jax.tree.map(lambda a: np.asarray(a)[:STEPS], ref.stream(x64))


def run_purelr(make, configs, closure):
    flags, groups, _ = configs[0]
    keys = _keys(groups[0])
    values = jnp.asarray([[_values(g, keys) for g in c[1]] for c in configs])
    scheduled = jnp.asarray([c[2] for c in configs])
    x64 = jax.config.jax_enable_x64
    run = _compiled(make, tuple(sorted(flags.items())), keys, closure, x64)
    out = run(values, scheduled, jax.tree.map(jnp.asarray, ref.PARAMS), jax.tree.map(jnp.asarray, _data(x64)))
    return [jax.tree.map(lambda leaf: np.asarray(leaf[i]), out) for i in range(len(configs))]


# ---- torch side ---------------------------------------------------------------------------------


def run_torch(optimizer_type, configs, closure):
    """All configurations as the param groups of one optimizer (two groups each): final params,
    ``optimizer.state``, the groups, and the params after ``eval()`` and after ``train()`` again."""
    x64 = jax.config.jax_enable_x64
    factors = np.asarray(ref.LR_FACTOR(np.arange(STEPS + 1)), dtype=np.float64)
    flags = configs[0][0]
    with ref.torch_dtype(x64):
        dtype = torch.get_default_dtype()
        trees = [
            {o: {i: torch.tensor(v, dtype=dtype, requires_grad=True) for i, v in ref.PARAMS[o].items()} for o in LABELS}
            for _ in configs
        ]
        groups = [
            dict(numbers, params=[tree[label]["kernel"], tree[label]["bias"]])
            for (_, per_label, _), tree in zip(configs, trees)
            for label, numbers in zip(LABELS, per_label)
        ]
        optimizer = optimizer_type(groups, foreach=False, **flags)
        if not closure:
            optimizer.train()
        lambdas = [(lambda k: float(factors[k])) if c[2] else (lambda k: 1.0) for c in configs for _ in LABELS]
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)
        data = jax.tree.map(lambda a: torch.tensor(a, dtype=dtype), _data(x64))
        for k in range(STEPS):
            batch = jax.tree.map(lambda a: a[k], data)

            def loss():
                optimizer.zero_grad()
                stacked = {o: {i: torch.stack([t[o][i] for t in trees]) for i in ref.PARAMS[o]} for o in LABELS}
                value = torch.sum(ref.losses(stacked, batch, torch.tanh, batched=True))
                value.backward()
                return value

            if closure:
                optimizer.step(loss)
            else:
                loss()
                optimizer.step()
            scheduler.step()
        copy = lambda: [jax.tree.map(lambda t: t.detach().numpy().copy(), tree) for tree in trees]  # noqa: E731
        params = copy()
        state = {p: {k: v.numpy().copy() for k, v in s.items()} for p, s in optimizer.state.items()}
        swapped = None
        if not closure:
            optimizer.eval()
            eval_params = copy()
            optimizer.train()
            swapped = list(zip(eval_params, copy()))
    per_config = []
    for i, tree in enumerate(trees):
        group_of = dict(zip(LABELS, optimizer.param_groups[2 * i : 2 * i + 2]))
        leaf_state = {(o, n): state[tree[o][n]] for o in LABELS for n in ref.PARAMS[o]}
        per_config.append((params[i], leaf_state, group_of, swapped[i] if swapped else None))
    return per_config


# ---- comparison ---------------------------------------------------------------------------------


GROUP_KEYS = ("scheduled_lr", "lr_max", "weight_sum")


def _own_buffers(group):
    return {f: getattr(group, f) for f in group._fields[2:] if getattr(group, f) is not None}


def compare(purelr_out, torch_out, group_keys=GROUP_KEYS, buffers=_own_buffers, gradient_sums=False):
    """``{what: relative error}`` over params, buffers, group numbers and the eval/train swap.

    ``buffers(group)``: the ``{field: tree}`` of a group's state compared where the original keeps
    the field (default: the group's own buffers). ``gradient_sums``: the fields other than ``z``,
    ``x`` and ``y`` (a wrapped base's momentum and moments, sums of gradients whose differences are
    known to units of the params' scale) are held to the larger of their peak and ``z``'s.
    """
    params, state, eval_params, train_params = purelr_out
    torch_params, torch_state, torch_groups, swapped = torch_out
    floor = trajectory_floor(float_mode())
    errors = {}
    for label in LABELS:
        group = state.inner_states[label].inner_state
        for key in group_keys:
            errors[f"{key} {label}"] = relative_error(group.hyperparams[key], torch_groups[label][key])
        errors[f"k {label}"] = relative_error(group.count, torch_groups[label]["k"])
        for name in ref.PARAMS[label]:
            where = f"{label}.{name}"
            errors[f"param {where}"] = relative_error(params[label][name], torch_params[label][name], floor=floor)
            expected = torch_state[(label, name)]
            for field, buffer in buffers(group).items():
                if field in expected:
                    peak = max(float(np.max(np.abs(expected[field]))), 1e-30)
                    if gradient_sums and field not in ("z", "x", "y"):
                        peak = max(peak, float(np.max(np.abs(expected["z"]))))
                    errors[f"{field} {where}"] = relative_error(buffer[label][name], expected[field], peak, floor)
            if swapped is not None:
                for mode, mine, theirs in zip(("eval", "train"), (eval_params, train_params), swapped):
                    errors[f"{mode} {where}"] = relative_error(mine[label][name], theirs[label][name], floor=floor)
    assert all(f"z {label}.kernel" in errors for label in LABELS), sorted(errors)
    return errors


def check(name, configs):
    """Runs ``configs`` (one flag combination) on both sides; asserts parity; returns the worst error."""
    make, optimizer_type, _, _, closure = CLASSES[name]
    rtol = OPTIMIZER_RTOL[float_mode()]
    worst = 0.0
    for config, mine, theirs in zip(
        configs, run_purelr(make, configs, closure), run_torch(optimizer_type, configs, closure)
    ):
        errors = compare(mine, theirs)
        where = max(errors, key=errors.get)
        assert errors[where] <= rtol, f"{name} {config}: {where} off by {errors[where]:.3g}"
        worst = max(worst, errors[where])
    return worst


EDGES = [  # hand-picked group numbers, one configuration each (over a drawn one)
    (dict(lr=0.0), dict(lr=0.0, weight_lr_power=0.0)),  # weight_sum stays 0 (ckp1 = 0); 0 ** 0 = 1
    (dict(warmup_steps=1000, weight_decay=0.1), dict(warmup_steps=1, r=3.0)),  # warmup never ends; one step
]


def _sweep(name, count, seed, edges=(), every_flag=True):
    """``count`` random configurations (split over the flag values; only the first one unless
    ``every_flag``) and the ``edges`` for each flag value."""
    _, _, draw, flags, _ = CLASSES[name]
    flags = flags if every_flag else flags[:1]
    configs = configurations(draw, flags, max(1, count // len(flags)), seed)
    for flag in flags:
        groups = next(c[1] for c in configs if c[0] == flag)
        for edge in edges:
            fixed = [{k: v for k, v in dict(g, **e).items() if k in g} for g, e in zip(groups, edge)]
            configs.append((flag, fixed, False))
    return max(check(name, [c for c in configs if c[0] == flag]) for flag in flags)


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_matches_schedulefree(precision, name):
    """Ten random configurations per class, two groups each, 100 updates, and the ``EDGES``; one
    flag value per class (the first listed: RAdam's ``silent_sgd_phase`` True and its Closure's
    False, ``decay_at_z=True``), every one nightly."""
    _sweep(name, 10, seed=2100 + sorted(CLASSES).index(name), edges=EDGES, every_flag=False)


@pytest.mark.nightly
@pytest.mark.parametrize("name", sorted(CLASSES))
def test_matches_schedulefree_nightly(precision, name):
    """Thirty more per class (split over its flag values), and the ``EDGES`` for every flag value."""
    _sweep(name, 30, seed=2200 + sorted(CLASSES).index(name), edges=EDGES)


def trained(optimizer_type):
    """The original in train mode (``torch_reference`` steps without calling ``train()``)."""

    def make(params, **kwargs):
        optimizer = optimizer_type(params, **kwargs)
        optimizer.train()
        return optimizer

    make.__name__ = optimizer_type.__name__
    make.__signature__ = inspect.signature(optimizer_type)
    return make


@pytest.mark.parametrize(
    "name",
    [n if n.endswith("ScheduleFree") else pytest.param(n, marks=NIGHTLY) for n in sorted(CLASSES) if not CLASSES[n][4]],
)
def test_defaults_match_schedulefree(precision, name):
    """The original's defaults as constants (no weight decay: its ``decay != 0`` branch), the update
    jitted on its own, 200 updates (``torch_reference.check_defaults``); the Reference forms nightly."""
    make, optimizer_type, *_ = CLASSES[name]
    ref.check_defaults(make, trained(optimizer_type))


@pytest.mark.parametrize("form", [pytest.param("sgd", marks=NIGHTLY), "adamw", pytest.param("radam", marks=NIGHTLY)])
def test_closure_form_is_the_eval_sequence_of_the_main_form(form):
    """The Closure form's update is the main form's, seen from ``x``: given the gradient at
    ``schedule_free_train_params(state, params)`` (where torch's closure runs), its params follow
    the main form's ``schedule_free_eval_params`` (x64, 100 updates, equal to rounding)."""
    main = getattr(sf, f"{form}_schedule_free")(0.05, weight_decay=0.01)
    closure = getattr(sfc, f"{form}_schedule_free_closure")(0.05, weight_decay=0.01)
    with jax.enable_x64(True):
        params = jax.tree.map(jnp.asarray, ref.PARAMS)
        data = jax.tree.map(jnp.asarray, _data(True))
        y, state = _run(main, params, data, closure=False)
        x, closure_state = _run(closure, params, data, closure=True)
        x_main = sf.schedule_free_eval_params(state, y)
        for a, b, c in zip(*map(jax.tree.leaves, (x, x_main, sf.schedule_free_eval_params(closure_state, x)))):
            assert relative_error(a, b, floor=trajectory_floor("x64")) <= 1e-10
            assert np.array_equal(a, c)  # the Closure form's params are its eval params


def _run(optimizer, params, data, closure: bool):
    """``(params, state)`` after the updates of ``data``, jitted."""

    def step(carry, batch):
        params, state = carry
        at = sf.schedule_free_train_params(state, params) if closure else params
        updates, state = optimizer.update(jax.grad(ref.jax_loss)(at, batch, 1.0), state, params)
        return (optax.apply_updates(params, updates), state), None

    return jax.jit(lambda p: jax.lax.scan(step, (p, optimizer.init(p)), data)[0])(params)


def test_swap_before_any_update_and_outside_the_groups():
    """Before the first update the eval params are the params (torch: no ``z`` yet); a leaf no
    Schedule-Free group owns (``optax.set_to_zero``) is returned as it is; a state without a
    Schedule-Free part is refused."""
    params = {"a": jnp.arange(3.0), "b": jnp.ones(2)}
    optimizer = optax.multi_transform(
        {"sf": sf.adamw_schedule_free(), "frozen": optax.set_to_zero()}, {"a": "sf", "b": "frozen"}
    )
    state = optimizer.init(params)
    for swap in (sf.schedule_free_eval_params, sf.schedule_free_train_params):
        out = swap(state, params)
        assert all(np.array_equal(out[k], params[k]) for k in params)
    with pytest.raises(ValueError, match="no Schedule-Free state"):
        sf.schedule_free_eval_params(optax.sgd(0.1).init(params), params)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("lr", dict(lr=-1.0)),
        ("weight_decay", dict(weight_decay=-0.1)),
        ("momentum", dict(momentum=0.0)),
        ("momentum", dict(momentum=1.0)),
    ],
)
@pytest.mark.parametrize("form", ["SGDScheduleFree", "SGDScheduleFreeReference", "SGDScheduleFreeClosure"])
def test_rejects_what_schedulefree_rejects(form, name, kwargs):
    ref.check_rejects(CLASSES[form][0], CLASSES[form][1], name, **kwargs)


def test_batchnorm_statistics_at_the_eval_params():
    """schedulefree's BatchNorm caveat: running statistics gathered in training belong to ``y``;
    evaluation at ``x`` needs them recomputed there. The original's recipe (``optimizer.eval()``,
    then ``torch.optim.swa_utils.update_bn`` over training batches) against purelr's
    (``schedule_free_eval_params``, then ``purelr.training.batchnorm.update_bn``): params, running
    statistics and the eval-mode outputs after 30 updates, x64 1e-10; the statistics at ``y`` differ.
    The bias before the BatchNorm is frozen (its gradient is rounding noise, which Adam's
    normalisation would magnify): torch leaves it out of the optimizer, purelr gives it
    ``optax.set_to_zero`` beside the Schedule-Free group, and both swaps leave it as it is."""
    rng = np.random.default_rng(21)
    batches = [(rng.normal(0.5, 1.5, (8, FEATURES)), rng.normal(size=(8, 2))) for _ in range(30)]
    with jax.enable_x64(True), ref.torch_dtype(True):
        torch.manual_seed(21)
        net = torch_net().double()
        variables = to_flax(net)
        net[0].bias.requires_grad_(False)
        trained_params = [p for p in net.parameters() if p.requires_grad]
        optimizer = schedulefree.AdamWScheduleFree(trained_params, lr=0.05, warmup_steps=5, weight_decay=0.01)
        optimizer.train()
        for x, y in batches:
            optimizer.zero_grad()
            torch.mean((net(torch.tensor(x)) - torch.tensor(y)) ** 2).backward()
            optimizer.step()
        optimizer.eval()
        loader = [(x, 0) for x, _ in batches[:10]]
        torch.optim.swa_utils.update_bn([(torch.tensor(x), k) for x, k in loader], net)
        net.eval()
        probe = rng.normal(size=(5, FEATURES))
        expected_out = net(torch.tensor(probe)).detach().numpy()
        expected = to_flax(net)

        labels = jax.tree.map(lambda _: "sf", variables["params"])
        labels["fc1"]["bias"] = "frozen"
        twin = optax.multi_transform(
            {"sf": sf.adamw_schedule_free(lr=0.05, warmup_steps=5, weight_decay=0.01), "frozen": optax.set_to_zero()},
            labels,
        )
        model = Net()

        @jax.jit
        def step(params, stats, state, x, y):
            def loss(p):
                out, new = model.apply({"params": p, "batch_stats": stats}, x, mutable=["batch_stats"])
                return jnp.mean((out - y) ** 2), new["batch_stats"]

            grads, stats = jax.grad(loss, has_aux=True)(params)
            updates, state = twin.update(grads, state, params)
            return optax.apply_updates(params, updates), stats, state

        params, stats = variables["params"], variables["batch_stats"]
        state = twin.init(params)
        for x, y in batches:
            params, stats, state = step(params, stats, state, jnp.asarray(x), jnp.asarray(y))
        eval_params = sf.schedule_free_eval_params(state, params)
        loader = [(jnp.asarray(x), k) for x, k in loader]
        at_x = batchnorm.update_bn(loader, model, {"params": eval_params, "batch_stats": stats}, train=True)
        at_y = batchnorm.update_bn(loader, model, {"params": params, "batch_stats": stats}, train=True)
        out = model.apply(at_x, jnp.asarray(probe), train=False)
    errors = jax.tree.map(relative_error, (at_x, out), (expected, expected_out))
    assert max(jax.tree.leaves(errors)) <= 1e-10, errors
    gap = jax.tree.map(relative_error, at_y["batch_stats"], expected["batch_stats"])
    assert max(jax.tree.leaves(gap)) > 1e-3, gap


def test_sharded_run_equals_one_device():
    """``tests/optim/schedule_free_sharded.py`` in a fresh process with 8 host devices: params split
    over a mesh, 100 x64 updates of ``adamw_schedule_free`` (two groups) and
    ``sgd_schedule_free_closure``; params, eval params and ``z`` equal the one-device run to the x64
    trajectory bound (the sharded matmuls sum in another order: measured 7e-12 for AdamW's params,
    whose normalised steps magnify the last bits of small gradients), and every ``z`` leaf carries
    its param's sharding."""
    result = last_json_line(["tests.optim.schedule_free_sharded"], devices=8, timeout=300)
    assert result.pop("devices") == 8
    for name, found in result.items():
        assert max(found["params"], found["eval"], found["z"]) <= OPTIMIZER_RTOL["x64"], (name, found)
        assert found["z_placed"] == found["z_leaves"] == 4 and found["split_params"] == 3, (name, found)
