"""Parity of purelr.optim.hf_adafactor with transformers 5.24.0's own Adafactor, side by side.

With an lr: torch_reference's runs (200 updates of the MLP, every buffer and ``RMS`` compared; its
(3, 6) and (6, 2) kernels are factored, the biases not). Without (the relative step, with
``warmup_init``, ``beta1``, weight decay): 100 updates on ``test_adafactor``'s network, whose
(2, 5, 3) tensor is factored over its last two dims, with ``AdafactorSchedule``'s lr after each.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from transformers.optimization import Adafactor, AdafactorSchedule

from purelr.optim.hf_adafactor import adafactor_schedule_lr, hf_adafactor
from tests.bad_inputs import assert_purelr_rejects
from tests.optim import torch_reference as ref
from tests.optim.test_adafactor import SHAPES, _data, _forward
from tests.parity import OPTIMIZER_RTOL, relative_error, trajectory_floor

UPDATES = 100


def draw(rng):
    return dict(
        lr=ref.loguniform(rng, 1e-4, 1e-2),
        eps=(float(rng.choice([1e-30, ref.loguniform(rng, 1e-12, 1e-6)])), ref.loguniform(rng, 1e-4, 1e-2)),
        clip_threshold=ref.loguniform(rng, 0.1, 2.0),
        decay_rate=rng.uniform(-1.0, -0.5),
        weight_decay=float(rng.choice([0.0, ref.loguniform(rng, 1e-3, 1e-1)])),
    )


def draw_first_moment(rng):
    return dict(draw(rng), beta1=rng.uniform(0.5, 0.95))


FLAGS = [dict(relative_step=False, scale_parameter=False), dict(relative_step=False, scale_parameter=True)]
CONFIGS = ref.chosen(FLAGS, draw, per_combination=3, seed=320) + ref.chosen(
    FLAGS, draw_first_moment, per_combination=3, seed=330
)


def test_matches_transformers(precision):
    """12 configurations with an lr (half of them scheduled), 200 updates."""
    ref.check_family(hf_adafactor, Adafactor, CONFIGS)


RELATIVE = [
    dict(),
    dict(warmup_init=True, beta1=0.9, weight_decay=0.01),
    dict(scale_parameter=False, clip_threshold=0.5),
    dict(warmup_init=True, scale_parameter=False, eps=(1e-20, 0.1), decay_rate=-0.6, beta1=0.5),
]


@functools.lru_cache(maxsize=None)
def _purelr_relative(case: int):
    opt = hf_adafactor(**RELATIVE[case])
    flags = {k: RELATIVE[case][k] for k in ("scale_parameter", "warmup_init") if k in RELATIVE[case]}

    def run(params, x, y):
        def step(carry, k):
            params, state = carry
            grads = jax.grad(lambda p: _forward(jnp, p, x[k % len(x)], y[k % len(y)]))(params)
            updates, state = opt.update(grads, state, params)
            params = jax.tree.map(lambda p, u: p + u, params, updates)
            return (params, state), adafactor_schedule_lr(state, **flags)

        (params, state), lrs = jax.lax.scan(step, (params, opt.init(params)), jnp.arange(UPDATES))
        return params, state, lrs

    return jax.jit(run)


@pytest.mark.parametrize("case", range(len(RELATIVE)))
def test_relative_step_matches_transformers(precision, case):
    """The relative step: params, every buffer, ``RMS`` and ``AdafactorSchedule``'s lr after each update."""
    x, y, params = _data(case)
    params, state, lrs = _purelr_relative(case)(params, x, y)
    with ref.torch_dtype(precision == "x64"):
        tparams = {
            k: torch.tensor(v, dtype=torch.get_default_dtype(), requires_grad=True) for k, v in _data(case)[2].items()
        }
        opt = Adafactor([tparams[name] for name in sorted(tparams)], **RELATIVE[case])  # jax's leaf order
        schedule = AdafactorSchedule(opt)
        tx, ty = (torch.tensor(a, dtype=torch.get_default_dtype()) for a in (x, y))
        expected_lrs = []
        for k in range(UPDATES):
            opt.zero_grad()
            _forward(torch, tparams, tx[k % len(x)], ty[k % len(y)]).backward()
            opt.step()
            schedule.step()
            expected_lrs.append(schedule.get_last_lr()[0])
    rtol, floor = OPTIMIZER_RTOL[precision], trajectory_floor(precision)
    for name in SHAPES:
        p = tparams[name]
        assert relative_error(params[name], p.detach(), floor=floor) <= rtol, name
        assert relative_error(state.RMS[name], opt.state[p]["RMS"]) <= rtol, (name, "RMS")
        for key in ("exp_avg", "exp_avg_sq_row", "exp_avg_sq_col", "exp_avg_sq"):
            buffer = getattr(state, key)
            if key in opt.state[p]:
                assert relative_error(buffer[name], opt.state[p][key], floor=floor) <= rtol, (name, key)
            else:
                assert buffer is None or np.size(buffer[name]) == 0, (name, key)
        assert opt.state[p]["step"] == int(state.count) == UPDATES
    assert relative_error(lrs, np.asarray(expected_lrs)) <= rtol, "AdafactorSchedule's lr"


REJECTED = [
    (dict(lr=1e-3), ValueError, "lr=0.001", "relative_step=True"),
    (dict(relative_step=False, warmup_init=True, lr=1e-3), ValueError, "warmup_init=True", "relative_step=True"),
    (dict(relative_step=False), ValueError, "relative_step=False", "lr=None"),
    (dict(eps=1e-30), TypeError, "eps", "1e-30"),
    (dict(eps=(1e-30, math.nan)), ValueError, "eps[1]", "nan"),
    (dict(clip_threshold=-1.0), ValueError, "clip_threshold", "-1.0"),
    (dict(decay_rate=math.inf), ValueError, "decay_rate", "inf"),
    (dict(beta1=1.5), ValueError, "beta1", "1.5"),
    (dict(weight_decay=-0.1), ValueError, "weight_decay", "-0.1"),
    (dict(relative_step=False, lr=-1.0), ValueError, "lr", "-1.0"),
]


@pytest.mark.parametrize("case", REJECTED, ids=lambda case: str(case[0]))
def test_rejects(case):
    """transformers' constructor checks and bad numbers, named with their values, before tracing."""
    kwargs, exception, *needles = case
    assert_purelr_rejects(lambda: hf_adafactor(**kwargs), exception, *needles)


def test_rejects_complex_params_at_init():
    assert_purelr_rejects(
        lambda: hf_adafactor().init({"w": jnp.zeros(3, jnp.complex64)}),
        ValueError,
        "hf_adafactor",
        "complex64",
        "['w']",
    )
