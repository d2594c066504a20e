import pytest
import torch

from purelr.optim.rmsprop import rmsprop
from tests.optim import torch_reference as ref


def draw(rng):
    return dict(
        lr=ref.loguniform(rng, 1e-4, 1e-2),
        alpha=rng.uniform(0.8, 0.999),
        eps=ref.loguniform(rng, 1e-10, 1e-4),
        momentum=float(rng.choice([0.0, rng.uniform(0.5, 0.9)])),
        weight_decay=float(rng.choice([0.0, ref.loguniform(rng, 1e-4, 1e-1)])),
    )


CONFIGS = ref.configurations(dict(centered=[False, True], maximize=[False, True]), draw, per_combination=8, seed=10)


def test_matches_torch(precision):
    ref.check_family(rmsprop, torch.optim.RMSprop, CONFIGS)


def test_defaults_match_torch(precision):
    ref.check_defaults(rmsprop, torch.optim.RMSprop)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("lr", dict(lr=-1.0)),
        ("alpha", dict(alpha=-0.5)),
        ("eps", dict(eps=-1e-8)),
        ("momentum", dict(momentum=-0.9)),
        ("weight_decay", dict(weight_decay=-1e-2)),
    ],
)
def test_rejects_what_torch_rejects(name, kwargs):
    ref.check_rejects(rmsprop, torch.optim.RMSprop, name, **kwargs)
