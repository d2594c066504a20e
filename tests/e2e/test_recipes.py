"""Whole training runs of examples/: the RetinaNet 1x recipe (MMCV 1.7.2's constructor and hooks)
and the timm AdamW + cosine recipe (timm's factories), torch against ``purelr.build`` with one
jit-compiled train step, 12 epochs of 25 iterations (300 updates; ``-m nightly`` or
``PURELR_E2E_LONG=1``: 12 epochs of 100).

float64: after every epoch the losses of all its iterations, the params and the BatchNorm running
means agree to ``X64_RTOL`` (relative to each array's largest entry); measured ~5e-15.

float32: each framework computes its own float32 rounding (convolution and reduction orders differ)
and 300 updates carry it along: measured, the two loss curves differ by up to ~6e-7 relative and
each float32 run is up to ~8e-7 from the float64 run. ``F32_LOSS_RTOL`` (1e-5) leaves a ten-fold
margin over that and is still ten thousand times below the smallest change in the loss a recipe
difference would make (a wrong warmup step or lr group moves the loss by more than 1e-3). The test
holds both float32 runs to the same bound against the float64 one, so what it allows between them
is what float32 rounding alone gives.

timm AdamW, float32: torch's float32 run is ~1.3e-5 from float64 (its float32 ``mul_(beta2)`` on
the second moment, amplified by Adam's division by ``sqrt(v)``), so torch is held to
``F32_LOSS_RTOL_TORCH_ADAM`` (1e-4) and the two curves to the same bound; the JAX float32 run is
~3.5e-7 from float64 and keeps ``F32_LOSS_RTOL``. (It was 6e-3 while purelr computed Adam's bias
corrections ``1 - beta ** t`` in float32: see ``purelr.optim.base.bias_correction``.)
"""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from examples import retinanet_1x, timm_adamw, twin_cnn

X64_RTOL = 1e-9
F32_LOSS_RTOL = 1e-5
F32_LOSS_RTOL_TORCH_ADAM = 1e-4
RECIPES = {"retinanet_1x": retinanet_1x, "timm_adamw": timm_adamw}
EPOCHS = 12


@functools.lru_cache(maxsize=None)
def runs(recipe: str, precision: str, epoch_len: int):
    """``(jax run, torch run)`` of a recipe in ``precision``."""
    module = RECIPES[recipe]
    data = twin_cnn.make_data(epoch_len)
    x64 = precision == "x64"
    expected = module.run_torch(module.CONFIG, data, epochs=EPOCHS, dtype=torch.float64 if x64 else torch.float32)
    with jax.enable_x64(x64):
        actual = twin_cnn.run_jax(module.CONFIG, data, epochs=EPOCHS, dtype=jnp.float64 if x64 else jnp.float32)
    return actual, expected


def check_x64(recipe, epoch_len):
    actual, expected = runs(recipe, "x64", epoch_len)
    assert actual.losses.shape == (EPOCHS, epoch_len) and actual.losses.size >= 300
    found = twin_cnn.errors(actual, expected)
    for epoch in range(EPOCHS):
        for what in ("losses", "params", "means"):
            error = getattr(found, what)[epoch]
            assert error <= X64_RTOL, f"{recipe} epoch {epoch + 1}: {what} differ by {error:.3g}"
    assert actual.losses[-1].mean() < 0.7 * actual.losses[0].mean(), "the recipe should train"
    print(
        f"{recipe} x64, {actual.losses.size} updates: losses {found.losses.max():.3g}, "
        f"params {found.params.max():.3g}, running means {found.means.max():.3g}"
    )


def check_f32(recipe, epoch_len):
    actual, expected = runs(recipe, "f32", epoch_len)
    exact, _ = runs(recipe, "x64", epoch_len)
    assert actual.losses.dtype == np.float32
    between = twin_cnn.errors(actual, expected).losses
    torch_bound = F32_LOSS_RTOL_TORCH_ADAM if recipe == "timm_adamw" else F32_LOSS_RTOL
    for name, run, rtol in (("jax", actual, F32_LOSS_RTOL), ("torch", expected, torch_bound)):
        from_exact = twin_cnn.errors(run, exact).losses
        assert from_exact.max() <= rtol, f"{recipe}: {name} float32 is {from_exact.max():.3g} from float64"
    for epoch, error in enumerate(between):
        assert error <= torch_bound, f"{recipe} epoch {epoch + 1}: float32 losses differ by {error:.3g}"
    print(f"{recipe} f32: loss curves {between.max():.3g} apart")


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_float64_runs_agree_after_every_epoch(recipe):
    check_x64(recipe, retinanet_1x.EPOCH_LEN)


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_float32_loss_curves_agree(recipe):
    check_f32(recipe, retinanet_1x.EPOCH_LEN)


def long_variant(request):
    if "nightly" not in (request.config.getoption("-m") or "") and not os.environ.get("PURELR_E2E_LONG"):
        pytest.skip("the long run: -m nightly or PURELR_E2E_LONG=1")


@pytest.mark.nightly
@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_long_runs_agree(recipe, request):
    long_variant(request)
    check_x64(recipe, 100)
    check_f32(recipe, 100)
