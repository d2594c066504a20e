import pytest
import torch

from purelr.optim.adagrad import adagrad
from tests.optim import torch_reference as ref


def draw(rng):
    return dict(lr=ref.loguniform(rng, 1e-3, 1e-1), lr_decay=float(rng.choice([0.0, ref.loguniform(rng, 1e-4, 1e-1)])),
                initial_accumulator_value=float(rng.choice([0.0, rng.uniform(0.0, 1.0)])),
                eps=ref.loguniform(rng, 1e-10, 1e-4),
                weight_decay=float(rng.choice([0.0, ref.loguniform(rng, 1e-4, 1e-1)])))


CONFIGS = ref.configurations(dict(maximize=[False, True]), draw, per_combination=12, seed=8)


def test_matches_torch(precision):
    ref.check_family(adagrad, torch.optim.Adagrad, CONFIGS)


def test_defaults_match_torch(precision):
    ref.check_defaults(adagrad, torch.optim.Adagrad)


@pytest.mark.parametrize("name, kwargs", [("lr", dict(lr=-1.0)), ("lr_decay", dict(lr_decay=-0.1)), ("eps", dict(eps=-1e-10)),
    ("weight_decay", dict(weight_decay=-1e-2)), ("initial_accumulator_value", dict(initial_accumulator_value=-1.0))])
def test_rejects_what_torch_rejects(name, kwargs):
    ref.check_rejects(adagrad, torch.optim.Adagrad, name, **kwargs)
