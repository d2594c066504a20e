"""heavyball 3.2.1's ``SOAP`` / ``PSGDKron`` state both ways (``purelr.training.heavyball_state``).

A model of a Conv2d (its kernel moved OIHW -> HWIO, or kept in torch's layout where SOAP merges its
dims), a Linear (transposed) and their biases, trained on a quadratic with a moving target (the
gradient ``curvature * (param - target)``, elementwise alike on both sides). Both ways: k heavyball
updates -> ``from_torch`` -> m purelr updates, and k purelr updates -> ``to_torch`` ->
``load_state_dict`` -> m heavyball updates, each equal to k + m heavyball updates (x64, 1e-10),
random k, m and numbers per configuration; the round trip ``from_torch(to_torch(state)) == state``
bit for bit, and ``to_torch(from_torch(heavyball's state_dict))`` equal to heavyball's own, key for
key. PSGD's normals (heavyball's ``torch.randn_like``, from torch's generator, which no state_dict
keeps) are the same draws on both sides: patched in torch, ``update(..., draws=)`` in purelr.

The shapes keep every first Gram matrix's null space at dimension 1 or less (see
``tests/optim/test_soap.py``): SOAP's first basis is then the same on both sides up to column signs.

Measured (x64, the 35 default and nightly configurations): worst both-ways error 5.8e-13 (SOAP with
``palm``), PSGD 2.8e-15.
"""

import copy
import functools
import warnings

import heavyball
import heavyball.utils
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from purelr import optim
from purelr.training.from_torch import from_torch, kernel_layout
from purelr.training.to_torch import to_torch
from tests.optim import torch_reference as ref
from tests.parity import OPTIMIZER_RTOL, relative_error, trajectory_floor
from tests.training.test_to_torch import assert_same, kept

heavyball.utils.compile_mode = None  # heavyball's eager path: no torch.compile on the CPU

STEPS = 9
SHAPES = {"conv.weight": (4, 2, 1, 2), "conv.bias": (4,), "fc.weight": (3, 4), "fc.bias": (3,)}
RNG = np.random.default_rng(5)
TARGETS = {n: RNG.normal(0, 0.3, (STEPS, *s)) + RNG.normal(0, 1, s) for n, s in SHAPES.items()}
CURVATURE = {n: RNG.uniform(0.2, 2.0, s) for n, s in SHAPES.items()}
NORMALS = {n: RNG.normal(0, 1, (STEPS, *s)) for n, s in SHAPES.items()}


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 4, (1, 2))
        self.fc = torch.nn.Linear(4, 3)


def layouts(moved: bool) -> dict:
    """``{torch name: (flax name, transform)}``: kernels moved to flax's layout, or kept."""
    moving = {"fc.weight", "conv.weight"} if moved else {"fc.weight"}
    return {n: (n.replace("weight", "kernel"), kernel_layout if n in moving else np.asarray) for n in SHAPES}


def template(names: dict):
    out: dict = {}
    for torch_name, (name, transform) in names.items():
        module, leaf = name.split(".")
        out.setdefault(module, {})[leaf] = jnp.zeros(np.shape(transform(np.zeros(SHAPES[torch_name]))))
    return out


def flax_tree(values: dict, names: dict):
    """``{torch name: array}`` as the flax tree (each through its transform)."""
    out: dict = {}
    for torch_name, (name, transform) in names.items():
        module, leaf = name.split(".")
        out.setdefault(module, {})[leaf] = jnp.asarray(transform(values[torch_name]))
    return out


def _soap_numbers(rng):
    return dict(
        lr=float(10 ** rng.uniform(-3, -1.5)),
        betas=(float(rng.uniform(0.5, 0.95)), float(rng.uniform(0.9, 0.999))),
        shampoo_beta=float(rng.uniform(0.8, 0.99)),
        eps=1e-8,
        weight_decay=float(rng.choice([0.0, 1e-3, 0.05])),
    )


def _psgd_numbers(rng):
    return dict(
        lr=float(10 ** rng.uniform(-3, -1.5)),
        beta=float(rng.uniform(0.5, 0.99)),
        weight_decay=float(rng.choice([0.0, 1e-3, 0.05])),
        precond_lr=float(10 ** rng.uniform(-2, -0.3)),
        lower_bound_beta=float(rng.uniform(0.5, 0.99)),
        dampening=float(rng.choice([1e-9, 1e-4])),
    )


