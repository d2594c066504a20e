"""The rest of timm 1.0.31's registry (AdamWLegacy's ``adamwlegacy`` / ``adamc`` / ``cadamw`` /
``cadamc``, Muon's ``muon`` / ``nmuon`` / ``adamuon`` / ``nadamuon``): ``purelr.build(dict(timm=...))``
against timm's ``create_optimizer_v2(model, NAME, ...)`` + ``create_scheduler_v2`` on the ViT twin,
stepped as train.py steps them (``test_timm``'s check); x64 <= 1e-10 on the params after 3 epochs.
One name per twin by default, the other names nightly."""

import pytest

from tests.recipes.test_timm import test_build_matches_timm_factories as check_build

SCHEDULE = dict(sched="cosine", epochs=3, warmup_epochs=1, warmup_lr=1e-4)
NAMES = {  # name: the train.py arguments besides SCHEDULE
    "adamc": dict(lr=1e-2, weight_decay=0.5),
    "adamwlegacy": dict(lr=1e-2, weight_decay=0.05, opt_args=dict(amsgrad=True)),
    "cadamw": dict(lr=1e-2, weight_decay=0.05, opt_args=dict(clipping_threshold=1.0)),
    "cadamc": dict(lr=1e-2, weight_decay=0.5),
}
DEFAULT = ("adamc",)


@pytest.mark.parametrize(
    "name", [name if name in DEFAULT else pytest.param(name, marks=pytest.mark.nightly) for name in NAMES]
)
def test_build_matches_timm_create_optimizer_v2(name):
    check_build(dict(opt=name, **NAMES[name], **SCHEDULE))
