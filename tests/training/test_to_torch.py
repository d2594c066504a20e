"""``purelr.training.to_torch`` and the table both directions read (``torch_state.LAYOUTS``).

Round trip: every optimizer of ``tests/training/resume_run.py`` (every exported twin) and the
wrappers around one, their states drawn at random: ``from_torch(to_torch(state)) == state``, bit for
bit (x64 and float32; schedulefree's wrappers' params, swapped to torch's eval mode and back, to
one rounding). Both ways: k updates in torch (or purelr), convert, m in purelr (or torch),
equal to k + m torch updates (x64, 1e-10), for the twins of torch.optim (Muon over the matrices),
timm, transformers, MMPretrain, the author's Muon, schedulefree (every form), DeepSpeed's FusedAdam
(a stand-in of its layout; its own CPU build in float32, nightly) and FusedLamb (its kernel's
arithmetic) with random k, m and configurations (``test_every_twin_has_a_both_ways_test``: every
twin's test, here or in its family's file); timm's Kron and Adahessian fed the same random
numbers on both sides (measured, 12 configurations each: 7.9e-16 and 7.0e-13); the schedulers
(torch, MMEngine) and averaged models (AveragedModel, ModelEmaV3, MMEngine's EMA) likewise.
heavyball's SOAP / PSGDKron: tests/training/test_heavyball_state.py; schedulefree's wrappers:
tests/training/test_schedule_free_wrapper_conversion.py.
"""

import copy
import functools
import zlib
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from purelr import optim
from purelr.training import accumulate, averaging, loss_scale
from purelr.training.from_torch import averaged_from_torch, from_torch
from purelr.training.to_torch import averaged_to_torch, to_torch
from purelr.training.torch_state import group_key
from tests.parity import OPTIMIZER_RTOL, relative_error, trajectory_floor
from tests.training import resume_run
from tests.training.test_from_torch import TorchMLP, template

UPDATES = 3
LBFGS = {"lbfgs"}  # a flat history, converted by its own test
# schedulefree's wrappers: torch's model holds x, the twin's params y (swapped both ways: one rounding)
SWAPPED = {"schedule_free_wrapper", "schedule_free_wrapper_reference"}


def torch_model_state(x64: bool):
    torch.manual_seed(0)
    model = TorchMLP()
    return (model.double() if x64 else model.float()).state_dict()


def synthetic_groups(opt_state, labels=None):
    """One torch param group per twin, with an entry for each of its hyperparameters."""
    from purelr.training.from_torch import _label
    from purelr.training.torch_state import chain, is_twin

    found = jax.tree_util.tree_leaves_with_path(opt_state, is_leaf=is_twin)
    twins = [(_label(p), s) for p, s in found if is_twin(s)]
    names = ["hidden.weight", "hidden.bias", "out.weight", "out.bias"]
    flax = ["hidden.kernel", "hidden.bias", "out.kernel", "out.bias"]
    groups = []
    for label, twin in twins:
        group = {"params": [k for k, n in enumerate(flax) if labels is None or labels[n] == label]}
        for member, name in ((m, n) for m in chain(twin) for n in m.hyperparams):  # a wrapper's and its base's
            key, index = group_key(member, name)
            if index is None:
                group[key] = 0.0
            else:
                group.setdefault(key, [0.0, 0.0, 0.0])
        group["param_names"] = [names[k] for k in group["params"]]
        group["fallback_lr_scale"] = 1.0  # timm's Muon: its fallback's lr is the group's times this
        groups.append(group)
    return {"state": {}, "param_groups": groups}


def assert_same(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert jnp.result_type(x) == jnp.result_type(y) and np.shape(x) == np.shape(y)
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def labels_of(name, params, state=None):
    if name == "muon":
        flat = {"hidden.kernel": "muon", "hidden.bias": "other", "out.kernel": "muon", "out.bias": "other"}
        return flat, jax.tree.map(lambda p: "muon" if p.ndim == 2 else "other", params)
    if isinstance(state, optax.transforms.PartitionState):  # a twin that partitions itself (timm's Muon)
        return partition_labels(state, params)
    return None, None


def partition_labels(state, params):
    """``(flat, tree)`` labels of a partition: each leaf's label is that of the twin keeping a buffer there."""
    from purelr.training.from_torch import _dotted
    from purelr.training.torch_state import buffer_fields

    flat = {}
    for label, masked in state.inner_states.items():
        twin = getattr(masked, "inner_state", masked)
        for field in buffer_fields(twin):
            flat.update({n: label for n in _dotted(getattr(twin, field))})
    first = next(iter(state.inner_states))
    flat = {n: flat.get(n, first) for n in _dotted(params)}
    names = iter(flat.values())
    return flat, jax.tree.map(lambda _: next(names), params)


def randomized(state, seed, count=UPDATES):
    """``state`` with every twin's buffers and hyperparameters drawn at random (empty buffers
    kept), its count ``count``, and a loss scaler's scale and counters drawn: a round trip
    needs no compiled updates to find a field that does not come back."""
    from purelr.training.loss_scale import DynamicScalerState, GradScalerState
    from purelr.training.torch_state import chain, is_twin

    rng = np.random.default_rng(seed)

    def draw(x):
        if jnp.issubdtype(x.dtype, jnp.integer):
            return jnp.asarray(rng.integers(0, 50, np.shape(x)), x.dtype)
        if jnp.issubdtype(x.dtype, jnp.floating):
            return jnp.asarray(np.abs(rng.normal(size=np.shape(x))) + 0.5, x.dtype)
        return x

    def counted(node):  # a twin, the twins it wraps and optax's count-only states: one count
        if is_twin(node) or getattr(node, "_fields", ()) == ("count",):
            node = node._replace(count=jnp.asarray(count, node.count.dtype))
        return node

    def fill(node):
        if is_twin(node):
            drawn = jax.tree.map(draw, node)
            inner = chain(drawn)[-1]  # a wrapper's hyperparams include its optimizer's, the same values
            shared = {k: v for k, v in inner.hyperparams.items() if k in drawn.hyperparams}
            drawn = drawn._replace(hyperparams={**drawn.hyperparams, **shared})
            if getattr(drawn, "low", None) is not None:  # double-float pairs: a low half below the high's last place
                pair = {
                    f: getattr(drawn, f) * (2.0**-26 if getattr(drawn, f).dtype == jnp.float32 else 0.0)
                    for f in drawn.low
                }
                drawn = drawn._replace(low=pair)
            return jax.tree.map(counted, drawn, is_leaf=lambda n: is_twin(n) and n is not drawn)._replace(
                count=jnp.asarray(count, node.count.dtype)
            )
        if isinstance(node, (GradScalerState, DynamicScalerState)):
            return jax.tree.map(draw, node)
        return counted(node)

    def kinds(n):
        return (
            is_twin(n)
            or isinstance(n, (GradScalerState, DynamicScalerState))
            or getattr(n, "_fields", ()) == ("count",)
        )

    return jax.tree.map(fill, state, is_leaf=kinds)


@pytest.mark.parametrize("name", [n for n in resume_run.OPTIMIZERS if n not in LBFGS])
def test_round_trip_every_twin(name, precision):
    round_trip(name, precision)


# Prodigy's slice of a transposed kernel (slice_p > 1) keeps other entries on each side: refused
# (test_prodigy_slice_of_a_moved_param); the round trip takes every entry
ROUND_TRIP = {"prodigy": lambda: optim.prodigy(weight_decay=0.01, use_bias_correction=True)}


def round_trip(name, precision):
    optimizer = ROUND_TRIP.get(name, resume_run.OPTIMIZERS[name])()
    params = template()
    state = kept(upper_triangular(randomized(optimizer.init(params), seed=len(name))), optimizer.init(params))
    flat_labels, labels = labels_of(name, params, state)
    model_sd = torch_model_state(precision == "x64")
    exported = to_torch(state, params, model_sd, synthetic_groups(state, flat_labels), labels=labels)
    back = from_torch(
        optimizer, template(), exported.model_state_dict, exported.optimizer_state_dict, count=UPDATES, labels=labels
    )
    if name == "schedule_free_wrapper_reference":  # torch's model holds the kept x, the twin's params are y
        assert_same(back.params, state.y)
    elif name in SWAPPED:  # y -> x -> y, each a lerp towards z
        bound = 1e-14 if precision == "x64" else 1e-6
        assert max(relative_error(a, b) for a, b in zip(jax.tree.leaves(back.params), jax.tree.leaves(params))) < bound
    else:
        assert_same(back.params, params)
    assert_same(back.opt_state, kept(state, optimizer.init(params)))


def upper_triangular(state):
    """PSGD's triangular factors made upper triangular, as its updates keep them (heavyball keeps
    the upper triangle only)."""
    from purelr.training.torch_state import is_twin

    def fix(node):
        if type(node).__name__ != "PSGDKronState":
            return node
        return node._replace(Q=jax.tree.map(lambda q: jnp.triu(q) if q.ndim == 2 else q, node.Q))

    return jax.tree.map(fix, state, is_leaf=is_twin)


def test_prodigy_slice_of_a_moved_param():
    optimizer = resume_run.OPTIMIZERS["prodigy"]()  # slice_p=2
    params = template()
    state = randomized(optimizer.init(params), seed=0)
    with pytest.raises(ValueError, match="flax 'hidden.kernel' s: a slice of a param its layout moves"):
        to_torch(state, params, torch_model_state(True), synthetic_groups(state))


def test_quantized_state_refused():
    """A transposed kernel's quantized state (other blocks on each side), a quantized torch buffer where
    the twin keeps a plain one: refused (tests/training/test_to_torch_torchao.py converts the others)."""
    from torchao.optim.subclass_8bit import OptimState8bit

    from purelr.optim.block_quantization import QuantizedBuffer

    optimizer = resume_run.OPTIMIZERS["adamw_8bit"]()
    params = template()
    state = randomized(optimizer.init(params), seed=0)
    quantized = QuantizedBuffer(jnp.zeros((3, 6), jnp.uint8), jnp.ones((1,), jnp.float32))
    big = state._replace(exp_avg={**state.exp_avg, "hidden": {**state.exp_avg["hidden"], "kernel": quantized}})
    with pytest.raises(ValueError, match="flax 'hidden.kernel' exp_avg: the twin's blocks run over flax's order"):
        to_torch(big, params, torch_model_state(True), synthetic_groups(state))
    exported = to_torch(state, params, torch_model_state(True), synthetic_groups(state))
    exported.optimizer_state_dict["state"][0]["exp_avg"] = OptimState8bit.zeros((6, 3), block_size=18)
    with pytest.raises(ValueError, match="'exp_avg': torchao's quantized OptimState8bit, the twin keeps a plain"):
        from_torch(optimizer, params, exported.model_state_dict, exported.optimizer_state_dict, count=UPDATES)


def test_kron_torch_to_purelr_to_torch():
    """timm's Kron draws from torch's generator (no shared trajectory): its state, k updates in,
    goes to purelr and back unchanged (Q's factors in torch's dimension order), and steps on."""
    from unittest import mock

    from timm.optim import kron as timm_kron

    kron = timm_kron.Kron
    with jax.enable_x64(True), mock.patch.object(timm_kron, "has_dynamo", False):  # eager: the same arithmetic
        previous = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)
        try:
            torch.manual_seed(0)
            model = TorchMLP()
            fresh_model, kwargs = (
                copy.deepcopy(model.state_dict()),
                dict(lr=1e-2, preconditioner_update_probability=1.0),
            )
            optimizer = kron(model.parameters(), **kwargs)
            fresh = copy.deepcopy(optimizer.state_dict())
            torch_steps(model, optimizer, 0, 3)
            twin = optim.kron(**kwargs)
            run = from_torch(twin, template(), model.state_dict(), optimizer.state_dict())
            assert int(run.opt_state.count) == 3
            exported = to_torch(run.opt_state, run.params, fresh_model, fresh)
            theirs = optimizer.state_dict()["state"]
            for index, state_p in theirs.items():
                mine = exported.optimizer_state_dict["state"][index]
                assert set(mine) == set(state_p), (index, set(mine) ^ set(state_p))
                for key, value in state_p.items():
                    for a, b in zip(*(v if isinstance(v, list) else [v] for v in (mine[key], value))):
                        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
            model = TorchMLP()
            model.load_state_dict(exported.model_state_dict)
            again = kron(model.parameters(), **kwargs)
            again.load_state_dict(exported.optimizer_state_dict)
            torch_steps(model, again, 3, 4)
        finally:
            torch.set_default_dtype(previous)


