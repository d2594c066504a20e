"""Optimizer bad inputs: each refused at construction (or at ``init`` for what depends on the
params), before anything is traced, with an error that names the argument and the value.

The table holds every check of torch 2.13's optimizer constructors (``lr >= 0``, ``0 <= betas[i] <
1``, Tensor ``lr`` of one element, ...), a non-finite value for every hyperparameter torch checks,
purelr's own checks (a ``betas`` that is not a pair, ``clip_grad_norm(max_norm=-1)``), and torch's
conflicting device flags. ``test_torch_refuses_too`` checks that torch refuses the torch cases.
"""

import math

import jax.numpy as jnp
import numpy as np
import pytest
import torch

from purelr import optim
from tests.bad_inputs import assert_rejects

INF, NAN = math.inf, math.nan
TWO = np.array([1e-3, 1e-3])  # torch: "Tensor lr must be 1-element"
MATRIX = {"w": jnp.zeros((2, 3))}

# (optimizer, kwargs, exception, needles naming the argument and the value)
TORCH_CASES = [
    ("sgd", dict(lr=-0.1), ValueError, "lr", "-0.1"),
    ("sgd", dict(lr=TWO), ValueError, "lr", "(2,)"),
    ("sgd", dict(momentum=-0.5), ValueError, "momentum", "-0.5"),
    ("sgd", dict(weight_decay=-1e-4), ValueError, "weight_decay", "-0.0001"),
    ("sgd", dict(nesterov=True, momentum=0.0), ValueError, "momentum", "0.0"),
    ("sgd", dict(nesterov=True, momentum=0.9, dampening=0.1), ValueError, "dampening", "0.1"),
    ("sgd", dict(fused=True, foreach=True), ValueError, "foreach", "True"),
    ("sgd", dict(fused=True, differentiable=True), ValueError, "differentiable", "True"),
    ("adagrad", dict(lr=-1.0), ValueError, "lr", "-1.0"),
    ("adagrad", dict(lr=TWO), ValueError, "lr", "(2,)"),
    ("adagrad", dict(lr_decay=-0.5), ValueError, "lr_decay", "-0.5"),
    ("adagrad", dict(weight_decay=-1.0), ValueError, "weight_decay", "-1.0"),
    ("adagrad", dict(initial_accumulator_value=-0.1), ValueError, "initial_accumulator_value", "-0.1"),
    ("adagrad", dict(eps=-1e-10), ValueError, "eps", "-1e-10"),
    ("adagrad", dict(fused=True, foreach=True), ValueError, "foreach", "True"),
    ("adagrad", dict(fused=True, differentiable=True), ValueError, "differentiable", "True"),
    ("adadelta", dict(lr=-1.0), ValueError, "lr", "-1.0"),
    ("adadelta", dict(lr=TWO), ValueError, "lr", "(2,)"),
    ("adadelta", dict(rho=1.1), ValueError, "rho", "1.1"),
    ("adadelta", dict(rho=-0.1), ValueError, "rho", "-0.1"),
    ("adadelta", dict(eps=-1e-6), ValueError, "eps", "-1e-06"),
    ("adadelta", dict(weight_decay=-0.1), ValueError, "weight_decay", "-0.1"),
    ("rmsprop", dict(lr=-1e-2), ValueError, "lr", "-0.01"),
    ("rmsprop", dict(lr=TWO), ValueError, "lr", "(2,)"),
    ("rmsprop", dict(eps=-1e-8), ValueError, "eps", "-1e-08"),
    ("rmsprop", dict(momentum=-1.0), ValueError, "momentum", "-1.0"),
    ("rmsprop", dict(weight_decay=-0.1), ValueError, "weight_decay", "-0.1"),
    ("rmsprop", dict(alpha=-0.5), ValueError, "alpha", "-0.5"),
    ("rprop", dict(lr=-1e-2), ValueError, "lr", "-0.01"),
    ("rprop", dict(lr=TWO), ValueError, "lr", "(2,)"),
    ("rprop", dict(etas=(1.0, 0.5)), ValueError, "etas", "(1.0, 0.5)"),
    ("rprop", dict(etas=(0.5, 0.9)), ValueError, "etas", "(0.5, 0.9)"),
    ("asgd", dict(lr=-1e-2), ValueError, "lr", "-0.01"),
    ("asgd", dict(lr=TWO), ValueError, "lr", "(2,)"),
    ("asgd", dict(weight_decay=-0.5), ValueError, "weight_decay", "-0.5"),
    ("adafactor", dict(lr=-1e-2), ValueError, "lr", "-0.01"),
    ("adafactor", dict(lr=TWO), ValueError, "lr", "(2,)"),
    ("adafactor", dict(beta2_decay=0.8), ValueError, "beta2_decay", "0.8"),
    ("adafactor", dict(eps=(-1e-30, 1e-3)), ValueError, "eps[0]", "-1e-30"),
    ("adafactor", dict(eps=(None, -1e-3)), ValueError, "eps[1]", "-0.001"),
    ("adafactor", dict(d=0.0), ValueError, "d", "0.0"),
    ("adafactor", dict(weight_decay=-0.1), ValueError, "weight_decay", "-0.1"),
    ("muon", dict(lr=-1e-3), ValueError, "lr", "-0.001"),
    ("muon", dict(lr=TWO), ValueError, "lr", "(2,)"),
    ("muon", dict(momentum=-0.9), ValueError, "momentum", "-0.9"),
    ("muon", dict(weight_decay=-0.1), ValueError, "weight_decay", "-0.1"),
    ("muon", dict(adjust_lr_fn="arbitrary"), ValueError, "adjust_lr_fn", "'arbitrary'"),
    ("lbfgs", dict(lr=-1.0), ValueError, "lr", "-1.0"),
    ("lbfgs", dict(lr=TWO), ValueError, "lr", "(2,)"),
]
for _name in ("adam", "adamw", "adamax", "nadam", "radam"):
    TORCH_CASES += [
        (_name, dict(lr=-1e-3), ValueError, "lr", "-0.001"),
        (_name, dict(lr=TWO), ValueError, "lr", "(2,)"),
        (_name, dict(eps=-1e-8), ValueError, "eps", "-1e-08"),
        (_name, dict(betas=(1.0, 0.0)), ValueError, "betas[0]", "1.0"),
        (_name, dict(betas=(-0.1, 0.999)), ValueError, "betas[0]", "-0.1"),
        (_name, dict(betas=(0.0, 1.0)), ValueError, "betas[1]", "1.0"),
        (_name, dict(weight_decay=-1), ValueError, "weight_decay", "-1"),
    ]
