"""timm's own optimizers by name (adamp, sgdp, adabelief, madgrad, adan, adopt, laprop, novograd,
mars, adafactorbv, their registered variants and the ``lookahead_`` prefix): ``purelr.build(dict(timm=...))``
against timm 1.0.31's ``create_optimizer_v2(model, NAME, lr=..., weight_decay=..., **opt_args)``
with ``create_scheduler_v2`` on the ViT twin, stepped as train.py steps them (``run_timm``), with
timm's weight-decay groups (biases and 1-d params without decay); x64 <= 1e-10 on the params.
``delta=2`` makes AdamP / SGDP project every kernel's step, so that the flax layout of the
kernels is exercised. timm keeps NvNovoGrad's ``exp_avg_sq`` and LaProp's ``exp_avg_lr_2`` in
torch's default dtype whatever the params' (the twins: in the params' dtype), so timm runs with
torch's default dtype float64, as the float64 params. The registered variants of a name run
nightly."""

import jax
import pytest

from tests.optim.torch_reference import torch_dtype
from tests.parity import OPTIMIZER_RTOL, relative_error, trajectory_floor
from tests.recipes import twins
from tests.recipes.test_timm import EPOCH_LEN, MATCHER, run_timm

SCHEDULE = dict(sched="cosine", epochs=3, warmup_epochs=1, warmup_lr=1e-4)
CASES = [
    dict(opt="adamp", lr=1e-2, weight_decay=0.05, opt_args=dict(delta=2.0)),
    dict(opt="sgdp", lr=0.05, weight_decay=1e-3, opt_args=dict(delta=2.0)),
    dict(opt="adabelief", lr=1e-2, weight_decay=1e-2, opt_eps=1e-12),
    dict(opt="radabelief", lr=1e-2, weight_decay=1e-2, opt_betas=(0.9, 0.6)),
    dict(opt="madgrad", lr=1e-2, weight_decay=1e-3, momentum=0.8),
    dict(opt="adan", lr=1e-2, weight_decay=0.02, opt_betas=(0.9, 0.9, 0.99)),
    dict(opt="adopt", lr=1e-2, weight_decay=1e-2),
    dict(opt="laprop", lr=1e-2, weight_decay=1e-2),
    dict(opt="novograd", lr=1e-2, weight_decay=1e-3, opt_betas=(0.9, 0.95)),
    dict(opt="mars", lr=1e-2, weight_decay=1e-2),
    dict(opt="lookahead_adamw", lr=1e-2, weight_decay=0.05),
    dict(
        opt="adoptc", lr=1e-2, weight_decay=0.5, layer_decay=0.7, group_matcher=MATCHER
    ),  # snapshot: lr before lr_scale
    dict(
        opt="adafactorbv", lr=1e-2, weight_decay=1e-2, opt_args=dict(min_dim_size_to_factor=4, clipping_threshold=1.0)
    ),
]
VARIANTS = [
    dict(opt="cadamp", lr=1e-2, weight_decay=0.05),
    dict(opt="csgdp", lr=0.05, weight_decay=1e-3, opt_args=dict(delta=2.0)),
    dict(opt="madgradw", lr=1e-2, weight_decay=1e-2),
    dict(opt="adanw", lr=1e-2, weight_decay=0.02),
    dict(opt="cadan", lr=1e-2, weight_decay=0.02),
    dict(opt="cadanw", lr=1e-2, weight_decay=0.02),
    dict(opt="adoptw", lr=1e-2, weight_decay=1e-2),
    dict(opt="cadopt", lr=1e-2, weight_decay=1e-2),
    dict(opt="cadoptw", lr=1e-2, weight_decay=1e-2),
    dict(opt="claprop", lr=1e-2, weight_decay=1e-2),
    dict(opt="novogradw", lr=1e-2, weight_decay=1e-2),
    dict(opt="cmars", lr=1e-2, weight_decay=1e-2, opt_args=dict(optimize_1d=True)),
    dict(opt="lookahead_adan", lr=1e-2, weight_decay=0.02, opt_args=dict(caution=True)),
    dict(opt="lookahead_sgdp", lr=0.05, weight_decay=1e-3),
    dict(opt="cadoptc", lr=1e-2, weight_decay=0.5),
    dict(opt="lapropc", lr=1e-2, weight_decay=0.5),
    dict(opt="novogradc", lr=1e-2, weight_decay=0.5),
    dict(opt="cadafactorbv", lr=1e-2, weight_decay=1e-2),
    dict(opt="adafactorbvc", lr=1e-2, weight_decay=0.5, opt_args=dict(unscaled_wd=True)),
    dict(opt="cadafactorbvc", lr=1e-2, weight_decay=0.5, opt_args=dict(momentum_dtype="float32")),
]


def check(args):
    args = dict(args, **SCHEDULE)
    steps = 3 * EPOCH_LEN
    with torch_dtype(x64=True):
        expected = run_timm(dict(args), steps)
    twins.warm("vit")
    with jax.enable_x64(True):
        actual = twins.run_purelr(dict(timm=args), "vit", steps, 0, epoch_len=EPOCH_LEN)
    for name, value in expected.items():
        error = relative_error(actual[name], value, floor=trajectory_floor())
        assert error <= OPTIMIZER_RTOL["x64"], (args["opt"], name, error)


@pytest.mark.parametrize("args", CASES, ids=[c["opt"] for c in CASES])
def test_build_matches_create_optimizer_v2(args):
    check(args)


@pytest.mark.nightly
@pytest.mark.parametrize("args", VARIANTS, ids=[c["opt"] for c in VARIANTS])
def test_variants_match_create_optimizer_v2(args):
    check(args)
