"""Timing, memory and table helpers shared by the benchmark scripts.

Every script measures purelr and its competitors in one process. ``interleaved`` runs the cases
in turns (one call of each, then again, in a new random order each round), so a burst of load
from other processes on the machine falls on all of them alike, and reports each case's median.
It pauses between calls: torch's OpenMP threads spin for a while after a parallel region, and
without the pause they would slow whichever case runs next.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import os
import platform
import random
import statistics
import sys
import time
from typing import Callable, Mapping, NamedTuple, Sequence


def install_shims():
    """The import shims of tests/conftest.py (``purelr.references.shims``), for machines without
    torchvision: ``timm.scheduler`` loads through a stub ``timm`` package whose ``__path__`` is the
    installed folder (so ``timm/__init__``, which imports torchvision, never runs), and mmcv 1.7's
    ``mmcv.runner.checkpoint`` is lent an empty ``torchvision`` module while it imports."""
    from purelr.references.shims import lend_torchvision, stub_package

    if "timm" not in sys.modules:
        spec = importlib.util.find_spec("timm")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("timm is not installed")
        stub_package("timm", spec.submodule_search_locations[0])
    lend_torchvision()


def parser(description: str) -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(description=description)
    result.add_argument("--quick", action="store_true", help="small sizes, few repeats (smoke test)")
    result.add_argument("--repeats", type=int, default=None, help="timed calls of each case")
    return result


class Timing(NamedTuple):
    median: float  # seconds
    best: float  # the fastest round: the least disturbed by other processes


def interleaved(
    cases: Mapping[str, Callable[[], object]], repeats: int, warmup: int = 2, pause: float = 0.01
) -> dict[str, Timing]:
    """Seconds for one call of each case; each call must finish its work (block/sync)."""
    for fn in cases.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in cases}
    order = list(cases)
    shuffle = random.Random(0).shuffle
    for _ in range(repeats):
        shuffle(order)
        for name in order:
            time.sleep(pause)
            start = time.perf_counter()
            cases[name]()
            times[name].append(time.perf_counter() - start)
    return {name: Timing(statistics.median(ts), min(ts)) for name, ts in times.items()}


def once(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def reset_peak_rss():
    """Resets the kernel's high-water mark of this process's resident memory (Linux)."""
    with contextlib.suppress(OSError):
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")


def peak_rss_mb() -> float:
    """This process's peak resident memory since the last ``reset_peak_rss``, in MB."""
    return _status_mb("VmHWM:")


def rss_mb() -> float:
    """This process's resident memory now, in MB."""
    return _status_mb("VmRSS:")


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    return float("nan")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[_cell(x) for x in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = lambda items: "| " + " | ".join(x.rjust(w) for x, w in zip(items, widths)) + " |"
    rule = "|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|"
    return "\n".join([line(headers), rule, *map(line, cells)])


def _cell(x) -> str:
    if isinstance(x, float):
        if x != x:
            return "-"
        return f"{x:.3g}" if abs(x) < 100 else f"{x:,.0f}"
    return str(x)


def machine(fusion_mode: bool = True) -> str:
    """Date, CPU, core count, load average, library versions and (``fusion_mode``) whether
    XLA:CPU's multi-output fusion is on, for the table's caption."""
    import jax
    import torch

    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    from purelr.optim import fusion

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    mode = f" · XLA:CPU multi-output fusion {'on' if fusion.enabled() else 'off'}" if fusion_mode else ""
    return (
        f"{datetime.datetime.now():%Y-%m-%d %H:%M} · {model}, {os.cpu_count()} cores · "
        f"load average {load} · jax {jax.__version__}, torch {torch.__version__}{mode}"
    )