TORCH_CASES += [
    ("nadam", dict(momentum_decay=-0.2), ValueError, "momentum_decay", "-0.2"),
    ("adam", dict(fused=True, foreach=True), ValueError, "foreach", "True"),
    ("adam", dict(fused=True, differentiable=True), ValueError, "differentiable", "True"),
    ("adamw", dict(fused=True, foreach=True), ValueError, "foreach", "True"),
]

# Beyond torch: non-finite numbers, malformed arguments, flags that are not bools.
NONFINITE = {
    "sgd": ("lr", "momentum", "dampening", "weight_decay"),
    "adam": ("lr", "eps", "weight_decay"),
    "adamw": ("lr", "eps", "weight_decay"),
    "adamax": ("lr", "eps", "weight_decay"),
    "nadam": ("lr", "momentum_decay"),
    "radam": ("lr", "weight_decay"),
    "adagrad": ("lr", "lr_decay", "initial_accumulator_value"),
    "adadelta": ("lr", "eps"),
    "rmsprop": ("lr", "alpha", "momentum"),
    "rprop": ("lr",),
    "asgd": ("lr", "lambd", "alpha", "t0"),
    "adafactor": ("lr", "d", "weight_decay"),
    "muon": ("lr", "momentum", "weight_decay"),
    "lbfgs": ("lr",),
    "rmsprop_tf": ("lr", "alpha", "eps", "momentum", "weight_decay"),
    "lamb": ("lr", "eps", "weight_decay", "max_grad_norm"),
    "lars": ("lr", "momentum", "weight_decay", "trust_coeff", "eps"),
    "lion": ("lr", "weight_decay"),
    "sgdw": ("lr", "momentum", "dampening", "weight_decay"),
    "nadamw": ("lr", "eps", "weight_decay", "clipping_threshold"),
    "timm_adafactor": ("lr", "eps", "eps_scale", "clip_threshold", "decay_rate", "weight_decay"),
    "adafactor_big_vision": ("lr", "weight_decay", "decay_rate", "beta2_cap", "momentum", "eps"),
    "kron": ("lr", "momentum", "weight_decay", "precond_lr", "preconditioner_update_probability"),
    "adahessian": ("lr", "eps", "weight_decay", "hessian_power"),
}
PURELR_CASES = [
    (name, {arg: value}, ValueError, arg, repr(value))
    for name, args in NONFINITE.items()
    for arg in args
    for value in (INF, NAN)
    if value == value or arg == "lr"
]
PURELR_CASES += [
    ("adam", dict(betas=0.9), TypeError, "betas", "0.9"),
    ("adamw", dict(betas=(0.9,)), TypeError, "betas", "(0.9,)"),
    ("nadam", dict(betas=(0.9, 0.99, 0.999)), TypeError, "betas", "(0.9, 0.99, 0.999)"),
    ("adam", dict(betas=(0.9, INF)), ValueError, "betas[1]", "inf"),
    ("adam", dict(lr=jnp.asarray([1e-3, 1e-3])), ValueError, "lr", "(2,)"),
    ("sgd", dict(lr="0.1"), TypeError, "lr", "'0.1'"),
    ("sgd", dict(lr=1 + 2j), TypeError, "lr", "(1+2j)"),
    ("adagrad", dict(lr=np.complex64(1)), TypeError, "lr", "(1+0j)"),
    ("adam", dict(foreach="yes"), TypeError, "foreach", "'yes'"),
    ("rprop", dict(capturable=1), TypeError, "capturable", "1"),
    ("rprop", dict(step_sizes=(1.0, INF)), ValueError, "step_sizes[1]", "inf"),
    ("muon", dict(ns_coefficients=(3.4, NAN, 2.0)), ValueError, "ns_coefficients[1]", "nan"),
    ("muon", dict(ns_steps=100), ValueError, "ns_steps", "100"),
    ("muon", dict(ns_coefficients=(1.0, 2.0)), ValueError, "ns_coefficients", "(1.0, 2.0)"),
    ("adafactor", dict(eps=(1e-30,)), ValueError, "eps", "(1e-30,)"),
    ("lbfgs", dict(line_search_fn="wolfe"), ValueError, "line_search_fn", "'wolfe'"),
    ("lbfgs", dict(history_size=0), ValueError, "history_size", "0"),
    ("lbfgs", dict(max_iter=-1), ValueError, "max_iter", "-1"),
    ("lamb", dict(max_grad_norm=0.0), ValueError, "max_grad_norm", "0.0"),
    ("lamb", dict(betas=(1.0, 0.999)), ValueError, "betas[0]", "1.0"),
    ("lars", dict(trust_coeff=-1.0), ValueError, "trust_coeff", "-1.0"),
    ("lion", dict(corrected_weight_decay=True, max_lr_snapshot=-1.0), ValueError, "max_lr_snapshot", "-1.0"),
    ("sgdw", dict(lr=lambda step: 0.1, corrected_weight_decay=True), ValueError, "max_lr_snapshot", "None"),
    ("nadamw", dict(clipping_threshold=0.0), ValueError, "clipping_threshold", "0.0"),
    ("rmsprop_tf", dict(foreach="yes"), TypeError, "foreach", "'yes'"),
    ("timm_adafactor", dict(lr=-1.0), ValueError, "lr", "-1.0"),
    ("timm_adafactor", dict(clip_threshold=0.0), ValueError, "clip_threshold", "0.0"),
    ("timm_adafactor", dict(min_dim_size_to_factor=2.5), TypeError, "min_dim_size_to_factor", "2.5"),
    ("timm_adafactor", dict(betas=0.9), TypeError, "betas", "0.9"),
    ("timm_adafactor", dict(lr=1e-2, warmup_init=True), ValueError, "warmup_init", "True"),
    ("adafactor_big_vision", dict(momentum_dtype="int8"), ValueError, "momentum_dtype", "'int8'"),
    ("adafactor_big_vision", dict(min_dim_size_to_factor=2.5), TypeError, "min_dim_size_to_factor", "2.5"),
    ("adafactor_big_vision", dict(beta2_cap=1.5), ValueError, "beta2_cap", "1.5"),
    ("kron", dict(momentum=1.0), ValueError, "momentum", "1.0"),
    ("kron", dict(memory_save_mode="two_diag"), ValueError, "memory_save_mode", "'two_diag'"),
    ("kron", dict(mu_dtype="bfloat16"), ValueError, "mu_dtype", "'bfloat16'"),
    ("kron", dict(precond_dtype="float32"), ValueError, "precond_dtype", "'float32'"),
    ("kron", dict(preconditioner_update_probability=0.0), ValueError, "preconditioner_update_probability", "0.0"),
    ("kron", dict(max_size_triangular=1e3), TypeError, "max_size_triangular", "1000.0"),
    ("kron", dict(lr=0.0, corrected_weight_decay=True), ValueError, "max_lr_snapshot", "0.0"),
    ("adahessian", dict(hessian_power=1.5), ValueError, "hessian_power", "1.5"),
    ("adahessian", dict(betas=(0.9, 1.0)), ValueError, "betas[1]", "1.0"),
    ("adahessian", dict(update_each=0), ValueError, "update_each", "0"),
    ("adahessian", dict(n_samples=1.5), ValueError, "n_samples", "1.5"),
    ("clip_grad_norm", dict(max_norm=-1), ValueError, "max_norm", "-1"),
    ("clip_grad_norm", dict(max_norm=NAN), ValueError, "max_norm", "nan"),
    ("clip_grad_norm", dict(max_norm=1.0, norm_type="fro"), TypeError, "norm_type", "'fro'"),
    ("clip_grad_value", dict(clip_value=-1), ValueError, "clip_value", "-1"),
    ("clip_grad_value", dict(clip_value=NAN), ValueError, "clip_value", "nan"),
    ("sgd_schedule_free", dict(lr=-0.1), ValueError, "lr", "-0.1"),  # schedulefree's SGD checks
    ("sgd_schedule_free", dict(momentum=1.0), ValueError, "momentum", "1.0"),
    ("sgd_schedule_free_closure", dict(momentum=0.0), ValueError, "momentum", "0.0"),
    ("adamw_schedule_free", dict(betas=(0.0, 0.999)), ValueError, "betas[0]", "0.0"),  # eval() divides by it
    ("adamw_schedule_free", dict(warmup_steps=2.5), ValueError, "warmup_steps", "2.5"),
    ("radam_schedule_free", dict(eps=NAN), ValueError, "eps", "nan"),
    ("adamw_schedule_free_reference", dict(r=INF), ValueError, "r", "inf"),
    ("adamw_schedule_free_paper", dict(weight_lr_power=-1.0), ValueError, "weight_lr_power", "-1.0"),
    ("adamw_schedule_free_closure", dict(foreach="yes"), TypeError, "foreach", "'yes'"),
    ("radam_legacy", dict(betas=(0.9, 1.0)), ValueError, "betas[1]", "1.0"),  # timm checks nothing: Adam's
    ("radam_legacy", dict(weight_decay=NAN), ValueError, "weight_decay", "nan"),
]

