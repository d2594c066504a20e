"""Published DeepSpeed configs (tests/data/deepspeed, sources in SOURCES.json) end to end through
``purelr.build(dict(deepspeed=path), params)``, side by side with DeepSpeed 0.19.8's engine.

The engine (``purelr.references.deepspeed.engine_run``, one process, gloo) trains a model whose
micro-batch losses are ``sum(p * g_k)`` on a seeded gradient stream; purelr's transformation takes
the same ``g_k``, once per micro-batch, under ``jit`` and ``lax.scan``. The params after every
micro-batch are compared: under x64 (the engine in float64) their distance from the start, to
1e-10 past the rounding of the params themselves (the params would hide an update's error under
the start's rounding: the lrs are 1e-4 of them), in float32 the params, to 1e-5.

What the engine runs differs from the published file where one CPU process cannot run it as is
(``single_process``), each change leaving the update's arithmetic as it is:
- the batch sizes are those of one process with the config's ``gradient_accumulation_steps`` (the
  file's world size is in ``WORLD_SIZE``; purelr checks the file's sizes against it);
- ``fp16`` / ``bf16`` off: the loss scaler is tested in tests/training/test_loss_scale.py (``test_fp16_sections`` here); with bf16 the
  transformation steps DeepSpeed's float32 master weights, which is what runs here;
- ZeRO stage 0: ZeRO partitions the same update over processes;
- Adam / AdamW get ``torch_adam: true`` with FusedAdam's default ``weight_decay=0`` written out:
  the engine then builds ``torch.optim.AdamW`` / ``Adam``, whose arithmetic FusedAdam computes
  (``tests/optim/test_fused_adam.py``; DeepSpeed's CPU FusedAdam needs a 2-minute C++ build, run
  with ``-m nightly``), while purelr builds ``fused_adam`` from the file as published. A file whose
  Adam has ``bias_correction: false`` runs against the real FusedAdam only (nightly).
"""

import json
import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import purelr
from purelr.recipes import deepspeed as ds_recipe
from purelr.references import deepspeed as reference
from purelr.schedules import deepspeed as ds_schedules
from tests.bad_inputs import assert_rejects
from tests.optim.test_fused_lamb import kernel_step
from tests.parity import (
    FLOOR,
    OPTIMIZER_RTOL,
    UNIT_ROUNDOFF,
    assert_schedule_matches,
    jitted,
    relative_error,
    trajectory_floor,
)

DATA = os.path.join(os.path.dirname(__file__), os.pardir, "data", "deepspeed")
SOURCES = json.load(open(os.path.join(DATA, "SOURCES.json")))
# The world size each file was written for (its train_batch_size = micro * accumulation * world).
WORLD_SIZE = {
    "t5_small_finetuning": 4,
    "compression_cifar_ds_config": 1,
    # BERT pre-training with Lamb at 64k / 32k sequences a batch: one micro-batch per GPU per step
    "bing_bert_bsz64k_lamb_seq128": 1024,
    "bing_bert_bsz32k_lamb_seq512": 2048,
}
LAMB = ("bing_bert_bsz32k_lamb_seq512", "bing_bert_bsz64k_lamb_seq128")  # FusedLamb: CUDA only
# What the Hugging Face Trainer fills in for a file that leaves the batch size to it.
FILLED = {"hf_transformers_ds_config": {"train_micro_batch_size_per_gpu": 8}}
REFUSED = {"resnet_ds_config": r"deepspeed.optimizer.params.betas = \[0.8, 0.999\] is not an argument of SGD"}
UPDATES = 24
SHAPES = {"b": (3,), "w": (2, 3)}


def _config(name):
    with open(os.path.join(DATA, f"{name}.json")) as f:
        return {**json.load(f), **FILLED.get(name, {})}


