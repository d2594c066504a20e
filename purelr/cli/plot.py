"""Pictures, CSV files and breakpoint tables of ``purelr.cli.curves.Curves``."""

from __future__ import annotations

import csv

import numpy as np

from purelr.cli.breakpoints import breakpoints
from purelr.cli.curves import Curves


def marks(curves: Curves) -> list[int]:
    """The iterations where some group's lr or momentum changes slope or jumps, ends included."""
    found = set()
    for values in curves.values.values():
        found.update(breakpoints(values))
    return sorted(found)


def table(curves: Curves, rows: int = 32) -> str:
    """A text table of the lr curves, and of the momentum curves that change, at each breakpoint
    (at most ``rows`` of them, evenly spread, ends kept)."""
    shown = {
        f"{group}/{quantity}": values
        for (group, quantity), values in curves.values.items()
        if quantity == "lr" or np.ptp(values) > 0
    }
    width = max([12] + [len(c) for c in shown])
    lines = [f"{'iteration':>10} {'epoch':>6} " + " ".join(f"{c:>{width}}" for c in shown)]
    steps = marks(curves)
    if len(steps) > rows:
        every = -(-len(steps) // (rows - 2))
        lines.append(f"({len(steps)} breakpoints: every {every}th shown)")
        steps = sorted({steps[0], *steps[::every], steps[-1]})
    for step in steps:
        epoch = str(step // curves.epoch_len) if curves.epoch_len else "-"
        cells = " ".join(f"{values[step]:>{width}.6g}" for values in shown.values())
        lines.append(f"{step:>10} {epoch:>6} {cells}")
    return "\n".join(lines)


def write_csv(curves: Curves, path) -> None:
    """One row per iteration: ``step, epoch`` then ``group/quantity`` columns, full precision."""
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["step", "epoch"] + [f"{g}/{q}" for g, q in curves.values])
        epochs = curves.steps // curves.epoch_len if curves.epoch_len else np.full(curves.steps.shape, "")
        columns = [np.asarray(v, dtype=np.float64) for v in curves.values.values()]
        for i, step in enumerate(curves.steps):
            writer.writerow([int(step), epochs[i]] + [repr(float(c[i])) for c in columns])


def draw(
    curves: Curves, path, *, by: str = "iter", log: bool = False, title: str = "", overlay: Curves | None = None
) -> None:
    """A PNG with an lr panel (and a momentum panel), breakpoints marked, epochs on the top axis;
    ``overlay``'s curves (a reference) dashed over them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    quantities = list(dict.fromkeys(q for _, q in curves.values))
    figure, axes = plt.subplots(len(quantities), 1, sharex=True, squeeze=False, figsize=(10, 3.4 * len(quantities)))
    by_epoch = by == "epoch" and curves.epoch_len
    scale = curves.epoch_len if by == "epoch" and curves.epoch_len else 1
    x = curves.steps / scale
    for ax, quantity in zip(axes[:, 0], quantities):
        for (group, q), values in curves.values.items():
            if q == quantity:
                ax.plot(x, values, label=group, linewidth=1.4)
                if overlay is not None:
                    ax.plot(x, overlay.values[(group, q)], linestyle="--", color="black", linewidth=0.9)
        for step in marks(curves)[1:-1]:
            ax.axvline(step / scale, color="0.75", linestyle="--", linewidth=0.8)
        ax.set_ylabel(quantity)
        if log and quantity == "lr":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    if curves.epoch_len and not by_epoch:
        top = axes[0, 0].secondary_xaxis(
            "top", functions=(lambda s: s / curves.epoch_len, lambda e: e * curves.epoch_len)
        )
        top.set_xlabel("epoch")
    axes[-1, 0].set_xlabel("epoch" if by_epoch else "iteration")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
