import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository


def on_host_devices(*module_args: str, devices: int = 8) -> dict:
    """``python -m MODULE ARGS`` in a fresh process over ``devices`` host (CPU) devices
    (``XLA_FLAGS`` must be set before jax loads); the JSON object its last line prints."""
    import json
    import subprocess
    import sys

    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu")
    done = subprocess.run(
        [sys.executable, "-m", *module_args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
