"""Both ways with timm's own layouts: ``timm.optim.Muon`` (Muon / AdaMuon and the AdamW / NAdamW
fallback in shared param groups, told apart by ``state[p]['use_muon']``).

Both ways: k updates in torch, ``from_torch``, m in purelr == k + m in torch, and k in purelr,
``to_torch``, ``load_state_dict``, m in torch (x64, 1e-10), random configurations, k and m; the
round trip ``from_torch(to_torch(state)) == state`` bit for bit for every shape (conv kernels
included), x64 and float32; bad input names what differs.
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
from purelr.training.from_torch import from_torch, model_from_torch
from purelr.training.to_torch import to_torch
from tests.parity import OPTIMIZER_RTOL, relative_error
from tests.training.test_to_torch import assert_same, randomized

DATA_RNG = np.random.default_rng(2)
DATA_X = DATA_RNG.normal(size=(8, 8, 3))
DATA_Y = np.stack([np.sin(DATA_X.sum(-1)), np.cos(DATA_X[..., 0])], -1)


class TorchNet(torch.nn.Module):
    """Its middle weight (8, 8) suits Muon; the others (a side below 4) and the biases go to the fallback."""

    def __init__(self):
        super().__init__()
        self.inp, self.mid, self.out = torch.nn.Linear(3, 8), torch.nn.Linear(8, 8), torch.nn.Linear(8, 2)

    def forward(self, x):
        return self.out(torch.tanh(self.mid(torch.tanh(self.inp(x)))))


class FlaxNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        dense = dict(dtype=jnp.float64, param_dtype=jnp.float64)
        x = jnp.tanh(nn.Dense(8, name="inp", **dense)(x))
        return nn.Dense(2, name="out", **dense)(jnp.tanh(nn.Dense(8, name="mid", **dense)(x)))


def flax_template():
    return FlaxNet().init(jax.random.PRNGKey(0), jnp.zeros((1, 3), jnp.float64))["params"]


def _muon():
    from timm.optim import Muon

    return Muon


def draw_config(rng):
    """``(kwargs, torch param groups' flags)``: timm's Muon in any of its modes."""
    algo = str(rng.choice(["muon", "adamuon"]))
    adjust = [None, "original", "match_rms_adamw", "rms_to_rms"] if algo == "muon" else [None, "rms_to_rms", "rsqrt_in"]
    kwargs = dict(
        lr=float(np.exp(rng.uniform(np.log(5e-3), np.log(5e-2)))),
        weight_decay=float(rng.choice([0.0, 0.01])),
        momentum=float(rng.choice([0.9, 0.95])),
        nesterov=bool(rng.integers(2)),
        ns_coefficients=str(rng.choice(["original", "quintic", "polar_express"])),
        adjust_lr_fn=adjust[int(rng.integers(len(adjust)))],
        fallback_lr_scale=float(rng.choice([0.3, 1.0, 2.5])),
        betas=(0.9, float(rng.choice([0.95, 0.999]))),
        algo=algo,
    )
    return kwargs, bool(rng.integers(2))


def torch_groups(model, split: bool):
    """One shared group, or the Muon weight alone and the rest flagged ``use_fallback``."""
    if not split:
        return model.parameters()
    rest = [p for n, p in model.named_parameters() if n != "mid.weight"]
    return [{"params": [model.mid.weight]}, {"params": rest, "use_fallback": True}]


def param_names(split: bool):
    """The torch optimizer's order of the params (``from_torch``'s ``param_names``)."""
    names = [f"{layer}.{leaf}" for layer in ("inp", "mid", "out") for leaf in ("weight", "bias")]
    return ["mid.weight"] + [n for n in names if n != "mid.weight"] if split else names


def torch_steps(model, optimizer, first, last):
    for k in range(first, last):
        optimizer.zero_grad()
        ((model(torch.tensor(DATA_X[k])) - torch.tensor(DATA_Y[k])) ** 2).mean().backward()
        optimizer.step()


def muon_both_ways(seed):
    """``(k, m, kwargs, torch -> purelr error, purelr -> torch error)``."""
    rng = np.random.default_rng(seed)
    (kwargs, split), k, m = draw_config(rng), int(rng.integers(1, 5)), int(rng.integers(1, 4))
    twin = optim.timm_muon(**kwargs, layout="flax")

    @jax.jit
    def step(params, state, x, y):
        grads = jax.grad(lambda p: ((FlaxNet().apply({"params": p}, x) - y) ** 2).mean())(params)
        updates, state = twin.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    def jax_steps(params, state, first, last):
        for i in range(first, last):
            params, state = step(params, state, DATA_X[i], DATA_Y[i])
        return params, state

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(seed)
        model = TorchNet()
        fresh_model_sd = copy.deepcopy(model.state_dict())
        optimizer = _muon()(torch_groups(model, split), **kwargs)
        fresh_optimizer_sd = copy.deepcopy(optimizer.state_dict())
        torch_steps(model, optimizer, 0, k)
        at_k = copy.deepcopy((model.state_dict(), optimizer.state_dict()))
        torch_steps(model, optimizer, k, k + m)
        final = {n: p.detach().numpy().copy() for n, p in model.state_dict().items()}

        run = from_torch(twin, flax_template(), *at_k, param_names=param_names(split))
        params, _ = jax_steps(run.params, run.opt_state, k, k + m)
        error_in = max(relative_error(p, final[n]) for n, p in torch_named(params).items())

        start = model_from_torch(fresh_model_sd, flax_template())[0]
        params, state = jax_steps(start, twin.init(start), 0, k)
        exported = to_torch(state, params, fresh_model_sd, fresh_optimizer_sd, param_names=param_names(split))
        back = from_torch(
            twin,
            flax_template(),
            exported.model_state_dict,
            exported.optimizer_state_dict,
            param_names=param_names(split),
        )
        assert_same(back.params, params)
        assert_same(back.opt_state, state)
        model = TorchNet()
        optimizer = _muon()(torch_groups(model, split), **kwargs)
        model.load_state_dict(exported.model_state_dict)
        optimizer.load_state_dict(exported.optimizer_state_dict)
        torch_steps(model, optimizer, k, k + m)
        error_out = max(relative_error(p.detach().numpy(), final[n]) for n, p in model.state_dict().items())
    finally:
        torch.set_default_dtype(previous)
    return k, m, kwargs, error_in, error_out


def torch_named(params):
    """flax params under torch's names and layout."""
    named = {}
    for layer, leaves in params.items():
        named[f"{layer}.weight"], named[f"{layer}.bias"] = np.asarray(leaves["kernel"]).T, np.asarray(leaves["bias"])
    return named


