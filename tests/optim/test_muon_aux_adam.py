"""Parity of purelr.optim.muon_aux_adam with the author's Muon (Keller Jordan's ``muon.py``, the pip
package muon-optimizer 0.1.0, module ``muon``): ``SingleDeviceMuonWithAuxAdam`` with two Muon groups
and one Adam group (a 3-D leaf among the Muon ones), and ``zeropower_via_newtonschulz5`` on its own; 100 updates side by side,
the problem of ``test_timm_muon`` (a quadratic with a moving target; its leaves: wide, tall and
conv kernels for Muon, a bias and a 3 x 40 matrix for Adam). The distributed ``Muon`` /
``MuonWithAuxAdam`` step each parameter as the single-device classes (one rank per parameter, then
an all-gather) and need torch.distributed: the single-device forms are the reference.

The nightly sweep (30 configurations) once drifted apart on the 3-D leaf (0.45, configuration 5):
its bfloat16 norm, summed by torch in float32 over 16 vector lanes, lay on a bfloat16 tie that an
exact sum rounded the other way (``purelr.optim.muon._norm``).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from muon import SingleDeviceMuonWithAuxAdam
from muon import zeropower_via_newtonschulz5 as torch_newtonschulz5

from purelr.optim.muon_aux_adam import aux_adam, muon_with_aux_adam, single_device_muon, zeropower_via_newtonschulz5
from tests.optim.test_timm_muon import RTOL, STEPS, _data
from tests.optim.torch_reference import TRAJECTORY_UNITS, trajectory
from tests.parity import relative_error, rounding_floor

# the author's muon_update views a 4-D update as a matrix and never views it back: a conv kernel
# fails at p.add_ (purelr refuses it, test_rejects_...); a 3-D leaf is a batch of matrices
SHAPES = {"w1": (8, 12), "w2": (12, 5), "stack": (2, 6, 10), "b": (12,), "e": (3, 40)}
MUON = {"w1": "m0", "stack": "m0", "w2": "m1"}  # two Muon groups; "b" and "e" in the Adam group
CONFIGS = {"x64": 3, "f32": 2}  # nightly: 30 each
LR_RANGE = {"x64": (-3, -1.7), "f32": (-5, -4)}  # float32: see test_timm_muon


def _draw(rng, n, precision):
    lr = 10 ** rng.uniform(*LR_RANGE[precision], (n, 3))
    weight_decay = np.where(rng.random((n, 3)) < 0.3, 0.0, rng.uniform(0.0, 0.2, (n, 3)))
    momentum = rng.choice([0.0, 0.5, 0.9, 0.95], (n, 2))
    betas = np.stack([rng.uniform(0.5, 0.95, n), rng.uniform(0.9, 0.999, n)], -1)
    eps = 10 ** rng.uniform(-10, -6, n)
    return [np.float32(x).astype(np.float64) for x in (lr, weight_decay, momentum, betas, eps)]


@jax.jit
@jax.vmap
def _purelr_run(lr, weight_decay, momentum, betas, eps, params, curvature, target):
    def const(x):
        return lambda k: x

    groups = {f"m{i}": single_device_muon(const(lr[i]), const(weight_decay[i]), const(momentum[i])) for i in (0, 1)}
    groups["adam"] = aux_adam(const(lr[2]), (const(betas[0]), const(betas[1])), const(eps), const(weight_decay[2]))
    opt = optax.multi_transform(groups, {k: MUON.get(k, "adam") for k in SHAPES})

    def gradient(params, k):
        return {n: curvature[n] * (params[n] - target[n][k]) for n in SHAPES}

    return trajectory(opt, params, gradient, STEPS)


def _torch_run(data, dtype, lr, weight_decay, momentum, betas, eps):
    params, curvature, target = (jax.tree.map(lambda a: torch.tensor(a, dtype=dtype), t) for t in data)
    tparams = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    groups = [
        dict(
            params=[tparams[k] for k in SHAPES if MUON.get(k) == f"m{i}"],
            lr=lr[i],
            weight_decay=weight_decay[i],
            momentum=momentum[i],
            use_muon=True,
        )
        for i in (0, 1)
    ]
    adam = [tparams[k] for k in SHAPES if k not in MUON]
    groups.append(
        dict(params=adam, lr=lr[2], weight_decay=weight_decay[2], betas=tuple(betas), eps=eps, use_muon=False)
    )
    opt = SingleDeviceMuonWithAuxAdam(groups)
    with torch.backends.mkldnn.flags(enabled=False):
        for k in range(STEPS):
            opt.zero_grad()
            sum(torch.sum(curvature[n] * (tparams[n] - target[n][k]) ** 2) / 2 for n in SHAPES).backward()
            opt.step()
    state = {k: {key: v.numpy() for key, v in opt.state[p].items() if torch.is_tensor(v)} for k, p in tparams.items()}
    return {k: p.detach().numpy() for k, p in tparams.items()}, state


def check(precision, n):
    dtype = torch.float64 if precision == "x64" else torch.float32
    data = _data(11, SHAPES)
    numbers = _draw(np.random.default_rng(400), n, precision)
    paths, state = _purelr_run(*numbers, *(jax.tree.map(lambda a: jnp.broadcast_to(a, (n,) + a.shape), data)))
    floor = rounding_floor(RTOL[precision], 2 * TRAJECTORY_UNITS[precision], precision)
    worst = 0.0
    for c in range(n):
        expected, torch_state = _torch_run(data, dtype, *(x[c] for x in numbers))
        for name in SHAPES:
            err = relative_error(np.asarray(paths[name][c, -1]), expected[name], floor=floor)
            assert err <= RTOL[precision], (c, name, err)
            worst = max(worst, err)
            buffers = state.inner_states[MUON.get(name, "adam")].inner_state
            for key, value in torch_state[name].items():
                err = relative_error(np.asarray(getattr(buffers, key)[name][c]), value, np.max(np.abs(value)), floor)
                assert err <= RTOL[precision], (c, name, key, err)
    return worst


@pytest.mark.parametrize("precision", ["f32", pytest.param("x64", marks=pytest.mark.nightly)])
def test_matches_the_author_muon(precision):
    """Default: float32 (x64 nightly, and in the 30-configuration sweeps)."""
    with jax.enable_x64(precision == "x64"):
        check(precision, CONFIGS[precision])


@pytest.mark.nightly
def test_thirty_configurations_match_the_author_muon(precision):
    check(precision, 30)


@pytest.mark.parametrize(
    "shape", [(3, 6, 10)] + [pytest.param(s, marks=pytest.mark.nightly) for s in [(8, 12), (12, 5)]]
)
def test_newtonschulz5_is_the_author_s(shape, precision):
    """Bit for bit on float64 and float32 inputs (default: a batch of wide matrices; the tall
    transposed path is in the trajectories)."""
    g = np.random.default_rng(len(shape)).normal(size=shape).astype({"x64": np.float64, "f32": np.float32}[precision])
    with torch.backends.mkldnn.flags(enabled=False):
        expected = torch_newtonschulz5(torch.tensor(g), 5).float().numpy()
    got = np.asarray(jax.jit(zeropower_via_newtonschulz5)(jnp.asarray(g)))
    np.testing.assert_array_equal(got.astype(np.float32), expected)


def test_muon_with_aux_adam_defaults_and_labels():
    """The three forms of ``use_muon`` route alike (the Muon and Adam states hold the same leaves)."""
    params = {"w": jnp.ones((4, 6)), "b": jnp.ones(6)}
    by_tree = muon_with_aux_adam({"w": True, "b": False})
    by_predicate = muon_with_aux_adam(lambda path, p: p.ndim >= 2)
    by_function = muon_with_aux_adam(lambda params: jax.tree.map(lambda p: p.ndim >= 2, params))
    states = [opt.init(params) for opt in (by_tree, by_predicate, by_function)]
    for state in states:
        muon_buffers = state.inner_states[True].inner_state.momentum_buffer
        adam_buffers = state.inner_states[False].inner_state.exp_avg
        assert jnp.shape(muon_buffers["w"]) == (4, 6) and not hasattr(muon_buffers["b"], "shape")
        assert jnp.shape(adam_buffers["b"]) == (6,) and not hasattr(adam_buffers["w"], "shape")
    state = states[0]
    assert float(state.inner_states[True].inner_state.hyperparams["lr"]) == pytest.approx(0.02)
    assert float(state.inner_states[False].inner_state.hyperparams["lr"]) == pytest.approx(3e-4)
    assert float(state.inner_states[False].inner_state.hyperparams["eps"]) == pytest.approx(1e-10)


def test_rejects_vectors_and_bad_numbers():
    with pytest.raises(ValueError, match="shape"):
        single_device_muon().init({"b": jnp.ones(3)})
    with pytest.raises(ValueError, match="conv"):
        single_device_muon().init({"conv": jnp.ones((6, 3, 2, 2))})
    with pytest.raises(RuntimeError):  # the original cannot step a 4-D param
        p = torch.ones(6, 3, 2, 2, requires_grad=True)
        p.grad = torch.ones(6, 3, 2, 2)
        from muon import SingleDeviceMuon

        SingleDeviceMuon([p]).step()
    with pytest.raises(ValueError, match="lr"):
        single_device_muon(lr=-1.0)
    with pytest.raises(ValueError, match="betas"):
        aux_adam(betas=(1.5, 0.9))


@pytest.mark.parametrize("precision", ["f32", pytest.param("x64", marks=pytest.mark.nightly)])
def test_flax_layout_steps_as_the_original_steps_torch_s_weight(precision):
    """A flax Dense kernel ``(in, out)`` with ``layout='flax'`` steps as the original steps the torch
    Linear weight ``(out, in)`` (its transpose): the same numbers, and the scale ``sqrt(max(1, out /
    in))`` of torch's shape (a flax-layout run read as torch's differed by that scale, 0.48)."""
    with jax.enable_x64(precision == "x64"):
        _check_flax_layout(precision)


def _check_flax_layout(precision):
    rng = np.random.default_rng(3)
    dtype = {"x64": torch.float64, "f32": torch.float32}[precision]
    weight = rng.normal(size=(12, 5))  # torch (out, in): tall, scale sqrt(12 / 5)
    grads = [rng.normal(size=weight.shape) for _ in range(3)]
    p = torch.tensor(weight, dtype=dtype, requires_grad=True)
    opt = SingleDeviceMuonWithAuxAdam([dict(params=[p], lr=0.05, weight_decay=0.1, momentum=0.9, use_muon=True)])
    with torch.backends.mkldnn.flags(enabled=False):
        for g in grads:
            p.grad = torch.tensor(g, dtype=dtype)
            opt.step()
    twin = muon_with_aux_adam({"dense": {"kernel": True}}, lr=0.05, weight_decay=0.1, momentum=0.9, layout="flax")
    params = {"dense": {"kernel": jnp.asarray(weight.T)}}
    state = twin.init(params)
    step = jax.jit(twin.update)
    for g in grads:
        updates, state = step({"dense": {"kernel": jnp.asarray(g.T)}}, state, params)
        params = optax.apply_updates(params, updates)
    got = np.asarray(params["dense"]["kernel"]).T
    assert relative_error(got, p.detach().numpy()) <= RTOL[precision]
    with pytest.raises(ValueError, match="layout"):
        single_device_muon(layout="tf")
