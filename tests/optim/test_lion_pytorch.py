"""Parity of purelr.optim.lion with lion-pytorch 0.2.5's ``lion_pytorch.Lion`` (its
``decoupled_weight_decay``) and ``lion_pytorch.cautious_lion.Lion`` (``cautious_factor``,
``cautious_wd``), side by side (torch_reference: 200 updates, every configuration a param group of
one optimizer): 40 random configurations by default, more nightly.

lion-pytorch keeps ``decoupled_weight_decay`` on the optimizer and divides every group's
``weight_decay`` by the lr its constructor got (``_init_lr``, here 1e-4 rounded to float32), not by the
group's lr: the twin gets that number as ``init_lr``; the torch side ignores the extra group key.
"""

import jax.numpy as jnp
import numpy as np
import pytest
from lion_pytorch import Lion
from lion_pytorch.cautious_lion import Lion as CautiousLion

from purelr.optim.lion import lion
from tests.optim import torch_reference as ref

INIT_LR = float(np.float32(1e-4))  # the constructor's lr (_init_lr) below: a float32 number, as the drawn ones


class DecoupledLion(Lion):
    def __init__(self, params, **kwargs):
        super().__init__(params, lr=INIT_LR, decoupled_weight_decay=True, **kwargs)


class DecoupledCautiousLion(CautiousLion):
    def __init__(self, params, **kwargs):
        super().__init__(params, lr=INIT_LR, decoupled_weight_decay=True, **kwargs)


def draw(rng, *, decoupled=False, cautious=False):
    """lr and betas as timm's tests draw them; a weight decay that keeps ``lr * wd / init_lr`` below
    1 when decoupled; a ``cautious_factor`` of 0 (the class default), 1 (off) or between."""
    lr = ref.loguniform(rng, 1e-5, 1e-3)
    high = 0.05 if decoupled else 1.0
    config = dict(
        lr=lr,
        betas=(rng.uniform(0.0, 0.95), rng.uniform(0.9, 0.999)),
        weight_decay=float(rng.choice([0.0, ref.loguniform(rng, 1e-3, high)])),
    )
    if decoupled:
        config["init_lr"] = INIT_LR
    if cautious:
        config["cautious_factor"] = float(rng.choice([0.0, 1.0, rng.uniform(0.0, 1.0), rng.uniform(0.0, 1.0)]))
    return config


def drawer(**kinds):
    return lambda rng: draw(rng, **kinds)


def configs(flags: dict, per_combination: int, seed: int, **kinds):
    return ref.configurations(flags, drawer(**kinds), per_combination=per_combination, seed=seed)


def decoupled(flags):
    return dict(flags, decoupled_weight_decay=[True])


CASES = [  # (original, flags, kinds of draw)
    (Lion, {}, {}),
    (DecoupledLion, decoupled({}), dict(decoupled=True)),
    (CautiousLion, dict(cautious_wd=[False, True]), dict(cautious=True)),
    (DecoupledCautiousLion, decoupled(dict(cautious_wd=[True])), dict(decoupled=True, cautious=True)),
]


@pytest.mark.parametrize("original, flags, kinds", CASES, ids=lambda c: getattr(c, "__name__", None))
def test_matches_lion_pytorch(precision, original, flags, kinds):
    per = 8 if len(flags.get("cautious_wd", ())) < 2 else 6
    ref.check_family(lion, original, configs(flags, per, seed=210, **kinds))


@pytest.mark.nightly
@pytest.mark.parametrize("original, flags, kinds", CASES, ids=lambda c: getattr(c, "__name__", None))
def test_more_configurations_match_lion_pytorch(precision, original, flags, kinds):
    ref.check_family(lion, original, configs(flags, 30, seed=215, **kinds))


@pytest.mark.parametrize(
    "original, kwargs",
    [
        (Lion, {}),
        (Lion, dict(lr=3e-4, weight_decay=0.1, betas=(0.95, 0.98), decoupled_weight_decay=True)),
        (CautiousLion, dict(cautious_factor=0.0)),
        (CautiousLion, dict(weight_decay=0.5, cautious_factor=0.2, cautious_wd=True, decoupled_weight_decay=True)),
    ],
)
def test_defaults_match_lion_pytorch(precision, original, kwargs):
    ref.check_defaults(lion, original, constructor_keys=("lr", "decoupled_weight_decay"), **kwargs)


def test_cautious_factor_edges():
    """0 keeps only the entries that agree with the gradient, as timm's caution does (its clamp of
    the mean is 1e-3, 1e-5 here: the same where anything agrees); where nothing agrees the step is 0."""
    params, grads = jnp.asarray([1.0, 2.0, 3.0, 4.0]), jnp.asarray([1.0, -1.0, 2.0, -2.0])
    cautious, timm_caution = lion(lr=0.1, cautious_factor=0.0), lion(lr=0.1, caution=True)
    state = cautious.init(params)._replace(exp_avg=jnp.asarray([1.0, 1.0, -1.0, -1.0]))
    updates, _ = cautious.update(grads, state, params)
    np.testing.assert_array_equal(updates, timm_caution.update(grads, state, params)[0])
    assert np.count_nonzero(np.asarray(updates)) == 2
    updates, _ = cautious.update(grads, state._replace(exp_avg=-10 * grads), params)
    np.testing.assert_array_equal(updates, np.zeros(4))


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("use_triton", dict(use_triton=True)),
        ("cautious_factor", dict(cautious_factor=1.5)),
        ("cautious_factor", dict(cautious_factor=-0.1)),
        ("init_lr", dict(decoupled_weight_decay=True, lr=lambda count: 1e-3)),
        ("init_lr", dict(decoupled_weight_decay=True, init_lr=0.0)),
    ],
)
def test_rejects(name, kwargs):
    with pytest.raises(ValueError, match=name):
        lion(**kwargs)