MUON_SEEDS = 30
DEFAULT_MUON_SEEDS = 3


@pytest.mark.parametrize(
    "seed", [pytest.param(s, marks=[] if s < DEFAULT_MUON_SEEDS else pytest.mark.nightly) for s in range(MUON_SEEDS)]
)
def test_timm_muon_both_ways(seed):
    with jax.enable_x64(True):
        k, m, kwargs, error_in, error_out = muon_both_ways(seed)
    tolerance = OPTIMIZER_RTOL["x64"]
    assert error_in <= tolerance, f"k={k}, m={m}, {kwargs}: torch -> purelr off by {error_in:.3g}"
    assert error_out <= tolerance, f"k={k}, m={m}, {kwargs}: purelr -> torch off by {error_out:.3g}"


class TorchConvNet(torch.nn.Module):
    """Every shape timm's Muon routes: conv kernels (Muon), a 1x1 conv, a thin matrix, vectors (fallback)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(4, 8, 3)
        self.point = torch.nn.Conv2d(8, 2, 1)
        self.dense = torch.nn.Linear(8, 16)
        self.thin = torch.nn.Linear(16, 1)


def conv_template(dtype):
    shapes = {
        "conv": {"kernel": (3, 3, 4, 8), "bias": (8,)},
        "point": {"kernel": (1, 1, 8, 2), "bias": (2,)},
        "dense": {"kernel": (8, 16), "bias": (16,)},
        "thin": {"kernel": (16, 1), "bias": (1,)},
    }
    return jax.tree.map(lambda s: jnp.zeros(s, dtype), shapes, is_leaf=lambda s: isinstance(s, tuple))


def consistent(state, scale):
    """A drawn timm Muon state whose fallback shares the Muon part's group values, as a run's does
    (one torch group holds both): its lr the Muon lr times ``scale``."""
    muon, fallback = state.inner_states["muon"].inner_state, state.inner_states["fallback"].inner_state
    betas = {"beta1": 0.9, "beta2": 0.95}  # below 1: torch steps on it
    muon = muon._replace(hyperparams={k: jnp.asarray(betas.get(k, v), v.dtype) for k, v in muon.hyperparams.items()})
    shared = {name: muon.hyperparams[name] for name in ("weight_decay", "beta2") if name in muon.hyperparams}
    lr = jnp.asarray(muon.hyperparams["lr"] * scale, muon.hyperparams["lr"].dtype)
    hyperparams = {k: jnp.asarray(betas.get(k, v), v.dtype) for k, v in fallback.hyperparams.items()}
    fallback = fallback._replace(hyperparams={**hyperparams, **shared, "lr": lr})
    inner = {
        "muon": state.inner_states["muon"]._replace(inner_state=muon),
        "fallback": state.inner_states["fallback"]._replace(inner_state=fallback),
    }
    return state._replace(inner_states=inner)


@pytest.mark.parametrize("algo, nesterov", [("muon", False), ("adamuon", True)])
def test_timm_muon_round_trip_every_shape(algo, nesterov, precision):
    """Random state, k updates in: purelr -> torch -> purelr unchanged; torch's Muon takes it and steps."""
    dtype = jnp.float64 if precision == "x64" else jnp.float32
    twin = optim.timm_muon(0.02, algo=algo, nesterov=nesterov, fallback_lr_scale=0.3, layout="flax")
    params = conv_template(dtype)
    state = consistent(randomized(twin.init(params), seed=7), scale=0.3)
    torch.manual_seed(0)
    model = TorchConvNet().to(torch.float64 if precision == "x64" else torch.float32)
    optimizer = _muon()(model.parameters(), lr=0.02, algo=algo, nesterov=nesterov, fallback_lr_scale=0.3)
    exported = to_torch(state, params, model.state_dict(), optimizer.state_dict())
    routed = {i: s["use_muon"] for i, s in exported.optimizer_state_dict["state"].items()}
    assert routed == {0: True, 1: False, 2: False, 3: False, 4: True, 5: False, 6: False, 7: False}
    back = from_torch(twin, params, exported.model_state_dict, exported.optimizer_state_dict)
    assert_same(back.params, params)
    assert_same(back.opt_state, state)
    optimizer.load_state_dict(exported.optimizer_state_dict)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    optimizer.step()
    assert all(int(s.get("step", 4)) == 4 for s in optimizer.state_dict()["state"].values())


