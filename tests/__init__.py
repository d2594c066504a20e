import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository


def last_json_line(module_args: list, *, devices: int, timeout: float = 600) -> dict:
    """``python -m *module_args`` in a fresh process with ``devices`` host CPU devices (``XLA_FLAGS`` is
    read when jax starts): the last line it prints, as JSON; fails with its stderr if it fails."""
    import json
    import subprocess
    import sys

    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu")
    done = subprocess.run(
        [sys.executable, "-m", *module_args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
