"""SWA/EMA averagers against torch's AveragedModel (default, avg_fn, multi_avg_fn, use_buffers),
timm's ModelEmaV3 and MMEngine's ExponentialMovingAverage on a torch twin whose params follow the
same random walk; SWALR from the swa start; update_bn against torch's update_bn."""

import importlib.util
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from mmengine.model import ExponentialMovingAverage

from purelr.schedules import torch as schedules
from purelr.training import averaging, batchnorm
from tests.optim.torch_reference import torch_dtype
from tests.parity import OPTIMIZER_RTOL, assert_schedule_matches, relative_error


def _timm_model_ema():
    """``timm/utils/model_ema.py`` loaded on its own: ``timm.utils`` imports torchvision, which the
    conftest stub does not provide; the file itself needs torch only."""
    import timm

    path = os.path.join(timm.__path__[0], "utils", "model_ema.py")
    spec = importlib.util.spec_from_file_location("timm_model_ema", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ModelEmaV3 = _timm_model_ema().ModelEmaV3
STEPS = 30
FEATURES = 3


class Net(nn.Module):
    """Dense -> BatchNorm -> relu -> Dense; torch twin below (kernel = weight.T)."""

    @nn.compact
    def __call__(self, x, train: bool = True):
        x = nn.Dense(4, name="fc1")(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name="bn")(x)
        return nn.Dense(2, name="fc2")(nn.relu(x))


def torch_net():
    return torch.nn.Sequential(
        torch.nn.Linear(FEATURES, 4), torch.nn.BatchNorm1d(4), torch.nn.ReLU(), torch.nn.Linear(4, 2)
    )


def to_flax(net):
    sd = {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}
    params = {
        "fc1": {"kernel": sd["0.weight"].T, "bias": sd["0.bias"]},
        "bn": {"scale": sd["1.weight"], "bias": sd["1.bias"]},
        "fc2": {"kernel": sd["3.weight"].T, "bias": sd["3.bias"]},
    }
    stats = {"bn": {"mean": sd["1.running_mean"], "var": sd["1.running_var"]}}
    return jax.tree.map(jnp.asarray, {"params": params, "batch_stats": stats})


def walk(net, rng):
    """Moves every float tensor of the torch net (params and running stats) at random."""
    with torch.no_grad():
        for value in net.state_dict().values():
            if value.is_floating_point():
                value.add_(torch.tensor(rng.normal(0, 0.1, value.shape)).abs() * 0.5 + 0.01)


def run(make_torch, update_torch, averager, update_purelr=None, tree="variables", double=True):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    with torch.no_grad():
        net = torch_net().to(torch.float64 if double else torch.float32)
        walk(net, rng)
    reference = make_torch(net)
    variables = to_flax(net)
    pick = (lambda v: v) if tree == "variables" else (lambda v: v["params"])
    state = averager.init(pick(variables))
    update = jax.jit(update_purelr or averager.update)
    for k in range(STEPS):
        walk(net, rng)
        update_torch(reference, net, k)
        state = update(state, pick(to_flax(net)), *([k] if update_purelr else []))
    module = getattr(reference, "module")
    expected = pick(to_flax(module))
    errors = jax.tree.map(relative_error, state.average, expected)
    return max(jax.tree.leaves(errors)), state


@pytest.fixture(autouse=True)
def x64():
    """JAX under x64 and torch's default dtype float64, as the suite pairs them: torch computes the
    weight of ``get_swa_multi_avg_fn`` in its default dtype."""
    with jax.enable_x64(True), torch_dtype(True):
        yield


AVERAGERS = {  # kind: (torch's avg_fn, multi_avg_fn; purelr's), each on the params alone
    "default": (lambda: (None, None), lambda: averaging.averaged_model()),
    "get_swa_avg_fn": (
        lambda: (torch.optim.swa_utils.get_swa_avg_fn(), None),
        lambda: averaging.averaged_model(avg_fn=averaging.get_swa_avg_fn()),
    ),
    "get_ema_avg_fn": (
        lambda: (torch.optim.swa_utils.get_ema_avg_fn(0.9), None),
        lambda: averaging.averaged_model(avg_fn=averaging.get_ema_avg_fn(0.9)),
    ),
    "get_swa_multi_avg_fn": (
        lambda: (None, torch.optim.swa_utils.get_swa_multi_avg_fn()),
        lambda: averaging.averaged_model(multi_avg_fn=averaging.get_swa_multi_avg_fn()),
    ),
    "get_ema_multi_avg_fn": (
        lambda: (None, torch.optim.swa_utils.get_ema_multi_avg_fn(0.7)),
        lambda: averaging.averaged_model(multi_avg_fn=averaging.get_ema_multi_avg_fn(0.7)),
    ),
}


def run_averaged_model(kind, *, buffers=False, double=True):
    avg_fn, multi = AVERAGERS[kind][0]()
    return run(
        lambda net: torch.optim.swa_utils.AveragedModel(net, avg_fn=avg_fn, multi_avg_fn=multi, use_buffers=buffers),
        lambda ref, net, k: ref.update_parameters(net),
        AVERAGERS[kind][1](),
        tree="variables" if buffers else "params",
        double=double,
    )


@pytest.mark.parametrize(
    "kind, buffers",
    [
        (kind, buffers)
        for kind in AVERAGERS
        for buffers in (False, True)
        if (kind, buffers) != ("get_swa_multi_avg_fn", True)
    ],
)
def test_averaged_model(kind, buffers):
    """Every avg_fn variant of AveragedModel, on the params or (``use_buffers``) on the params and
    BatchNorm statistics, in float64 (torch's default dtype float64 under x64). torch cannot run
    ``get_swa_multi_avg_fn`` with ``use_buffers``: it calls ``addcdiv`` on BatchNorm's integer
    ``num_batches_tracked``, which raises."""
    error, state = run_averaged_model(kind, buffers=buffers)
    assert error <= 1e-14, error
    assert int(state.n_averaged) == STEPS


@pytest.mark.parametrize("kind", AVERAGERS)
def test_averaged_model_float32(kind):
    """In float32 (torch's default float32, JAX without x64): the SWA weight rounded to float32 in both."""
    with jax.enable_x64(False), torch_dtype(False):
        error, _ = run_averaged_model(kind, double=False)
    assert error <= OPTIMIZER_RTOL["f32"], error


@pytest.mark.parametrize("warmup", [False, True])
def test_model_ema_v3(warmup):
    kwargs = dict(decay=0.95, min_decay=0.1, update_after_step=3, use_warmup=warmup, warmup_gamma=2.0)
    averager = averaging.model_ema_v3(**kwargs)
    error, _ = run(
        lambda net: ModelEmaV3(net, **kwargs),
        lambda ref, net, k: ref.update(net, step=k),
        averager,
        update_purelr=averager.update,
    )
    assert error <= 1e-13, error


def test_model_ema_v3_without_step():
    error, _ = run(
        lambda net: ModelEmaV3(net, decay=0.9), lambda ref, net, k: ref.update(net), averaging.model_ema_v3(decay=0.9)
    )
    assert error <= 1e-14, error


@pytest.mark.parametrize("interval", [1, 3])
def test_mmengine_ema(interval):
    error, _ = run(
        lambda net: ExponentialMovingAverage(net, momentum=0.1, interval=interval, update_buffers=True),
        lambda ref, net, k: ref.update_parameters(net),
        averaging.exponential_moving_average(momentum=0.1, interval=interval),
    )
    assert error <= 1e-14, error


def test_structure_mismatch():
    averager = averaging.averaged_model()
    state = averager.init({"a": jnp.zeros(2), "b": jnp.zeros(3)})
    with pytest.raises(ValueError, match="structure"):
        averager.update(state, {"a": jnp.zeros(2)})
    with pytest.raises(ValueError, match=r"leaf 1 has shape \(4,\), the average has \(3,\)"):
        averager.update(state, {"a": jnp.zeros(2), "b": jnp.zeros(4)})
    with pytest.raises(ValueError, match="decay.*1.5"):
        averaging.get_ema_avg_fn(1.5)


def test_swa_schedule():
    """torch: CosineAnnealingLR until swa_start, then SWALR built there (x64, 1e-12)."""
    opt = torch.optim.SGD([torch.zeros(1)], lr=0.1)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=40)
    lrs = []
    for t in range(15):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    swa_scheduler = torch.optim.swa_utils.SWALR(opt, swa_lr=0.01, anneal_epochs=5)
    for t in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        swa_scheduler.step()
    schedule = averaging.swa_schedule(schedules.cosine_annealing_lr(0.1, T_max=40), 15, 0.01, anneal_epochs=5)
    assert_schedule_matches(schedule(np.arange(len(lrs))), lrs, "x64")


def test_update_bn():
    """Running stats after one pass over 7 batches: torch's update_bn on the twin; x64 1e-12."""
    torch.manual_seed(1)
    net = torch_net().double()
    rng = np.random.default_rng(1)
    batches = [rng.normal(1.0, 2.0, (int(rng.integers(2, 9)), FEATURES)) for _ in range(7)]
    variables = to_flax(net)
    torch.optim.swa_utils.update_bn([(torch.tensor(b), 0) for b in batches], net)
    new = batchnorm.update_bn([(jnp.asarray(b), 0) for b in batches], Net(), variables, train=True)
    expected = to_flax(net)["batch_stats"]
    error = max(jax.tree.leaves(jax.tree.map(relative_error, new["batch_stats"], expected)))
    assert error <= 1e-12, error
    assert new["params"] is variables["params"]
    assert batchnorm.update_bn([], Net(), variables, train=True) is variables
