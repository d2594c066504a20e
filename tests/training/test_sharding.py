"""``purelr.training.sharding`` on 8 host devices (a fresh process: ``XLA_FLAGS`` is read when jax
starts, ``tests/training/sharded_state_run.py``): for every exported optimizer (``resume_run.OPTIMIZERS``,
which ``test_checkpoint`` holds to ``purelr.optim.__all__``) and a two-group ``multi_transform``,
params split by ``split_last_divisible``, state by ``state_shardings`` (no spec written by hand),
three jitted updates in x64. Every state leaf shaped like a param carries that param's sharding
(recognised by its shape), every scalar is replicated, and Adafactor's row statistics of the
param split along its rows stay split. Sharded and one-device params differ only by the order of
the sums (norms, trust ratios, L-BFGS's dot products): measured <= 8.3e-13 relative (L-BFGS; 0 to
1.5e-16 for the others), bound ``OPTIMIZER_RTOL`` (1e-10)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh

from purelr import optim
from purelr.training import sharding
from tests import last_json_line
from tests.parity import OPTIMIZER_RTOL
from tests.training import resume_run

FACTORED = ("adafactor", "timm_adafactor", "hf_adafactor", "adafactor_big_vision")


# state leaves shaped like no param, replicated: L-BFGS's flat history, a PRNG key (torchao's
# stochastic rounding, AdaHessian's Rademacher draws), per-axis preconditioner matrices (SOAP's GG
# and Q, Kron's and PSGD Kron's Q factors and bounds), Prodigy's flat slice_p copies of the params
REPLICATED_OTHERS = {
    "lbfgs": 5,
    "adamw_torchao": 1,
    "adahessian": 1,
    "soap": 14,
    "kron": 9,
    "psgd_kron": 9,
    "prodigy": 10,
}


@pytest.fixture(scope="module")
def sharded_run():
    return last_json_line(["tests.training.sharded_state_run"], devices=8)


@pytest.mark.nightly
def test_every_optimizer_steps_sharded():
    found = last_json_line(["tests.training.sharded_state_run", "--all"], devices=8)
    test_every_state_leaf_is_sharded_as_its_param(found)
    test_sharded_updates_equal_one_device(found)


def test_every_state_leaf_is_sharded_as_its_param(sharded_run):
    assert sharded_run["devices"] == 8 and sharded_run["split_params"] == 4
    found = sharded_run["optimizers"]
    assert set(found) == set(resume_run.OPTIMIZERS) | {"groups"}
    for name, counts in found.items():
        if name == "lbfgs":  # its history is flat vectors over all params: replicated
            assert counts["like_param"] == 0 and counts["other"] == 5 and counts["other_split"] == 0, counts
        else:
            assert counts["like_param"] >= 1 and counts["scalar"] >= 1, (name, counts)
        if name in FACTORED:
            assert counts["other_split"] >= 3, (name, counts)
        else:
            assert counts["other"] == REPLICATED_OTHERS.get(name, 0), (name, counts)
    assert found["adamw"]["like_param"] == 8 and found["groups"]["like_param"] == 7  # 2 x 4; 4 + 3 (None elsewhere)


def test_sharded_updates_equal_one_device(sharded_run):
    errors = {name: c["params"] for name, c in sharded_run["optimizers"].items() if "params" in c}
    assert len(errors) == 5 and max(errors.values()) <= OPTIMIZER_RTOL["x64"], errors
    print(errors)


def test_reduced_buffers_keep_the_kept_axes():
    mesh = Mesh(np.asarray(jax.devices()[:1]).reshape(1, 1), ("data", "model"))
    params = {"w": jnp.ones((4, 6)), "b": jnp.ones((6,))}
    shardings = {
        "w": jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data", "model")),
        "b": jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("model")),
    }
    found = sharding.state_shardings(optim.timm_adafactor(min_dim_size_to_factor=2), params, shardings)
    specs = [s.spec for s in jax.tree.leaves(found) if s.spec]
    assert jax.sharding.PartitionSpec("data") in specs and jax.sharding.PartitionSpec("model") in specs, specs
    groups = optax.multi_transform({"a": optim.adamw(), "b": optim.sgd(0.1, momentum=0.9)}, {"w": "a", "b": "b"})
    found = sharding.state_shardings(groups, params, shardings)
    assert jax.tree.structure(found) == jax.tree.structure(jax.eval_shape(groups.init, params))


def test_bad_inputs_are_named():
    mesh = Mesh(np.asarray(jax.devices()[:1]), ("data",))
    params = {"w": jnp.ones((4, 6))}
    with pytest.raises(ValueError, match="param_shardings"):
        sharding.state_shardings(optim.adamw(), params, {"v": sharding.replicated(params, mesh)["w"]})
    with pytest.raises(ValueError, match="axes='model'"):
        sharding.split_last_divisible(params, mesh, "model")