# config families: (original, twin, its numbers, flags); each family compiles one step
FAMILIES = {
    "soap": ("SOAP", optim.soap, _soap_numbers, dict(storage_dtype="float64")),
    "soap_unmerged": (
        "SOAP",
        optim.soap,
        _soap_numbers,
        dict(storage_dtype="float64", merge_dims=False, precondition_frequency=1, caution=True),
    ),
    "soap_palm": (
        "SOAP",
        optim.soap,
        _soap_numbers,
        dict(storage_dtype="float64", precondition_frequency=3, palm=True, warmup_steps=3, cautious_weight_decay=True),
    ),
    "psgd_kron": ("PSGDKron", optim.psgd_kron, _psgd_numbers, dict(storage_dtype="float64", q_dtype="float64")),
    "psgd_kron_options": (
        "PSGDKron",
        optim.psgd_kron,
        _psgd_numbers,
        dict(
            storage_dtype="float64",
            q_dtype="float64",
            preconditioner_update_probability=0.5,
            memory_save_mode="one_diag",
            momentum_into_precond_update=False,
            caution=True,
            store_triu_as_line=False,
        ),
    ),
}


def _moved(family: str) -> bool:
    """SOAP's merged conv kernel keeps torch's layout (OIHW's merge is not HWIO's)."""
    return FAMILIES[family][0] == "PSGDKron" or FAMILIES[family][3].get("merge_dims") is False


def _constant(value):
    return lambda count: value


def twin_of(family: str, numbers: dict):
    """The twin with its numbers as schedules (traced numbers inside a compiled step)."""
    _, make, _, flags = FAMILIES[family]
    kwargs = {k: tuple(map(_constant, v)) if isinstance(v, tuple) else _constant(v) for k, v in numbers.items()}
    return make(**kwargs, **flags)


@functools.cache
def compiled_step(family: str):
    def step(params, state, numbers, target, curvature, normal):
        grads = jax.tree.map(lambda p, t, c: c * (p - t), params, target, curvature)
        extra = dict(draws=normal) if FAMILIES[family][0] == "PSGDKron" else {}
        updates, state = twin_of(family, numbers).update(grads, state, params, **extra)
        return optax.apply_updates(params, updates), state

    return jax.jit(step)


def purelr_steps(family, numbers, params, state, names, first, last):
    step = compiled_step(family)
    curvature = flax_tree(CURVATURE, names)
    for k in range(first, last):
        target = flax_tree({n: v[k] for n, v in TARGETS.items()}, names)
        normal = flax_tree({n: v[k] for n, v in NORMALS.items()}, names)
        params, state = step(params, state, numbers, target, curvature, normal)
    return params, state


def heavyball_steps(model, optimizer, first, last):
    params = dict(model.named_parameters())
    pending: list = []
    with ref.given_normals(pending, NORMALS), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # heavyball warns once that the lr changed between steps
        for k in range(first, last):
            pending[:] = [(n, k) for n in params]
            for n, p in params.items():
                p.grad = torch.tensor(CURVATURE[n]) * (p.detach() - torch.tensor(TARGETS[n][k]))
            optimizer.step()


def original(family: str, model, numbers: dict):
    kind, _, _, flags = FAMILIES[family]
    return getattr(heavyball, kind)(model.parameters(), **numbers, **flags)


def both_ways(family: str, seed: int):
    """``(k, m, heavyball -> purelr error, purelr -> heavyball error)`` against k + m heavyball updates."""
    rng = np.random.default_rng(seed)
    numbers = FAMILIES[family][2](rng)
    k, m = int(rng.integers(1, 6)), int(rng.integers(1, STEPS - 5))
    names = layouts(_moved(family))
    floor = trajectory_floor("x64")
    with ref.torch_dtype(True):
        torch.manual_seed(seed)
        model = Model()
        fresh_model = copy.deepcopy(model.state_dict())
        optimizer = original(family, model, numbers)
        fresh = copy.deepcopy(optimizer.state_dict())
        heavyball_steps(model, optimizer, 0, k)
        at_k = copy.deepcopy((model.state_dict(), optimizer.state_dict()))
        heavyball_steps(model, optimizer, k, k + m)
        final = {n: p.detach().numpy().copy() for n, p in model.named_parameters()}
        expected = flax_tree(final, names)

        twin = twin_of(family, numbers)
        run = from_torch(twin, template(names), *at_k, names=names)
        assert int(run.opt_state.count) == k
        again = to_torch(run.opt_state, run.params, fresh_model, fresh, names=names)
        assert_state_dicts(again.optimizer_state_dict, at_k[1])
        params, _ = purelr_steps(family, numbers, run.params, run.opt_state, names, k, k + m)
        error_in = max(
            relative_error(a, b, floor=floor) for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(expected))
        )

        start = from_torch(twin, template(names), fresh_model, fresh, names=names)
        params, state = purelr_steps(family, numbers, start.params, start.opt_state, names, 0, k)
        exported = to_torch(state, params, fresh_model, fresh, names=names)
        back = from_torch(twin, template(names), exported.model_state_dict, exported.optimizer_state_dict, names=names)
        assert_same(back.params, params)
        assert_same(back.opt_state, kept(state, twin.init(params)))
        model = Model()
        model.load_state_dict(exported.model_state_dict)
        optimizer = original(family, model, numbers)
        optimizer.load_state_dict(exported.optimizer_state_dict)
        heavyball_steps(model, optimizer, k, k + m)
        error_out = max(relative_error(p.detach().numpy(), final[n], floor=floor) for n, p in model.named_parameters())
    return k, m, error_in, error_out


