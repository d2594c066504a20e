"""Parity of purelr.optim.schedule_free_wrapper with schedulefree 1.4.1's ``ScheduleFreeWrapper`` and
``ScheduleFreeWrapperReference`` around torch's SGD, Adam and AdamW.

Each configuration: the wrapper's numbers (``momentum``, ``weight_decay_at_y``, ``r``,
``weight_lr_power``) and a base optimizer of two parameter groups (``hidden``, ``out``) with their
own numbers (lr, momentum / dampening or betas / eps, weight decay), the lr following
``torch_reference.LR_FACTOR`` through ``LambdaLR`` for half of them, ``STEPS`` updates of
``torch_reference``'s problem (the MLP under x64, the quadratic in float32). purelr: one wrapper
per group inside ``optax.multi_transform``, one jitted, vmapped ``lax.scan`` per form and base, the
numbers traced. Compared: params, ``z`` (the Reference form's ``x``, ``y``), the base's buffers,
each group's ``k``, ``lr_max``, ``weight_sum``, and the params after ``eval()``
(``schedule_free_eval_params``) and ``train()`` again. Bounds: ``OPTIMIZER_RTOL`` with the
trajectory floor, of each leaf's own peak; the base's buffers (momentum, Adam's moments) are sums
of gradients ``curvature * (y - target)``, differences known to units of the params' scale, so
their floor is taken of the larger of their peak and ``z``'s (float32, ten configurations of seed
2503: SGD's ``momentum_buffer`` 0.661248 against 0.661256, 1.1e-5 of itself, 5e-6 of ``z``'s peak
3.8, after 100 updates at lr 0.098 whose params agree to 1.5e-6). The comparison is
``test_schedule_free.compare``'s.
"""

from __future__ import annotations

import collections
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import schedulefree
import torch

from purelr import optim
from purelr.optim import schedule_free as sf
from purelr.optim.schedule_free_wrapper import schedule_free_wrapper, schedule_free_wrapper_reference
from tests.optim import torch_reference as ref
from tests.optim.test_schedule_free import LABELS, PARTITION, STEPS, _data, _float32_exact, _keys, _values, compare
from tests.parity import OPTIMIZER_RTOL, float_mode

FORMS = {
    "ScheduleFreeWrapper": (schedule_free_wrapper, schedulefree.ScheduleFreeWrapper, ()),
    "ScheduleFreeWrapperReference": (
        schedule_free_wrapper_reference,
        schedulefree.ScheduleFreeWrapperReference,
        ("x", "y"),
    ),
}
WRAPPER_KEYS = ("momentum", "weight_decay_at_y", "r", "weight_lr_power")
GROUP_KEYS = ("lr_max", "weight_sum")


def _decay(rng):
    return float(rng.choice([0.0, ref.loguniform(rng, 1e-4, 1e-1)]))


def draw_sgd(rng):
    return dict(
        lr=ref.loguniform(rng, 1e-3, 1e-1),
        momentum=float(rng.choice([0.0, rng.uniform(0.0, 0.95)])),
        dampening=float(rng.choice([0.0, rng.uniform(0.0, 0.5)])),
        weight_decay=_decay(rng),
    )


def draw_adam(rng):
    return dict(
        lr=ref.loguniform(rng, 1e-4, 1e-2),
        betas=(float(rng.choice([0.0, rng.uniform(0.0, 0.95)])), rng.uniform(0.9, 0.9999)),
        eps=ref.loguniform(rng, 1e-10, 1e-6),
        weight_decay=_decay(rng),
    )


BASES = {  # torch class, purelr twin, draw
    "SGD": (torch.optim.SGD, optim.sgd, draw_sgd),
    "Adam": (torch.optim.Adam, optim.adam, draw_adam),
    "AdamW": (torch.optim.AdamW, optim.adamw, draw_adam),
}


def draw_wrapper(rng):
    return dict(
        momentum=rng.uniform(0.3, 0.98),
        weight_decay_at_y=_decay(rng),
        r=float(rng.choice([0.0, rng.uniform(0.0, 2.0)])),
        weight_lr_power=float(rng.choice([2.0, 0.0, rng.uniform(0.0, 4.0)])),
    )