def test_adahessian_torch_to_purelr_to_torch():
    """timm's Adahessian draws from its own generator and keeps its estimate as ``p.hess``: its
    state, k updates in, goes to purelr and back unchanged (its 'hessian step' the count)."""

    def steps(model, optimizer, first, last):
        for k in range(first, last):
            optimizer.zero_grad()
            loss = ((model(torch.tensor(DATA_X[k])) - torch.tensor(DATA_Y[k])) ** 2).mean()
            loss.backward(create_graph=True)
            optimizer.step()

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(0)
        model = TorchMLP()
        fresh_model = copy.deepcopy(model.state_dict())
        optimizer = _timm("Adahessian")(model.parameters(), lr=0.05)
        fresh = copy.deepcopy(optimizer.state_dict())
        steps(model, optimizer, 0, 3)
        with jax.enable_x64(True):
            twin = optim.adahessian(0.05)
            run = from_torch(twin, template(), model.state_dict(), optimizer.state_dict())
            assert int(run.opt_state.count) == 3
            exported = to_torch(run.opt_state, run.params, fresh_model, fresh)
        for index, state_p in optimizer.state_dict()["state"].items():
            mine = exported.optimizer_state_dict["state"][index]
            assert set(mine) == set(state_p), (index, set(mine) ^ set(state_p))
            for key, value in state_p.items():
                np.testing.assert_array_equal(np.asarray(mine[key]), np.asarray(value), err_msg=key)
        model = TorchMLP()
        model.load_state_dict(exported.model_state_dict)
        again = _timm("Adahessian")(model.parameters(), lr=0.05)
        again.load_state_dict(exported.optimizer_state_dict)
        steps(model, again, 3, 4)  # re-estimates p.hess, which no state_dict keeps
    finally:
        torch.set_default_dtype(previous)


def kept(state, fresh):
    """``state`` with the fields its original keeps nowhere (a PRNG key) and the hyperparameters
    it keeps as attributes of the optimizer (schedulefree's wrappers' momentum) as ``init`` made them."""
    from purelr.training.torch_state import is_twin, layout

    def reset(node, new):
        if not is_twin(node):
            return node
        spec = layout(node)
        node = node._replace(**{f: getattr(new, f) for f in spec.unkept})
        return node._replace(hyperparams={**node.hyperparams, **{a: new.hyperparams[a] for a in spec.attributes}})

    return jax.tree.map(reset, state, fresh, is_leaf=is_twin)


# Both ways against the originals: k updates on one side, convert, m on the other, equal to k + m
# updates in torch (x64, DESIGN.md's 1e-10). Each case: the original's class, the twin, and a draw
# of the keyword arguments both take (the twins take the originals' names).
def _timm(name):
    import timm.optim

    return getattr(timm.optim, name)


def _mmpretrain(name):
    from mmpretrain.engine.optimizers import LARS, Adan, Lamb

    return dict(LARS=LARS, Lamb=Lamb, Adan=Adan)[name]


def _hf_adafactor():
    from transformers.optimization import Adafactor

    return Adafactor


def _lookahead(params, **kw):
    return _timm("Lookahead")(torch.optim.AdamW(params, lr=kw["lr"]), alpha=kw["alpha"], k=kw["k"])


def _dadapt(name):
    import dadaptation

    return getattr(dadaptation, name)


def _schedulefree(name):
    """A schedulefree optimizer in train mode from the start (its params hold y, as the twin's)."""
    import schedulefree

    class Training(getattr(schedulefree, name)):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.train()

    return Training


def _torchao_adamw():
    """torchao's ``_AdamW`` stepping eagerly (its ``torch.compile`` left out: the same step)."""
    from tests.optim.test_adam_low_bit import CLASSES, eager

    class Eager(CLASSES["adamw_torchao"]):
        def step(self, closure=None):
            with eager():
                return super().step(closure)

    return Eager


class Setup(NamedTuple):
    """How a case's run differs from the plain one: the params torch's optimizer takes
    (``model -> params or param groups``), the kernels kept in torch's layout (``KEPT``: the
    twin steps them as the original does), ``from_torch`` / ``to_torch``'s ``param_names`` and
    ``labels``, and ``step(closure)`` (schedulefree's Closure forms: the gradient taken at
    ``schedule_free_train_params``, where torch's closure runs)."""

    params: Callable = lambda model: model.parameters()
    kept: bool = False
    param_names: tuple[str, ...] | None = None
    labels: Any = None
    closure: bool = False
    float32: bool = False  # an original of float32 params only: both sides in float32


WEIGHTS = {"hidden": {"kernel": "matrix", "bias": "frozen"}, "out": {"kernel": "matrix", "bias": "frozen"}}
# torch's Muon and the author's SingleDeviceMuon take matrices only: they step the weights, the
# biases stay (the twin's set_to_zero under the labels)
MATRICES = Setup(
    params=lambda model: [model.hidden.weight, model.out.weight],
    kept=True,
    param_names=("hidden.weight", "out.weight"),
    labels=WEIGHTS,
)
MUON_AUX = Setup(  # use_muon groups: the weights, then the biases
    params=lambda model: ([model.hidden.weight, model.out.weight], [model.hidden.bias, model.out.bias]),
    kept=True,
    param_names=("hidden.weight", "out.weight", "hidden.bias", "out.bias"),
)


def _matrices_only(twin):
    return lambda **kwargs: optax.multi_transform({"matrix": twin(**kwargs), "frozen": optax.set_to_zero()}, WEIGHTS)


def _no_mkldnn(original):
    """``original`` stepping with oneDNN off (torch's CPU bfloat16 kernels the twin rounds as)."""

    class Plain(original):
        def step(self, *args):
            with torch.backends.mkldnn.flags(enabled=False):
                return super().step(*args)

    return Plain


def _muon_aux(groups, lr, momentum, weight_decay, adam_lr, adam_betas, adam_eps, adam_weight_decay):
    from muon import SingleDeviceMuonWithAuxAdam

    matrices, vectors = groups
    muon = dict(params=matrices, lr=lr, momentum=momentum, weight_decay=weight_decay, use_muon=True)
    adam = dict(params=vectors, lr=adam_lr, betas=adam_betas, eps=adam_eps, weight_decay=adam_weight_decay)
    return _no_mkldnn(SingleDeviceMuonWithAuxAdam)([muon, dict(adam, use_muon=False)])


