import pytest
import torch

from purelr.optim.asgd import asgd
from tests.optim import torch_reference as ref


def draw(rng):
    return dict(
        lr=ref.loguniform(rng, 1e-3, 1e-1),
        lambd=ref.loguniform(rng, 1e-5, 1e-2),
        alpha=rng.uniform(0.5, 1.0),
        t0=float(rng.choice([1e6, rng.integers(0, 150)])),
        weight_decay=float(rng.choice([0.0, ref.loguniform(rng, 1e-4, 1e-1)])),
    )


CONFIGS = ref.configurations(dict(maximize=[False, True]), draw, per_combination=12, seed=12)


def test_matches_torch(precision):
    ref.check_family(asgd, torch.optim.ASGD, CONFIGS)


def test_defaults_match_torch(precision):
    ref.check_defaults(asgd, torch.optim.ASGD)


@pytest.mark.parametrize("name, kwargs", [("lr", dict(lr=-1.0)), ("weight_decay", dict(weight_decay=-1e-2))])
def test_rejects_what_torch_rejects(name, kwargs):
    ref.check_rejects(asgd, torch.optim.ASGD, name, **kwargs)
