"""Resume: for every optimizer in purelr.optim, save params and optimizer state at a random
step, restore in a fresh process, continue; the params equal (``==``) the uninterrupted run's.
Restoring into another optimizer's or model's state is refused."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purelr.training import checkpoint
from purelr import optim
from purelr.training import plateau
from tests.training import resume_run


def test_every_optimizer_is_listed():
    exported = set(optim.__all__) - {"clip_grad_norm", "clip_grad_value", "skip_nonfinite",
                                     "lbfgs_minimize"}  # functions, not optimizers
    assert exported <= set(resume_run.OPTIMIZERS), exported - set(resume_run.OPTIMIZERS)


def test_resume_in_a_fresh_process(tmp_path):
    first = int(np.random.default_rng().integers(1, resume_run.STEPS))
    expected = {}
    with jax.enable_x64(True):
        for name in resume_run.OPTIMIZERS:
            params = resume_run.start()
            state = resume_run.OPTIMIZERS[name]().init(params)
            params, state = resume_run.steps(name, params, state, 0, first)
            checkpoint.save(tmp_path / name, {"params": params, "opt_state": state})
            final, _ = resume_run.steps(name, params, state, first, resume_run.STEPS)
            expected[name] = [np.asarray(x) for x in jax.tree.leaves(final)]
    subprocess.run([sys.executable, "-m", "tests.training.resume_run", str(tmp_path), str(first)],
                   check=True)
    resumed = np.load(tmp_path / "resumed.npz")
    for name, leaves in expected.items():
        for i, leaf in enumerate(leaves):
            assert np.array_equal(resumed[f"{name}/{i}"], leaf), f"{name} leaf {i}, saved at {first}"


def test_plateau_state_round_trip(tmp_path):
    twin = plateau.reduce_lr_on_plateau([0.1, 0.2], patience=0)
    state = twin.step(twin.step(twin.init(), 1.0), 2.0)
    checkpoint.save(tmp_path / "p", state)
    restored = checkpoint.restore(tmp_path / "p", twin.init())
    assert type(restored) is type(state)
    assert all(jax.tree.leaves(jax.tree.map(lambda a, b: bool((a == b).all()), restored, state)))


def test_refuses_other_optimizer_or_tree(tmp_path):
    params = {"w": jnp.ones((2, 3))}
    checkpoint.save(tmp_path / "adam", optim.adam().init(params))
    with pytest.raises(ValueError, match="AdamState.*expected.*SGDState"):
        checkpoint.restore(tmp_path / "adam", optim.sgd(momentum=0.9).init(params))
    with pytest.raises(ValueError, match=r"leaf 6 is saved with shape/dtype \[\[2, 3\], 'float32'\], expected \[\[3, 3\]"):
        checkpoint.restore(tmp_path / "adam", optim.adam().init({"w": jnp.ones((3, 3))}))