def _fused_adam():
    """DeepSpeed's FusedAdam has a float32-only CPU build (and a CUDA one): a stand-in of its
    arithmetic and ``state_dict`` layout, torch's AdamW (``adam_w_mode``) whose ``state_dict``
    keeps FusedAdam's int ``step``s, the count in each group's last param only (FusedAdam's step
    increments the last param's, 0 elsewhere) and loads them as FusedAdam reads them (the last
    param's); the nightly test_fused_adam_both_ways_deepspeed runs FusedAdam itself, float32."""

    class FusedAdamLayout(torch.optim.AdamW):
        def state_dict(self):
            state_dict = super().state_dict()
            state_dict["state"] = {i: dict(own) for i, own in state_dict["state"].items()}  # not the live ones
            for group in state_dict["param_groups"]:
                last = group["params"][-1]
                for index in group["params"]:
                    own = state_dict["state"].get(index)
                    if own is not None:
                        own["step"] = int(own["step"]) if index == last else 0
            return state_dict

        def load_state_dict(self, state_dict):
            state_dict = copy.deepcopy(state_dict)
            for group in state_dict["param_groups"]:
                step = state_dict["state"].get(group["params"][-1], {}).get("step", 0)
                for index in group["params"]:
                    if index in state_dict["state"]:
                        state_dict["state"][index]["step"] = torch.tensor(float(step))
            super().load_state_dict(state_dict)

    return FusedAdamLayout


