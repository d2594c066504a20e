"""timm's own optimizers of the famous recipes (rmsproptf, lamb, lars, lion, sgdw, nadamw, adafactor and
their registered variants, corrected weight decay included) through ``purelr.build(dict(timm=...))`` against timm 1.0.31's
``create_optimizer_v2(model, NAME, lr=..., weight_decay=..., **opt_args)`` + ``create_scheduler_v2`` on
the ViT twin (weight decay and no-decay groups: biases and 1-d params undecayed), stepped as
``train.py`` steps them (``test_timm``'s check); x64 <= 1e-10 on the parameters after 3 epochs. One name
per twin by default, every registered variant nightly."""

import jax
import pytest

from purelr.recipes.timm import SUPPORTED
from tests.optim.torch_reference import torch_dtype
from tests.parity import OPTIMIZER_RTOL, relative_error, trajectory_floor
from tests.recipes import twins
from tests.recipes.test_timm import EPOCH_LEN, run_timm
from tests.recipes.test_timm import test_build_matches_timm_factories as check_build

SCHEDULE = dict(sched="cosine", epochs=3, warmup_epochs=1, warmup_lr=1e-4)
NAMES = {  # name: the train.py arguments besides SCHEDULE
    "rmsproptf": dict(lr=1e-2, weight_decay=1e-3, opt_eps=1e-3),
    "rmsproptfw": dict(lr=1e-2, weight_decay=1e-2, momentum=0.8),
    "crmsproptf": dict(lr=1e-2, weight_decay=1e-3, opt_args=dict(centered=True, lr_in_momentum=False)),
    "lamb": dict(lr=1e-2, weight_decay=0.05),
    "lambc": dict(lr=1e-2, weight_decay=0.05, opt_betas=(0.8, 0.99), opt_args=dict(max_grad_norm=None)),
    "lambw": dict(lr=1e-2, weight_decay=0.05, opt_args=dict(max_grad_norm=0.5, always_adapt=True)),
    "lambcw": dict(lr=1e-2, weight_decay=0.05, opt_eps=1e-8),
    "clamb": dict(lr=1e-2, weight_decay=0.05, opt_args=dict(grad_averaging=False)),
    "clambw": dict(lr=1e-2, weight_decay=0.05, opt_args=dict(bias_correction=False)),
    "lars": dict(lr=0.5, weight_decay=1e-3),
    "larc": dict(lr=0.5, weight_decay=1e-3, opt_args=dict(trust_coeff=0.01)),
    "nlars": dict(lr=0.5, weight_decay=1e-3, opt_args=dict(always_adapt=True)),
    "nlarc": dict(lr=0.5, weight_decay=1e-3, momentum=0.8),
    "lion": dict(lr=1e-3, weight_decay=0.1),
    "clion": dict(lr=1e-3, weight_decay=0.1, opt_betas=(0.95, 0.98)),
    "sgdw": dict(lr=0.05, weight_decay=1e-3),
    "nesterovw": dict(lr=0.05, weight_decay=1e-3, momentum=0.8),
    "csgdw": dict(lr=0.05, weight_decay=1e-3),
    "nadamw": dict(lr=1e-2, weight_decay=0.05),
    "cnadamw": dict(lr=1e-2, weight_decay=0.05, opt_args=dict(clipping_threshold=1.0)),
    "adafactor": dict(lr=1e-2, weight_decay=1e-3),
    "cadafactor": dict(lr=1e-2, weight_decay=1e-3, opt_args=dict(min_dim_size_to_factor=4)),
    # corrected weight decay (lr ** 2 / max_lr_snapshot): the snapshot is the constructor's lr
    "lambcd": dict(lr=1e-2, weight_decay=0.5),
    "rmsproptfc": dict(lr=1e-2, weight_decay=0.1, opt_eps=1e-3),
    "lionc": dict(lr=1e-3, weight_decay=1.0),
    "clionc": dict(lr=1e-3, weight_decay=1.0),
    "sgdc": dict(lr=0.05, weight_decay=0.1),
    "csgdc": dict(lr=0.05, weight_decay=0.1),
    "nadamc": dict(lr=1e-2, weight_decay=0.5),
    "cnadamc": dict(lr=1e-2, weight_decay=0.5),
}


def test_every_name_of_these_twins_is_covered():
    twins_here = {"rmsprop_tf", "lamb", "lars", "lion", "sgdw", "nadamw", "timm_adafactor"}
    assert {name for name, info in SUPPORTED.items() if info.optimizer.__name__ in twins_here} == set(NAMES)


DEFAULT = (
    "rmsproptf",
    "lamb",
    "nlarc",
    "lion",
    "sgdw",
    "nadamw",
    "adafactor",
    "lambcd",
)  # one per twin; the rest nightly


@pytest.mark.parametrize(
    "name", [name if name in DEFAULT else pytest.param(name, marks=pytest.mark.nightly) for name in NAMES]
)
def test_build_matches_timm_create_optimizer_v2(name):
    check_build(dict(opt=name, **NAMES[name], **SCHEDULE))


def test_lamb_global_clip_leaves_frozen_params_out():
    """timm's Lamb computes its ``max_grad_norm`` pre-clip over the params it holds: a frozen
    (``requires_grad=False``) block is not in its groups, so its gradients do not count."""
    args = dict(opt="lamb", lr=1e-2, weight_decay=0.05, opt_args=dict(max_grad_norm=0.1), **SCHEDULE)
    steps, frozen = 3 * EPOCH_LEN, ("blocks.0",)
    with torch_dtype(x64=True):
        expected = run_timm(dict(args), steps, frozen)
    twins.warm("vit")
    with jax.enable_x64(True):
        actual = twins.run_purelr(dict(timm=args), "vit", steps, 0, epoch_len=EPOCH_LEN, frozen=frozen)
    for name, value in expected.items():
        assert relative_error(actual[name], value, floor=trajectory_floor()) <= OPTIMIZER_RTOL["x64"], name


def test_lamb_global_clip_of_create_optimizer_v2_ignores_frozen_gradients():
    """``create_optimizer_v2(..., frozen=...)`` on its own (no ``build`` dropping frozen gradients
    first): the gradients of frozen leaves do not enter Lamb's global norm."""
    import jax.numpy as jnp

    from purelr.recipes.timm import create_optimizer_v2

    twins.warm("vit")
    params = twins.reference.flax_params("vit")
    grads = jax.tree.map(lambda p: jnp.full_like(p, 0.3), params)
    tx = create_optimizer_v2(params, "lamb", lr=1e-2, weight_decay=0.05, max_grad_norm=0.1, frozen=["blocks.0"])
    frozen = {name: name.startswith("blocks.0.") for name in twins.dotted_names(params)}
    zeroed = jax.tree.unflatten(
        jax.tree.structure(grads),
        [
            jnp.zeros_like(g) if frozen[name] else g
            for name, g in zip(twins.dotted_names(grads), jax.tree.leaves(grads))
        ],
    )
    state = tx.init(params)
    raw_updates, _ = jax.jit(tx.update)(grads, state, params)
    zeroed_updates, _ = jax.jit(tx.update)(zeroed, state, params)
    for a, b in zip(jax.tree.leaves(raw_updates), jax.tree.leaves(zeroed_updates)):
        assert jnp.array_equal(a, b)