def single_process(cfg, world_size, torch_adam=True):
    """The file's config as one CPU process runs it (module docstring); ``torch_adam=False`` keeps
    DeepSpeed's FusedAdam."""
    _, micro, accumulation = ds_recipe.batch_sizes(cfg, world_size)
    cfg = {key: value for key, value in cfg.items() if key not in ("fp16", "bf16", "zero_optimization")}
    cfg.update(
        train_batch_size=micro * accumulation,
        train_micro_batch_size_per_gpu=micro,
        gradient_accumulation_steps=accumulation,
    )
    optimizer = dict(cfg["optimizer"], params=dict(cfg["optimizer"].get("params", {})))
    if torch_adam and optimizer["type"].lower() in ("adam", "adamw"):
        optimizer["params"].setdefault("weight_decay", 0.0)
        optimizer["params"].pop("bias_correction", None)
        optimizer["params"]["torch_adam"] = True
    cfg["optimizer"] = optimizer
    return cfg


def _stream(micro_batches, seed):
    rng = np.random.default_rng(seed)
    scale = rng.choice([0.05, 1.0], size=micro_batches)  # clipping at 1.0 on and off
    return [{n: rng.normal(size=s) * k for n, s in SHAPES.items()} for k in scale]


def _initial(seed):
    rng = np.random.default_rng(seed + 1)
    return {n: rng.normal(size=s) for n, s in SHAPES.items()}


def _purelr_trajectory(transform, params, grads):
    stacked = {n: jnp.stack([g[n] for g in grads]) for n in SHAPES}

    @jax.jit
    def run(params, stacked):
        def step(carry, grad):
            params, state = carry
            updates, state = transform.update(grad, state, params)
            params = jax.tree.map(lambda p, u: p + u, params, updates)
            return (params, state), params

        return jax.lax.scan(step, (params, transform.init(params)), stacked)[1]

    return run(params, stacked)


def _assert_trajectory(name, precision, ours, expected, start, every=1):
    """purelr's params after each micro-batch against ``expected`` (a list of ``{name: array}``;
    an update every ``every`` micro-batches): under x64 their distance from ``start``
    (``_displacement_error``), in float32 themselves."""
    worst = 0.0
    for n in SHAPES:
        want, got = np.stack([e[n] for e in expected]), np.asarray(ours[n])
        if precision == "x64":
            error = _displacement_error(got, want, start[n], every)
        else:
            error = relative_error(got, want, floor=trajectory_floor(precision))
        assert error <= OPTIMIZER_RTOL[precision], f"{name} {precision} {n}: {error:.3g} ({SOURCES[name]['url']})"
        worst = max(worst, error)
        assert not np.allclose(want[-1], want[0]), f"{name}: the params did not move"
    return worst