def test_timm_muon_bad_input():
    """Another optimizer's state, other routing, other flags, other shapes: errors naming what differs."""
    twin = optim.timm_muon(0.02, layout="flax")
    with jax.enable_x64(True):
        params = flax_template()
        torch.manual_seed(0)
        model = TorchNet().double()

        def trained(optimizer):
            torch_steps(model, optimizer, 0, 1)
            return model.state_dict(), optimizer.state_dict()

        with pytest.raises(ValueError, match="param group holds no 'fallback_lr_scale': not the state of"):
            from_torch(twin, params, *trained(torch.optim.AdamW(model.parameters())))
        everything_fallback = [{"params": list(model.parameters()), "use_fallback": True}]
        with pytest.raises(ValueError, match="'mid.weight' has use_muon=False, but the TimmMuonState twin"):
            from_torch(twin, params, *trained(_muon()(everything_fallback, lr=0.02)))
        with pytest.raises(ValueError, match="has 'exp_avg_sq', which the TimmMuonState twin built here does not keep"):
            from_torch(twin, params, *trained(_muon()(model.parameters(), lr=0.02, algo="adamuon")))
        with pytest.raises(ValueError, match="has nesterov=True; the AdamWLegacyState twin is its original's with"):
            from_torch(twin, params, *trained(_muon()(model.parameters(), lr=0.02, nesterov=True)))
        wide = {**params, "mid": {**params["mid"], "kernel": jnp.zeros((8, 9))}}
        with pytest.raises(ValueError, match=r"torch 'mid.weight' \(8, 8\) -> flax 'mid.kernel'.*does not match"):
            from_torch(twin, wide, *trained(_muon()(model.parameters(), lr=0.02)))


# timm's stateless schedulers: (class name, purelr.schedules.timm twin, keyword draw); the lr at
# update c is f(c) (t_in_epochs=False, step_update) or f(c // epoch_len) (step at each epoch's end)
TIMM_SCHEDULERS = {
    "CosineLRScheduler": ("cosine", lambda r: dict(t_initial=int(r.integers(3, 7)), lr_min=1e-3, warmup_t=2)),
    "StepLRScheduler": ("step", lambda r: dict(decay_t=int(r.integers(1, 3)), decay_rate=0.5, warmup_t=1)),
    "MultiStepLRScheduler": ("multistep", lambda r: dict(decay_t=[1, int(r.integers(2, 5))], decay_rate=0.3)),
    "TanhLRScheduler": ("tanh", lambda r: dict(t_initial=int(r.integers(3, 7)), lr_min=1e-3, warmup_t=1)),
    "PolyLRScheduler": ("poly", lambda r: dict(t_initial=int(r.integers(3, 7)), power=2.0, warmup_t=1)),
}
EPOCH_LEN = 2