def _fused_lamb():
    """DeepSpeed's FusedLamb runs only as a CUDA kernel: a torch optimizer of its ``state_dict``
    (``state[p]``: an int ``step``, ``exp_avg``, ``exp_avg_sq``; the group's ``bias_correction``,
    ``betas``, ``eps``, ``weight_decay``, ``max_grad_norm``, ``max_coeff``, ``min_coeff``) stepping
    the kernel's arithmetic (``tests/optim/test_fused_lamb.kernel_step``, float64)."""
    from tests.optim.test_fused_lamb import kernel_step

    class FusedLambKernel(torch.optim.Optimizer):
        def __init__(
            self,
            params,
            lr=1e-3,
            bias_correction=True,
            betas=(0.9, 0.999),
            eps=1e-8,
            eps_inside_sqrt=False,
            weight_decay=0.0,
            max_grad_norm=0.0,
            max_coeff=10.0,
            min_coeff=0.01,
        ):
            self.eps_inside_sqrt = eps_inside_sqrt  # FusedLamb's eps_mode: an attribute
            defaults = dict(
                lr=lr,
                bias_correction=bias_correction,
                betas=betas,
                eps=eps,
                weight_decay=weight_decay,
                max_grad_norm=max_grad_norm,
                max_coeff=max_coeff,
                min_coeff=min_coeff,
            )
            super().__init__(params, defaults)

        @torch.no_grad()
        def step(self):
            for group in self.param_groups:
                for p in group["params"]:
                    state = self.state[p]
                    if not state:
                        state.update(step=0, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
                    state["step"] += 1
                    numbers = {k: group[k] for k in ("lr", "eps", "weight_decay", "max_coeff", "min_coeff")}
                    new = kernel_step(
                        *(t.numpy() for t in (p, p.grad, state["exp_avg"], state["exp_avg_sq"])),
                        state["step"],
                        beta1=group["betas"][0],
                        beta2=group["betas"][1],
                        eps_inside_sqrt=self.eps_inside_sqrt,
                        bias_correction=group["bias_correction"],
                        **numbers,
                    )
                    for tensor, value in zip((p, state["exp_avg"], state["exp_avg_sq"]), new):
                        tensor.copy_(torch.from_numpy(np.asarray(value)))

    return FusedLambKernel


def _lr(rng):
    return float(np.exp(rng.uniform(np.log(1e-3), np.log(5e-2))))


def _decay(rng):
    return float(rng.choice([0.0, 1e-3, 0.05]))


def _d0(rng):  # D-Adaptation's first estimate: the default, or one that moves the params far
    return float(rng.choice([1e-6, 1e-2]))


def _flag(rng):
    return bool(rng.integers(2))


BOTH_WAYS = {
    "sgd": (
        lambda: torch.optim.SGD,
        optim.sgd,
        lambda r: dict(lr=_lr(r), momentum=0.9, nesterov=_flag(r), weight_decay=_decay(r)),
    ),
    "adam": (lambda: torch.optim.Adam, optim.adam, lambda r: dict(lr=_lr(r), amsgrad=_flag(r), weight_decay=_decay(r))),
    "adamw": (lambda: torch.optim.AdamW, optim.adamw, lambda r: dict(lr=_lr(r), weight_decay=_decay(r))),
    "adamax": (lambda: torch.optim.Adamax, optim.adamax, lambda r: dict(lr=_lr(r))),
    "nadam": (lambda: torch.optim.NAdam, optim.nadam, lambda r: dict(lr=_lr(r), weight_decay=_decay(r))),
    "radam": (lambda: torch.optim.RAdam, optim.radam, lambda r: dict(lr=_lr(r))),
    "adagrad": (lambda: torch.optim.Adagrad, optim.adagrad, lambda r: dict(lr=_lr(r), lr_decay=0.01)),
    "adadelta": (lambda: torch.optim.Adadelta, optim.adadelta, lambda r: dict(lr=1.0, rho=0.9)),
    "rmsprop": (lambda: torch.optim.RMSprop, optim.rmsprop, lambda r: dict(lr=_lr(r), centered=_flag(r), momentum=0.5)),
    "rprop": (lambda: torch.optim.Rprop, optim.rprop, lambda r: dict(lr=_lr(r))),
    "asgd": (lambda: torch.optim.ASGD, optim.asgd, lambda r: dict(lr=_lr(r), t0=2)),
    "adafactor": (lambda: torch.optim.Adafactor, optim.adafactor, lambda r: dict(lr=_lr(r))),
    "timm_lamb": (lambda: _timm("Lamb"), optim.lamb, lambda r: dict(lr=_lr(r), weight_decay=_decay(r))),
    "timm_lars": (lambda: _timm("Lars"), optim.lars, lambda r: dict(lr=_lr(r), momentum=0.9)),
    "timm_lion": (lambda: _timm("Lion"), optim.lion, lambda r: dict(lr=_lr(r) / 10, weight_decay=_decay(r))),
    "timm_nadamw": (lambda: _timm("NAdamW"), optim.nadamw, lambda r: dict(lr=_lr(r))),
    "timm_rmsprop_tf": (lambda: _timm("RMSpropTF"), optim.rmsprop_tf, lambda r: dict(lr=_lr(r), momentum=0.9)),
    "timm_sgdw": (lambda: _timm("SGDW"), optim.sgdw, lambda r: dict(lr=_lr(r), momentum=0.9, weight_decay=_decay(r))),
    "timm_adafactor": (
        lambda: _timm("Adafactor"),
        optim.timm_adafactor,
        lambda r: dict(lr=_lr(r), min_dim_size_to_factor=2, betas=(0.9, 0.999) if _flag(r) else None),
    ),
    "timm_adabelief": (lambda: _timm("AdaBelief"), optim.adabelief, lambda r: dict(lr=_lr(r))),
    "timm_adamp": (  # the flax kernels' output channels on their last axis
        lambda: _timm("AdamP"),
        functools.partial(optim.adamp, layout="flax"),
        lambda r: dict(lr=_lr(r)),
    ),
    "timm_adan": (lambda: _timm("Adan"), optim.adan, lambda r: dict(lr=_lr(r))),
    "timm_adopt": (lambda: _timm("Adopt"), optim.adopt, lambda r: dict(lr=_lr(r))),
    "timm_laprop": (lambda: _timm("LaProp"), optim.laprop, lambda r: dict(lr=_lr(r))),
    "timm_madgrad": (lambda: _timm("MADGRAD"), optim.madgrad, lambda r: dict(lr=_lr(r))),
    "timm_mars": (lambda: _timm("Mars"), optim.mars, lambda r: dict(lr=_lr(r))),
    "timm_novograd": (lambda: _timm("NvNovoGrad"), optim.novograd, lambda r: dict(lr=_lr(r))),
    "timm_sgdp": (
        lambda: _timm("SGDP"),
        functools.partial(optim.sgdp, layout="flax"),
        lambda r: dict(lr=_lr(r), momentum=0.9),
    ),
    "timm_lookahead": (
        lambda: _lookahead,
        lambda lr, alpha, k: optim.lookahead(optim.adamw(lr), alpha=alpha, k=k),
        lambda r: dict(lr=_lr(r), alpha=0.5, k=int(r.integers(2, 4))),
    ),
    "timm_adafactor_big_vision": (
        lambda: _timm("AdafactorBigVision"),
        optim.adafactor_big_vision,
        lambda r: dict(lr=_lr(r), min_dim_size_to_factor=2, momentum=0.9 if _flag(r) else None),
    ),
    "torchao_adamw": (_torchao_adamw, optim.adamw_torchao, lambda r: dict(lr=_lr(r), weight_decay=_decay(r))),
    "prodigy": (
        lambda: __import__("prodigyopt").Prodigy,
        optim.prodigy,
        lambda r: dict(
            lr=1.0, d0=_d0(r), weight_decay=_decay(r), use_bias_correction=_flag(r), safeguard_warmup=_flag(r)
        ),
    ),
    "dadapt_adam": (
        lambda: _dadapt("DAdaptAdam"),
        optim.dadapt_adam,
        lambda r: dict(lr=1.0, d0=_d0(r), decouple=_flag(r)),
    ),
    "dadapt_adan": (lambda: _dadapt("DAdaptAdan"), optim.dadapt_adan, lambda r: dict(lr=1.0, d0=_d0(r))),
    "dadapt_sgd": (lambda: _dadapt("DAdaptSGD"), optim.dadapt_sgd, lambda r: dict(lr=1.0, d0=_d0(r), momentum=0.9)),
    "dadapt_adagrad": (
        lambda: _dadapt("DAdaptAdaGrad"),
        optim.dadapt_adagrad,
        lambda r: dict(lr=1.0, d0=_d0(r), momentum=0.5),
    ),
    "dadapt_lion": (lambda: _dadapt("DAdaptLion"), optim.dadapt_lion, lambda r: dict(lr=_lr(r), d0=_d0(r))),
    "timm_adamw_legacy": (
        lambda: _timm("AdamWLegacy"),
        optim.adamw_legacy,
        lambda r: dict(lr=_lr(r), amsgrad=_flag(r), weight_decay=_decay(r)),
    ),
    "timm_nadam_legacy": (lambda: _timm("NAdamLegacy"), optim.nadam_legacy, lambda r: dict(lr=_lr(r))),
    "adamw_schedule_free": (
        lambda: _schedulefree("AdamWScheduleFree"),
        optim.adamw_schedule_free,
        lambda r: dict(lr=_lr(r), warmup_steps=int(r.integers(0, 4)), weight_decay=_decay(r)),
    ),
    "sgd_schedule_free": (
        lambda: _schedulefree("SGDScheduleFree"),
        optim.sgd_schedule_free,
        lambda r: dict(lr=_lr(r), warmup_steps=int(r.integers(0, 4)), weight_decay=_decay(r)),
    ),
    "radam_schedule_free": (
        lambda: _schedulefree("RAdamScheduleFree"),
        optim.radam_schedule_free,
        lambda r: dict(lr=_lr(r), weight_decay=_decay(r)),
    ),
    "timm_radam_legacy": (lambda: _timm("RAdamLegacy"), optim.radam_legacy, lambda r: dict(lr=_lr(r))),
    "hf_adafactor": (
        _hf_adafactor,
        optim.hf_adafactor,
        lambda r: dict(lr=_lr(r), relative_step=False, scale_parameter=_flag(r), warmup_init=False),
    ),
    "mmpretrain_lars": (lambda: _mmpretrain("LARS"), optim.mmpretrain_lars, lambda r: dict(lr=_lr(r), momentum=0.9)),
    "mmpretrain_lamb": (lambda: _mmpretrain("Lamb"), optim.mmpretrain_lamb, lambda r: dict(lr=_lr(r))),
    "mmpretrain_adan": (lambda: _mmpretrain("Adan"), optim.mmpretrain_adan, lambda r: dict(lr=_lr(r))),
    "muon": (
        lambda: torch.optim.Muon,
        _matrices_only(optim.muon),
        lambda r: dict(
            lr=_lr(r),
            weight_decay=_decay(r),
            nesterov=_flag(r),
            adjust_lr_fn=[None, "original", "match_rms_adamw"][int(r.integers(3))],
        ),
        MATRICES,
    ),
    "muon_flax_layout": (  # kernels moved to flax's layout: adjust_lr_fn's scale of A x B is the transpose's but
        lambda: torch.optim.Muon,  # for 'match_rms_adamw' (docs/guides/training.md)
        _matrices_only(optim.muon),
        lambda r: dict(lr=_lr(r), weight_decay=_decay(r), nesterov=_flag(r), adjust_lr_fn="match_rms_adamw"),
        MATRICES._replace(kept=False),
    ),
    "single_device_muon": (
        lambda: _no_mkldnn(__import__("muon").SingleDeviceMuon),
        _matrices_only(optim.single_device_muon),
        lambda r: dict(lr=_lr(r), weight_decay=_decay(r), momentum=float(r.choice([0.9, 0.95]))),
        MATRICES,
    ),
    "muon_with_aux_adam": (
        lambda: _muon_aux,
        lambda **kw: optim.muon_with_aux_adam(lambda path, p: p.ndim == 2, **kw),
        lambda r: dict(
            lr=_lr(r),
            momentum=float(r.choice([0.9, 0.95])),
            weight_decay=_decay(r),
            adam_lr=_lr(r),
            adam_betas=(0.9, float(r.choice([0.95, 0.999]))),
            adam_eps=float(r.choice([1e-10, 1e-8])),
            adam_weight_decay=_decay(r),
        ),
        MUON_AUX,
    ),
    "sgd_schedule_free_reference": (
        lambda: _schedulefree("SGDScheduleFreeReference"),
        optim.sgd_schedule_free_reference,
        lambda r: dict(lr=_lr(r), warmup_steps=int(r.integers(0, 4)), weight_decay=_decay(r)),
    ),
    "adamw_schedule_free_reference": (
        lambda: _schedulefree("AdamWScheduleFreeReference"),
        optim.adamw_schedule_free_reference,
        lambda r: dict(lr=_lr(r), warmup_steps=int(r.integers(0, 4)), weight_decay=_decay(r), decay_at_z=_flag(r)),
    ),
    "adamw_schedule_free_paper": (
        lambda: _schedulefree("AdamWScheduleFreePaper"),
        optim.adamw_schedule_free_paper,
        lambda r: dict(lr=_lr(r), warmup_steps=int(r.integers(0, 4)), weight_decay=_decay(r)),
    ),
    "sgd_schedule_free_closure": (
        lambda: __import__("schedulefree").SGDScheduleFreeClosure,
        optim.sgd_schedule_free_closure,
        lambda r: dict(lr=_lr(r), warmup_steps=int(r.integers(0, 4)), weight_decay=_decay(r)),
        Setup(closure=True),
    ),
    "adamw_schedule_free_closure": (
        lambda: __import__("schedulefree").AdamWScheduleFreeClosure,
        optim.adamw_schedule_free_closure,
        lambda r: dict(lr=_lr(r), warmup_steps=int(r.integers(0, 4)), weight_decay=_decay(r)),
        Setup(closure=True),
    ),
    "radam_schedule_free_closure": (
        lambda: __import__("schedulefree").RAdamScheduleFreeClosure,
        optim.radam_schedule_free_closure,
        lambda r: dict(lr=_lr(r), weight_decay=_decay(r), silent_sgd_phase=_flag(r)),
        Setup(closure=True),
    ),
    "lamb_grad_clip": (  # timm's Lamb clipping the global norm first, as the twin's chain
        lambda: _timm("Lamb"),
        lambda lr, max_grad_norm, weight_decay: optax.chain(
            optim.lamb_grad_clip(max_grad_norm), optim.lamb(lr, weight_decay=weight_decay, max_grad_norm=None)
        ),
        lambda r: dict(lr=_lr(r), max_grad_norm=float(r.choice([0.05, 0.2, 1.0])), weight_decay=_decay(r)),
    ),
    "fused_adam": (
        _fused_adam,
        lambda lr, weight_decay: optim.fused_adam(lr, weight_decay=weight_decay),
        lambda r: dict(lr=_lr(r), weight_decay=_decay(r)),
    ),
    "fused_adam_deepspeed": (  # DeepSpeed's own, its CPU build (float32; compiled at first use: nightly)
        lambda: __import__("deepspeed.ops.adam", fromlist=["FusedAdam"]).FusedAdam,
        lambda lr, weight_decay: optim.fused_adam(lr, weight_decay=weight_decay),
        lambda r: dict(lr=_lr(r), weight_decay=_decay(r)),
        Setup(float32=True),
    ),
    "fused_lamb": (
        _fused_lamb,
        optim.fused_lamb,
        lambda r: dict(
            lr=_lr(r),
            bias_correction=_flag(r),
            eps_inside_sqrt=_flag(r),
            weight_decay=_decay(r),
            max_coeff=float(r.choice([10.0, 0.3])),
        ),
    ),
}
DATA_STEPS = 8
DATA_RNG = np.random.default_rng(1)
DATA_X = DATA_RNG.normal(size=(DATA_STEPS, 8, 3))
DATA_Y = np.stack([np.sin(DATA_X.sum(-1)), np.cos(DATA_X[..., 0])], -1)


def torch_steps(model, optimizer, first, last, closure=False):
    for k in range(first, last):

        def loss():
            optimizer.zero_grad()
            x, y = (torch.tensor(a[k], dtype=next(model.parameters()).dtype) for a in (DATA_X, DATA_Y))
            value = ((model(x) - y) ** 2).mean()
            value.backward()
            return value

        if closure:
            optimizer.step(loss)
        else:
            loss()
            optimizer.step()


def flax_loss(params, x, y):
    from tests.training.test_from_torch import FlaxMLP

    return ((FlaxMLP().apply({"params": params}, x) - y) ** 2).mean()


def jax_steps(step, params, state, first, last):
    for k in range(first, last):
        params, state = step(params, state, DATA_X[k], DATA_Y[k])
    return params, state


def twin_count(state) -> int:
    """The count of the first twin in ``state`` (a twin, a chain, ``multi_transform`` groups)."""
    from purelr.training.torch_state import is_twin

    return int(next(s for s in jax.tree.leaves(state, is_leaf=is_twin) if is_twin(s)).count)


def both_ways(case, seed):
    """``(k, m, torch -> purelr error, purelr -> torch error)`` against k + m torch updates."""
    from purelr.optim.schedule_free import schedule_free_train_params
    from purelr.training.from_torch import model_from_torch
    from tests.training.test_from_torch import kernel_layout

    make_torch, make_twin, draw, *options = BOTH_WAYS[case]
    setup = options[0] if options else Setup()
    names, like, loss = (KEPT, kept_template, torch_layout_loss) if setup.kept else (None, template, flax_loss)
    convert = dict(names=names, param_names=setup.param_names, labels=setup.labels)
    move = np.asarray if setup.kept else kernel_layout
    rng = np.random.default_rng(seed)
    kwargs, k, m = draw(rng), int(rng.integers(1, 5)), int(rng.integers(1, 4))
    torch_type = make_torch()
    twin = make_twin(**kwargs)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32 if setup.float32 else torch.float64)
    try:
        torch.manual_seed(seed)
        model = TorchMLP()
        fresh_model_sd = copy.deepcopy(model.state_dict())
        optimizer = torch_type(setup.params(model), **kwargs)
        fresh_optimizer_sd = copy.deepcopy(optimizer.state_dict())
        torch_steps(model, optimizer, 0, k, setup.closure)
        at_k = copy.deepcopy((model.state_dict(), optimizer.state_dict()))
        torch_steps(model, optimizer, k, k + m, setup.closure)
        final = {n: p.detach().numpy().copy() for n, p in model.state_dict().items()}

        @jax.jit
        def step(params, state, x, y):
            at = schedule_free_train_params(state, params) if setup.closure else params
            updates, state = twin.update(jax.grad(loss)(at, x, y), state, params)
            return optax.apply_updates(params, updates), state

        run = from_torch(twin, like(), *at_k, count=k, **convert)
        assert twin_count(run.opt_state) == k
        params, _ = jax_steps(step, run.params, run.opt_state, k, k + m)
        floor = trajectory_floor("f32") if case in FLOAT32_STEPS or setup.float32 else None
        error_in = max(
            relative_error(params[layer]["kernel"], move(final[f"{layer}.weight"]), floor=floor)
            for layer in ("hidden", "out")
        )
        error_in = max(
            [error_in]
            + [
                relative_error(params[layer]["bias"], final[f"{layer}.bias"], floor=floor)
                for layer in ("hidden", "out")
            ]
        )

        start = model_from_torch(fresh_model_sd, like(), names=names)[0]
        params, state = jax_steps(step, start, twin.init(start), 0, k)
        exported = to_torch(state, params, fresh_model_sd, fresh_optimizer_sd, **convert)
        back = from_torch(twin, like(), exported.model_state_dict, exported.optimizer_state_dict, count=k, **convert)
        assert_same(back.params, params)
        assert_same(back.opt_state, state)
        model = TorchMLP()
        optimizer = torch_type(setup.params(model), **kwargs)
        model.load_state_dict(exported.model_state_dict)
        optimizer.load_state_dict(exported.optimizer_state_dict)
        torch_steps(model, optimizer, k, k + m, setup.closure)
        error_out = max(
            relative_error(p.detach().numpy(), final[n], floor=floor) for n, p in model.state_dict().items()
        )
    finally:
        torch.set_default_dtype(previous)
    return k, m, error_in, error_out


