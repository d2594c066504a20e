"""Pictures, CSV files and phase tables of ``purelr.cli.curves.Curves``.

The picture has one panel per quantity that changes (lr, momentum / beta1, weight decay, ...);
the constant ones are listed in the title. The lr axis is logarithmic when the curve spans more
than two decades. A warmup shorter than a tenth of the run gets a panel of its own, zoomed on it.
Phase boundaries come from the schedules' structure (``Curves.phases``); a config whose schedules
do not mark them (DeepSpeed) shows the sampled breakpoints instead (``breakpoints``).
"""

from __future__ import annotations

import csv

import numpy as np

from purelr.cli.breakpoints import breakpoints
from purelr.cli.curves import Curves

ZOOM_BELOW = 0.1
"""A first phase shorter than this fraction of the run is drawn zoomed beside the lr panel."""


def marks(curves: Curves) -> list[int]:
    """The iterations where a phase begins, the first and last included: the schedules' own phase
    boundaries, or where they mark none, the sampled breakpoints of every curve."""
    found = {0, len(curves.steps) - 1}
    if curves.phases:
        found.update(curves.phases)
    else:
        for values in curves.values.values():
            found.update(breakpoints(values))
    return sorted(found)


def name(curves: Curves, group: str) -> str:
    """The group's readable name (what it holds): ``all params`` for a config's only group, else
    its label."""
    single = len({g for g, _ in curves.values}) == 1
    return (curves.names or {}).get(group, "all params" if single else group)


def changing(curves: Curves) -> list[str]:
    """The quantities some group's curve changes, lr first."""
    quantities = dict.fromkeys(q for _, q in curves.values)
    return [q for q in quantities if any(np.ptp(v) > 0 for (_, qq), v in curves.values.items() if qq == q)]


def constants(curves: Curves) -> str:
    """``momentum 0.9, weight_decay 0.0001 (norm (no decay): 0)``: the quantities no curve changes."""
    moving = changing(curves)
    found: dict = {}
    for (group, quantity), values in curves.values.items():
        if quantity not in moving:
            found.setdefault(quantity, {})[group] = float(values[0])
    for (group, quantity), value in (curves.constants or {}).items():
        found.setdefault(quantity, {})[group] = value
    parts = []
    for quantity, by_group in found.items():
        common = max(set(by_group.values()), key=list(by_group.values()).count)
        others = [f"{name(curves, g)}: {v:.6g}" for g, v in by_group.items() if v != common]
        parts.append(f"{quantity} {common:.6g}" + (f" ({'; '.join(others)})" if others else ""))
    return ", ".join(parts)


def table(curves: Curves, columns: int = 6) -> str:
    """A text table of every changing curve (at most ``columns`` of them, evenly spread) at the
    start, at each phase boundary (the iteration before it and the one it begins at) and at the
    end, with what begins there."""
    every = {
        f"{name(curves, group)}/{quantity}": values
        for (group, quantity), values in curves.values.items()
        if quantity in changing(curves) or quantity == "lr"
    }
    picked = sorted({round(i) for i in np.linspace(0, len(every) - 1, min(columns, len(every)))})
    shown = {c: every[c] for i, c in enumerate(every) if i in picked}
    width = max([12] + [len(c) for c in shown])
    lines = [f"({len(shown)} of {len(every)} curves shown)"] if len(shown) < len(every) else []
    lines.append(f"{'iteration':>10} {'epoch':>6} " + " ".join(f"{c:>{width}}" for c in shown) + "  phase")
    last = len(curves.steps) - 1
    phases = curves.phases or {step: "breakpoint" for step in marks(curves)[1:-1]}
    steps = sorted({0, last} | {s for step in phases for s in (step - 1, step) if 0 <= s <= last})
    for step in steps:
        epoch = str(step // curves.epoch_len) if curves.epoch_len else "-"
        cells = " ".join(f"{values[step]:>{width}.6g}" for values in shown.values())
        what = phases.get(step, "start" if step == 0 else "end" if step == last else "")
        lines.append(f"{step:>10} {epoch:>6} {cells}  {what}".rstrip())
    return "\n".join(lines)


def _precise(column: np.ndarray) -> list[str]:
    """The values as the schedule computed them: float32 ones printed shortest for float32
    (``1e-05``), others for float64."""
    single = column.astype(np.float32)
    if np.array_equal(single.astype(np.float64), column):
        return [str(v) for v in single]
    return [repr(float(v)) for v in column]


def write_csv(curves: Curves, path) -> None:
    """One row per iteration: ``step, epoch`` then ``group/quantity`` columns, each at the
    precision of the schedule that made it."""
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["step", "epoch"] + [f"{g}/{q}" for g, q in curves.values])
        epochs = curves.steps // curves.epoch_len if curves.epoch_len else np.full(curves.steps.shape, "")
        columns = [_precise(np.asarray(v, dtype=np.float64)) for v in curves.values.values()]
        for i, step in enumerate(curves.steps):
            writer.writerow([int(step), epochs[i]] + [c[i] for c in columns])


