"""Continuing a PyTorch run in JAX (``purelr.training.from_torch``): train ``K`` steps in torch, convert the
model's, optimizer's and scheduler's state dicts, take ``M`` more steps with the purelr twin; the
params equal torch's after ``K + M`` steps (x64, 1e-10 relative: DESIGN.md's optimizer bound).

The model is a tanh MLP (torch ``nn.Linear`` / flax ``nn.Dense``, float64) fit to fixed batches.
A torch state dict holds references to the live buffers, so each is deep-copied at step ``K``.
"""

import copy

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from purelr import optim
from purelr.schedules import torch as schedules
from purelr.training.from_torch import default_names, from_torch, kernel_layout, model_from_torch, resume_schedule
from tests.parity import OPTIMIZER_RTOL, relative_error

K, M, BATCH = 5, 6, 8
RNG = np.random.default_rng(0)
X = RNG.normal(size=(K + M, BATCH, 3))
Y = np.stack([np.sin(X.sum(-1)), np.cos(X[..., 0])], -1)

torch.set_num_threads(1)


class TorchMLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = torch.nn.Linear(3, 6)
        self.out = torch.nn.Linear(6, 2)

    def forward(self, x):
        return self.out(torch.tanh(self.hidden(x)))


class FlaxMLP(nn.Module):
    hidden: int = 6

    @nn.compact
    def __call__(self, x):
        dense = dict(dtype=jnp.float64, param_dtype=jnp.float64)
        return nn.Dense(2, name="out", **dense)(jnp.tanh(nn.Dense(self.hidden, name="hidden", **dense)(x)))