# one twin of each kind of layout in the default suite (step in the state as a tensor or an int, in
# the group, nowhere; scalars per twin, per leaf, as floats; factored moments of three kinds; a
# wrapped twin; another original's key); every twin nightly
DEFAULT_BOTH_WAYS = {"sgd", "adam", "nadam", "asgd", "adafactor", "timm_lamb", "timm_adan", "timm_laprop"}
DEFAULT_BOTH_WAYS |= {"timm_adafactor", "timm_novograd", "timm_lookahead", "hf_adafactor", "mmpretrain_adan"}
DEFAULT_BOTH_WAYS |= {"timm_adafactor_big_vision", "torchao_adamw", "prodigy", "dadapt_sgd"}
DEFAULT_BOTH_WAYS |= {"adamw_schedule_free", "timm_nadam_legacy"}
DEFAULT_BOTH_WAYS |= {"muon", "fused_adam"}  # torch's optimizer over some params (labels); FusedAdam's step


@pytest.mark.parametrize(
    "case", [pytest.param(c, marks=[] if c in DEFAULT_BOTH_WAYS else pytest.mark.nightly) for c in BOTH_WAYS]
)
def test_both_ways_against_the_original(case):
    check_both_ways(case, seed=zlib.crc32(case.encode()) % 1000)  # a case's own seed


# the cases added with issue 22's last gaps: 8 configurations each, nightly (worst measured in
# docs/guides/training.md)
ADDED = ["muon", "muon_flax_layout", "single_device_muon", "muon_with_aux_adam", "lamb_grad_clip", "fused_lamb"]
ADDED += ["fused_adam", *(f"{f}_schedule_free_{form}" for f in ("sgd", "adamw") for form in ("reference", "closure"))]
ADDED += ["radam_schedule_free_closure", "adamw_schedule_free_paper"]


@pytest.mark.nightly
@pytest.mark.parametrize("case, seed", [(c, s) for c in ADDED for s in range(8)])
def test_more_configurations_both_ways(case, seed):
    check_both_ways(case, seed)


def check_both_ways(case, seed):
    float32 = BOTH_WAYS[case][3:] and BOTH_WAYS[case][3].float32
    with jax.enable_x64(not float32):
        k, m, error_in, error_out = both_ways(case, seed)
    tolerance = OPTIMIZER_RTOL["f32" if case in FLOAT32_STEPS or float32 else "x64"]
    assert error_in <= tolerance, f"{case}, k={k}, m={m}: torch -> purelr off by {error_in:.3g}"
    assert error_out <= tolerance, f"{case}, k={k}, m={m}: purelr -> torch off by {error_out:.3g}"


# Every twin of resume_run.OPTIMIZERS (every exported optimizer): the both-ways test (k + m, random
# k, m and configurations) that covers it, ``module:function[parameter]`` (a BOTH_WAYS case: its name)
THIS = "tests.training.test_to_torch"
TORCHAO, HEAVYBALL = "tests.training.test_to_torch_torchao", "tests.training.test_heavyball_state"
WRAPPER = "tests.training.test_schedule_free_wrapper_conversion:test_both_ways_against_schedulefree"
TIMM_RANDOM_TEST = f"{THIS}:test_timm_random_twins_both_ways"
SAME_NAME = ["sgd", "adam", "adamw", "adamax", "nadam", "radam", "adagrad", "adadelta", "rmsprop", "rprop", "asgd"]
SAME_NAME += ["adafactor", "muon", "lamb_grad_clip", "fused_adam", "fused_lamb", "hf_adafactor", "prodigy"]
SAME_NAME += ["mmpretrain_lars", "mmpretrain_lamb", "mmpretrain_adan", "timm_adafactor", "single_device_muon"]
SAME_NAME += ["dadapt_adam", "dadapt_sgd", "dadapt_adagrad", "dadapt_adan", "dadapt_lion", "muon_with_aux_adam"]
SAME_NAME += [f"{f}_schedule_free" for f in ("sgd", "adamw", "radam")] + ["adamw_schedule_free_paper"]
SAME_NAME += [f"{f}_schedule_free_{form}" for f in ("sgd", "adamw") for form in ("reference", "closure")]
SAME_NAME += ["radam_schedule_free_closure"]
TIMM_NAMES = ["rmsprop_tf", "lamb", "lars", "lion", "sgdw", "nadamw", "adabelief", "adamp", "adan", "adopt"]
TIMM_NAMES += ["laprop", "madgrad", "mars", "novograd", "sgdp", "lookahead", "adafactor_big_vision"]
TIMM_NAMES += ["adamw_legacy", "nadam_legacy", "radam_legacy"]
COVERED_BY = {
    **{name: name for name in SAME_NAME},
    **{name: f"timm_{name}" for name in TIMM_NAMES},
    "adamw_torchao": "torchao_adamw",
    "lbfgs": f"{THIS}:test_lbfgs_both_ways",
    **{n: f"{TORCHAO}:test_torchao_quantized_both_ways[{n}]" for n in ("adam_8bit", "adam_4bit", "adam_fp8")},
    **{n: f"{TORCHAO}:test_torchao_quantized_both_ways[{n}]" for n in ("adamw_8bit", "adamw_4bit", "adamw_fp8")},
    "kron": f"{TIMM_RANDOM_TEST}[kron]",
    "adahessian": f"{TIMM_RANDOM_TEST}[adahessian]",
    "soap": f"{HEAVYBALL}:test_both_ways_against_heavyball[soap]",
    "psgd_kron": f"{HEAVYBALL}:test_both_ways_against_heavyball[psgd_kron]",
    "schedule_free_wrapper": f"{WRAPPER}[wrapper]",
    "schedule_free_wrapper_reference": f"{WRAPPER}[reference]",
    "timm_muon": "tests.training.test_to_torch_timm:test_timm_muon_both_ways",
}


def _parameters(function) -> list:
    """Every value in ``function``'s ``pytest.mark.parametrize`` lists (a ``pytest.param``'s included)."""
    values = []
    for mark in (m for m in getattr(function, "pytestmark", []) if m.name == "parametrize"):
        for value in mark.args[1]:
            value = value.values if hasattr(value, "values") else value
            values.extend(value if isinstance(value, tuple) else (value,))
    return values


def test_every_twin_has_a_both_ways_test():
    """A twin added to resume_run.OPTIMIZERS without a both-ways test fails here."""
    import importlib

    missing = sorted(set(resume_run.OPTIMIZERS) - set(COVERED_BY))
    assert not missing, f"twins without a both-ways test (add one, then a COVERED_BY entry): {missing}"
    assert not set(COVERED_BY) - set(resume_run.OPTIMIZERS), sorted(set(COVERED_BY) - set(resume_run.OPTIMIZERS))
    for name, where in COVERED_BY.items():
        if ":" not in where:
            where = f"{THIS}:test_both_ways_against_the_original[{where}]"
        module, _, function = where.partition(":")
        function, _, parameter = function.rstrip("]").partition("[")
        test = getattr(importlib.import_module(module), function, None)
        assert test is not None, f"{name}: no {function} in {module}"
        assert not parameter or parameter in _parameters(test), f"{name}: {function} runs no {parameter!r}"


# originals that step in float32 whatever the params' dtype (torchao, as tests/optim/test_adam_low_bit.py
# says), as their twins do: compared to float32's tolerance and trajectory floor, as the twin's own test
FLOAT32_STEPS = {"torchao_adamw", "timm_radam_legacy"}


def _round_trip_state(optimizer, state, params, **from_kwargs):
    groups = synthetic_groups(state)
    exported = to_torch(state, params, torch_model_state(True), groups)
    back = from_torch(
        optimizer, template(), exported.model_state_dict, exported.optimizer_state_dict, count=UPDATES, **from_kwargs
    )
    return exported, back


