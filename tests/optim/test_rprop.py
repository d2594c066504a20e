import pytest
import torch

from purelr.optim.rprop import rprop
from tests.optim import torch_reference as ref


def draw(rng):
    return dict(
        lr=ref.loguniform(rng, 1e-4, 1e-1),
        etas=(rng.uniform(0.3, 0.9), rng.uniform(1.05, 1.5)),
        step_sizes=(ref.loguniform(rng, 1e-8, 1e-4), rng.uniform(1e-3, 0.05)),
    )


CONFIGS = ref.configurations(dict(maximize=[False, True]), draw, per_combination=12, seed=11)


def test_matches_torch(precision):
    ref.check_family(rprop, torch.optim.Rprop, CONFIGS)


def test_defaults_match_torch(precision):
    ref.check_defaults(rprop, torch.optim.Rprop)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("lr", dict(lr=-1.0)),
        ("etas", dict(etas=(1.2, 0.5))),
        ("etas", dict(etas=(0.0, 1.2))),
        ("etas", dict(etas=(0.5, 1.0))),
    ],
)
def test_rejects_what_torch_rejects(name, kwargs):
    ref.check_rejects(rprop, torch.optim.Rprop, name, **kwargs)
