"""The twins' sibling form (``purelr.optim.fusion``): with XLA:CPU's multi-output fusion on, each
leaf's update is one loop, and the arithmetic still matches torch.

The option is read when JAX starts, so these tests run fresh interpreters with it set.
"""

import json
import os
import signal
import subprocess
import sys

import pytest

from purelr.optim import fusion
from tests import ROOT

FLAGS = fusion.XLA_FLAG

# the loops over each leaf's full size in the compiled step of a clip and a twin, on two leaves of
# different shapes (so that no loop can serve both), as JSON {chain: [loops, loops]}
COUNT_LOOPS = """
import json, jax, jax.numpy as jnp, optax, purelr.optim
from purelr.optim import fusion
params = {"a": jnp.ones((300, 512)), "b": jnp.ones((256, 700))}
by_norm, by_value = purelr.optim.clip_grad_norm(1.0), purelr.optim.clip_grad_value(0.1)
chains = {"adamw": (by_norm, purelr.optim.adamw(1e-3)),
          "sgd": (by_norm, purelr.optim.sgd(1e-2, momentum=0.9, weight_decay=1e-4)),
          "rmsprop": (by_norm, purelr.optim.rmsprop(1e-2, momentum=0.9, centered=True)),
          "adamw after clip_grad_value": (by_value, purelr.optim.adamw(1e-3))}
counts = {"enabled": fusion.enabled()}
for name, chain in chains.items():
    tx = optax.chain(*chain)
    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state
    text = jax.jit(step, donate_argnums=(0, 1)).lower(params, tx.init(params), params).compile().as_text()
    entry = text[text.index("ENTRY"):].splitlines()
    loops = [line for line in entry if " fusion(" in line]
    counts[name] = [sum(f"f32[{shape}]" in line.split(" fusion(")[0] for line in loops)
                    for shape in ("300,512", "256,700")]
print(json.dumps(counts))
"""


def run(code_or_args, *, multi_output_fusion: bool, **kwargs):
    env = dict(fusion.environ(multi_output_fusion), JAX_PLATFORMS="cpu")
    args = ["-c", code_or_args] if isinstance(code_or_args, str) else code_or_args
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, **kwargs)


@pytest.mark.parametrize(
    "flags, on",
    [
        ("", False),
        (FLAGS, True),
        (f"{FLAGS}=true", True),
        (f"{FLAGS}=1", True),
        (f"{FLAGS}=false", True),  # XLA reads the name only
        (f"--xla_backend_extra_options=a=1,{fusion.OPTION}", True),
        ("--xla_backend_extra_options=not_xla_cpu_use_multi_output_fusion", False),
    ],
)
def test_enabled_reads_xla_flags(monkeypatch, flags, on):
    monkeypatch.setenv("XLA_FLAGS", flags)
    assert fusion.enabled() is on


@pytest.mark.parametrize(
    "flags, on, expected",
    [
        ("", True, FLAGS),
        (FLAGS, True, FLAGS),
        ("--a", True, f"--a {FLAGS}"),
        (FLAGS, False, ""),
        (f"--a {FLAGS} --b", False, "--a --b"),
        ("--a", False, "--a"),
        ("--xla_backend_extra_options=a=1 --b", True, f"--xla_backend_extra_options=a=1,{fusion.OPTION} --b"),
        (f"--xla_backend_extra_options=a=1,{fusion.OPTION}=false", False, "--xla_backend_extra_options=a=1"),
    ],
)
def test_xla_flags_adds_or_takes_out_the_option(flags, on, expected):
    assert fusion.xla_flags(flags, on) == expected


SWITCHED = "import os, jax; from purelr.optim import fusion; print(fusion.enabled(), os.environ.get('XLA_FLAGS', ''))"


