"""Both ways with torchao's quantized optimizer state (``OptimState8bit`` / ``4bit`` / ``Fp8``:
codes, scale, qmap) for its twins ``adamw_8bit`` / ``adamw_4bit`` / ``adamw_fp8`` and the Adam forms
``adam_8bit`` / ``adam_4bit`` / ``adam_fp8`` (their weight decay the L2 term: nightly).

k updates in torchao, ``from_torch``: the twin holds torchao's codes and scales bit for bit; m in
purelr against torchao's own m from there. k in purelr, ``to_torch`` (torchao's constructors),
``load_state_dict``: torchao holds the twin's codes and scales bit for bit; m in torchao against
purelr's m. The two sides' steps differ where a value lies within float32 ulps of a code boundary
(``tests/optim/test_adam_low_bit.py``): the m-update comparison is held to 1% of torchao's own
quantization error (its distance from float32 AdamW), as there. Round trip exact; a param whose
layout moves its entries (a transposed kernel: other blocks) is refused both ways.
"""

import copy
import io

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from purelr import optim
from purelr.optim.block_quantization import QuantizedBuffer
from purelr.training.from_torch import from_torch, model_from_torch
from purelr.training.to_torch import to_torch
from tests.optim.test_adam_low_bit import CLASSES, QUANTIZATION_SHARE, eager
from tests.training.test_to_torch import assert_same, randomized

RNG = np.random.default_rng(3)
DATA_X = RNG.normal(size=(8, 8, 64)).astype(np.float32)
DATA_Y = RNG.normal(size=(8, 8, 2)).astype(np.float32)


class TorchTable(torch.nn.Module):
    """A (64, 64) table (4096 entries: quantized, in the same layout on both sides) and a small head."""

    def __init__(self):
        super().__init__()
        self.table = torch.nn.Parameter(0.1 * torch.randn(64, 64))
        self.head = torch.nn.Linear(64, 2)

    def forward(self, x):
        return self.head(torch.tanh(x @ self.table))


def template():
    return {"table": jnp.zeros((64, 64)), "head": {"kernel": jnp.zeros((64, 2)), "bias": jnp.zeros((2,))}}


def flax_loss(params, x, y):
    out = jnp.tanh(x @ params["table"]) @ params["head"]["kernel"] + params["head"]["bias"]
    return ((out - y) ** 2).mean()


def torch_steps(model, optimizer, first, last):
    with eager():
        for k in range(first, last):
            optimizer.zero_grad()
            ((model(torch.tensor(DATA_X[k])) - torch.tensor(DATA_Y[k])) ** 2).mean().backward()
            optimizer.step()