def assert_state_dicts(mine: dict, theirs: dict):
    """``to_torch``'s export of a converted heavyball state equals heavyball's own, key for key."""
    assert mine["heavyball"]["inner_group"] == theirs["heavyball"]["inner_group"]
    for a, b in zip(mine["param_groups"], theirs["param_groups"]):
        assert int(a["step_count"]) == int(b["step_count"])
    assert set(mine["state"]) == set(theirs["state"])
    for index, state_p in theirs["state"].items():
        _same(mine["state"][index], state_p, f"state[{index}]")


def _same(a, b, where: str):
    if isinstance(b, dict):
        assert isinstance(a, dict) and set(a) == set(b), (where, set(a) ^ set(b))
        for key in b:
            _same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(b, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), (where, a, b)
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{i}]")
    elif isinstance(b, torch.Tensor) and "scale_by_psgd_step_4" in where:  # never read: () or (1,) by history
        assert torch.equal(a.ravel(), b.ravel()), where
    elif isinstance(b, torch.Tensor):
        assert isinstance(a, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, (where, a, b)
        assert torch.equal(a, b), where
    else:
        assert a == b, (where, a, b)


DEFAULT = [(family, 0) for family in FAMILIES]
NIGHTLY = [(family, seed) for family in FAMILIES for seed in range(1, 7)]


def _check(family, seed):
    with jax.enable_x64(True):
        k, m, error_in, error_out = both_ways(family, seed=100 * list(FAMILIES).index(family) + seed)
    tolerance = OPTIMIZER_RTOL["x64"]
    assert error_in <= tolerance, f"{family}, k={k}, m={m}: heavyball -> purelr off by {error_in:.3g}"
    assert error_out <= tolerance, f"{family}, k={k}, m={m}: purelr -> heavyball off by {error_out:.3g}"
    return max(error_in, error_out)


@pytest.mark.parametrize("family, seed", DEFAULT)
def test_both_ways_against_heavyball(family, seed):
    _check(family, seed)


@pytest.mark.nightly
@pytest.mark.parametrize("family, seed", NIGHTLY)
def test_more_configurations_both_ways(family, seed):
    _check(family, seed)


def _heavyball_state(make, steps=2):
    with ref.torch_dtype(True):
        torch.manual_seed(0)
        model = Model()
        optimizer = make(model.parameters())
        heavyball_steps(model, optimizer, 0, steps)
        return model.state_dict(), optimizer.state_dict()


F64 = dict(storage_dtype="float64")


def _without_heavyball(sd):
    return {k: v for k, v in sd.items() if k != "heavyball"}


def _exp_avg_resized(sd):
    sd = copy.deepcopy(sd)
    sd["state"][0][0]["scale_by_soap_exp_avg_2"] = torch.zeros(1, 3, 3)
    return sd


@pytest.mark.parametrize(
    "make, twin, moved, edit, needles",
    [
        (
            lambda p: heavyball.AdamW(p, **F64),
            optim.soap(**F64),
            False,
            None,
            ("update_by_adam_exp_avg_0", "SOAPState"),
        ),
        (
            lambda p: heavyball.PSGDKron(p, q_dtype="float64", **F64),
            optim.soap(**F64),
            False,
            None,
            ("'exp_avg_exp_avg_6', which the SOAPState twin does not keep", "another heavyball optimizer"),
        ),
        (lambda p: heavyball.SOAP(p, **F64), optim.psgd_kron(), False, None, ("'scale_by_soap_GG_3'", "PSGDKronState")),
        (
            lambda p: torch.optim.Adam(p),
            optim.soap(**F64),
            False,
            None,
            ("'conv.bias' is not heavyball's", "'exp_avg'"),
        ),
        (
            lambda p: heavyball.SOAP(p, merge_dims=False, **F64),
            optim.soap(**F64),
            False,
            None,
            ("'conv.weight', 'scale_by_soap_GG_3': 4 factors", "keeps 2"),
        ),
        (
            lambda p: heavyball.SOAP(p, **F64),
            optim.soap(**F64),
            True,
            None,
            ("view (4, 4) of torch's (4, 2, 1, 2) and the twin's (1, 16)", "merge_dims=False"),
        ),
        (
            lambda p: heavyball.SOAP(p, **F64),
            optim.soap(**F64),
            False,
            _exp_avg_resized,
            ("'conv.weight', 'scale_by_soap_exp_avg_2': shape (3, 3) does not hold torch's param (4, 2, 1, 2)",),
        ),
        (
            lambda p: heavyball.SOAP(p, **F64),
            optim.soap(**F64),
            False,
            _without_heavyball,
            ("no ['heavyball']['inner_group']['cumulative_prob']",),
        ),
    ],
)
def test_bad_input(make, twin, moved, edit, needles):
    """Another optimizer's state (heavyball's or torch's), other flags, a layout that moves entries
    within a merged dimension, mismatched shapes, a state_dict without heavyball's entry."""
    model_sd, sd = _heavyball_state(make)
    names = layouts(moved)
    with jax.enable_x64(True), pytest.raises(ValueError) as raised:
        from_torch(twin, template(names), model_sd, edit(sd) if edit else sd, names=names)
    for needle in needles:
        assert needle in str(raised.value), (needle, str(raised.value))


def test_export_refuses_a_factor_not_triangular():
    twin = optim.psgd_kron(storage_dtype="float64", q_dtype="float64")
    names = layouts(True)
    with jax.enable_x64(True):
        params = template(names)
        state = twin.init(params)
        q = state.Q["fc"]["kernel"]
        state = state._replace(
            count=jnp.asarray(1, jnp.int32),
            Q={**state.Q, "fc": {**state.Q["fc"], "kernel": (q[0].at[1, 0].set(1.0), q[1])}},
        )
        torch.manual_seed(0)
        model = Model().double()
        fresh = heavyball.PSGDKron(model.parameters(), q_dtype="float64", **F64).state_dict()
        with pytest.raises(ValueError, match="flax 'fc.kernel' Q\\[0\\]: not upper triangular"):
            to_torch(state, params, model.state_dict(), fresh, names=names)


def test_two_param_groups():
    """Two heavyball param groups (other numbers and flags each) as an ``optax.multi_transform`` of
    two twins: ``from_torch`` fills each twin from its group, ``to_torch`` gives back heavyball's
    state_dict key for key."""
    numbers = [dict(lr=0.01, betas=(0.8, 0.95)), dict(lr=0.02, betas=(0.9, 0.99), precondition_1d=True)]
    names = layouts(True)
    labels = {"conv": {"kernel": "conv", "bias": "conv"}, "fc": {"kernel": "fc", "bias": "fc"}}

    def make(parameters):
        parameters = list(parameters)
        conv, fc = parameters[:2], parameters[2:]
        groups = [dict(numbers[0], params=conv, merge_dims=False), dict(numbers[1], params=fc)]
        return heavyball.SOAP(groups, **F64)

    model_sd, sd = _heavyball_state(make, steps=3)
    with jax.enable_x64(True):
        twin = optax.multi_transform(
            {"conv": optim.soap(**numbers[0], merge_dims=False, **F64), "fc": optim.soap(**numbers[1], **F64)}, labels
        )
        run = from_torch(twin, template(names), model_sd, sd, names=names, labels=labels)
        states = run.opt_state.inner_states
        assert [float(states[g].inner_state.hyperparams["lr"]) for g in ("conv", "fc")] == [0.01, 0.02]
        assert all(int(states[g].inner_state.count) == 3 for g in ("conv", "fc"))
        exported = to_torch(run.opt_state, run.params, model_sd, sd, names=names, labels=labels)
    assert_state_dicts(exported.optimizer_state_dict, sd)
