"""``purelr.optim.cautious.cautious_transform`` (one caution wrapper around a twin) against timm
1.0.31's ``caution=True`` flag, side by side (torch_reference's runs, each configuration a param
group): AdamWLegacy, NAdamW and Lion without weight decay, where the wrapper is exact (see its
docstring: with decay timm masks before adding it, and the twins keep their ``caution`` flags).

x64 only: the wrapper multiplies the finished update by the mask (``(-step * m / denom) * mask``)
where timm masks the moment first (``-step * ((m * mask) / denom)``); the roundings differ by an
ulp per update, which float32 accumulates to 1.2e-5 over 200 updates (AdamWLegacy's ``exp_avg``),
past the float32 bound of 1e-5. The flags (``caution=True``) hold float32's 1e-5."""

import jax
import pytest
from timm.optim import Lion, NAdamW
from timm.optim.adamw import AdamWLegacy

from purelr.optim.adamw_legacy import adamw_legacy
from purelr.optim.cautious import cautious_transform
from purelr.optim.lion import lion
from purelr.optim.nadamw import nadamw
from tests.optim import test_lion, test_nadamw
from tests.optim import torch_reference as ref


def _wrapped(twin):
    def make(caution, **kwargs):
        assert caution
        return cautious_transform(twin(**kwargs))

    make.__name__ = f"cautious_{twin.__name__}"
    return make


TWINS = {
    "adamw_legacy": (_wrapped(adamw_legacy), AdamWLegacy, test_nadamw.draw),
    "nadamw": (_wrapped(nadamw), NAdamW, test_nadamw.draw),
    "lion": (_wrapped(lion), Lion, test_lion.draw),
}


def _no_decay(draw):
    return lambda rng: dict(draw(rng), weight_decay=0.0)


@pytest.mark.parametrize("name", list(TWINS))
def test_wrapper_matches_timm_caution(name):
    make, original, draw = TWINS[name]
    configs = ref.chosen([dict(caution=True)], _no_decay(draw), per_combination=10, seed=240)
    with jax.enable_x64(True):
        ref.check_family(make, original, configs)
