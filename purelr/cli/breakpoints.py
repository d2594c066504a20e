"""Breakpoints of a sampled curve: the steps where its slope changes."""

from __future__ import annotations

import numpy as np


def breakpoints(values, rtol: float = 1e-5) -> list[int]:
    """Indices where a curve starts, changes slope (beyond ``rtol`` of its scale) or ends.

    A jump at ``m`` shows as ``m - 1`` and ``m``; a smooth stretch, which bends at every step, as
    its first and last step and its peaks and troughs.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size < 3:
        return list(range(values.size))
    scale = max(float(np.max(np.abs(values))), np.finfo(np.float64).tiny)
    bends = np.flatnonzero(np.abs(np.diff(values, 2)) > rtol * scale) + 1
    firsts = [int(b) for i, b in enumerate(bends) if i == 0 or b != bends[i - 1] + 1]
    lasts = [int(b) for i, b in enumerate(bends) if i == len(bends) - 1 or b != bends[i + 1] - 1]
    slopes = np.sign(np.where(np.abs(np.diff(values)) > rtol * scale, np.diff(values), 0.0))
    moving = np.flatnonzero(slopes)
    # A peak or trough: the extreme value of the flat stretch between opposite slopes.
    turns = [
        int(a) + 1 + int((np.argmax if slopes[a] > 0 else np.argmin)(values[a + 1 : b + 2]))
        for a, b in zip(moving, moving[1:])
        if slopes[a] != slopes[b]
    ]
    return sorted({0, *firsts, *lasts, *turns, values.size - 1})