@pytest.mark.parametrize(
    "scaler, torch_state",
    [
        (loss_scale.grad_scaler(), lambda: torch.amp.GradScaler("cpu").state_dict()),
        (loss_scale.mmcv_loss_scaler(), lambda: dict(mode="dynamic", scale_factor=2.0, scale_window=1000)),
        (loss_scale.dynamic_loss_scaler(), lambda: {}),
    ],
    ids=["torch", "mmcv", "deepspeed"],
)
def test_round_trip_loss_scaled(scaler, torch_state):
    """The scaler's state goes to the original scaler's state_dict and back; the scale moved."""
    with jax.enable_x64(True):
        optimizer = loss_scale.loss_scaled(optim.adam(1e-2), scaler)
        params = template()
        state = randomized(optimizer.init(params), seed=1)
        scaled = {
            **torch_state(),
            **to_torch(state, params, torch_model_state(True), synthetic_groups(state)).scaler_state_dict,
        }
        _, back = _round_trip_state(optimizer, state, params, scaler_state_dict=scaled)
    assert_same(back.opt_state, state)


def test_round_trip_accumulate_and_clip():
    """accumulate: exported after an update (iteration given back); refused between updates.
    clip_grad_norm's total_norm, a record of the last norm that torch returns and keeps nowhere, comes back
    as init left it."""
    with jax.enable_x64(True):
        optimizer = accumulate.accumulate(optax.chain(optim.clip_grad_norm(1.0), optim.adamw(1e-2)), 2)
        params = template()
        state = randomized(optimizer.init(params), seed=2)._replace(iteration=jnp.asarray(2 * UPDATES, jnp.int32))
        _, back = _round_trip_state(optimizer, state, params, iteration=2 * UPDATES)
        assert_same(back.opt_state, state)
        between = state._replace(
            iteration=jnp.asarray(2 * UPDATES - 1, jnp.int32), gradients=jax.tree.map(jnp.ones_like, params)
        )
        with pytest.raises(ValueError, match=r"gradients summed since the last update \(iteration 5\)"):
            to_torch(between, params, torch_model_state(True), synthetic_groups(between))
        with pytest.raises(ValueError, match="accumulates gradients: pass iteration="):
            _round_trip_state(optimizer, state, params)


def test_groups_by_labels():
    """Two groups, one of which keeps no buffer (SGD without momentum): the labels say which
    params each twin updates; each torch group goes to its twin."""
    labels = {"hidden": {"kernel": "a", "bias": "b"}, "out": {"kernel": "a", "bias": "b"}}
    flat = {"hidden.kernel": "a", "hidden.bias": "b", "out.kernel": "a", "out.bias": "b"}
    optimizer = optax.multi_transform({"a": optim.adam(1e-2), "b": optim.sgd(0.1)}, labels)
    with jax.enable_x64(True):
        params = template()
        state = randomized(optimizer.init(params), seed=3)
        exported = to_torch(state, params, torch_model_state(True), synthetic_groups(state, flat), labels=labels)
        assert [g["params"] for g in exported.optimizer_state_dict["param_groups"]] == [[0, 2], [1, 3]]
        back = from_torch(
            optimizer,
            template(),
            exported.model_state_dict,
            exported.optimizer_state_dict,
            labels=labels,
            count=UPDATES,
        )
        assert_same(back.opt_state, state)
        with pytest.raises(ValueError, match="keeps no buffer like the params: pass labels="):
            from_torch(optimizer, template(), exported.model_state_dict, exported.optimizer_state_dict, count=UPDATES)


@pytest.mark.parametrize("kind", ["torch", "mmengine", "timm"])
def test_averaged_models_both_ways(kind):
    """torch's AveragedModel (EMA), MMEngine's ExponentialMovingAverage, timm's ModelEmaV3: their
    state_dict after k updates -> AveragedState -> m purelr updates == k + m torch updates, and back."""
    from purelr.training.from_torch import model_from_torch

    k, m = 3, 2
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(0)
        model = TorchMLP()
        if kind == "torch":
            averaged = torch.optim.swa_utils.AveragedModel(
                model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(0.9)
            )
            averager = averaging.averaged_model(multi_avg_fn=averaging.get_ema_multi_avg_fn(0.9))
        elif kind == "mmengine":
            from mmengine.model import ExponentialMovingAverage

            averaged = ExponentialMovingAverage(model, momentum=0.1)
            averager = averaging.exponential_moving_average(momentum=0.1)
        else:
            from tests.training.test_averaging import ModelEmaV3

            averaged = ModelEmaV3(model, decay=0.9)
            averager = averaging.model_ema_v3(decay=0.9)
        snapshots = []
        for i in range(k + m):
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(torch.randn_like(p))
            snapshots.append({n: t.clone() for n, t in model.state_dict().items()})
            if kind == "timm":
                averaged.update(model, step=i)
            else:
                averaged.update_parameters(model)
            if i == k - 1:
                at_k = {n: t.clone() for n, t in averaged.state_dict().items()}
        final = averaged.state_dict()
    finally:
        torch.set_default_dtype(previous)
    with jax.enable_x64(True):
        state = averaged_from_torch(at_k, template(), n_averaged=k if kind == "timm" else None)
        assert int(state.n_averaged) == k
        for i in range(k, k + m):
            tree = model_from_torch(snapshots[i], template())[0]
            state = averager.update(state, tree, i) if kind == "timm" else averager.update(state, tree)
        exported = averaged_to_torch(state, final)
        for name, tensor in final.items():
            error = relative_error(exported[name].numpy(), tensor.numpy())
            assert error <= 1e-12, f"{kind} {name}: off by {error:.3g}"


def _schedulers(kind, lr):
    """``(make torch-side scheduler(optimizer), purelr schedule)``: warmup then cosine."""
    if kind == "torch":
        from purelr.schedules import torch as schedules

        def make(optimizer):
            lr_scheduler = torch.optim.lr_scheduler
            warmup = lr_scheduler.LinearLR(optimizer, start_factor=0.1, total_iters=3)
            cosine = lr_scheduler.CosineAnnealingLR(optimizer, T_max=6)
            return lr_scheduler.SequentialLR(optimizer, [warmup, cosine], milestones=[3])

        warm = schedules.linear_lr(lr, start_factor=0.1, total_iters=3)
        return make, schedules.sequential_lr([warm, schedules.cosine_annealing_lr(lr, T_max=6)], [3])
    from mmengine.optim.scheduler import CosineAnnealingLR, LinearLR

    from purelr.schedules.mmengine import param_scheduler

    cfgs = [
        dict(type="LinearLR", start_factor=0.1, begin=0, end=3, by_epoch=False),
        dict(type="CosineAnnealingLR", T_max=6, begin=3, end=9, by_epoch=False),
    ]

    class Chain:  # the ParamSchedulerHook steps every scheduler of the list after each iteration
        def __init__(self, optimizer):
            self.optimizer = optimizer
            self.members = [
                LinearLR(optimizer, start_factor=0.1, begin=0, end=3, by_epoch=False),
                CosineAnnealingLR(optimizer, T_max=6, begin=3, end=9, by_epoch=False),
            ]

        def step(self):
            for member in self.members:
                member.step()

        def state_dict(self):
            return {"_schedulers": [member.state_dict() for member in self.members]}

        def load_state_dict(self, state):
            for member, own in zip(self.members, state["_schedulers"]):
                member.load_state_dict(own)

    return Chain, param_scheduler(cfgs, lr, max_iters=9)


@pytest.mark.parametrize("kind", ["torch", "mmengine"])
def test_scheduler_both_ways(kind):
    """AdamW under warmup + cosine, k updates on one side, m on the other, across the warmup's end:
    from_torch reads last_epoch / last_step; to_torch steps the fresh scheduler (its state_dict
    loaded into another fresh one) and sets the group lr."""

    from purelr.training.from_torch import model_from_torch, resume_schedule

    k, m, lr = 2, 4, 0.02
    make, schedule = _schedulers(kind, lr)
    twin = optim.adamw(lr=schedule)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(0)
        model = TorchMLP()
        fresh_model_sd = copy.deepcopy(model.state_dict())
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
        scheduler = make(optimizer)
        for i in range(k + m):
            if i == k:
                at_k = copy.deepcopy((model.state_dict(), optimizer.state_dict(), scheduler.state_dict()))
            torch_steps(model, optimizer, i, i + 1)
            scheduler.step()
        final = {n: p.detach().numpy().copy() for n, p in model.state_dict().items()}

        @jax.jit
        def step(params, state, x, y):
            updates, state = twin.update(jax.grad(flax_loss)(params, x, y), state, params)
            return optax.apply_updates(params, updates), state

        with jax.enable_x64(True):
            run = from_torch(twin, template(), *at_k)
            assert run.last_epoch == k and resume_schedule(schedule, run.last_epoch, k)(5) == schedule(5)
            params, _ = jax_steps(step, run.params, run.opt_state, k, k + m)
            error_in = max(relative_error(p, final[n]) for n, p in _torch_named(params).items())

            start = model_from_torch(fresh_model_sd, template())[0]
            params, state = jax_steps(step, start, twin.init(start), 0, k)
            model = TorchMLP()
            optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
            exported = to_torch(state, params, fresh_model_sd, optimizer.state_dict(), make(optimizer))
        model, optimizer = TorchMLP(), None  # a fresh torch run: build everything, then load
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
        scheduler = make(optimizer)
        model.load_state_dict(exported.model_state_dict)
        optimizer.load_state_dict(exported.optimizer_state_dict)
        scheduler.load_state_dict(exported.scheduler_state_dict)
        for i in range(k, k + m):
            torch_steps(model, optimizer, i, i + 1)
            scheduler.step()
        error_out = max(relative_error(p.detach().numpy(), final[n]) for n, p in model.state_dict().items())
    finally:
        torch.set_default_dtype(previous)
    assert error_in <= 1e-10 and error_out <= 1e-10, (error_in, error_out)