def configurations(base, count, seed):
    """``(wrapper numbers, [base group numbers per label], lr scheduled)``, float32-exact."""
    rng = np.random.default_rng(seed)
    exact = lambda numbers: {k: _float32_exact(v) for k, v in numbers.items()}  # noqa: E731
    draw = BASES[base][2]
    return [
        (exact(draw_wrapper(rng)), [exact(draw(rng)) for _ in LABELS], bool(rng.random() < 0.5)) for _ in range(count)
    ]


EDGES = [  # over a drawn configuration: (wrapper numbers, scheduled)
    (dict(momentum=1.0, weight_decay_at_y=0.05), True),  # y = x: no extrapolation
    (dict(weight_lr_power=0.0, r=3.0, weight_decay_at_y=0.3), False),
]


# ---- purelr side --------------------------------------------------------------------------------


def _const(value, scheduled=None):
    if scheduled is None:
        return lambda count: value
    return lambda count: value * jnp.where(scheduled, ref.LR_FACTOR(count), 1.0)


@functools.lru_cache(maxsize=None)
def _compiled(form: str, base: str, keys: tuple, x64: bool):
    """One jitted, vmapped run of ``STEPS`` updates; numbers traced."""
    make, make_base = FORMS[form][0], BASES[base][1]

    def run(wrapper_values, values, scheduled, params, data):
        wrapper = {k: _const(v) for k, v in zip(WRAPPER_KEYS, wrapper_values)}
        transforms = {}
        for label, group_values in zip(LABELS, values):
            kwargs = {}
            for (name, index), value in zip(keys, group_values):
                const = _const(value, scheduled if name == "lr" else None)
                kwargs[name] = const if index is None else kwargs.get(name, ()) + (const,)
            transforms[label] = make(make_base(**kwargs), **wrapper)
        optimizer = optax.multi_transform(transforms, PARTITION)

        def step(carry, batch):
            params, state = carry
            updates, state = optimizer.update(jax.grad(ref.jax_loss)(params, batch, 1.0), state, params)
            return (optax.apply_updates(params, updates), state), None

        (params, state), _ = jax.lax.scan(step, (params, optimizer.init(params)), data)
        eval_params = sf.schedule_free_eval_params(state, params)
        return params, state, eval_params, sf.schedule_free_train_params(state, eval_params)

    return jax.jit(jax.vmap(run, in_axes=(0, 0, 0, None, None)))


def run_purelr(form, base, configs):
    keys = _keys(configs[0][1][0])
    wrapper = jnp.asarray([[c[0][k] for k in WRAPPER_KEYS] for c in configs])
    values = jnp.asarray([[_values(g, keys) for g in c[1]] for c in configs])
    scheduled = jnp.asarray([c[2] for c in configs])
    x64 = jax.config.jax_enable_x64
    run = _compiled(form, base, keys, x64)
    out = run(wrapper, values, scheduled, jax.tree.map(jnp.asarray, ref.PARAMS), jax.tree.map(jnp.asarray, _data(x64)))
    return [jax.tree.map(lambda leaf: np.asarray(leaf[i]), out) for i in range(len(configs))]


# ---- torch side ---------------------------------------------------------------------------------


class BaseState(dict):
    """``optimizer.state[p]`` whose length leaves out the wrapper's keys. torch's Adam(W) creates
    its buffers only while ``state[p]`` is empty, and the wrapper (sharing that dict) puts ``z``
    there before the base's first step: the original raises ``KeyError: 'exp_avg'`` around torch
    2.13's Adam. Lent to every base here (SGD reads its buffer with ``get``)."""

    def __len__(self):
        return sum(key not in ("x", "y", "z") for key in self)


