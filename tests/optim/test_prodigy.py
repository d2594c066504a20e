"""Parity of purelr.optim.prodigy with prodigyopt 1.1.2's Prodigy (``global_reference``: each
configuration one original optimizer with two param groups, 100 updates)."""

from prodigyopt import Prodigy

from purelr.optim.prodigy import prodigy
from tests.optim import global_reference as glob
from tests.optim import torch_reference as ref


def draw(rng):
    return dict(
        lr=float(rng.choice([1.0, ref.loguniform(rng, 0.1, 3.0)])),
        betas=(rng.uniform(0.0, 0.95), rng.uniform(0.9, 0.9999)),
        eps=ref.loguniform(rng, 1e-10, 1e-6),
        weight_decay=float(rng.choice([0.0, ref.loguniform(rng, 1e-4, 0.1)])),
        d0=ref.loguniform(rng, 1e-7, 1e-4),
        d_coef=rng.uniform(0.5, 2.0),
        growth_rate=float(rng.choice([float("inf"), rng.uniform(1.01, 1.2)])),
        groups=dict(
            hidden=dict(weight_decay=float(rng.choice([0.0, ref.loguniform(rng, 1e-4, 0.1)]))),
            out=dict(eps=ref.loguniform(rng, 1e-9, 1e-6)),
        ),
    )


FLAGS = [
    dict(),
    dict(decouple=False, use_bias_correction=True),
    dict(safeguard_warmup=True, slice_p=3, beta3=0.95),
    dict(groups=dict(hidden=dict(lr=0.0))),
    dict(fsdp_in_use=True, slice_p=2),
]
FAMILIES = dict(prodigy=(prodigy, Prodigy, draw, FLAGS))


def test_matches_prodigyopt(precision):
    glob.check(prodigy, Prodigy, glob.draw_configs(draw, FLAGS[:1], per_combination=10, seed=211))
