import pytest
import torch

from purelr.optim.radam import radam
from tests.optim import torch_reference as ref


def draw(rng):
    return dict(
        lr=ref.loguniform(rng, 1e-4, 1e-2),
        betas=(rng.uniform(0.0, 0.95), rng.uniform(0.5, 0.9999)),
        eps=ref.loguniform(rng, 1e-10, 1e-4),
        weight_decay=float(rng.choice([0.0, ref.loguniform(rng, 1e-4, 1e-1)])),
    )


CONFIGS = ref.configurations(
    dict(maximize=[False, True], decoupled_weight_decay=[False, True]), draw, per_combination=8, seed=7
)


def test_matches_torch(precision):
    ref.check_family(radam, torch.optim.RAdam, CONFIGS)


def test_defaults_match_torch(precision):
    ref.check_defaults(radam, torch.optim.RAdam)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("lr", dict(lr=-1.0)),
        ("eps", dict(eps=-1e-8)),
        ("betas[0]", dict(betas=(1.5, 0.9))),
        ("betas[1]", dict(betas=(0.9, 1.0))),
        ("weight_decay", dict(weight_decay=-1e-2)),
    ],
)
def test_rejects_what_torch_rejects(name, kwargs):
    ref.check_rejects(radam, torch.optim.RAdam, name, **kwargs)
