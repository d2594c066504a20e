"""Parity of purelr.optim.openmmlab with the optimizers MMPretrain 1.2.0 registers
(``mmpretrain.engine.optimizers``: ``LARS``, ``Lamb``, ``Adan``), side by side (torch_reference's
runs: 200 updates of a tanh MLP under x64, a moving quadratic in float32, half of the
configurations with a warmup-cosine lr through torch's LambdaLR), jitted under ``lax.scan``.

Each MMPretrain optimizer reads some options from its constructor, for all its groups (LARS's
``eps``, Lamb's and Adan's ``max_grad_norm``): each configuration is then an optimizer of its own.
MMPretrain's Adan keeps the previous gradient as ``pre_grad``, purelr's (timm's) its negation.
Measured worst errors: x64 LARS 6.5e-13, Lamb 4.9e-14, Adan 3.5e-12; float32 LARS 1.2e-6, Lamb
4.4e-7, Adan 9.4e-6 (MMPretrain sums Adan's two steps before applying them and updates
``exp_avg`` by ``mul_``/``add_`` where timm's twin applies two ``addcdiv`` and a lerp: float32
roundings of each, over 200 updates).
"""

import jax
import numpy as np
import pytest
from mmpretrain.engine.optimizers import LARS, Adan, Lamb

from purelr.optim.openmmlab import mmpretrain_adan, mmpretrain_lamb, mmpretrain_lars
from tests.optim import test_adan, test_lamb, test_lars
from tests.optim import torch_reference as ref
from tests.parity import OPTIMIZER_RTOL

PER_COMBINATION = 8


def draw_lars(rng):
    drawn = test_lars.draw(rng)
    return dict(drawn, eta=drawn.pop("trust_coeff"))


def draw_lars_nesterov(rng):
    return dict(draw_lars(rng), momentum=rng.uniform(0.5, 0.95), dampening=0.0)


def draw_lars_excluded(rng):
    """Without the trust ratio LARS is SGD: a smaller lr, at which the MLP does not diverge."""
    return dict(draw_lars(rng), lr=ref.loguniform(rng, 1e-3, 3e-2))


def draw_lars_excluded_nesterov(rng):
    return dict(draw_lars_nesterov(rng), lr=ref.loguniform(rng, 1e-3, 3e-2))


def draw_lamb(rng):
    return {key: value for key, value in test_lamb.draw(rng).items() if key != "max_lr_snapshot"}


draw_adan = test_adan.draw


def draw_adan_clipped(rng):
    return dict(draw_adan(rng), max_grad_norm=ref.loguniform(rng, 0.05, 5.0))