# Refused at init: what depends on the params (torch: at construction or at the first step).
INIT_CASES = [
    ("muon", {"w": jnp.zeros((2, 3, 4))}, "muon only supports 2-D", "(2, 3, 4)", "['w']"),
    ("muon", {"w": jnp.zeros((2, 3), jnp.complex64)}, "muon", "complex", "complex64", "['w']"),
    ("adafactor", {"w": jnp.zeros((2, 3), jnp.complex64)}, "adafactor", "complex", "complex64", "['w']"),
    ("lbfgs", {"w": jnp.zeros(3, jnp.complex64)}, "lbfgs", "complex", "complex64", "['w']"),
    ("timm_adafactor", {"w": jnp.zeros(3, jnp.complex64)}, "timm_adafactor", "complex", "complex64", "['w']"),
    ("adafactor_big_vision", {"w": jnp.zeros(3, jnp.complex64)}, "adafactor_big_vision", "complex", "['w']"),
    ("kron", {"w": jnp.zeros(3, jnp.complex64)}, "kron", "complex", "complex64", "['w']"),
]

TORCH_NAMES = dict(
    sgd="SGD",
    adam="Adam",
    adamw="AdamW",
    adamax="Adamax",
    nadam="NAdam",
    radam="RAdam",
    adagrad="Adagrad",
    adadelta="Adadelta",
    rmsprop="RMSprop",
    rprop="Rprop",
    asgd="ASGD",
    adafactor="Adafactor",
    muon="Muon",
    lbfgs="LBFGS",
)


