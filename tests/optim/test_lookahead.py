"""purelr.optim.lookahead around purelr.optim.adamw against timm 1.0.31's
``timm.optim.Lookahead(torch.optim.AdamW(...))`` (timm's ``lookahead_adamw``), side by side
(torch_reference). Each configuration's ``lookahead_alpha`` / ``lookahead_k`` ride in its param
group, where timm's Lookahead reads them. The default run takes AdamW without amsgrad in both
precisions; with amsgrad it runs nightly."""

import pytest
import torch
from timm.optim import Lookahead

from purelr.optim.adamw import adamw
from purelr.optim.lookahead import lookahead
from tests.bad_inputs import assert_rejects
from tests.optim import torch_reference as ref


def make(lookahead_alpha=0.5, lookahead_k=6, **kwargs):
    return lookahead(adamw(**kwargs), alpha=lookahead_alpha, k=lookahead_k)


def timm_lookahead_adamw(params, foreach=None, **kwargs):
    """timm's Lookahead keeps its slow weights in the inner optimizer's ``state``: read them there."""
    optimizer = Lookahead(torch.optim.AdamW(params, foreach=foreach, **kwargs))
    optimizer.state = optimizer._base_optimizer.state
    return optimizer


def draw(rng):
    return dict(
        lr=ref.loguniform(rng, 1e-4, 1e-2),
        betas=(rng.uniform(0.0, 0.95), rng.uniform(0.9, 0.9999)),
        weight_decay=float(rng.choice([0.0, ref.loguniform(rng, 1e-4, 1e-1)])),
        lookahead_alpha=float(rng.choice([0.5, rng.uniform(0.0, 1.0)])),
        lookahead_k=int(rng.choice([6, rng.integers(1, 12)])),
    )


CONFIGS = ref.configurations(dict(amsgrad=[False, True]), draw, per_combination=16, seed=36)


def test_registered_flags_match_timm(precision):
    ref.check_family(make, timm_lookahead_adamw, [c for c in CONFIGS if not c["amsgrad"]])


@pytest.mark.nightly
def test_matches_timm(precision):
    ref.check_family(make, timm_lookahead_adamw, CONFIGS)


@pytest.mark.parametrize(
    "kwargs", [{}, pytest.param(dict(lookahead_alpha=0.8, lookahead_k=5, weight_decay=0.05), marks=pytest.mark.nightly)]
)
def test_defaults_match_timm(precision, kwargs):
    ref.check_defaults(make, timm_lookahead_adamw, **kwargs)


@pytest.mark.parametrize(
    "name, kwargs, value",
    [
        ("alpha", dict(alpha=1.5), "1.5"),
        ("alpha", dict(alpha=-0.1), "-0.1"),
        ("k", dict(k=0), "0"),
        ("alpha", dict(alpha=float("nan")), "nan"),
    ],
)
def test_rejects_bad_input(name, kwargs, value):
    assert_rejects(lambda: lookahead(adamw(), **kwargs), ValueError, name, value)
    if value != "nan":
        with pytest.raises(ValueError):
            Lookahead(torch.optim.AdamW([torch.zeros(1, requires_grad=True)]), **kwargs)


def test_hyperparams_in_force_reads_through_lookahead():
    """The state's hyperparams are the inner twin's with timm's ``lookahead_*`` group keys."""
    import jax.numpy as jnp

    from purelr.params.groups import hyperparams_in_force

    optimizer = lookahead(adamw(lr=lambda step: 1e-3 * (step + 1)), alpha=0.3, k=2)
    params = {"w": jnp.ones(3)}
    state = optimizer.init(params)
    for _ in range(3):
        _, state = optimizer.update({"w": jnp.ones(3)}, state, params)
    in_force = hyperparams_in_force(state)["default"]
    assert float(in_force["lr"]) == pytest.approx(3e-3) and float(in_force["lookahead_alpha"]) == pytest.approx(0.3)
    assert int(state.count) == 3 and int(state.inner_state.count) == 3