LARS_CONFIGS = (
    ref.chosen([dict()], draw_lars, per_combination=PER_COMBINATION, seed=1901)
    + ref.chosen([dict(lars_exclude=True)], draw_lars_excluded, per_combination=PER_COMBINATION, seed=1906)
    + ref.chosen([dict(nesterov=True)], draw_lars_nesterov, per_combination=PER_COMBINATION // 2, seed=1902)
    + ref.chosen(
        [dict(nesterov=True, lars_exclude=True)],
        draw_lars_excluded_nesterov,
        per_combination=PER_COMBINATION // 2,
        seed=1907,
    )
)
LAMB_CONFIGS = ref.chosen(
    [dict(), dict(trust_clip=True, always_adapt=True, grad_averaging=False, bias_correction=False)],
    draw_lamb,
    per_combination=PER_COMBINATION,
    seed=1903,
)
ADAN_CONFIGS = ref.chosen(
    [dict(foreach=False), dict(foreach=False, no_prox=True), dict(foreach=True, no_prox=True)],
    draw_adan_clipped,
    per_combination=PER_COMBINATION,
    seed=1904,
) + ref.chosen([dict(foreach=False)], draw_adan, per_combination=PER_COMBINATION, seed=1905)
DEFAULT = {  # the flag combinations of the default run (each compiles once a precision); all nightly
    "LARS": [dict(), dict(nesterov=True, lars_exclude=True)],
    "Lamb": [dict(), dict(trust_clip=True, always_adapt=True, grad_averaging=False, bias_correction=False)],
    "Adan": [dict(foreach=False), dict(foreach=True, no_prox=True)],
}
TWINS = {
    "LARS": (mmpretrain_lars, LARS, LARS_CONFIGS, ("lr", "eps")),
    "Lamb": (mmpretrain_lamb, Lamb, LAMB_CONFIGS, ("max_grad_norm",)),
    "Adan": (mmpretrain_adan, Adan, ADAN_CONFIGS, ("max_grad_norm",)),
}


def _innermost(state):
    """The optimizer's state inside ``optax.chain(clip, step)`` (Adan with ``max_grad_norm``)."""
    return state[-1] if isinstance(state, tuple) and not hasattr(state, "_fields") else state


def _as_purelr_state(torch_state):
    """MMPretrain Adan's ``pre_grad`` as the ``neg_pre_grad`` purelr keeps."""
    return {
        path: {
            ("neg_pre_grad" if key == "pre_grad" else key): (-value if key == "pre_grad" else value)
            for key, value in buffers.items()
        }
        for path, buffers in torch_state.items()
    }


def check(name, configs):
    make, original, _, keys = TWINS[name]
    x64 = jax.config.jax_enable_x64
    groups = {}
    for config in configs:
        flags, numbers = ref._split(config)
        groups.setdefault((tuple(sorted(flags.items())), tuple(numbers)), []).append(config)
    worst = 0.0
    for group in groups.values():
        for config, (params, state), (torch_params, torch_state, lr) in zip(
            group, ref.run_purelr(make, group), ref.run_torch(original, group, x64, keys)
        ):
            error, where = ref.compare(params, _innermost(state), torch_params, _as_purelr_state(torch_state), lr)
            assert error <= OPTIMIZER_RTOL["x64" if x64 else "f32"], f"{name} {config}: {where} off by {error:.3g}"
            worst = max(worst, error)
    return worst


def _default(name):
    """The configurations whose flags are those of ``DEFAULT[name]`` (Adan's: with its clipping)."""
    configs = [c for c in TWINS[name][2] if ref._split(c)[0] in DEFAULT[name]]
    return [c for c in configs if name != "Adan" or "max_grad_norm" in c]


@pytest.mark.parametrize("name", sorted(TWINS))
def test_matches_mmpretrain(name, precision):
    print(f"{name} ({precision}): worst {check(name, _default(name)):.3g}")


@pytest.mark.nightly
@pytest.mark.parametrize("name", sorted(TWINS))
def test_every_option_matches_mmpretrain(name, precision):
    print(f"{name} ({precision}): worst {check(name, TWINS[name][2]):.3g}")


def test_configurations_cover_the_options():
    assert len(LARS_CONFIGS) + len(LAMB_CONFIGS) + len(ADAN_CONFIGS) >= 30 * 2
    assert any(c["weight_decay"] == 0 for c in LARS_CONFIGS) and any(c["momentum"] == 0 for c in LARS_CONFIGS)
    assert {(c["foreach"], c.get("no_prox", False)) for c in ADAN_CONFIGS} == {
        (False, False),
        (False, True),
        (True, True),
    }


def test_lars_keeps_the_lr_in_its_momentum():
    """What differs from timm's Lars: a lr that changes moves MMPretrain's LARS by the buffer it
    gathered at the old lr (with the lr held, the two are one optimizer)."""
    from purelr.optim import lars

    params = {"w": np.ones(3)}
    grads = {"w": np.array([0.5, -1.0, 2.0])}
    lr = lambda count: np.where(count == 0, 1.0, 0.1)  # noqa: E731
    moved = {}
    for name, tx in (
        ("mmpretrain", mmpretrain_lars(lr, momentum=0.9)),
        ("timm", lars(lr, momentum=0.9, always_adapt=True)),
    ):
        state = tx.init(params)
        _, state = tx.update(grads, state, params)
        moved[name], _ = tx.update(grads, state, params)
    trust = 0.001 * np.sqrt(3) / (np.linalg.norm(grads["w"]) + 1e-8)
    np.testing.assert_allclose(moved["mmpretrain"]["w"], -(0.9 * 1.0 + 0.1) * trust * grads["w"], rtol=1e-6)
    np.testing.assert_allclose(moved["timm"]["w"], -0.1 * (0.9 + 1.0) * trust * grads["w"], rtol=1e-6)


@pytest.mark.parametrize(
    "name, kwargs, message",
    [
        ("LARS", dict(lr=0.1, momentum=-0.9), "momentum"),
        ("LARS", dict(lr=0.1, weight_decay=-1e-2), "weight_decay"),
        ("LARS", dict(lr=0.1, eta=-1e-3), "eta"),
        ("LARS", dict(lr=0.1, nesterov=True), "Nesterov"),
        ("Adan", dict(max_grad_norm=-1.0), "max_grad_norm"),
        ("Adan", dict(betas=(1.0, 0.92, 0.99)), r"betas\[0\]"),
    ],
)
def test_rejects_what_mmpretrain_rejects(name, kwargs, message):
    make, original = TWINS[name][:2]
    with pytest.raises(ValueError):
        original([ref.torch.zeros(1, requires_grad=True)], **kwargs)
    with pytest.raises(ValueError, match=message):
        make(**kwargs)
