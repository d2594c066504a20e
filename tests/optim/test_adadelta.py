import pytest
import torch

from purelr.optim.adadelta import adadelta
from tests.optim import torch_reference as ref


def draw(rng):
    return dict(
        lr=rng.uniform(0.1, 1.0),
        rho=rng.uniform(0.5, 0.99),
        eps=ref.loguniform(rng, 1e-8, 1e-4),
        weight_decay=float(rng.choice([0.0, ref.loguniform(rng, 1e-4, 1e-1)])),
    )


CONFIGS = ref.configurations(dict(maximize=[False, True]), draw, per_combination=12, seed=9)


def test_matches_torch(precision):
    ref.check_family(adadelta, torch.optim.Adadelta, CONFIGS)


def test_defaults_match_torch(precision):
    ref.check_defaults(adadelta, torch.optim.Adadelta)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("lr", dict(lr=-1.0)),
        ("rho", dict(rho=1.5)),
        ("rho", dict(rho=-0.1)),
        ("eps", dict(eps=-1e-6)),
        ("weight_decay", dict(weight_decay=-1e-2)),
    ],
)
def test_rejects_what_torch_rejects(name, kwargs):
    ref.check_rejects(adadelta, torch.optim.Adadelta, name, **kwargs)
