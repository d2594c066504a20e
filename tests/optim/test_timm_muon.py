"""Parity of purelr.optim.timm_muon with timm 1.0.31's ``timm.optim.Muon`` (its names muon, nmuon,
adamuon, nadamuon), side by side for 100 updates.

Leaves: a wide and a tall matrix and a 4-D conv kernel (Muon), a bias and a 3 x 40 matrix (too
narrow for Muon: the AdamW / NAdamW fallback). Two param groups as timm's weight-decay groups make
them (group 0: decay; group 1: no decay), each a ``timm_muon`` in an ``optax.multi_transform``.
The loss is a weighted quadratic with a target that moves each step, ``sum(h * (W - T_k) ** 2) / 2``,
whose gradient both frameworks round identically (Muon rounds its Newton-Schulz input to
bfloat16: a one-ulp difference of a gradient can move it a bfloat16 unit). Numbers are traced
(lr decayed by ``gamma ** k`` as torch's ExponentialLR), configurations vmapped; one compile per
set of static options. torch runs with oneDNN off: its CPU kernels then sum each bfloat16 product
in float32 in an order ``purelr.optim.muon._matmul`` reproduces (cpublas' four partial sums, in
order for a transposed operand and for baddbmm's naive kernel on small batch items), and its norm
over 16 float32 lanes (AVX-512, this CPU). Under x64 the bfloat16 rounding is then the same on both sides, so x64 holds the
project's 1e-10, and float32 the project's 1e-5 (see ``RTOL``).

The nightly sweeps (30 configurations per case, 100 updates) once drifted far apart (muon's conv
3.2e-5, adamuon 4.3e-3, nmuon's batched conv 0.37): a sum of Newton-Schulz rounded to float32 in
another order than torch's, or a float32 rounding that XLA dropped under jit, moved a bfloat16
value by a unit, which the next steps amplify. ``test_newton_schulz_is_timm_s`` checks the
orthogonalization alone, bit for bit.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from timm.optim.muon import Muon

from purelr.optim.timm_muon import suitable_for_muon, timm_muon
from tests.optim.torch_reference import TRAJECTORY_UNITS, trajectory
from tests.parity import OPTIMIZER_RTOL, relative_error, rounding_floor

STEPS = 100
SHAPES = {"w1": (8, 12), "w2": (12, 5), "conv": (6, 3, 2, 2), "b": (12,), "e": (3, 40)}
GROUPS = {"w1": 0, "conv": 0, "w2": 1, "b": 1, "e": 1}
# float32 at the project's 1e-5 (measured: nadamuon 9.2e-8 params, 6.1e-7 exp_avg_sq, 4
# configurations): the twin forms timm's float32 arithmetic op for op (the lerps and param.add_ one
# fused multiply-add, exp_avg_sq.mul_(beta2).addcmul_(...) rounded per op, 1 - lr * wd and -lr * scale
# in double from Python floats, rounded once), so Newton-Schulz sees timm's bfloat16 input bit for
# bit. Before, a float32 unit there flipped a bfloat16 rounding now and then (3e-5 params, 2.4e-3
# exp_avg_sq).
RTOL = OPTIMIZER_RTOL
EPS = 1e-7  # timm's default (Newton-Schulz's and the fallback's)


def _data(seed, shapes=SHAPES):
    rng = np.random.default_rng(seed)
    params = {k: rng.normal(size=s) * 0.5 for k, s in shapes.items()}
    curvature = {k: rng.uniform(0.5, 2.0, size=s) for k, s in shapes.items()}
    target = {k: rng.normal(size=s) + 0.3 * rng.normal(size=(STEPS,) + s) for k, s in shapes.items()}
    return params, curvature, target


_RUNS = {}


def _purelr_run(static):
    if static not in _RUNS:
        options = dict(static)

        def run(params, curvature, target, lr, gamma, weight_decay, momentum, beta1, beta2, scale):
            def group(i):
                return timm_muon(
                    lr=lambda k: lr * (1.0 if i == 0 else scale) * gamma**k,
                    weight_decay=lambda k: weight_decay if i == 0 else 0.0,
                    momentum=lambda k: momentum,
                    betas=(lambda k: beta1, lambda k: beta2),
                    eps=EPS,
                    **options,
                )

            opt = optax.multi_transform({0: group(0), 1: group(1)}, {k: GROUPS[k] for k in SHAPES})

            def gradient(params, k):
                return {n: curvature[n] * (params[n] - target[n][k]) for n in SHAPES}

            return trajectory(opt, params, gradient, STEPS)

        _RUNS[static] = jax.jit(jax.vmap(run, in_axes=(None, None, None, 0, 0, 0, 0, 0, 0, 0)))
    return _RUNS[static]


def _torch_run(data, dtype, static, lr, gamma, weight_decay, momentum, beta1, beta2, eps, scale):
    params, curvature, target = (jax.tree.map(lambda a: torch.tensor(a, dtype=dtype), t) for t in data)
    tparams = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    groups = [
        dict(params=[tparams[k] for k in SHAPES if GROUPS[k] == 0], weight_decay=weight_decay),
        dict(params=[tparams[k] for k in SHAPES if GROUPS[k] == 1], weight_decay=0.0, lr=lr * scale),
    ]
    opt = Muon(groups, lr=lr, momentum=momentum, betas=(beta1, beta2), eps=eps, **dict(static))
    scheduler = torch.optim.lr_scheduler.ExponentialLR(opt, gamma)
    with torch.backends.mkldnn.flags(enabled=False):
        for k in range(STEPS):
            opt.zero_grad()
            sum(torch.sum(curvature[n] * (tparams[n] - target[n][k]) ** 2) / 2 for n in SHAPES).backward()
            opt.step()
            scheduler.step()
    state = {k: {name: v.numpy() for name, v in opt.state[p].items() if torch.is_tensor(v)} for k, p in tparams.items()}
    return {k: p.detach().numpy() for k, p in tparams.items()}, state


def _draw(rng, n, lr_range):
    lr = 10 ** rng.uniform(*lr_range, n)
    gamma = np.where(rng.random(n) < 0.5, 1.0, rng.uniform(0.98, 0.999, n))
    weight_decay = np.where(rng.random(n) < 0.3, 0.0, rng.uniform(0.0, 0.2, n))
    momentum = rng.choice([0.0, 0.5, 0.9, 0.95], n)
    beta1 = rng.uniform(0.5, 0.95, n)
    beta2 = rng.uniform(0.9, 0.999, n)
    scale = rng.uniform(0.1, 1.0, n)
    return [np.float32(x).astype(np.float64) for x in (lr, gamma, weight_decay, momentum, beta1, beta2, scale)]


def _static(**options):
    return tuple(sorted(options.items()))


CASES = {  # the four registry names, then more options
    "muon": _static(),
    "nmuon": _static(nesterov=True, adjust_lr_fn="original", ns_coefficients="polar_express", conv_mode="batched"),
    "adamuon": _static(algo="adamuon"),
    "nadamuon": _static(
        algo="adamuon", nesterov=True, adjust_lr_fn="rms_to_rms", ns_coefficients="original", scale_eps=True
    ),
    "muon_rms_to_rms": _static(adjust_lr_fn="rms_to_rms", ns_steps=3, safety_factor=1.01, scale_eps=True),
    "adamuon_rsqrt_in": _static(algo="adamuon", adjust_lr_fn="rsqrt_in", conv_mode="batched", normalize_spatial=False),
    "adamuon_none": _static(algo="adamuon", adjust_lr_fn=None, ns_coefficients="polar_express_safer", ns_steps=6),
    "muon_none": _static(adjust_lr_fn=None, ns_coefficients=((3.0, -3.2, 1.2), (2.0, -1.5, 0.5)), ns_steps=4),
}
DEFAULT = ("nadamuon",)
CONFIGS = {"x64": 5, "f32": 2}  # per case; nightly: the other cases and 30 configurations each
# float32: small steps keep W far from the targets, where Newton-Schulz is not fed rounding noise
LR_RANGE = {"x64": (-3, -1.7), "f32": (-5, -4)}


def check(case, precision, n):
    static = CASES[case]
    dtype = torch.float64 if precision == "x64" else torch.float32
    data = _data(sum(map(ord, case)))
    numbers = _draw(np.random.default_rng(300 + len(case)), n, LR_RANGE[precision])
    lr, gamma, weight_decay, momentum, beta1, beta2, scale = numbers
    paths, state = _purelr_run(static)(*data, lr, gamma, weight_decay, momentum, beta1, beta2, scale)
    floor = rounding_floor(RTOL[precision], 2 * TRAJECTORY_UNITS[precision], precision)
    inner = {
        g: state.inner_states[g].inner_state for g in (0, 1)
    }  # multi_transform over groups, each a multi_transform
    worst = 0.0
    for c in range(n):
        expected, torch_state = _torch_run(data, dtype, static, *(x[c] for x in numbers[:6]), EPS, scale[c])
        for name in SHAPES:
            got = np.asarray(paths[name][c, -1])
            err = relative_error(got, expected[name], floor=floor)
            assert err <= RTOL[precision], (case, c, name, err)
            worst = max(worst, err)
            routed = inner[GROUPS[name]].inner_states
            route = "muon" if suitable_for_muon(SHAPES[name]) else "fallback"
            buffers = routed[route].inner_state
            for key, value in torch_state[name].items():
                if key == "step":
                    assert int(buffers.count[c]) == int(value) == STEPS
                    continue
                mine = np.asarray(getattr(buffers, key)[name][c])
                err = relative_error(mine, value, np.max(np.abs(value)), floor)
                assert err <= RTOL[precision], (case, c, name, key, err)
    return worst


@pytest.mark.parametrize(
    "case", [case if case in DEFAULT else pytest.param(case, marks=pytest.mark.nightly) for case in CASES]
)
@pytest.mark.parametrize("precision", ["f32", pytest.param("x64", marks=pytest.mark.nightly)])
def test_matches_timm(case, precision):
    """Default: nadamuon in float32 (the Newton-Schulz bit tests run both modes); nightly: x64, the
    other cases and the 30-configuration sweeps."""
    with jax.enable_x64(precision == "x64"):
        check(case, precision, CONFIGS[precision])


@pytest.mark.nightly
@pytest.mark.parametrize("case", list(CASES))
def test_thirty_configurations_match_timm(case, precision):
    check(case, precision, 30)


def test_routes_as_timm():
    shapes = [(8, 12), (12,), (1, 196, 768), (4, 2048), (96, 3, 4, 4), (64, 1, 3, 3), (3, 40), (16, 16)]
    from timm.optim.muon import _is_suitable_for_muon

    for shape in shapes:
        assert suitable_for_muon(shape) == _is_suitable_for_muon(torch.zeros(shape)), shape


def test_flax_layout_is_torch_layout_transposed():
    rng = np.random.default_rng(0)
    kernel = jnp.asarray(rng.normal(size=(2, 2, 3, 6)))  # flax (h, w, in, out) of torch's (6, 3, 2, 2)
    grads = jnp.asarray(rng.normal(size=kernel.shape))
    flax = timm_muon(lr=0.02, adjust_lr_fn="original", layout="flax", ns_steps=1)  # one step: layout only
    torch_like = timm_muon(lr=0.02, adjust_lr_fn="original", ns_steps=1)
    to_torch = (3, 2, 0, 1)
    u_flax, _ = jax.jit(flax.update)({"kernel": grads}, flax.init({"kernel": kernel}), {"kernel": kernel})
    p = {"kernel": kernel.transpose(to_torch)}
    u_torch, _ = jax.jit(torch_like.update)({"kernel": grads.transpose(to_torch)}, torch_like.init(p), p)
    np.testing.assert_array_equal(np.asarray(u_flax["kernel"]).transpose(to_torch), np.asarray(u_torch["kernel"]))


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(lr=-1.0), "lr"),
        (dict(weight_decay=-0.1), "weight_decay"),
        (dict(momentum=1.0), "momentum"),
        (dict(eps=-1.0), "eps"),
        (dict(conv_mode="spatial"), "conv_mode"),
        (dict(algo="adam"), "algo"),
        (dict(ns_coefficients="cubic"), "ns_coefficients"),
        (dict(ns_coefficients=[(1.0, 2.0)]), "ns_coefficients"),
    ],
)
def test_rejects_what_timm_rejects(kwargs, name):
    with pytest.raises(ValueError, match=name):
        timm_muon(**kwargs)
    with pytest.raises(ValueError):
        opt = Muon([torch.zeros(4, 4, requires_grad=True)], **kwargs)
        opt.param_groups[0]["params"][0].grad = torch.ones(4, 4)
        opt.step()


@pytest.mark.parametrize(
    "shape, coefficients, scale_eps",
    [
        pytest.param((8, 12), "quintic", False, marks=pytest.mark.nightly),  # wide
        pytest.param((12, 5), "polar_express", True, marks=pytest.mark.nightly),  # tall: copied contiguous by timm
        ((4, 6, 3), "quintic", False),  # a batched conv's (spatial, out, in): baddbmm's naive kernel
        ((2, 12, 10), "original", False),  # items past baddbmm's 400 multiply-adds: cpublas per item
    ],
)
def test_newton_schulz_is_timm_s(shape, coefficients, scale_eps, precision):
    """timm's ``zeropower_via_newtonschulz`` bit for bit (oneDNN off) on float64 and float32 inputs,
    with a rank-one part that makes Newton-Schulz's sums cancel (float32 mode: cpublas' fused
    ``beta * C + alpha * (A @ B)`` formed exactly, ``purelr.optim.muon.fma``)."""
    from timm.optim.muon import _COEFFICIENTS, resolve_ns_coefficients, zeropower_via_newtonschulz

    from purelr.optim.timm_muon import _orthogonalized, ns_coefficients_list

    rng = np.random.default_rng(sum(shape))
    steps = 5
    triples = ns_coefficients_list(coefficients, steps)
    run = jax.jit(lambda m: _orthogonalized(m, triples, EPS, 1.0, scale_eps))
    dtype = {"x64": np.float64, "f32": np.float32}[precision]
    for _ in range(8):
        rank_one = np.outer(rng.normal(size=shape[-2]), rng.normal(size=shape[-1]))
        g = (rng.normal(size=shape) + 3 * rng.normal() * rank_one).astype(dtype)
        with torch.backends.mkldnn.flags(enabled=False):
            expected = zeropower_via_newtonschulz(
                torch.tensor(g), steps, resolve_ns_coefficients(coefficients, _COEFFICIENTS), eps=EPS,
                scale_eps=scale_eps,
            ).float().numpy()  # fmt: skip
        got = np.asarray(run(jnp.asarray(g))).astype(np.float32)
        np.testing.assert_array_equal(got, expected)
