import pytest
import torch

from purelr.optim.sgd import sgd
from tests.optim import torch_reference as ref


def draw(rng):
    momentum = float(rng.choice([0.0, rng.uniform(0.5, 0.95)]))
    return dict(
        lr=ref.loguniform(rng, 1e-3, 0.1),
        momentum=momentum,
        dampening=float(rng.choice([0.0, rng.uniform(0.0, 0.5)])),
        weight_decay=float(rng.choice([0.0, ref.loguniform(rng, 1e-4, 1e-1)])),
    )


def draw_nesterov(rng):
    return dict(draw(rng), momentum=rng.uniform(0.5, 0.95), dampening=0.0)


CONFIGS = ref.configurations(
    dict(nesterov=[False], maximize=[False, True]), draw, per_combination=8, seed=1
) + ref.configurations(dict(nesterov=[True], maximize=[False, True]), draw_nesterov, per_combination=6, seed=2)


def test_matches_torch(precision):
    ref.check_family(sgd, torch.optim.SGD, CONFIGS)


def test_defaults_match_torch(precision):
    ref.check_defaults(sgd, torch.optim.SGD, lr=0.05, momentum=0.9, dampening=0.1, weight_decay=1e-3)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("lr", dict(lr=-0.1)),
        ("momentum", dict(momentum=-0.5)),
        ("weight_decay", dict(weight_decay=-1e-4)),
        ("momentum", dict(nesterov=True, momentum=0.0)),
        ("dampening", dict(nesterov=True, momentum=0.9, dampening=0.1)),
    ],
)
def test_rejects_what_torch_rejects(name, kwargs):
    ref.check_rejects(sgd, torch.optim.SGD, name, **kwargs)
