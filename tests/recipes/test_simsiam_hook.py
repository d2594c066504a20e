"""MMPretrain 1.2.0's ``SimSiamHook`` with ``custom_keys`` ``fix_lr=True`` (its SimSiam configs):
the groups so marked keep the hook's lr, reset before each epoch (or iteration) after the
schedulers moved it. Against MMEngine's schedulers stepped with the real hook
(``purelr.references.mmengine.simsiam_hook``, its module executed from the installed file)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import purelr
from purelr.cli.compare import reference_curves
from purelr.cli.curves import config_curves
from purelr.params.groups import hyperparams_in_force
from tests import corpus as corpora
from tests.parity import assert_schedule_matches

EPOCH_LEN = 3
SIMSIAM = "simsiam/simsiam_resnet50_8xb32-coslr-100e_in1k.py"  # SGD 0.05, CosineAnnealingLR by epoch
PARAMS = {"backbone": {"kernel": jnp.ones((2, 2))}, "predictor": {"kernel": jnp.ones((2, 2))}}


def simsiam(**changes):
    corpus = next(c for c in corpora.CORPORA if c.name == "mmpretrain-1.2.0")
    cfg = purelr.load_config(f"{corpora.root(corpus)}/{SIMSIAM}")
    cfg["train_cfg"] = dict(cfg["train_cfg"], max_epochs=6)
    cfg["param_scheduler"] = [dict(cfg["param_scheduler"][0], T_max=6, end=6)]
    for key, value in changes.items():
        cfg[key] = value
    return cfg


@pytest.mark.parametrize("adjust_by_epoch", [True, False])
def test_fix_lr_groups_keep_the_hook_lr(adjust_by_epoch):
    cfg = simsiam(
        custom_hooks=[
            dict(type="SimSiamHook", priority="HIGH", fix_pred_lr=True, lr=0.02, adjust_by_epoch=adjust_by_epoch)
        ]
    )
    with jax.enable_x64(True):
        curves = config_curves(cfg, epoch_len=EPOCH_LEN, params=PARAMS)
    expected = reference_curves(cfg, curves, "mmengine")
    fixed = [key for key in curves.values if "fix_lr=True" in key[0] and key[1] == "lr"]
    assert len(fixed) == 1 and np.all(curves.values[fixed[0]] == 0.02)
    assert len(set(curves.values[("default", "lr")])) == 6  # the cosine moves the others
    for key, values in curves.values.items():
        assert_schedule_matches(values, expected.values[key], "x64", context=str(key))


def test_build_steps_the_fixed_group_at_the_hook_lr():
    cfg = simsiam(custom_hooks=[dict(type="SimSiamHook", fix_pred_lr=True, lr=0.02)])
    with jax.enable_x64(True):
        transform = purelr.build(cfg, PARAMS, epoch_len=EPOCH_LEN)
        state = transform.init(PARAMS)
        update = jax.jit(transform.update)
        lrs = []
        for _ in range(4 * EPOCH_LEN):
            _, state = update(jax.tree.map(jnp.ones_like, PARAMS), state, PARAMS)
            lrs.append({label: float(h["lr"]) for label, h in hyperparams_in_force(state).items()})
    fixed = next(label for label in lrs[0] if "fix_lr=True" in label)
    assert all(lr[fixed] == 0.02 for lr in lrs)
    assert lrs[-1]["default"] < 0.05


def test_without_the_hook_fix_lr_changes_nothing():
    cfg = simsiam(custom_hooks=[])
    with jax.enable_x64(True):
        curves = config_curves(cfg, epoch_len=EPOCH_LEN, params=PARAMS)
    fixed = next(key for key in curves.values if "fix_lr=True" in key[0] and key[1] == "lr")
    np.testing.assert_array_equal(curves.values[fixed], curves.values[("default", "lr")])


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(custom_hooks=[dict(type="SimSiamHook", fix_pred_lr=True)]), r"custom_hooks\[0\]: SimSiamHook needs"),
        (dict(custom_hooks=[dict(type="SimSiamHook", fix_pred_lr=True, lr=-1.0)]), r"custom_hooks\[0\]\.lr"),
        (dict(custom_hooks=[dict(type="SimSiamHook", fix_pred_lr=True, lr=0.1, every=2)]), r"custom_hooks\[0\].*every"),
        (
            dict(
                custom_hooks=[dict(type="SimSiamHook", fix_pred_lr=True, lr=0.1)],
                param_scheduler=[dict(type="CosineAnnealingLR", T_max=6, by_epoch=True, convert_to_iter_based=True)],
            ),
            r"custom_hooks\[0\]: SimSiamHook\(adjust_by_epoch=True\).*param_scheduler\[0\]",
        ),
    ],
)
def test_bad_hooks_are_refused(change, match):
    with pytest.raises(ValueError, match=match):
        purelr.build(simsiam(**change), PARAMS, epoch_len=EPOCH_LEN)