def train_torch(make_optimizer, make_scheduler=None, scheduler_from=0):
    """State dicts at step ``K`` and the params after ``K + M`` steps (float64); the scheduler
    (stepped after each update) is built after ``scheduler_from`` updates."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(0)
        model = TorchMLP()
        optimizer = make_optimizer(model.parameters())
        scheduler = None
        for k in range(K + M):
            if k == scheduler_from and make_scheduler is not None:
                scheduler = make_scheduler(optimizer)
            if k == K:
                saved = copy.deepcopy(
                    (model.state_dict(), optimizer.state_dict(), None if scheduler is None else scheduler.state_dict())
                )
            optimizer.zero_grad()
            loss = ((model(torch.tensor(X[k])) - torch.tensor(Y[k])) ** 2).mean()
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
        final = {name: p.detach().numpy().copy() for name, p in model.state_dict().items()}
    finally:
        torch.set_default_dtype(previous)
    return saved, final


def template(hidden=6):
    return FlaxMLP(hidden).init(jax.random.PRNGKey(0), jnp.zeros((1, 3), jnp.float64))["params"]


def continue_jax(optimizer, params, state):
    def loss(params, x, y):
        return ((FlaxMLP().apply({"params": params}, x) - y) ** 2).mean()

    @jax.jit
    def step(params, state, x, y):
        updates, state = optimizer.update(jax.grad(loss)(params, x, y), state, params)
        return optax.apply_updates(params, updates), state

    for k in range(K, K + M):
        params, state = step(params, state, X[k], Y[k])
    return params, state


def params_error(params, torch_params):
    return max(
        relative_error(
            params[layer][leaf],
            kernel_layout(torch_params[f"{layer}.weight"]) if leaf == "kernel" else torch_params[f"{layer}.bias"],
        )
        for layer in ("hidden", "out")
        for leaf in ("kernel", "bias")
    )


# (torch optimizer, its kwargs, the twin, count= for a state without 'step')
CASES = {
    "sgd_momentum": (
        torch.optim.SGD,
        dict(lr=0.05, momentum=0.9, weight_decay=1e-3),
        lambda **kw: optim.sgd(momentum=0.9, weight_decay=1e-3, **kw),
        K,
    ),
    "sgd_nesterov": (
        torch.optim.SGD,
        dict(lr=0.05, momentum=0.8, nesterov=True),
        lambda **kw: optim.sgd(momentum=0.8, nesterov=True, **kw),
        K,
    ),
    "adam": (torch.optim.Adam, dict(lr=0.01), lambda **kw: optim.adam(**kw), None),
    "adam_amsgrad": (
        torch.optim.Adam,
        dict(lr=0.01, amsgrad=True, weight_decay=1e-3),
        lambda **kw: optim.adam(amsgrad=True, weight_decay=1e-3, **kw),
        None,
    ),
    "adamw": (
        torch.optim.AdamW,
        dict(lr=0.01, weight_decay=0.05),
        lambda **kw: optim.adamw(weight_decay=0.05, **kw),
        None,
    ),
    "rmsprop": (torch.optim.RMSprop, dict(lr=0.01), lambda **kw: optim.rmsprop(**kw), None),
    "rmsprop_centered_momentum": (
        torch.optim.RMSprop,
        dict(lr=0.01, momentum=0.9, centered=True),
        lambda **kw: optim.rmsprop(momentum=0.9, centered=True, **kw),
        None,
    ),
    "adadelta": (torch.optim.Adadelta, dict(lr=1.0), lambda **kw: optim.adadelta(**kw), None),
    "adagrad": (
        torch.optim.Adagrad,
        dict(lr=0.05, lr_decay=0.01),
        lambda **kw: optim.adagrad(lr_decay=0.01, **kw),
        None,
    ),
    "adamax": (torch.optim.Adamax, dict(lr=0.01), lambda **kw: optim.adamax(**kw), None),
    "asgd": (torch.optim.ASGD, dict(lr=0.05, t0=3), lambda **kw: optim.asgd(t0=3, **kw), None),
    "nadam": (torch.optim.NAdam, dict(lr=0.01), lambda **kw: optim.nadam(**kw), None),
    "radam": (torch.optim.RAdam, dict(lr=0.01), lambda **kw: optim.radam(**kw), None),
    "rprop": (torch.optim.Rprop, dict(lr=0.01), lambda **kw: optim.rprop(**kw), None),
}


@pytest.mark.parametrize("case", CASES)
def test_continues_torch_run(case):
    optimizer_type, kwargs, make_twin, count = CASES[case]
    (model_sd, optimizer_sd, _), torch_final = train_torch(lambda p: optimizer_type(p, foreach=False, **kwargs))
    twin = make_twin(lr=kwargs["lr"])
    with jax.enable_x64(True):
        run = from_torch(twin, template(), model_sd, optimizer_sd, count=count)
        assert int(run.opt_state.count) == K and run.last_epoch is None
        params, state = continue_jax(twin, run.params, run.opt_state)
        assert int(state.count) == K + M
        error = params_error(params, torch_final)
    assert error <= OPTIMIZER_RTOL["x64"], f"{case}: params off by {error:.3g}"


def warmup_cosine(lr):
    """SequentialLR(LinearLR warmup for 8 steps, CosineAnnealingLR(T_max=20)), torch and twin."""

    def make(optimizer):
        lr_scheduler = torch.optim.lr_scheduler
        return lr_scheduler.SequentialLR(
            optimizer,
            [
                lr_scheduler.LinearLR(optimizer, start_factor=0.1, total_iters=8),
                lr_scheduler.CosineAnnealingLR(optimizer, T_max=20),
            ],
            milestones=[8],
        )

    return make, schedules.sequential_lr(
        [schedules.linear_lr(lr, start_factor=0.1, total_iters=8), schedules.cosine_annealing_lr(lr, T_max=20)], [8]
    )


@pytest.mark.parametrize("scheduler_from", [0, 2])
@pytest.mark.parametrize("case", ["sgd_momentum", "adamw"])
def test_continues_scheduler_inside_warmup(case, scheduler_from):
    """At step K = 5 the warmup (8 steps) is under way; the M = 6 steps cross its end. With the
    scheduler built after 2 updates, its ``last_epoch`` (3) trails the optimizer's step (5)."""
    optimizer_type, kwargs, make_twin, count = CASES[case]
    make_scheduler, schedule = warmup_cosine(kwargs["lr"])
    (model_sd, optimizer_sd, scheduler_sd), torch_final = train_torch(
        lambda p: optimizer_type(p, foreach=False, **kwargs), make_scheduler, scheduler_from
    )
    with jax.enable_x64(True):
        probe = from_torch(make_twin(lr=kwargs["lr"]), template(), model_sd, optimizer_sd, scheduler_sd, count=count)
        assert probe.last_epoch == K - scheduler_from
        twin = make_twin(lr=resume_schedule(schedule, probe.last_epoch, K))
        run = from_torch(twin, template(), model_sd, optimizer_sd, scheduler_sd, count=count)
        assert float(run.opt_state.hyperparams["lr"]) == optimizer_sd["param_groups"][0]["lr"]
        params, _ = continue_jax(twin, run.params, run.opt_state)
        error = params_error(params, torch_final)
    assert error <= OPTIMIZER_RTOL["x64"], f"{case}, scheduler from {scheduler_from}: off by {error:.3g}"


class TorchConvNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 3, (3, 2))
        self.bn = torch.nn.BatchNorm2d(3)
        self.fc = torch.nn.Linear(3, 4)

    def forward(self, x):
        return self.fc(self.bn(self.conv(x)).mean((2, 3)))


class FlaxConvNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        f64 = dict(dtype=jnp.float64, param_dtype=jnp.float64)
        x = nn.Conv(3, (3, 2), padding="VALID", name="conv", **f64)(x)
        x = nn.BatchNorm(use_running_average=True, epsilon=1e-5, name="bn", **f64)(x)
        return nn.Dense(4, name="fc", **f64)(x.mean((1, 2)))


def test_conv_batchnorm_naming_and_layout():
    """default_names / kernel_layout on Conv2d (OIHW -> HWIO), BatchNorm2d (weight -> scale,
    running stats -> batch_stats, num_batches_tracked skipped) and Linear: same outputs in eval."""
    torch.manual_seed(1)
    model = TorchConvNet().double().eval()
    with torch.no_grad():
        model.bn.running_mean.normal_()
        model.bn.running_var.uniform_(0.5, 2.0)
        model.bn.weight.normal_()
        model.bn.bias.normal_()
    x = RNG.normal(size=(2, 2, 7, 6))
    with jax.enable_x64(True):
        variables = FlaxConvNet().init(jax.random.PRNGKey(0), jnp.zeros((1, 7, 6, 2)))
        # flax keeps batch_stats in float32 whatever param_dtype; the template's dtype is kept
        batch_stats = jax.tree.map(lambda a: a.astype(jnp.float64), variables["batch_stats"])
        params, batch_stats = model_from_torch(model.state_dict(), variables["params"], batch_stats=batch_stats)
        out = FlaxConvNet().apply({"params": params, "batch_stats": batch_stats}, x.transpose(0, 2, 3, 1))
        error = relative_error(out, model(torch.tensor(x)).detach())
    assert error <= 1e-12, error
    assert default_names("layer1.0.bn1.num_batches_tracked", ()) is None


def test_names_mapping_and_function():
    """A mapping overrides default_names name by name; a function replaces it; (name, transform)."""
    (model_sd, optimizer_sd, _), _ = train_torch(lambda p: torch.optim.Adam(p, lr=0.01))
    mapping = {"hidden.weight": ("hidden.w", np.transpose), "hidden.bias": "hidden.b"}
    with jax.enable_x64(True):
        renamed = {
            "hidden": {"w": template()["hidden"]["kernel"], "b": template()["hidden"]["bias"]},
            "out": template()["out"],
        }
        by_mapping = from_torch(optim.adam(0.01), renamed, model_sd, optimizer_sd, names=mapping)
        by_function = from_torch(
            optim.adam(0.01),
            renamed,
            model_sd,
            optimizer_sd,
            names=lambda n, shape: mapping.get(n) or default_names(n, shape),
        )
    for run in (by_mapping, by_function):
        np.testing.assert_array_equal(run.params["hidden"]["w"], model_sd["hidden.weight"].numpy().T)
        np.testing.assert_array_equal(run.opt_state.exp_avg["hidden"]["b"], optimizer_sd["state"][1]["exp_avg"].numpy())