def _torch_named(params):
    """flax params of the MLP under torch's names and layout."""
    named = {}
    for layer, leaves in params.items():
        named[f"{layer}.weight"], named[f"{layer}.bias"] = np.asarray(leaves["kernel"]).T, np.asarray(leaves["bias"])
    return named


def test_bad_input():
    """A scheduler state of another type, a layout that has no inverse, groups that split a twin's
    params, a state_dict that is not an averaged model's: errors naming what differs."""
    from purelr.training.to_torch import check_scheduler_state

    optimizer = torch.optim.SGD(TorchMLP().parameters(), lr=0.1)
    step = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=3)
    with pytest.raises(
        ValueError, match=r"not a StepLR's state: it lacks \['gamma', 'step_size'\] and has \['T_max', 'eta_min'\]"
    ):
        check_scheduler_state(step, cosine.state_dict())
    check_scheduler_state(step, step.state_dict())
    with jax.enable_x64(True):
        params = template()
        state = randomized(optim.adam(1e-2).init(params), seed=4)
        model_sd = torch_model_state(True)
        with pytest.raises(ValueError, match=r"transform on shape \(6, 3\) does not rearrange entries"):
            to_torch(
                state,
                params,
                model_sd,
                synthetic_groups(state),
                names={"hidden.weight": ("hidden.kernel", lambda a: a.T * 2)},
            )
        split = synthetic_groups(state)
        split["param_groups"] = [
            dict(split["param_groups"][0], params=[0, 1], param_names=["hidden.weight", "hidden.bias"]),
            dict(split["param_groups"][0], params=[2, 3], param_names=["out.weight", "out.bias"]),
        ]
        exported = to_torch(state, params, model_sd, split)  # one twin may take several torch groups
        back = from_torch(optim.adam(1e-2), template(), exported.model_state_dict, exported.optimizer_state_dict)
        assert_same(back.opt_state, state)
        with pytest.raises(ValueError, match="has no 'module.\\*' entries: not an AveragedModel"):
            averaged_from_torch(model_sd, template())


def test_lbfgs_both_ways():
    """LBFGS's flat state (torch's under the first param, vectors in torch's order and layout, the
    history as lists): k steps, convert, m steps == k + m torch steps, both ways; and the round trip."""

    from purelr.training.from_torch import model_from_torch

    k, m, kwargs = 2, 2, dict(lr=0.5, max_iter=3, history_size=4, line_search_fn="strong_wolfe")
    twin = optim.lbfgs(**kwargs)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(0)
        model = TorchMLP()
        fresh_model_sd = copy.deepcopy(model.state_dict())
        optimizer = torch.optim.LBFGS(model.parameters(), **kwargs)
        fresh_optimizer_sd = copy.deepcopy(optimizer.state_dict())

        def torch_lbfgs(model, optimizer, first, last):
            for i in range(first, last):

                def closure():
                    optimizer.zero_grad()
                    loss = ((model(torch.tensor(DATA_X[i])) - torch.tensor(DATA_Y[i])) ** 2).mean()
                    loss.backward()
                    return loss

                optimizer.step(closure)

        torch_lbfgs(model, optimizer, 0, k)
        at_k = copy.deepcopy((model.state_dict(), optimizer.state_dict()))
        torch_lbfgs(model, optimizer, k, k + m)
        final = {n: p.detach().numpy().copy() for n, p in model.state_dict().items()}

        @jax.jit
        def step(params, state, x, y):
            value, grads = jax.value_and_grad(flax_loss)(params, x, y)
            updates, state = twin.update(grads, state, params, value=value, value_fn=lambda p: flax_loss(p, x, y))
            return optax.apply_updates(params, updates), state

        with jax.enable_x64(True):
            run = from_torch(twin, template(), *at_k, count=k)
            assert int(run.opt_state.num_old) == len(at_k[1]["state"][0]["ro"])
            params, _ = jax_steps(step, run.params, run.opt_state, k, k + m)
            error_in = max(relative_error(p, final[n]) for n, p in _torch_named(params).items())
            start = model_from_torch(fresh_model_sd, template())[0]
            params, state = jax_steps(step, start, twin.init(start), 0, k)
            exported = to_torch(state, params, fresh_model_sd, fresh_optimizer_sd)
            back = from_torch(twin, template(), exported.model_state_dict, exported.optimizer_state_dict, count=k)
            assert_same(back.opt_state, state)
        model = TorchMLP()
        optimizer = torch.optim.LBFGS(model.parameters(), **kwargs)
        model.load_state_dict(exported.model_state_dict)
        optimizer.load_state_dict(exported.optimizer_state_dict)
        torch_lbfgs(model, optimizer, k, k + m)
        error_out = max(relative_error(p.detach().numpy(), final[n]) for n, p in model.state_dict().items())
    finally:
        torch.set_default_dtype(previous)
    assert error_in <= 1e-10 and error_out <= 1e-10, (error_in, error_out)


def test_timm_scheduler_to_torch():
    """A timm scheduler keeps no step: to_torch calls the fresh one's step_update(count), which
    sets the group lr of update ``count`` as the torch run had it; from_torch says to resume the
    schedule at the count."""
    from timm.scheduler import CosineLRScheduler

    def make(optimizer):
        return CosineLRScheduler(optimizer, t_initial=8, warmup_t=2, warmup_lr_init=1e-4, t_in_epochs=False)

    k, model = 3, TorchMLP().double()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    fresh_sd = {n: t.clone() for n, t in model.state_dict().items()}
    fresh_optimizer = torch.optim.SGD(TorchMLP().double().parameters(), lr=0.1, momentum=0.9)
    scheduler = make(optimizer)
    for i in range(k):
        torch_steps(model, optimizer, i, i + 1)
        scheduler.step_update(num_updates=i + 1)
    with jax.enable_x64(True):
        run = from_torch(optim.sgd(0.1, momentum=0.9), template(), model.state_dict(), optimizer.state_dict(), count=k)
        exported = to_torch(run.opt_state, run.params, fresh_sd, fresh_optimizer.state_dict(), make(fresh_optimizer))
        with pytest.raises(ValueError, match="timm scheduler's state_dict keeps no step"):
            from_torch(
                optim.sgd(0.1, momentum=0.9),
                template(),
                model.state_dict(),
                optimizer.state_dict(),
                scheduler.state_dict(),
                count=k,
            )
    assert exported.optimizer_state_dict["param_groups"][0]["lr"] == optimizer.param_groups[0]["lr"]
    assert exported.scheduler_state_dict == scheduler.state_dict()


# timm's Kron and Adahessian both ways: their randomness is the same on both sides. Kron: the
# normals and uniforms of every update (timm's torch.randn and random.Random stood in for, as
# tests/optim/test_kron.py does; purelr's draws=). Adahessian: the Rademacher vectors of timm's
# generator, whose state at update k is handed to the resumed torch run (purelr's rademacher=),
# and the same loss differentiated twice on both sides; a conversion where the estimate is renewed
TORCH_ORDER = [("hidden", "weight"), ("hidden", "bias"), ("out", "weight"), ("out", "bias")]


def _flax_leaves(torch_tree, like_params=True):
    """A ``{layer: {weight, bias}}`` tree of per-step arrays as the flax ``{layer: {kernel, bias}}``
    (arrays like the params moved to flax's layout)."""
    from tests.training.test_from_torch import kernel_layout

    def moved(weight):  # (steps, ...) in torch's layout
        return np.stack([kernel_layout(w) for w in weight]) if like_params else weight

    return {
        layer: {"kernel": jnp.asarray(moved(leaves["weight"])), "bias": jnp.asarray(leaves["bias"])}
        for layer, leaves in torch_tree.items()
    }


def _kron_draws(rng, shapes):
    normal = {
        layer: {n: rng.normal(size=(DATA_STEPS, *s)) for n, s in leaves.items()} for layer, leaves in shapes.items()
    }
    uniform = {
        layer: {n: rng.uniform(size=(DATA_STEPS, 2)) * [0.02, 1.0] for n in leaves} for layer, leaves in shapes.items()
    }
    return dict(normal=normal, uniform=uniform)


KEPT = {"hidden.weight": ("hidden.kernel", np.asarray), "out.weight": ("out.kernel", np.asarray)}  # torch's layout


def kept_template():
    """The MLP's flax params with its kernels in torch's ``(out, in)`` layout (``KEPT``)."""
    return jax.tree.map(lambda p: p.T, template())


def torch_layout_loss(params, x, y):
    """``flax_loss`` of params whose kernels are in torch's layout."""
    hidden = jnp.tanh(x @ params["hidden"]["kernel"].T + params["hidden"]["bias"])
    return ((hidden @ params["out"]["kernel"].T + params["out"]["bias"] - y) ** 2).mean()