def saved(*state_dicts):
    """A copy through ``torch.save`` (as a checkpoint is): the quantized tensors included."""
    buffer = io.BytesIO()
    torch.save(state_dicts, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


def quantized(optimizer_state_dict, key):
    """torchao's (codes as bytes, scale) of the table's buffer ``key``."""
    value = optimizer_state_dict["state"][0][key]
    return value.codes.view(torch.uint8).numpy(), value.scale.numpy()


def twin_quantized(state, key):
    buffer = getattr(state, key)["table"]
    assert isinstance(buffer, QuantizedBuffer)
    return np.asarray(buffer.codes).view(np.uint8), np.asarray(buffer.scale)


def assert_same_quantized(torch_state_dict, twin_state):
    for key in ("exp_avg", "exp_avg_sq"):
        for theirs, mine in zip(quantized(torch_state_dict, key), twin_quantized(twin_state, key)):
            np.testing.assert_array_equal(mine.reshape(theirs.shape), theirs)


def float32_adam(name, model_sd, lr, weight_decay, first, last):
    """The params after float32 ``torch.optim.AdamW`` (or ``Adam``: torchao's non-W forms decay as
    its L2) from ``model_sd`` (the quantization error's reference)."""
    model = TorchTable()
    model.load_state_dict(model_sd)
    adam = torch.optim.AdamW if name.startswith("adamw") else torch.optim.Adam
    torch_steps(model, adam(model.parameters(), lr=lr, weight_decay=weight_decay), first, last)
    return {n: p.detach().numpy().copy() for n, p in model.state_dict().items()}


def assert_close(mine, theirs, reference, what):
    """``mine`` within 1% of torchao's quantization error (``theirs`` against float32 AdamW's)."""
    for name, value in theirs.items():
        quantization = np.max(np.abs(value - reference[name])) + 1e-7
        error = np.max(np.abs(np.asarray(mine[name]) - value))
        assert error <= QUANTIZATION_SHARE * quantization, (what, name, error, quantization)


def torch_named(params):
    return {
        "table": np.asarray(params["table"]),
        "head.weight": np.asarray(params["head"]["kernel"]).T,
        "head.bias": np.asarray(params["head"]["bias"]),
    }


QUANTIZED = ["adamw_8bit", "adamw_4bit", "adamw_fp8", "adam_8bit", "adam_4bit", "adam_fp8"]


@pytest.mark.parametrize(
    "name, seed",
    [
        (n, s) if n.startswith("adamw") and s == 0 else pytest.param(n, s, marks=pytest.mark.nightly)
        for n in QUANTIZED
        for s in range(10)
    ],
)
def test_torchao_quantized_both_ways(name, seed):
    rng = np.random.default_rng(seed)
    lr, weight_decay = float(rng.uniform(1e-3, 1e-2)), float(rng.choice([0.0, 0.01]))
    k, m = int(rng.integers(1, 5)), int(rng.integers(1, 4))
    twin = getattr(optim, name)(lr=lr, weight_decay=weight_decay)

    @jax.jit
    def step(params, state, x, y):
        updates, state = twin.update(jax.grad(flax_loss)(params, x, y), state, params)
        return optax.apply_updates(params, updates), state

    def jax_steps(params, state, first, last):
        for i in range(first, last):
            params, state = step(params, state, DATA_X[i], DATA_Y[i])
        return params, state

    torch.manual_seed(seed)
    model = TorchTable()
    fresh_model_sd = copy.deepcopy(model.state_dict())
    optimizer = CLASSES[name](model.parameters(), lr=lr, weight_decay=weight_decay)
    fresh_optimizer_sd = copy.deepcopy(optimizer.state_dict())
    torch_steps(model, optimizer, 0, k)
    model_k, optimizer_k = saved(model.state_dict(), optimizer.state_dict())
    torch_steps(model, optimizer, k, k + m)
    final = {n: p.detach().numpy().copy() for n, p in model.state_dict().items()}

    run = from_torch(twin, template(), model_k, optimizer_k)
    assert int(run.opt_state.count) == k
    assert_same_quantized(optimizer_k, run.opt_state)
    params, _ = jax_steps(run.params, run.opt_state, k, k + m)
    assert_close(torch_named(params), final, float32_adam(name, model_k, lr, weight_decay, k, k + m), "torch -> purelr")

    start = model_from_torch(fresh_model_sd, template())[0]
    params, state = jax_steps(start, twin.init(start), 0, k)
    exported = to_torch(state, params, fresh_model_sd, fresh_optimizer_sd)
    back = from_torch(twin, template(), exported.model_state_dict, exported.optimizer_state_dict)
    assert_same(back.params, params)
    assert_same(back.opt_state, state)
    model = TorchTable()
    optimizer = CLASSES[name](model.parameters(), lr=lr, weight_decay=weight_decay)
    model.load_state_dict(exported.model_state_dict)
    optimizer.load_state_dict(exported.optimizer_state_dict)
    assert_same_quantized(optimizer.state_dict(), state)
    torch_steps(model, optimizer, k, k + m)
    continued = {n: p.detach().numpy().copy() for n, p in model.state_dict().items()}
    params, _ = jax_steps(params, state, k, k + m)
    reference = float32_adam(name, exported.model_state_dict, lr, weight_decay, k, k + m)
    assert_close(torch_named(params), continued, reference, "purelr -> torch")


@pytest.mark.parametrize("name", ["adamw_8bit", "adamw_4bit", "adamw_fp8"])
def test_torchao_moved_param_refused(name):
    """A (64, 64) Linear weight is quantized on both sides but transposed by its layout: each
    side's blocks hold other entries, so neither direction converts it."""
    twin = getattr(optim, name)(lr=1e-3)
    params = {"kernel": jnp.zeros((64, 64)), "bias": jnp.zeros((64,))}
    state = randomized(twin.init(params), seed=1)
    linear = torch.nn.Linear(64, 64)
    optimizer = CLASSES[name](linear.parameters(), lr=1e-3)
    with pytest.raises(ValueError, match="flax 'kernel' exp_avg: the twin's blocks run over flax's order"):
        to_torch(state, params, linear.state_dict(), optimizer.state_dict())
    linear.weight.grad, linear.bias.grad = torch.ones(64, 64), torch.ones(64)
    with eager():
        optimizer.step()
    with pytest.raises(ValueError, match="torch state of 'weight', 'exp_avg': torchao's blocks run over torch's"):
        from_torch(twin, params, linear.state_dict(), optimizer.state_dict())
    plain = optim.adamw_torchao(lr=1e-3)
    with pytest.raises(ValueError, match="'exp_avg': torchao's quantized OptimState"):
        from_torch(plain, params, linear.state_dict(), optimizer.state_dict(), names={"weight": ("kernel", np.asarray)})
