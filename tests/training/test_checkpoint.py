"""Resume: for every optimizer in purelr.optim (nightly; a sample of state kinds by default), save params and optimizer state at a random
step, restore in a fresh process, continue; the params equal (``==``) the uninterrupted run's.
Restoring into another optimizer's or model's state is refused."""

import pathlib
import shutil
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purelr import optim
from purelr.training import checkpoint, plateau
from tests.training import resume_run


def test_every_optimizer_is_listed():
    exported = set(optim.__all__) - {
        "clip_grad_norm",
        "clip_grad_value",
        "skip_nonfinite",
        "lbfgs_minimize",
        "adafactor_schedule_lr",
        "schedule_free_eval_params",
        "schedule_free_train_params",
    }  # functions, not optimizers
    assert exported <= set(resume_run.OPTIMIZERS), exported - set(resume_run.OPTIMIZERS)


@pytest.mark.parametrize(
    "names",
    [resume_run.SAMPLE, pytest.param(tuple(resume_run.OPTIMIZERS), marks=pytest.mark.nightly)],
    ids=["sample", "all"],
)
def test_resume_in_a_fresh_process(tmp_path, names):
    """A fresh process restores each checkpoint and writes back what it read (leaves and tree
    structure); this process continues from those leaves, compiling each step once. A sample of
    state kinds by default, every optimizer nightly."""
    first = int(np.random.default_rng(20261202).integers(1, resume_run.STEPS))
    expected, saved = {}, {}
    with jax.enable_x64(True):
        for name in names:
            params = resume_run.start()
            state = resume_run.OPTIMIZERS[name]().init(params)
            params, state = resume_run.steps(name, params, state, 0, first)
            saved[name] = jax.tree.structure((params, state))
            checkpoint.save(tmp_path / name, {"params": params, "opt_state": state})
            final, _ = resume_run.steps(name, params, state, first, resume_run.STEPS)
            expected[name] = [np.asarray(x) for x in jax.tree.leaves(final)]
        subprocess.run([sys.executable, "-m", "tests.training.resume_run", str(tmp_path), *names], check=True)
        restored = np.load(tmp_path / "restored.npz")
        for name, leaves in expected.items():
            assert str(restored[f"{name}/structure"]) == str(saved[name]), name
            dtypes = restored[f"{name}/dtypes"]
            leaves_read = [jnp.asarray(restored[f"{name}/{i}"].view(jnp.dtype(str(d)))) for i, d in enumerate(dtypes)]
            params, state = jax.tree.unflatten(saved[name], leaves_read)
            final, _ = resume_run.steps(name, params, state, first, resume_run.STEPS)
            for i, (leaf, want) in enumerate(zip(jax.tree.leaves(final), leaves, strict=True)):
                assert np.array_equal(np.asarray(leaf), want), f"{name} leaf {i}, saved at {first}"


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
    with pytest.raises(checkpoint.CheckpointError, match="AdamState.*expected.*SGDState"):
        checkpoint.restore(tmp_path / "adam", optim.sgd(momentum=0.9).init(params))
    with pytest.raises(
        ValueError, match=r"leaf 6 is saved with shape/dtype \[\[2, 3\], 'float32'\], expected \[\[3, 3\]"
    ):
        checkpoint.restore(tmp_path / "adam", optim.adam().init({"w": jnp.ones((3, 3))}))


SAVER = """
import sys
from tests.training.test_checkpoint import damageable_tree
from purelr.training import checkpoint
tree = damageable_tree()
print("saving", flush=True)
for i in range(10_000):
    checkpoint.save(f"{sys.argv[1]}/later{i}", tree)
"""


def damageable_tree():
    params = {"w": jnp.linspace(-1.0, 1.0, 256 * 256).reshape(256, 256), "b": jnp.arange(7.0)}
    return {"params": params, "opt_state": optim.adam(amsgrad=True).init(params)}


def assert_same(restored, tree):
    assert jax.tree.structure(restored) == jax.tree.structure(tree)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(tree)))


def overwrite(path, how):
    data = path.read_bytes()
    path.write_bytes(
        {
            "truncate": data[: len(data) // 2],
            "garbage": np.random.default_rng(0).bytes(len(data)),
            "empty": b"",
            "not a record": b'{"leaves": 3}',
        }[how]
    )


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    directory = tmp_path_factory.mktemp("checkpoints") / "complete"
    checkpoint.save(directory, damageable_tree())
    return directory


@pytest.mark.parametrize(
    "damage",
    [
        ("purelr_structure.json", "truncate"),
        ("purelr_structure.json", "garbage"),
        ("purelr_structure.json", "empty"),
        ("purelr_structure.json", "not a record"),
        ("purelr_structure.json", "delete"),
        ("state", "delete"),
        ("state/manifest.ocdbt", "truncate"),
        ("state/manifest.ocdbt", "garbage"),
        ("state/_METADATA", "truncate"),
        ("state/d", "delete"),
        ("", "delete"),
    ],
)
def test_damaged_checkpoint_raises_one_error_naming_the_directory(saved, tmp_path, damage):
    name, how = damage
    directory = tmp_path / "damaged"
    shutil.copytree(saved, directory)
    assert_same(checkpoint.restore(directory, damageable_tree()), damageable_tree())
    target = directory / name
    if how == "delete":
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    else:
        overwrite(target, how)
    with pytest.raises(checkpoint.CheckpointError) as error:
        checkpoint.restore(directory, damageable_tree())
    expected = (
        f"no checkpoint at {directory}: the directory does not exist"
        if name == ""
        else f"checkpoint {directory} is incomplete or damaged: "
    )
    assert expected in str(error.value)


def test_interrupted_saves_leave_earlier_checkpoints_readable(tmp_path):
    """A process saving one checkpoint after another is killed (SIGKILL) at random moments, three
    times; the checkpoint saved before stays readable, and each checkpoint the killed processes
    began restores completely or raises ``CheckpointError``, none half-read."""
    tree = damageable_tree()
    checkpoint.save(tmp_path / "earlier", tree)
    rng = np.random.default_rng()
    outcomes = {"complete": 0, "incomplete": 0}
    for attempt in range(3):
        process = subprocess.Popen(
            [sys.executable, "-c", SAVER, str(tmp_path / f"run{attempt}")],
            stdout=subprocess.PIPE,
            cwd=pathlib.Path(__file__).parents[2],
        )
        assert process.stdout.readline() == b"saving\n"
        time.sleep(rng.uniform(0.5, 2.5))
        process.kill()
        process.wait()
        for directory in sorted((tmp_path / f"run{attempt}").glob("later*")):
            try:
                assert_same(checkpoint.restore(directory, tree), tree)
                outcomes["complete"] += 1
            except checkpoint.CheckpointError as error:
                assert f"checkpoint {directory} is incomplete or damaged" in str(error)
                outcomes["incomplete"] += 1
        assert_same(checkpoint.restore(tmp_path / "earlier", tree), tree)
    assert outcomes["complete"] + outcomes["incomplete"] >= 1, outcomes