def kron_both_ways(seed, flax_layout=False):
    """``(k, m, torch -> purelr error, purelr -> torch error)`` of timm's Kron, k + m torch updates
    the reference; its kernels kept in torch's layout (``KEPT``), or in flax's with the twin's
    ``torch_layout=kernel_layouts`` (``flax_layout``): Kron solves its triangular systems in
    float32, one dim after another, in torch's order (in flax's a float32 rounding of the
    preconditioner's update apart: 2.5e-7 measured without the option, seed 8)."""
    from unittest import mock

    from timm.optim import kron as timm_kron

    from purelr.optim.prodigy import kernel_layouts
    from purelr.training.from_torch import model_from_torch
    from tests.optim import torch_reference as ref
    from tests.optim.test_kron import TimmRandomness

    rng = np.random.default_rng(seed)
    kwargs = dict(
        lr=_lr(rng),
        momentum=float(rng.uniform(0.5, 0.95)),
        weight_decay=_decay(rng),
        precond_lr=float(rng.uniform(0.05, 0.3)),
        preconditioner_update_probability=float(rng.choice([1.0, 0.5, 0.3])),
        decoupled_decay=_flag(rng),
    )
    k, m = int(rng.integers(1, 5)), int(rng.integers(1, 4))
    twin = optim.kron(**kwargs, torch_layout=kernel_layouts if flax_layout else None)
    names, like, loss = (None, template, flax_loss) if flax_layout else (KEPT, kept_template, torch_layout_loss)
    with ref.torch_dtype(True), mock.patch.object(timm_kron, "has_dynamo", False):
        torch.manual_seed(seed)
        model = TorchMLP()
        shapes = {
            layer: {n: tuple(p.shape) for n, p in getattr(model, layer).named_parameters()}
            for layer in ("hidden", "out")
        }
        drawn = _kron_draws(rng, shapes)
        flax_draws = {key: _flax_leaves(tree, flax_layout and key == "normal") for key, tree in drawn.items()}

        def steps(model, optimizer, first, last):
            own, optimizer.rng = optimizer.rng, TimmRandomness(drawn, [False] * 4, TORCH_ORDER)
            with mock.patch.object(torch, "randn", optimizer.rng.randn):
                for i in range(first, last):
                    optimizer.zero_grad()
                    loss = ((model(torch.tensor(DATA_X[i])) - torch.tensor(DATA_Y[i])) ** 2).mean()
                    loss.backward()
                    optimizer.rng.start(i)
                    optimizer.step()
            optimizer.rng.finish()
            optimizer.rng = own  # its state_dict keeps the generator's state

        fresh_model_sd = copy.deepcopy(model.state_dict())
        optimizer = timm_kron.Kron(model.parameters(), **kwargs)
        fresh_optimizer_sd = copy.deepcopy(optimizer.state_dict())
        steps(model, optimizer, 0, k)
        at_k = copy.deepcopy((model.state_dict(), optimizer.state_dict()))
        steps(model, optimizer, k, k + m)
        final = {n: p.detach().numpy().copy() for n, p in model.state_dict().items()}

        @jax.jit
        def step(params, state, x, y, draws):
            updates, state = twin.update(jax.grad(loss)(params, x, y), state, params, draws=draws)
            return optax.apply_updates(params, updates), state

        def jax_run(params, state, first, last):
            for i in range(first, last):
                draws = jax.tree.map(lambda a: a[i], flax_draws)
                params, state = step(params, state, DATA_X[i], DATA_Y[i], draws)
            return params, state

        run = from_torch(twin, like(), *at_k, names=names)
        assert int(run.opt_state.count) == k
        params, _ = jax_run(run.params, run.opt_state, k, k + m)
        error_in = _error_against(params, final, moved=flax_layout)
        start = model_from_torch(fresh_model_sd, like(), names=names)[0]
        params, state = jax_run(start, twin.init(start), 0, k)
        exported = to_torch(state, params, fresh_model_sd, fresh_optimizer_sd, names=names)
        back = from_torch(twin, like(), exported.model_state_dict, exported.optimizer_state_dict, names=names)
        assert_same(back.params, params)
        assert_same(back.opt_state, kept(state, twin.init(params)))
        model = TorchMLP()
        model.load_state_dict(exported.model_state_dict)
        optimizer = timm_kron.Kron(model.parameters(), **kwargs)
        optimizer.load_state_dict(exported.optimizer_state_dict)
        steps(model, optimizer, k, k + m)
        error_out = max(
            relative_error(p.detach().numpy(), final[n], floor=trajectory_floor())
            for n, p in model.state_dict().items()
        )
    return k, m, error_in, error_out


def _error_against(params, final, moved=True):
    """The largest relative error of flax ``params`` against torch's ``final`` model entries (the
    kernels moved to flax's layout, or kept in torch's)."""
    from tests.training.test_from_torch import kernel_layout

    move = kernel_layout if moved else np.asarray

    return max(
        relative_error(
            params[layer][leaf],
            move(final[f"{layer}.weight"]) if leaf == "kernel" else final[f"{layer}.bias"],
            floor=trajectory_floor(),
        )
        for layer in ("hidden", "out")
        for leaf in ("kernel", "bias")
    )


def _rademacher(shapes, update_each):
    """timm's Adahessian vectors per update (zeros where it keeps its estimate), from its generator
    (seeded 2147483647), per param in torch's order."""
    generator = torch.Generator().manual_seed(2147483647)
    zs = {layer: {n: np.zeros((DATA_STEPS, *s)) for n, s in leaves.items()} for layer, leaves in shapes.items()}
    for i in range(0, DATA_STEPS, update_each):
        for layer, name in TORCH_ORDER:
            draws = torch.randint(0, 2, shapes[layer][name], generator=generator)
            zs[layer][name][i] = (draws.to(torch.float64) * 2.0 - 1.0).numpy()
    return zs


def adahessian_both_ways(seed):
    """``(k, m, torch -> purelr error, purelr -> torch error)`` of timm's Adahessian, k + m torch updates the reference."""

    from purelr.training.from_torch import model_from_torch
    from tests.optim import torch_reference as ref

    rng = np.random.default_rng(seed)
    update_each = int(rng.integers(1, 3))
    betas = (float(rng.uniform(0.5, 0.95)), float(rng.uniform(0.9, 0.999)))
    kwargs = dict(lr=_lr(rng) * 5, weight_decay=_decay(rng), betas=betas, update_each=update_each)
    k = update_each * int(rng.integers(1, 4))  # where the estimate (p.hess, in no state_dict) is renewed
    m = int(rng.integers(1, DATA_STEPS - k + 1))
    twin = optim.adahessian(**kwargs)
    with ref.torch_dtype(True):
        torch.manual_seed(seed)
        model = TorchMLP()
        shapes = {
            layer: {n: tuple(p.shape) for n, p in getattr(model, layer).named_parameters()}
            for layer in ("hidden", "out")
        }
        vectors = _flax_leaves(_rademacher(shapes, update_each))

        def steps(model, optimizer, first, last):
            for i in range(first, last):
                optimizer.zero_grad()
                loss = ((model(torch.tensor(DATA_X[i])) - torch.tensor(DATA_Y[i])) ** 2).mean()
                loss.backward(create_graph=True)
                optimizer.step()

        fresh_model_sd = copy.deepcopy(model.state_dict())
        optimizer = _timm("Adahessian")(model.parameters(), **kwargs)
        fresh_optimizer_sd = copy.deepcopy(optimizer.state_dict())
        steps(model, optimizer, 0, k)
        generator_at_k = optimizer.generator.get_state()  # kept by no state_dict: handed over
        at_k = copy.deepcopy((model.state_dict(), optimizer.state_dict()))
        steps(model, optimizer, k, k + m)
        final = {n: p.detach().numpy().copy() for n, p in model.state_dict().items()}

        @jax.jit
        def step(params, state, x, y, z):
            def loss(params):
                return flax_loss(params, x, y)

            updates, state = twin.update(jax.grad(loss)(params), state, params, value_fn=loss, rademacher=[z])
            return optax.apply_updates(params, updates), state

        def jax_run(params, state, first, last):
            for i in range(first, last):
                params, state = step(params, state, DATA_X[i], DATA_Y[i], jax.tree.map(lambda a: a[i], vectors))
            return params, state

        run = from_torch(twin, template(), *at_k)
        assert int(run.opt_state.count) == k
        params, _ = jax_run(run.params, run.opt_state, k, k + m)
        error_in = _error_against(params, final)
        start = model_from_torch(fresh_model_sd, template())[0]
        params, state = jax_run(start, twin.init(start), 0, k)
        exported = to_torch(state, params, fresh_model_sd, fresh_optimizer_sd)
        back = from_torch(twin, template(), exported.model_state_dict, exported.optimizer_state_dict)
        assert_same(back.params, params)
        assert_same(back.opt_state, kept(state, twin.init(params)))
        model = TorchMLP()
        model.load_state_dict(exported.model_state_dict)
        optimizer = _timm("Adahessian")(model.parameters(), **kwargs)
        optimizer.load_state_dict(exported.optimizer_state_dict)
        optimizer.generator.set_state(generator_at_k)
        steps(model, optimizer, k, k + m)
        error_out = max(
            relative_error(p.detach().numpy(), final[n], floor=trajectory_floor())
            for n, p in model.state_dict().items()
        )
    return k, m, error_in, error_out


TIMM_RANDOM = {
    "kron": kron_both_ways,
    "kron_flax_layout": functools.partial(kron_both_ways, flax_layout=True),
    "adahessian": adahessian_both_ways,
}


DEFAULT_SEEDS = {
    "kron": (0, 1),
    "kron_flax_layout": (0, 8),
    "adahessian": (0, 1),
}  # flax layout, seed 8: 2.5e-7 without


@pytest.mark.parametrize(
    "case, seed",
    [(c, s) for c, seeds in DEFAULT_SEEDS.items() for s in seeds]
    + [
        pytest.param(c, s, marks=pytest.mark.nightly)
        for c in TIMM_RANDOM
        for s in range(12)
        if s not in DEFAULT_SEEDS[c]
    ],
)
def test_timm_random_twins_both_ways(case, seed):
    """timm's Kron (kernels in torch's layout, or flax's with ``torch_layout``) and Adahessian, fed
    the same random numbers both ways (x64)."""
    with jax.enable_x64(True):
        k, m, error_in, error_out = TIMM_RANDOM[case](seed)
    tolerance = OPTIMIZER_RTOL["x64"]
    assert error_in <= tolerance, f"{case}, k={k}, m={m}: torch -> purelr off by {error_in:.3g}"
    assert error_out <= tolerance, f"{case}, k={k}, m={m}: purelr -> torch off by {error_out:.3g}"