@pytest.mark.parametrize(
    "env, code, on",
    [
        ({}, SWITCHED, False),  # the default: XLA's own (the option aborts some compilations)
        ({fusion.OPT_IN: "1"}, SWITCHED, True),  # the opt-in: importing purelr.optim switches it on
        ({fusion.OPT_IN: "1"}, "import jax.numpy as jnp; jnp.ones(1); " + SWITCHED, False),  # a backend already running
    ],
    ids=["default", "opt-in", "backend-running"],
)
def test_the_option_is_switched_on_before_the_backend_starts(env, code, on):
    base = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", fusion.OPT_IN)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=dict(base, JAX_PLATFORMS="cpu", **env)
    )
    assert done.stdout.split() == [str(on)] + ([FLAGS] if on else []), done.stdout + done.stderr[-2000:]


# two scatters at the same rows (sibling loops: they read the same indices), as two buffers written
# at one slot, or L-BFGS's history under vmap
SIBLING_SCATTERS = """
import jax, jax.numpy as jnp
rows, update = jnp.array([0, 1, 2]), jnp.ones((3, 18))
step = jax.jit(lambda a, b: (a.at[rows].set(update), b.at[rows].add(update)))
print(sum(float(x.sum()) for x in step(jnp.zeros((100, 18)), jnp.ones((100, 18)))))
"""


def test_the_option_aborts_xla_on_sibling_scatters():
    """Why the option is opt-in: XLA:CPU (jax 0.10.2) aborts the process compiling an ordinary
    program with it, two scatters at the same indices (``Check failed`` in ``symbolic_map.cc``
    while emitting the fused loop). If this fails, XLA has been fixed: the option may become the
    default again (see benchmarks/README.md, "With the default flags")."""
    without = run(SIBLING_SCATTERS, multi_output_fusion=False)
    assert without.returncode == 0 and without.stdout.split() == ["1908.0"], without.stdout + without.stderr[-2000:]
    with_option = run(SIBLING_SCATTERS, multi_output_fusion=True)
    assert with_option.returncode == -signal.SIGABRT, with_option.stdout + with_option.stderr[-2000:]
    assert "symbolic_map.cc" in with_option.stderr and "Check failed" in with_option.stderr, with_option.stderr[-2000:]


def test_one_loop_per_leaf_with_multi_output_fusion():
    with_option = json.loads(run(COUNT_LOOPS, multi_output_fusion=True, check=True).stdout)
    without = json.loads(run(COUNT_LOOPS, multi_output_fusion=False, check=True).stdout)
    assert with_option.pop("enabled") and not without.pop("enabled")
    assert with_option == {"adamw": [1, 1], "sgd": [1, 1], "rmsprop": [1, 1], "adamw after clip_grad_value": [1, 1]}, (
        with_option
    )
    # without the option: one loop per output array (param and each buffer)
    assert without == {"adamw": [3, 3], "sgd": [2, 2], "rmsprop": [4, 4], "adamw after clip_grad_value": [3, 3]}, (
        without
    )


@pytest.mark.nightly
def test_parity_with_multi_output_fusion():
    """The torch parity sweeps of the elementwise twins, clipping and the MMCV/MMEngine end-to-end
    runs, and torch's LBFGS combinations (which aborted XLA before LBFGS wrote its history by a
    select), in a process with the option on (LBFGS, Adafactor and Muon do not use the sibling form).
    Nightly: it re-runs those files whole (357 s on one worker, a quarter of the default suite's
    wall time); the default suite keeps the loop-count test above."""
    families = ["sgd", "adam", "adamax", "nadam", "radam", "adagrad", "adadelta", "rmsprop", "rprop", "asgd", "clip"]
    files = [f"tests/optim/test_{name}.py" for name in families] + ["tests/recipes/test_end_to_end.py"]
    # torch's LBFGS combinations run vmapped: their history writes must not be sibling scatters
    files += [f"tests/optim/test_torch_suite.py::test_combination_matches_torch[LBFGS-{i}-x64]" for i in (0, 2, 4)]
    result = run(
        ["-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0", *files], multi_output_fusion=True, cwd=ROOT
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