def test_chained_transform_and_fresh_optimizer():
    """The twin's state inside an optax.chain is filled; an optimizer that never stepped gives
    the twin's init state."""
    torch_optimizer = torch.optim.SGD(TorchMLP().double().parameters(), lr=0.1, momentum=0.9)
    (model_sd, optimizer_sd, _), _ = train_torch(lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9))
    chained = optax.chain(optim.clip_grad_norm(1.0), optim.sgd(0.1, momentum=0.9))
    with jax.enable_x64(True):
        run = from_torch(chained, template(), model_sd, optimizer_sd, count=K)
        fresh = from_torch(chained, template(), model_sd, torch_optimizer.state_dict())
    assert int(run.opt_state[1].count) == K
    np.testing.assert_array_equal(
        run.opt_state[1].momentum_buffer["out"]["bias"], optimizer_sd["state"][3]["momentum_buffer"].numpy()
    )
    assert int(fresh.opt_state[1].count) == 0
    assert not np.any(fresh.opt_state[1].momentum_buffer["out"]["kernel"])


@pytest.fixture(scope="module")
def adam_run():
    (model_sd, optimizer_sd, _), _ = train_torch(lambda p: torch.optim.Adam(p, lr=0.01))
    return model_sd, optimizer_sd


@pytest.mark.parametrize(
    "twin, params, kwargs, message",
    [
        (optim.sgd(0.01, momentum=0.9), None, {}, "'exp_avg', which the SGDState twin"),
        (optim.adam(0.01, amsgrad=True), None, {}, "'hidden.bias' has no 'max_exp_avg_sq'"),
        (optim.rmsprop(0.01), None, {}, "'exp_avg', which the RMSpropState twin"),
        (
            optim.adam(0.01),
            "wide",
            {},
            "torch 'hidden.weight' (6, 3) -> flax 'hidden.kernel' ((3, 6) after its layout): "
            "shape (3, 6) does not match the flax leaf's (3, 7)",
        ),
        (optim.adam(0.01), None, dict(names={"out.bias": "out.b"}), "'out.b', which is not a leaf of params"),
        (optim.adam(0.01), None, dict(names={"out.bias": None}), "flax params 'out.bias': no torch"),
        (optim.adam(0.01), None, dict(count=3), "count=3 but torch's state is at step 5"),
        (optim.adam(0.01), None, dict(param_names=["hidden.weight"]), "holds 4 parameters, the model 1"),
    ],
)
def test_rejects_mismatches(adam_run, twin, params, kwargs, message):
    """Another optimizer or other flags (unknown / missing keys), shapes, names, steps, counts."""
    model_sd, optimizer_sd = adam_run
    with jax.enable_x64(True):
        with pytest.raises(ValueError) as error:
            from_torch(twin, template(7) if params else template(), model_sd, optimizer_sd, **kwargs)
    assert message in str(error.value), str(error.value)


def test_rejects_sgd_without_count_and_extra_param():
    (model_sd, optimizer_sd, _), _ = train_torch(lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9))
    with jax.enable_x64(True):
        with pytest.raises(ValueError, match="keeps no 'step' for the SGDState twin: pass count="):
            from_torch(optim.sgd(0.1, momentum=0.9), template(), model_sd, optimizer_sd)
        partial = copy.deepcopy(optimizer_sd)
        partial["param_groups"][0]["params"] = [0, 1, 2]
        with pytest.raises(ValueError, match="holds 3 parameters, the model 4"):
            from_torch(optim.sgd(0.1, momentum=0.9), template(), model_sd, partial, count=K)