def _id(case):
    """The call, functions named ``<function>`` (their reprs hold addresses, which differ between
    pytest-xdist's workers)."""
    name, kwargs = case[:2]
    shown = {k: "<function>" if callable(v) else repr(v) for k, v in kwargs.items()}
    return f"{name}({', '.join(f'{k}={v}' for k, v in shown.items())})"[:80]


def test_table_size():
    assert len(TORCH_CASES) + len(PURELR_CASES) + len(INIT_CASES) >= 80


@pytest.mark.parametrize("case", TORCH_CASES + PURELR_CASES, ids=_id)
def test_rejected_at_construction(case):
    name, kwargs, exception, *needles = case
    assert_rejects(lambda: getattr(optim, name)(**kwargs), exception, *needles)


@pytest.mark.parametrize("case", INIT_CASES, ids=lambda case: case[0] + " " + case[2])
def test_rejected_at_init(case):
    name, params, *needles = case
    assert_rejects(lambda: getattr(optim, name)().init(params), ValueError, *needles)


def _torch_kwargs(kwargs):
    return {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}


@pytest.mark.parametrize("case", TORCH_CASES, ids=_id)
def test_torch_refuses_too(case):
    """The torch cases are torch's: its constructor refuses each (ValueError or RuntimeError)."""
    name, kwargs = case[:2]
    param = torch.zeros(2, 2, requires_grad=True)
    with pytest.raises((ValueError, RuntimeError)):
        getattr(torch.optim, TORCH_NAMES[name])([param], **_torch_kwargs(kwargs))