def _log_scale(curves: Curves, quantity: str, log: bool | None) -> bool:
    if log is not None:
        return log and quantity == "lr"
    values = np.concatenate([v for (_, q), v in curves.values.items() if q == quantity])
    return quantity == "lr" and bool(np.all(values > 0)) and float(values.max() / values.min()) > 100


def draw(
    curves: Curves,
    path,
    *,
    by: str = "iter",
    log: bool | None = None,
    title: str = "",
    overlay: Curves | None = None,
) -> None:
    """A PNG with a panel per changing quantity (a zoomed warmup panel beside the lr), phase
    boundaries marked, epochs on the top axis, constants in the title; ``overlay``'s curves (a
    reference) dashed over them. ``log``: None picks the lr axis (log beyond two decades)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    quantities = changing(curves) or ["lr"]
    epoch_len = curves.epoch_len if by == "epoch" and curves.epoch_len else None
    scale = epoch_len or 1
    x = curves.steps / scale
    total = len(curves.steps)
    phase_steps = marks(curves)[1:-1]
    warmup = phase_steps[0] if curves.phases and phase_steps and phase_steps[0] < ZOOM_BELOW * total else None
    groups = list(dict.fromkeys(g for g, _ in curves.values))
    colors = plt.get_cmap("viridis" if len(groups) > 10 else "tab10")(
        np.linspace(0, 0.9, len(groups)) if len(groups) > 10 else np.arange(len(groups))
    )
    color = dict(zip(groups, colors))
    figure = plt.figure(figsize=(12, 1.2 + 3.2 * len(quantities)))
    grid = figure.add_gridspec(len(quantities), 2 if warmup else 1, width_ratios=[1, 3] if warmup else [1])
    axes: list = []
    phases = curves.phases or {}
    for row, quantity in enumerate(quantities):
        ax = figure.add_subplot(grid[row, 1 if warmup and row == 0 else 0 :], sharex=axes[0] if axes else None)
        axes.append(ax)
        _panel(ax, curves, overlay, quantity, x, color, slice(None))
        for step in phase_steps:
            ax.axvline(step / scale, color="0.7", linestyle="--", linewidth=0.8)
        if _log_scale(curves, quantity, log):
            ax.set_yscale("log")
        if row == 0:
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    if warmup:
        zoom = figure.add_subplot(grid[0, 0])
        end = min(total, 2 * warmup + 1)
        _panel(zoom, curves, overlay, "lr", x, color, slice(0, end))
        zoom.axvline(warmup / scale, color="0.7", linestyle="--", linewidth=0.8)
        zoom.set_title(f"first {end} iterations: {phases[warmup]} at {warmup}", fontsize=8)
    for step in phase_steps if phases and len(phase_steps) <= 8 else []:
        axes[0].annotate(
            phases[step], (step / scale, 1.0), xycoords=("data", "axes fraction"), rotation=90,
            fontsize=6.5, color="0.35", ha="right", va="top",
        )  # fmt: skip
    if curves.epoch_len and not epoch_len:
        per = curves.epoch_len
        axes[0].secondary_xaxis("top", functions=(lambda s: s / per, lambda e: e * per)).set_xlabel("epoch")
    axes[-1].set_xlabel("epoch" if epoch_len else "iteration")
    fixed = constants(curves)
    heading = "\n".join(part for part in (title, f"constant: {fixed}" if fixed else "") if part)
    if heading:
        figure.suptitle(heading, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _panel(ax, curves: Curves, overlay, quantity: str, x, color: dict, where: slice) -> None:
    for (group, q), values in curves.values.items():
        if q == quantity:
            ax.plot(x[where], values[where], label=name(curves, group), color=color[group], linewidth=1.4)
            if overlay is not None:
                reference = overlay.values[(group, q)][where]
                ax.plot(x[where], reference, linestyle="--", color="black", linewidth=0.9)
    ax.set_ylabel(quantity.replace("_", " "))
    ax.grid(alpha=0.3)