def run_torch(form, base, config):
    """The original wrapping a two-group base: final params, state, groups, params after
    ``eval()`` and after ``train()`` again."""
    x64 = jax.config.jax_enable_x64
    factors = np.asarray(ref.LR_FACTOR(np.arange(STEPS + 1)), dtype=np.float64)
    wrapper, per_label, scheduled = config
    with ref.torch_dtype(x64):
        dtype = torch.get_default_dtype()
        tree = {
            o: {i: torch.tensor(v, dtype=dtype, requires_grad=True) for i, v in ref.PARAMS[o].items()} for o in LABELS
        }
        groups = [dict(n, params=[tree[o]["kernel"], tree[o]["bias"]]) for o, n in zip(LABELS, per_label)]
        inner = BASES[base][0](groups, foreach=False)
        inner.state = collections.defaultdict(BaseState)
        optimizer = FORMS[form][1](inner, **wrapper)
        optimizer.train()
        scheduler = torch.optim.lr_scheduler.LambdaLR(inner, lambda k: float(factors[k]) if scheduled else 1.0)
        data = jax.tree.map(lambda a: torch.tensor(a, dtype=dtype), _data(x64))
        for k in range(STEPS):
            optimizer.zero_grad()
            ref.losses(tree, jax.tree.map(lambda a: a[k], data), torch.tanh).backward()
            optimizer.step()
            scheduler.step()
        copy = lambda: jax.tree.map(lambda t: t.detach().numpy().copy(), tree)  # noqa: E731
        params = copy()
        state = {
            (o, n): {k: v.numpy().copy() for k, v in optimizer.state[tree[o][n]].items()}
            for o in LABELS
            for n in tree[o]
        }
        optimizer.eval()
        eval_params = copy()
        optimizer.train()
        return params, state, dict(zip(LABELS, optimizer.param_groups)), (eval_params, copy())


def _buffers(form):
    def buffers(group):
        found = {f: getattr(group, f) for f in ("z", *FORMS[form][2])}
        inner = group.inner_state
        return found | {f: getattr(inner, f) for f in inner._fields[2:] if getattr(inner, f) is not None}

    return buffers


def check(form, base, configs):
    rtol = OPTIMIZER_RTOL[float_mode()]
    worst = 0.0
    for config, mine in zip(configs, run_purelr(form, base, configs)):
        errors = compare(mine, run_torch(form, base, config), GROUP_KEYS, _buffers(form), gradient_sums=True)
        where = max(errors, key=errors.get)
        assert errors[where] <= rtol, f"{form}({base}) {config}: {where} off by {errors[where]:.3g}"
        worst = max(worst, errors[where])
    return worst


def _sweep(form, base, count, seed):
    configs = configurations(base, count, seed)
    for edge, scheduled in EDGES:
        configs.append((dict(configs[0][0], **edge), configs[0][1], scheduled))
    worst = check(form, base, configs)
    print(f"{form}({base}) {float_mode()}: worst {worst:.3g} over {len(configs)} configurations")


DEFAULT = [("ScheduleFreeWrapper", "AdamW"), ("ScheduleFreeWrapperReference", "SGD")]
ALL = [(form, base) for form in FORMS for base in BASES]


@pytest.mark.parametrize("form, base", DEFAULT)
def test_matches_schedulefree_wrapper(precision, form, base):
    """Two random configurations and the ``EDGES``, 100 updates, two groups each (one base per
    form; every base, thirty configurations each, nightly)."""
    _sweep(form, base, 2, seed=2500 + ALL.index((form, base)))


@pytest.mark.nightly
@pytest.mark.parametrize("form, base", ALL)
def test_matches_schedulefree_wrapper_nightly(precision, form, base):
    """Thirty more per form and base."""
    _sweep(form, base, 30, seed=2600 + ALL.index((form, base)))


def test_rejects_bad_numbers():
    """The originals check nothing; a constant that is not finite, or the main form's momentum 0
    (its step divides by it), is refused naming the argument; a base keeping no lr too."""
    for make in (schedule_free_wrapper, schedule_free_wrapper_reference):
        for name in WRAPPER_KEYS:
            with pytest.raises(ValueError, match=f"{name} must not be NaN"):
                make(optim.sgd(0.1), **{name: float("nan")})
        with pytest.raises(ValueError, match="holds no lr"):
            make(optax.sgd(0.1)).init({"a": jnp.ones(2)})
    with pytest.raises(ValueError, match="Invalid momentum: 0.0"):
        schedule_free_wrapper(optim.sgd(0.1), momentum=0.0)
