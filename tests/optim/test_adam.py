import pytest
import torch

from purelr.optim.adam import adam
from purelr.optim.adamw import adamw
from tests.optim import torch_reference as ref


def draw(rng):
    return dict(
        lr=ref.loguniform(rng, 1e-4, 1e-2),
        betas=(rng.uniform(0.0, 0.95), rng.uniform(0.9, 0.9999)),
        eps=float(rng.choice([1e-8, ref.loguniform(rng, 1e-10, 1e-3)])),
        weight_decay=float(rng.choice([0.0, ref.loguniform(rng, 1e-4, 1e-1)])),
    )


FLAGS = dict(amsgrad=[False, True], maximize=[False, True])
CONFIGS = ref.configurations(dict(FLAGS, decoupled_weight_decay=[False, True]), draw, per_combination=6, seed=3)
ADAMW_CONFIGS = ref.configurations(FLAGS, draw, per_combination=4, seed=4)


def test_matches_torch(precision):
    ref.check_family(adam, torch.optim.Adam, CONFIGS)


def test_adamw_matches_torch(precision):
    ref.check_family(adamw, torch.optim.AdamW, ADAMW_CONFIGS)


@pytest.mark.parametrize("make, optimizer_type", [(adam, torch.optim.Adam), (adamw, torch.optim.AdamW)])
def test_defaults_match_torch(precision, make, optimizer_type):
    ref.check_defaults(make, optimizer_type)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("lr", dict(lr=-1e-3)),
        ("eps", dict(eps=-1.0)),
        ("weight_decay", dict(weight_decay=-0.1)),
        ("betas[0]", dict(betas=(1.0, 0.999))),
        ("betas[0]", dict(betas=(-0.1, 0.999))),
        ("betas[1]", dict(betas=(0.9, 1.5))),
    ],
)
@pytest.mark.parametrize("make, optimizer_type", [(adam, torch.optim.Adam), (adamw, torch.optim.AdamW)])
def test_rejects_what_torch_rejects(make, optimizer_type, name, kwargs):
    ref.check_rejects(make, optimizer_type, name, **kwargs)