def timm_scheduler_run(model, optimizer, scheduler, first, last):
    """Updates ``first .. last - 1`` as timm's ``train.py`` drives its scheduler."""
    from tests.training.test_to_torch import torch_steps as mlp_steps

    for i in range(first, last):
        mlp_steps(model, optimizer, i, i + 1)
        scheduler.step_update(num_updates=i + 1)
        if (i + 1) % EPOCH_LEN == 0:
            scheduler.step((i + 1) // EPOCH_LEN)


@pytest.mark.parametrize("t_in_epochs", [False, True])
@pytest.mark.parametrize("name", list(TIMM_SCHEDULERS))
def test_timm_scheduler_both_ways(name, t_in_epochs):
    """SGD under each timm scheduler, per update or per epoch: k updates in torch, m in purelr (the
    schedule resumed at the count), and k in purelr, ``to_torch(scheduler=..., epoch_len=...)``,
    m in torch; both equal k + m torch updates. A scheduler of another type is refused."""
    import timm.scheduler

    from purelr.schedules import timm as timm_schedules
    from purelr.training.to_torch import check_scheduler_state
    from tests.training.test_from_torch import TorchMLP, template
    from tests.training.test_to_torch import _torch_named, flax_loss, jax_steps

    rng = np.random.default_rng(sorted(TIMM_SCHEDULERS).index(name) * 2 + t_in_epochs)
    twin_name, draw = TIMM_SCHEDULERS[name]
    kwargs, lr, k = draw(rng), float(rng.uniform(0.02, 0.1)), int(rng.integers(1, 6))
    m = int(rng.integers(1, 8 - k))
    kind = getattr(timm.scheduler, name)
    curve = getattr(timm_schedules, twin_name)(lr, **kwargs, t_in_epochs=t_in_epochs)
    first = kwargs.get("warmup_lr_init", 0.0) if kwargs.get("warmup_t") else lr  # the constructor's lr

    def schedule(c):
        t = c // EPOCH_LEN if t_in_epochs else c
        return jnp.where(t == 0, first, curve(t))

    twin = optim.sgd(schedule, momentum=0.9)

    def make(model):
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
        return optimizer, kind(optimizer, **kwargs, t_in_epochs=t_in_epochs)

    @jax.jit
    def step(params, state, x, y):
        updates, state = twin.update(jax.grad(flax_loss)(params, x, y), state, params)
        return optax.apply_updates(params, updates), state

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(0)
        model = TorchMLP()
        fresh_model_sd = copy.deepcopy(model.state_dict())
        optimizer, scheduler = make(model)
        timm_scheduler_run(model, optimizer, scheduler, 0, k)
        at_k = copy.deepcopy((model.state_dict(), optimizer.state_dict()))
        timm_scheduler_run(model, optimizer, scheduler, k, k + m)
        final = {n: p.detach().numpy().copy() for n, p in model.state_dict().items()}
        with jax.enable_x64(True):
            run = from_torch(twin, template(), *at_k, count=k)
            params, _ = jax_steps(step, run.params, run.opt_state, k, k + m)
            error_in = max(relative_error(p, final[n]) for n, p in _torch_named(params).items())
            start = model_from_torch(fresh_model_sd, template())[0]
            params, state = jax_steps(step, start, twin.init(start), 0, k)
            model = TorchMLP()
            optimizer, scheduler = make(model)
            exported = to_torch(state, params, fresh_model_sd, optimizer.state_dict(), scheduler, epoch_len=EPOCH_LEN)
        model = TorchMLP()
        optimizer, scheduler = make(model)
        check_scheduler_state(scheduler, exported.scheduler_state_dict)
        model.load_state_dict(exported.model_state_dict)
        optimizer.load_state_dict(exported.optimizer_state_dict)
        scheduler.load_state_dict(exported.scheduler_state_dict)
        timm_scheduler_run(model, optimizer, scheduler, k, k + m)
        error_out = max(relative_error(p.detach().numpy(), final[n]) for n, p in model.state_dict().items())
        other = next(n for n in TIMM_SCHEDULERS if n != name)
        foreign = getattr(timm.scheduler, other)(optimizer, **TIMM_SCHEDULERS[other][1](rng))
        with pytest.raises(ValueError, match=f"is not a {name}'s state: it lacks"):
            check_scheduler_state(scheduler, foreign.state_dict())
        if t_in_epochs:
            with jax.enable_x64(True), pytest.raises(ValueError, match=f"the {name} steps per epoch"):
                to_torch(state, params, fresh_model_sd, optimizer.state_dict(), make(TorchMLP())[1])
    finally:
        torch.set_default_dtype(previous)
    tolerance = OPTIMIZER_RTOL["x64"]
    assert error_in <= tolerance and error_out <= tolerance, (k, m, kwargs, error_in, error_out)


@pytest.mark.parametrize("seed", range(3))
def test_timm_plateau_both_ways(seed):
    """timm's PlateauLRScheduler, k epochs with metrics in timm, ``plateau_from_timm``, m in purelr
    == a timm run resumed from that checkpoint (which starts the bad-epoch count and the cooldown
    at 0, as timm keeps neither); k in purelr, ``plateau_to_timm``, m in timm == purelr resumed the
    same way; the kept fields round-trip exactly; another scheduler's state is refused."""
    from timm.scheduler import CosineLRScheduler, PlateauLRScheduler

    from purelr.training.plateau import plateau_from_timm, plateau_lr_scheduler, plateau_to_timm

    rng = np.random.default_rng(seed)
    kwargs = dict(decay_rate=0.5, patience_t=int(rng.integers(0, 3)), warmup_t=int(rng.integers(0, 3)), mode="min")
    kwargs.update(cooldown_t=int(rng.integers(0, 2)), warmup_lr_init=1e-3)
    metrics = rng.choice([1.0, 0.9, 1.1], size=12).tolist()
    k, m, lr = int(rng.integers(2, 7)), int(rng.integers(2, 6)), 0.1

    def timm_epochs(scheduler, optimizer, first, last):
        lrs = []
        for epoch in range(first, last):
            scheduler.step(epoch + 1, metrics[epoch])
            lrs.append(optimizer.param_groups[0]["lr"])
        return lrs

    def fresh():
        optimizer = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=lr)
        return optimizer, PlateauLRScheduler(optimizer, **kwargs)

    plateau = plateau_lr_scheduler(lr, **kwargs)

    def purelr_epochs(state, first, last):
        lrs = []
        for epoch in range(first, last):
            state = plateau.step(state, metrics[epoch])
            lrs.append(float(state.lr))
        return state, lrs

    with jax.enable_x64(True):
        optimizer, scheduler = fresh()
        timm_epochs(scheduler, optimizer, 0, k)
        checkpoint, lr_k = copy.deepcopy(scheduler.state_dict()), optimizer.param_groups[0]["lr"]
        optimizer, scheduler = fresh()  # timm resumed: optimizer's lr and the scheduler's state loaded
        optimizer.param_groups[0]["lr"] = lr_k
        scheduler.load_state_dict(checkpoint)
        expected = timm_epochs(scheduler, optimizer, k, k + m)
        state = plateau_from_timm(plateau, checkpoint, lr_k, epoch=k)
        _, got = purelr_epochs(state, k, k + m)
        np.testing.assert_allclose(got, expected, rtol=1e-12)

        state, _ = purelr_epochs(plateau.init(), 0, k)
        exported = plateau_to_timm(state)
        optimizer, scheduler = fresh()
        optimizer.param_groups[0]["lr"] = float(state.lr)
        scheduler.load_state_dict(exported)
        resumed = plateau_from_timm(plateau, exported, state.lr, epoch=int(state.epoch))
        zeroed = state._replace(num_bad_epochs=jnp.zeros_like(state.num_bad_epochs))
        assert_same(resumed, zeroed._replace(cooldown_counter=jnp.zeros_like(state.cooldown_counter)))
        np.testing.assert_allclose(
            timm_epochs(scheduler, optimizer, k, k + m), purelr_epochs(resumed, k, k + m)[1], rtol=1e-12
        )
        cosine = CosineLRScheduler(torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=lr), t_initial=5)
        with pytest.raises(ValueError, match="must be timm's PlateauLRScheduler.state_dict\\(\\).*another type"):
            plateau_from_timm(plateau, cosine.state_dict(), lr, epoch=k)
        with pytest.raises(ValueError, match="is timm's PlateauLRScheduler's, which follows metrics"):
            from_torch(optim.sgd(lr), flax_template(), {}, {"state": {}, "param_groups": []}, checkpoint)