def _displacement_error(got, want, start, every=1):
    """Largest error of the distance from the start, ``|got - want| / |want - start|``, less the
    rounding of the params: each side rounds ``param + update`` at every update, so after ``k``
    of them the two may part by ``k`` units of the param (floor: 1e-9 of the largest distance)."""
    distance = np.abs(want - start)
    steps = (np.arange(len(want)) // every + 1).reshape((-1,) + (1,) * (want.ndim - 1))
    excess = np.maximum(np.abs(got - want) - steps * UNIT_ROUNDOFF["x64"] * np.abs(want), 0.0)
    return float(np.max(excess / np.maximum(distance, FLOOR["x64"] * np.max(distance))))


NAMES = sorted(name for name in SOURCES if name not in REFUSED and name not in LAMB and name != "bingbertsquad_bsz24")


@pytest.mark.parametrize("name", NAMES)
def test_published_config_end_to_end(name, precision):
    """``UPDATES`` optimizer updates of each file, micro-batch by micro-batch, against the engine."""
    _end_to_end(name, precision, torch_adam=True)


@pytest.mark.nightly
@pytest.mark.parametrize("name", sorted(n for n in SOURCES if n not in REFUSED and n not in LAMB))
def test_published_config_with_fused_adam(name):
    """Every file, float32, against the engine with DeepSpeed's own FusedAdam (its CPU extension)."""
    with jax.enable_x64(False):
        _end_to_end(name, "f32", torch_adam=False)


def _end_to_end(name, precision, torch_adam):
    cfg = _config(name)
    world = WORLD_SIZE.get(name, 1)
    engine_cfg = single_process(cfg, world, torch_adam)
    purelr_cfg = {key: value for key, value in cfg.items() if key not in ("fp16",)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # keys DeepSpeed ignores too (train_step_batch_size, cuda_visible_devices)
        _, _, accumulation = ds_recipe.batch_sizes(purelr_cfg, world)
        params = {n: jnp.asarray(v) for n, v in _initial(len(name)).items()}
        transform = purelr.build(dict(deepspeed=purelr_cfg), params, world_size=world)
    grads = _stream(UPDATES * accumulation, len(name))
    dtype = torch.float64 if precision == "x64" else torch.float32
    expected, _ = reference.engine_run(engine_cfg, _initial(len(name)), grads, dtype)
    ours = _purelr_trajectory(transform, params, [{n: jnp.asarray(g[n]) for n in g} for g in grads])
    worst = _assert_trajectory(name, precision, ours, expected, _initial(len(name)), accumulation)
    print(f"{name} {precision}: {len(grads)} micro-batches, worst {worst:.3g}")


@pytest.mark.parametrize("name", LAMB)
def test_lamb_configs_against_the_kernel(name, precision):
    """BERT's Lamb configs (FusedLamb, which DeepSpeed builds for CUDA only): the engine's fp32 step
    written out, ``clip_grad_norm_`` at ``gradient_clipping`` then FusedLamb's kernel
    (``tests/optim/test_fused_lamb.kernel_step``) in float64, ``UPDATES`` updates."""
    cfg = {key: value for key, value in _config(name).items() if key != "fp16"}
    world = WORLD_SIZE[name]
    params = {n: jnp.asarray(v) for n, v in _initial(3).items()}
    transform = purelr.build(dict(deepspeed=cfg), params, world_size=world)
    grads = _stream(UPDATES, 3)
    ours = _purelr_trajectory(transform, params, [{n: jnp.asarray(g[n]) for n in g} for g in grads])
    lamb = dict(cfg["optimizer"]["params"])
    current, expected = _initial(3), []
    moments = {n: (np.zeros(s), np.zeros(s)) for n, s in SHAPES.items()}
    for k, grad in enumerate(grads):
        norm = np.sqrt(sum(np.sum(g * g) for g in grad.values()))
        factor = min(1.0, cfg["gradient_clipping"] / (norm + 1e-6))
        for n in SHAPES:
            current[n], *moment = kernel_step(
                current[n],
                grad[n] * factor,
                *moments[n],
                k + 1,
                lr=lamb["lr"],
                beta1=0.9,
                beta2=0.999,
                eps=1e-8,
                eps_inside_sqrt=False,
                weight_decay=lamb["weight_decay"],
                max_coeff=lamb["max_coeff"],
                min_coeff=lamb["min_coeff"],
                bias_correction=lamb["bias_correction"],
            )
            moments[n] = tuple(moment)
        expected.append(dict(current))
    _assert_trajectory(name, precision, ours, expected, _initial(3))


LION = {
    "train_batch_size": 1,
    "gradient_clipping": 0.5,
    "optimizer": {"type": "Lion", "params": {"lr": 2e-3, "betas": [0.95, 0.98], "weight_decay": 0.1}},
    "scheduler": {"type": "WarmupLR", "params": {"warmup_min_lr": 0, "warmup_max_lr": 2e-3, "warmup_num_steps": 5}},
}


def _lion_lrs():
    lion = LION["optimizer"]["params"]
    return reference.curves("WarmupLR", LION["scheduler"]["params"], np.arange(UPDATES), lion["lr"])[0]


def _lion_kernel(grads, dtype):
    """DeepSpeed's Lion as its CPU kernel computes it (``csrc/lion/cpu_lion_impl.cpp``,
    ``Lion_Optimizer::Step_1``; its AVX path the same, lane by lane), in ``dtype``, after the
    engine's ``clip_grad_norm_`` at ``gradient_clipping`` and with WarmupLR's lr::

        c = g * (1 - beta1) + m * beta1;  p = p * (1 - lr * wd) - copysign(lr, c)
        m = g * (1 - beta2) + m * beta2
    """
    lion = LION["optimizer"]["params"]
    (b1, b2), wd, f = lion["betas"], lion["weight_decay"], dtype
    current = {n: v.astype(dtype) for n, v in _initial(5).items()}
    momentum = {n: np.zeros(s, dtype) for n, s in SHAPES.items()}
    trajectory = []
    for grad, lr in zip(grads, _lion_lrs()):
        norm = np.sqrt(sum(np.sum(g.astype(dtype) ** 2) for g in grad.values()))
        factor = min(1.0, LION["gradient_clipping"] / (norm + 1e-6))
        for n in SHAPES:
            g = (grad[n] * factor).astype(dtype)
            c = g * f(1 - f(b1)) + momentum[n] * f(b1)
            current[n] = current[n] * f(1 - f(lr) * f(wd)) - np.copysign(f(lr), c)
            momentum[n] = g * f(1 - f(b2)) + momentum[n] * f(b2)
        trajectory.append(dict(current))
    return trajectory


def _lion_purelr(grads):
    params = {n: jnp.asarray(v) for n, v in _initial(5).items()}
    transform = purelr.build(dict(deepspeed=LION), params)
    return _purelr_trajectory(transform, params, [{n: jnp.asarray(g[n]) for n in g} for g in grads])


def _check_lion(ours, expected, precision):
    worst = 0.0
    for n in SHAPES:
        want, got = np.stack([e[n] for e in expected]), np.asarray(ours[n])
        error = relative_error(got, want, floor=trajectory_floor(precision))
        assert error <= OPTIMIZER_RTOL[precision], f"Lion {precision} {n}: {error:.3g}"
        worst = max(worst, error)
    print(f"Lion {precision}: worst {worst:.3g}")


def test_lion_config_against_the_kernel(precision):
    """``optimizer: {type: Lion}`` (FusedLion, CUDA only; DeepSpeedCPULion under ZeRO-Offload, a C++
    extension) against its CPU kernel written out (``_lion_kernel``), with clipping and WarmupLR,
    ``UPDATES`` updates. DeepSpeed's kernels compute in float32 (and take no float64 params): under
    x64 this checks the formula."""
    grads = _stream(UPDATES, 5)
    dtype = np.float64 if precision == "x64" else np.float32
    _check_lion(_lion_purelr(grads), _lion_kernel(grads, dtype), precision)


@pytest.mark.nightly
def test_lion_config_against_deepspeed_cpu_lion():
    """The same against ``deepspeed.ops.lion.DeepSpeedCPULion`` itself (its C++ extension, built on
    first use: minutes), float32: the engine's clipping (``clip_grad_norm_``) and WarmupLR's lr set
    on the group before each step."""
    from deepspeed.ops.lion import DeepSpeedCPULion

    grads = _stream(UPDATES, 5)
    lion = LION["optimizer"]["params"]
    leaves = {n: torch.tensor(v, dtype=torch.float32, requires_grad=True) for n, v in _initial(5).items()}
    optimizer = DeepSpeedCPULion(
        list(leaves.values()), lr=lion["lr"], betas=tuple(lion["betas"]), weight_decay=lion["weight_decay"]
    )
    expected = []
    for grad, lr in zip(grads, _lion_lrs()):
        for n, p in leaves.items():
            p.grad = torch.tensor(grad[n], dtype=torch.float32)
        torch.nn.utils.clip_grad_norm_(list(leaves.values()), LION["gradient_clipping"])
        optimizer.param_groups[0]["lr"] = float(lr)
        optimizer.step()
        expected.append({n: p.detach().numpy().copy() for n, p in leaves.items()})
    with jax.enable_x64(False):
        _check_lion(_lion_purelr(grads), expected, "f32")


@pytest.mark.parametrize("name", sorted(n for n in SOURCES if "scheduler" in _config(n)))
def test_published_scheduler_curves(name, precision):
    """The lr (and OneCycle's beta1) of each file's scheduler over its whole run and past it,
    against DeepSpeed's class as the engine steps it."""
    cfg = _config(name)
    scheduler = cfg["scheduler"]
    lr = cfg["optimizer"]["params"].get("lr", 1e-3)
    params = scheduler["params"]
    end = max(params.get(key, 0) for key in ("total_num_steps", "warmup_num_steps", "cycle_first_step_size"))
    end += params.get("cycle_second_step_size") or params.get("cycle_first_step_size", 0)
    steps = np.unique(
        np.concatenate([np.arange(0, 2 * end + 50, max(1, end // 500)), [end - 1, end, end + 1, 2**31 - 2]])
    )
    want_lr, want_beta1, want_beta2 = reference.curves(scheduler["type"], params, steps, lr)
    assert_schedule_matches(jitted(ds_schedules.scheduler(scheduler, lr), steps), want_lr, precision, context=name)
    if scheduler["type"] == "OneCycle":
        assert_schedule_matches(
            jitted(ds_schedules.one_cycle_momentum(**params), steps), want_beta1, precision, context=f"{name} beta1"
        )
        assert np.all(want_beta2 == ds_schedules.ONE_CYCLE_BETA2)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_published_config_deepspeed_refuses(name):
    """A file DeepSpeed 0.19.8 itself cannot build (SGD given Adam's betas): purelr names the key."""
    with pytest.raises(ValueError, match=REFUSED[name]):
        purelr.build(dict(deepspeed=os.path.join(DATA, f"{name}.json")), {"w": jnp.zeros(2)})
    with pytest.raises(TypeError, match="betas"):
        reference.engine_run(single_process(_config(name), 1), _initial(0), [])


@pytest.mark.parametrize("name", sorted(n for n in SOURCES if _config(n).get("fp16", {}).get("enabled")))
def test_fp16_sections(name):
    """``fp16.enabled``: DeepSpeed's loss scaler around the update
    (``purelr.training.loss_scale.deepspeed_fp16``), starting at ``2 ** initial_scale_power``."""
    from purelr.training import loss_scale

    cfg = _config(name)
    params = {"w": jnp.zeros(2)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        transform = purelr.build(dict(deepspeed=cfg), params, world_size=WORLD_SIZE.get(name, 1))
    power = cfg["fp16"].get("initial_scale_power", 16)
    assert float(loss_scale.loss_scale(transform.init(params))) == 2.0**power


BASE = {"train_batch_size": 8, "optimizer": {"type": "AdamW", "params": {"lr": 1e-3}}}


def _with(**changes):
    cfg = json.loads(json.dumps(BASE))
    for key, value in changes.items():
        if value is None:
            cfg.pop(key, None)
        else:
            cfg[key] = value
    return cfg


BAD = [
    (_with(gradient_cliping=1.0), ValueError, ("'gradient_cliping'", "did you mean 'gradient_clipping'")),
    (_with(optimizer={"type": "OneBitLamb", "params": {}}), ValueError, ("'OneBitLamb' is not twinned", "OneBitAdam")),
    (_with(optimizer={"type": "Lamb", "params": {"max_grad_norm": 1.0}}), ValueError, ("max_grad_norm = 1.0",)),
    (_with(optimizer={"type": "AdamWW", "params": {}}), ValueError, ("'AdamWW'", "did you mean", "AdamW")),
    (
        _with(optimizer={"type": "Adam", "params": {"max_grad_norm": 1.0}}),
        ValueError,
        ("max_grad_norm = 1.0", "gradient_clipping"),
    ),
    (_with(optimizer={"type": "Adam", "params": {"lr": "auto"}}), ValueError, ("optimizer.params.lr = 'auto'",)),
    (_with(optimizer={"type": "Adam", "params": {"amsgrad": True}}), ValueError, ("amsgrad",)),
    (_with(optimizer={"type": "Adam", "params": {"bets": [0.9, 0.99]}}), ValueError, ("params.bets", "betas")),
    (_with(optimizer=None), ValueError, ("no 'optimizer'",)),
    (_with(train_batch_size=None), ValueError, ("train_batch_size or train_micro_batch_size_per_gpu",)),
    (_with(train_micro_batch_size_per_gpu=3), ValueError, ("train_batch_size (8)", "(3)", "world_size (1)")),
    (_with(gradient_clipping=-1), ValueError, ("gradient_clipping", "-1")),
    (_with(amp={"enabled": True}), ValueError, ("deepspeed.amp", "does not model")),
    (_with(torch_autocast={"enabled": True}), ValueError, ("deepspeed.torch_autocast", "does not model")),
    (_with(fp16={"enabled": True}, bf16={"enabled": True}), ValueError, ("fp16.enabled and bf16.enabled",)),
    (
        _with(scheduler={"type": "WarmupDecayLR", "params": {"warmup_num_steps": 5}}),
        ValueError,
        ("WarmupDecayLR", "total_num_steps"),
    ),
    (_with(scheduler={"type": "Cosine", "params": {}}), ValueError, ("scheduler.type", "'Cosine'", "WarmupCosineLR")),
]


@pytest.mark.parametrize("cfg, exception, needles", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_configs(cfg, exception, needles):
    assert_rejects(lambda: purelr.build(dict(deepspeed=cfg), {"w": jnp.zeros(2)}), exception, *needles)


def test_keys_deepspeed_ignores_warn_and_disabled_sections_pass():
    with pytest.warns(UserWarning, match="'train_step_batch_size'"):
        purelr.build(dict(deepspeed=_with(train_step_batch_size=4)), {"w": jnp.zeros(2)})
    purelr.build(dict(deepspeed=_with(amp={"enabled": False}, steps_per_print=10)), {"w": jnp.zeros(2)})


def test_deepspeed_defaults():
    """DeepSpeed's defaults where a config is silent: Adam decays decoupled (``adam_w_mode``
    True) with FusedAdam's ``weight_decay=0``, ``torch_adam`` AdamW's 0.01, gradients clipped at 1.0."""
    make, lr, _ = ds_recipe.optimizer_of({"optimizer": {"type": "Adam", "params": {"lr": 0.5, "weight_decay": 0.1}}})
    state = make().init({"w": jnp.ones(2)})
    assert lr == 0.5 and np.isclose(float(state.hyperparams["weight_decay"]), 0.1)
    grads, params = {"w": jnp.zeros(2)}, {"w": jnp.ones(2)}
    decoupled = make().update(grads, make().init(params), params)[0]["w"]
    assert np.allclose(decoupled, -0.5 * 0.1)  # zero gradient: only the decoupled decay moves the param
    make, _, _ = ds_recipe.optimizer_of({"optimizer": {"type": "Adam", "params": {"torch_adam": True}}})
    assert np.isclose(float(make().init(params).hyperparams["weight_decay"]), 0.01)
    clipped = purelr.build(
        dict(deepspeed={"train_batch_size": 1, "optimizer": {"type": "SGD", "params": {"lr": 1.0}}}), params
    )
    assert np.allclose(
        clipped.update({"w": jnp.full(2, 3.0)}, clipped.init(params), params)[0]["w"], -3.0 / (np.hypot(3, 3) + 1e-6)
    )
