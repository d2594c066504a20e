"""Parity of purelr.optim.timm_adafactor with timm 1.0.31's own Adafactor (not torch's).

With an lr: torch_reference's side-by-side runs (``min_dim_size_to_factor=2``, so that the MLP's
(3, 6) kernel is factored and the others are not; one optimizer per configuration, since timm
reads ``betas`` from its constructor). Without (the relative step): 200 steps on
``test_adafactor``'s network, whose (2, 5, 3) tensor is factored over its first two dims."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from timm.optim import Adafactor

from purelr.optim.timm_adafactor import timm_adafactor
from tests.optim import torch_reference as ref
from tests.optim.test_adafactor import SHAPES, _data, _forward
from tests.parity import OPTIMIZER_RTOL, relative_error, trajectory_floor

FACTOR_ALL = 1
KEYS = ("betas", "lr")  # timm reads both from its constructor (relative_step = lr is None)
make = functools.partial(timm_adafactor, min_dim_size_to_factor=2)


class TimmAdafactor(Adafactor):
    def __init__(self, params, min_dim_size_to_factor=2, **kwargs):
        super().__init__(params, min_dim_size_to_factor=min_dim_size_to_factor, **kwargs)


def draw(rng):
    return dict(
        lr=ref.loguniform(rng, 1e-4, 1e-2),
        eps=float(rng.choice([1e-30, ref.loguniform(rng, 1e-12, 1e-6)])),
        clip_threshold=ref.loguniform(rng, 0.1, 2.0),
        decay_rate=rng.uniform(-1.0, -0.5),
        weight_decay=float(rng.choice([0.0, ref.loguniform(rng, 1e-3, 1e-1)])),
    )


def draw_first_moment(rng):
    return dict(draw(rng), betas=(rng.uniform(0.5, 0.95), 0.999))


CONFIGS = ref.chosen([dict()], draw, per_combination=10, seed=230) + ref.chosen(
    [dict(), dict(caution=True)], draw_first_moment, per_combination=10, seed=231
)


def test_matches_timm(precision):
    ref.check_family(make, TimmAdafactor, CONFIGS, constructor_keys=KEYS)


def test_defaults_with_an_lr_match_timm(precision):
    ref.check_defaults(make, TimmAdafactor, constructor_keys=KEYS, lr=1e-2)


RELATIVE = [
    dict(),
    dict(scale_parameter=False, warmup_init=True, betas=(0.9, 0.999), caution=True),
    dict(warmup_init=True, betas=(0.5,), weight_decay=0.1, eps_scale=0.5, clip_threshold=0.5),
]


@functools.lru_cache(maxsize=None)
def _purelr_relative(case: int):
    opt = timm_adafactor(min_dim_size_to_factor=FACTOR_ALL, **RELATIVE[case])

    def run(params, x, y):
        def gradient(params, k):
            return jax.grad(lambda p: _forward(jnp, p, x[k % len(x)], y[k % len(y)]))(params)

        return ref.trajectory(opt, params, gradient, ref.STEPS)

    return jax.jit(run)


@pytest.mark.parametrize("case", range(len(RELATIVE)))
def test_relative_step_matches_timm(precision, case):
    x, y, params = _data(case)
    path, state = _purelr_relative(case)(params, x, y)
    with ref.torch_dtype(precision == "x64"):
        tparams = {k: torch.tensor(v, dtype=torch.get_default_dtype(), requires_grad=True) for k, v in params.items()}
        opt = Adafactor(list(tparams.values()), min_dim_size_to_factor=FACTOR_ALL, **RELATIVE[case])
        tx, ty = (torch.tensor(a, dtype=torch.get_default_dtype()) for a in (x, y))
        for k in range(ref.STEPS):
            opt.zero_grad()
            _forward(torch, tparams, tx[k % len(x)], ty[k % len(y)]).backward()
            opt.step()
    for name in SHAPES:
        p = tparams[name]
        assert (
            relative_error(path[name][-1], p.detach(), floor=trajectory_floor(precision)) <= OPTIMIZER_RTOL[precision]
        ), name
        for key in ("exp_avg", "exp_avg_sq_row", "exp_avg_sq_col", "exp_avg_sq"):
            buffer = getattr(state, key)
            if key in opt.state[p]:
                assert (
                    relative_error(buffer[name], opt.state[p][key], floor=trajectory_floor(precision))
                    <= OPTIMIZER_RTOL[precision]
                ), (name, key)
            else:
                assert buffer is None or np.size(buffer[name]) == 0, (name, key)
        assert opt.state[p]["step"] == int(state.count) == ref.STEPS


@pytest.mark.parametrize("name, kwargs", [("warmup_init", dict(lr=1e-2, warmup_init=True))])
def test_rejects_what_timm_rejects(name, kwargs):
    ref.check_rejects(timm_adafactor, Adafactor, name, **kwargs)
