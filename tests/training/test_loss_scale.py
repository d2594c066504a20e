"""Loss scaling side by side with the originals: ``torch.amp.GradScaler`` (driven as torch's AMP
examples and MMEngine's ``AmpOptimWrapper`` drive it: scale the loss, accumulate, ``unscale_``,
clip, ``step``, ``update``), MMCV 1.7.2's ``LossScaler`` and DeepSpeed's ``DynamicLossScaler``.

Random scaler settings and gradient sequences, with overflows injected at random steps (an
infinity or a NaN in one leaf; float16 gradients also overflow on their own once ``g * scale``
passes 65504). Both sides see the same scaled gradients ``float(g) * scale`` (the scale each side
holds), so a scale that drifts shows up in the parameters too. Compared: the scale after every
iteration and the skip pattern exactly (float32 scales; outside x64 the factors are drawn with at
most 4 significant bits, so that torch's float64 product and a float32 one round alike), the
params to the trajectory tolerance.

torch's GradScaler refuses float16 gradients (``unscale_``: 'Attempting to unscale FP16
gradients'); its FSDP subclass ``ShardedGradScaler`` lets them through ``_unscale_grads_(...,
allow_fp16=True)``, which is all the shim ``Fp16GradScaler`` below changes (ShardedGradScaler
itself needs a process group). float16 runs step SGD with lr 1 and no momentum, so that the params
are the start minus the unscaled gradients, each rounded once to float16 as torch rounds them.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from purelr.optim import clip_grad_norm, sgd
from purelr.training.accumulate import accumulate
from purelr.training.loss_scale import (
    deepspeed_fp16,
    dynamic_loss_scaler,
    grad_scaler,
    loss_scale,
    loss_scale_state,
    loss_scaled,
    mmcv_loss_scaler,
    static_loss_scaler,
)
from tests.parity import OPTIMIZER_RTOL, relative_error, trajectory_floor

STEPS = 40
SHAPES = ((3,), (2, 2))
CONFIGS = 10  # per precision and dtype in the default run (8 for MMCV's and DeepSpeed's); nightly: NIGHTLY_CONFIGS more
NIGHTLY_CONFIGS = 60


class Fp16GradScaler(torch.amp.GradScaler):
    def _unscale_grads_(self, optimizer, inv_scale, found_inf, allow_fp16):
        return super()._unscale_grads_(optimizer, inv_scale, found_inf, True)


def _factor(rng, low, high, exact):
    """A factor in ``(low, high)``: any double, or (``exact``) one with at most 4 significant bits."""
    while True:
        value = float(rng.uniform(low, high))
        if exact:
            exponent = math.floor(math.log2(value))
            value = round(value / 2.0**exponent * 8) / 8 * 2.0**exponent
        if low < value < high:
            return value


def random_case(seed, dtype, x64, overflow_rate=0.2):
    """Scaler settings, optimizer settings and the unscaled gradients (with overflows) of one run."""
    rng = np.random.default_rng(seed)
    exact = not x64
    settings = dict(
        init_scale=_factor(rng, 1.0, 2.0, exact) * 2.0 ** int(rng.integers(0, 17)),
        growth_factor=_factor(rng, 1.0, 4.0, exact),
        backoff_factor=_factor(rng, 0.05, 1.0, exact),
        growth_interval=int(rng.integers(1, 6)),
    )
    half = dtype == np.float16
    every = 1 if half or seed % 3 else int(rng.integers(2, 4))
    optimizer = (
        dict(lr=1.0, momentum=0.0)
        if half
        else dict(lr=float(rng.uniform(0.01, 0.1)), momentum=float(rng.choice([0.0, 0.9])))
    )
    clip = None if half or rng.random() < 0.5 else float(rng.uniform(0.1, 2.0))
    wide = np.float64 if dtype == np.float64 else np.float32
    magnitude = 10.0 ** rng.uniform(-3, 1, size=(STEPS, 1))
    grads = [
        (rng.normal(size=(STEPS,) + shape) * magnitude.reshape((STEPS,) + (1,) * len(shape))).astype(wide)
        for shape in SHAPES
    ]
    for k in np.flatnonzero(rng.random(STEPS) < overflow_rate):
        leaf = int(rng.integers(len(SHAPES)))
        grads[leaf][k].flat[int(rng.integers(grads[leaf][k].size))] = rng.choice([np.inf, -np.inf, np.nan])
    params = [rng.normal(size=shape).astype(dtype) for shape in SHAPES]
    return settings, optimizer, clip, every, params, grads


def run_torch(settings, optimizer, clip, every, params, grads, dtype):
    """torch: ``(params, scale, found_inf, growth_tracker)`` after each iteration (found_inf and
    tracker at the iterations that step)."""
    scaler = (Fp16GradScaler if dtype == np.float16 else torch.amp.GradScaler)("cpu", **settings)
    tensors = [torch.tensor(p, requires_grad=True) for p in params]
    opt = torch.optim.SGD(tensors, **optimizer)
    out = {"params": [], "scale": [], "found": [], "tracker": []}
    for k in range(STEPS):
        scale = scaler.scale(torch.ones((), dtype=torch.float32))
        for p, g in zip(tensors, grads):
            scaled = (torch.from_numpy(g[k]) * scale).to(p.dtype)
            contribution = scaled * (1.0 / every) if every > 1 else scaled  # MMEngine's loss / n
            p.grad = contribution if p.grad is None else p.grad + contribution
        if (k + 1) % every == 0:
            scaler.unscale_(opt)
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(tensors, clip)
            scaler.step(opt)
            state = scaler._per_optimizer_states[id(opt)]
            out["found"].append(bool(sum(v.item() for v in state["found_inf_per_device"].values())))
            scaler.update()
            out["tracker"].append(int(scaler._growth_tracker))
            opt.zero_grad()
        out["params"].append([p.detach().numpy().copy() for p in tensors])
        out["scale"].append(np.float32(scaler.get_scale()))
    return out


def transformation(settings, optimizer, clip, every, scaler=None):
    inner = sgd(**optimizer)
    if clip is not None:
        inner = optax.chain(clip_grad_norm(clip), inner)
    tx = loss_scaled(inner, scaler or grad_scaler(**settings))
    return accumulate(tx, every) if every > 1 else tx


def run_purelr(tx, params, grads, counter=lambda scaler: scaler.growth_tracker):
    """purelr, jitted (one ``lax.scan`` over the iterations): the same record as ``run_torch``
    (``counter`` picks the scaler's counter to record)."""

    @jax.jit
    def run(params, grads):
        def body(carry, g):
            params, state = carry
            scale = loss_scale(state)
            scaled = [(gk * scale.astype(gk.dtype)).astype(p.dtype) for gk, p in zip(g, params)]
            updates, state = tx.update(scaled, state, params)
            params = optax.apply_updates(params, updates)
            inner = loss_scale_state(state)
            return (params, state), (params, loss_scale(state), inner.found_inf, counter(inner.scaler))

        return jax.lax.scan(body, (params, tx.init(params)), grads)[1]

    return run([jnp.asarray(p) for p in params], [jnp.asarray(g) for g in grads])


def check_grad_scaler(seed, dtype, precision):
    settings, optimizer, clip, every, params, grads = random_case(seed, dtype, precision == "x64")
    expected = run_torch(settings, optimizer, clip, every, params, grads, dtype)
    actual_params, scales, found, tracker = run_purelr(transformation(settings, optimizer, clip, every), params, grads)
    context = f"seed {seed} {np.dtype(dtype).name} {settings} every={every} clip={clip}"
    np.testing.assert_array_equal(np.asarray(scales), np.asarray(expected["scale"]), err_msg=context)
    steps = slice(every - 1, None, every)
    assert list(np.asarray(found)[steps][: len(expected["found"])]) == expected["found"], context
    assert list(np.asarray(tracker)[steps][: len(expected["tracker"])]) == expected["tracker"], context
    assert any(expected["found"]) and not all(expected["found"]), context  # both kinds of step were taken
    worst = 0.0
    for leaf in range(len(SHAPES)):
        ours = np.asarray(actual_params[leaf])
        theirs = np.stack([p[leaf] for p in expected["params"]])
        assert ours.dtype == theirs.dtype, context
        if dtype == np.float16:
            np.testing.assert_array_equal(ours, theirs, err_msg=context)
            continue
        error = relative_error(ours, theirs, floor=trajectory_floor(precision))
        assert error <= OPTIMIZER_RTOL[precision], f"{context}: params error {error:.3g}"
        worst = max(worst, error)
    return worst


@pytest.mark.parametrize("half", [False, True], ids=["float", "float16"])
def test_grad_scaler_matches_torch(precision, half):
    dtype = np.float16 if half else np.float64 if precision == "x64" else np.float32
    worst = max(check_grad_scaler(seed, dtype, precision) for seed in range(CONFIGS))
    print(f"{precision} {np.dtype(dtype).name}: worst params error {worst:.3g}")


@pytest.mark.nightly
@pytest.mark.parametrize("half", [False, True], ids=["float", "float16"])
def test_grad_scaler_matches_torch_on_more_configs(precision, half):
    dtype = np.float16 if half else np.float64 if precision == "x64" else np.float32
    for seed in range(CONFIGS, CONFIGS + NIGHTLY_CONFIGS):
        check_grad_scaler(seed, dtype, precision)


def legacy_case(seed, kind, x64):
    """Settings of MMCV's ``LossScaler`` or DeepSpeed's ``DynamicLossScaler`` and a float run.
    Outside x64 the scale (a Python float in both) is float32: factors and starts are powers of
    two there (MMCV's default factor, DeepSpeed's only one), so that no division rounds."""
    rng = np.random.default_rng(seed)
    init_scale = (_factor(rng, 1.0, 2.0, True) if x64 else 1.0) * 2.0 ** int(rng.integers(0, 12))
    if kind == "mmcv":
        settings = dict(
            init_scale=init_scale,
            mode="static" if seed % 5 == 4 else "dynamic",
            scale_factor=_factor(rng, 1.0, 4.0, False) if x64 else 2.0 ** int(rng.integers(1, 3)),
            scale_window=int(rng.integers(1, 6)),
        )
    else:
        settings = dict(
            init_scale=init_scale,
            scale_window=int(rng.integers(1, 6)),
            min_scale=float(rng.choice([0.25, 1.0, 4.0])),
            delayed_shift=int(rng.integers(1, 4)),
            consecutive_hysteresis=bool(rng.random() < 0.5),
        )
    dtype = np.float64 if x64 else np.float32
    static = settings.get("mode") == "static"  # no overflow check: an infinity would reach the params
    _, optimizer, clip, _, params, grads = random_case(seed, dtype, x64, overflow_rate=0.0 if static else 0.2)
    return settings, optimizer, params, grads


def run_legacy_reference(kind, settings, optimizer, params, grads):
    """The originals' float16 optimizer loop (MMCV 1.x's ``Fp16OptimizerHook`` for torch < 1.6,
    DeepSpeed's ``FP16_Optimizer``) on the float32 master grads: overflow check, unscale, step,
    ``update_scale``. ``(params, scale, overflow)`` per iteration."""
    if kind == "mmcv":
        from mmcv.runner.fp16_utils import LossScaler

        scaler = LossScaler(**settings)
        overflow = scaler.has_overflow
        unscale = lambda g: g.div_(scaler.loss_scale)  # noqa: E731  (Fp16OptimizerHook.after_train_iter)
    else:
        from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler
        from deepspeed.runtime.utils import has_inf_or_nan

        scaler = DynamicLossScaler(**settings, raise_error_at_min_scale=False)
        # DynamicLossScaler.has_overflow_serial calls its _has_inf_or_nan, which lacks
        # @staticmethod (a TypeError): the engines check each grad with has_inf_or_nan
        overflow = lambda ps: any(bool(has_inf_or_nan(p.grad)) for p in ps)  # noqa: E731
        unscale = lambda g: g.mul_(1.0 / scaler.cur_scale)  # noqa: E731  (unscale_and_clip_grads)
    tensors = [torch.tensor(p, requires_grad=True) for p in params]
    opt = torch.optim.SGD(tensors, **optimizer)
    out = {"params": [], "scale": [], "found": []}
    for k in range(STEPS):
        for p, g in zip(tensors, grads):
            p.grad = torch.from_numpy(g[k]) * scaler.loss_scale
        found = overflow(tensors)
        if not found:
            for p in tensors:
                unscale(p.grad)
            opt.step()
        scaler.update_scale(found)
        out["params"].append([p.detach().numpy().copy() for p in tensors])
        out["scale"].append(scaler.loss_scale)
        out["found"].append(found)
    return out


@pytest.fixture
def deepspeed_without_ranks(monkeypatch):
    """DeepSpeed's scaler asks ``deepspeed.comm.get_rank()`` for its log lines, which needs a process group."""
    from deepspeed.runtime.fp16 import loss_scaler

    monkeypatch.setattr(loss_scaler, "dist", type("comm", (), {"get_rank": staticmethod(lambda: 0)}))


def check_legacy(kind, seed, precision):
    settings, optimizer, params, grads = legacy_case(seed, kind, precision == "x64")
    expected = run_legacy_reference(kind, settings, optimizer, params, grads)
    scaler = mmcv_loss_scaler(**settings) if kind == "mmcv" else dynamic_loss_scaler(**settings)
    actual_params, scales, found, _ = run_purelr(
        loss_scaled(sgd(**optimizer), scaler), params, grads, counter=lambda scaler: scaler.iteration
    )
    context = f"{kind} seed {seed} {settings}"
    np.testing.assert_array_equal(
        np.asarray(scales), np.asarray(expected["scale"], np.asarray(scales).dtype), err_msg=context
    )
    assert list(np.asarray(found)) == expected["found"], context
    worst = 0.0
    for leaf in range(len(SHAPES)):
        theirs = np.stack([p[leaf] for p in expected["params"]])
        error = relative_error(np.asarray(actual_params[leaf]), theirs, floor=trajectory_floor(precision))
        assert error <= OPTIMIZER_RTOL[precision], f"{context}: params error {error:.3g}"
        worst = max(worst, error)
    return worst


@pytest.mark.parametrize("kind", ["mmcv", "deepspeed"])
def test_mmcv_and_deepspeed_scalers_match_the_originals(kind, precision, request):
    if kind == "deepspeed":
        request.getfixturevalue("deepspeed_without_ranks")
    worst = max(check_legacy(kind, seed, precision) for seed in range(CONFIGS - 2))
    print(f"{kind} {precision}: worst params error {worst:.3g}")


@pytest.mark.nightly
@pytest.mark.parametrize("kind", ["mmcv", "deepspeed"])
def test_mmcv_and_deepspeed_scalers_match_the_originals_on_more_configs(kind, precision, request):
    if kind == "deepspeed":
        request.getfixturevalue("deepspeed_without_ranks")
    for seed in range(CONFIGS, CONFIGS + NIGHTLY_CONFIGS):
        check_legacy(kind, seed, precision)


def _one_update(scaler, grads, state=None):
    tx = loss_scaled(optax.identity(), scaler)
    state = tx.init(grads) if state is None else state
    return jax.jit(tx.update)(grads, state)


def test_grad_scaler_edges_match_torch():
    """Growth past float32's range is refused (the scale stays); a static scale is reset after every
    step, overflow or not (``update(new_scale)``), while overflowing steps are still skipped;
    bfloat16 and float16 gradients are unscaled in float32 and rounded back."""
    top = 2.0**127
    scaler = torch.amp.GradScaler("cpu", init_scale=top, growth_interval=1)
    p = torch.zeros(2, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.1)
    scaler.scale(torch.ones(()))
    p.grad = torch.ones(2)
    scaler.step(opt)
    scaler.update()
    _, state = _one_update(grad_scaler(init_scale=top, growth_interval=1), jnp.ones(2, jnp.float32))
    assert float(loss_scale(state)) == scaler.get_scale() == top

    scaler = torch.amp.GradScaler("cpu", init_scale=100.0)
    ours, state = grad_scaler(init_scale=100.0, static=True), None
    for g in (np.array([1.0, np.inf], np.float32), np.array([1.0, 2.0], np.float32)):
        scaler.scale(torch.ones(()))
        p.grad = torch.from_numpy(g.copy())
        scaler.step(opt)
        found = bool(sum(v.item() for v in scaler._per_optimizer_states[id(opt)]["found_inf_per_device"].values()))
        scaler.update(100.0)  # AmpOptimWrapper / Fp16OptimizerHook with loss_scale=100.
        _, state = _one_update(ours, jnp.asarray(g), state)
        assert bool(state.found_inf) == found and float(loss_scale(state)) == scaler.get_scale() == 100.0

    g = np.random.default_rng(0).normal(size=64).astype(np.float32) * 1e3
    for jax_dtype, torch_type in ((jnp.bfloat16, torch.bfloat16), (jnp.float16, torch.float16)):
        expected = torch.from_numpy(g).to(torch_type)
        torch._amp_foreach_non_finite_check_and_unscale_(
            [expected], torch.zeros(()), torch.full((), 1 / 3000.0, dtype=torch.float32)
        )
        grads = jnp.asarray(torch.from_numpy(g).to(torch_type).float().numpy()).astype(jax_dtype)
        unscaled = grad_scaler(init_scale=3000.0).unscale(grads, grad_scaler(init_scale=3000.0).init())
        np.testing.assert_array_equal(np.asarray(unscaled.astype(jnp.float32)), expected.float().numpy())


def test_disabled_grad_scaler_passes_gradients_through():
    grads = jnp.array([1.0, jnp.nan])
    updates, state = _one_update(grad_scaler(enabled=False), grads)
    assert float(loss_scale(state)) == 1.0 and not bool(state.found_inf)
    np.testing.assert_array_equal(np.asarray(updates), np.asarray(grads))
    assert float(loss_scale(optax.sgd(0.1).init(grads))) == 1.0  # no loss scaling: scale 1


def test_mmcv_overflow_is_a_float32_sum_that_overflows():
    """MMCV's ``LossScaler._has_inf_or_nan`` tests ``float(x.float().sum())``: finite gradients whose
    sum passes float32's range count as an overflow, in MMCV and in the twin."""
    from mmcv.runner.fp16_utils import LossScaler

    g = np.array([3e38, 3e38], np.float32)
    p = torch.zeros(2, requires_grad=True)
    p.grad = torch.from_numpy(g)
    assert LossScaler().has_overflow([p])
    _, state = _one_update(mmcv_loss_scaler(), jnp.asarray(g))
    assert bool(state.found_inf)
    _, state = _one_update(grad_scaler(), jnp.asarray(g))  # torch checks each value: no overflow
    assert not bool(state.found_inf)


@pytest.mark.usefixtures("deepspeed_without_ranks")
def test_deepspeed_stops_at_min_scale():
    """At ``min_scale`` another overflow makes DeepSpeed raise (its default
    ``raise_error_at_min_scale=True``); under jit the twin keeps the scale at ``min_scale``."""
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler

    reference = DynamicLossScaler(
        init_scale=2.0, scale_window=10, min_scale=1.0, delayed_shift=1, consecutive_hysteresis=False
    )
    reference.update_scale(True)
    assert reference.cur_scale == 1.0
    with pytest.raises(Exception, match="already at minimum"):
        reference.update_scale(True)
    ours, state = dynamic_loss_scaler(init_scale=2.0, scale_window=10, min_scale=1.0), None
    for expected in (1.0, 1.0, 1.0):
        _, state = _one_update(ours, jnp.array([jnp.inf]), state)
        assert float(loss_scale(state)) == expected
    _, state = _one_update(static_loss_scaler(8.0), jnp.array([jnp.inf]))
    assert float(loss_scale(state)) == 8.0 and not bool(state.found_inf)  # DeepSpeed's static scaler never checks


@pytest.mark.usefixtures("deepspeed_without_ranks")
def test_deepspeed_fp16_sections_build_deepspeeds_scaler():
    """A DeepSpeed ``fp16`` section read by DeepSpeed's own ``DeepSpeedFP16Config`` and handed to
    its scaler as its engines hand it (``dynamic_loss_scale_args()`` into ``DynamicLossScaler``,
    ``LossScaler(loss_scale)`` for a static one), against ``deepspeed_fp16`` of the same section:
    the scale after each of 40 updates with overflows at random ones. Sections: the defaults,
    MMPretrain's MAE DeepSpeed benchmarks' (``strategy.fp16``), and random ones."""
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.precision_config import DeepSpeedFP16Config

    rng = np.random.default_rng(0)
    sections = [
        dict(enabled=True),
        dict(
            enabled=True,
            auto_cast=False,
            fp16_master_weights_and_grads=False,
            loss_scale=0,
            loss_scale_window=1000,
            hysteresis=1,
            min_loss_scale=1,
            initial_scale_power=16,
        ),
        dict(enabled=True, loss_scale=128.0),
    ]
    sections += [
        dict(
            enabled=True,
            initial_scale_power=int(rng.integers(0, 20)),
            loss_scale_window=int(rng.integers(1, 5)),
            hysteresis=int(rng.integers(1, 4)),
            consecutive_hysteresis=bool(rng.random() < 0.5),
            min_loss_scale=int(rng.integers(1, 3)),
        )
        for _ in range(8)
    ]
    overflows = rng.random(40) < 0.3
    for section in sections:
        config = DeepSpeedFP16Config(**section)
        reference = (
            DynamicLossScaler(**config.dynamic_loss_scale_args(), raise_error_at_min_scale=False)
            if config.loss_scale == 0
            else LossScaler(config.loss_scale)
        )
        expected = []
        for found in overflows:
            reference.update_scale(bool(found))
            expected.append(reference.loss_scale)
        scaler = deepspeed_fp16(section)

        def body(state, found):
            state = scaler.update(state, found)
            return state, state.scale

        actual = jax.jit(lambda founds: jax.lax.scan(body, scaler.init(), founds)[1])(jnp.asarray(overflows))
        np.testing.assert_array_equal(
            np.asarray(actual), np.asarray(expected, np.asarray(actual).dtype), err_msg=str(section)
        )
