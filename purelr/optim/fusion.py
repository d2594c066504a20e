"""Update arithmetic in *sibling form*, for XLA:CPU's multi-output fusion.

torch's fused optimizers update a parameter and its buffers in one pass over memory (AdamW reads
param, grad, ``exp_avg`` and ``exp_avg_sq`` and writes three of them: 7 passes). XLA:CPU emits one
loop per output array (AdamW: 10 passes) unless its multi-output fusion is on, an XLA backend
option set before JAX starts::

    XLA_FLAGS=--xla_backend_extra_options=xla_cpu_use_multi_output_fusion

That pass merges *siblings*, loops that read the same arrays, but not a loop into the loop that
reads its result; and with it on, XLA writes an intermediate that two loops share to memory
instead of recomputing it in each. So when the option is on (``enabled()``) the twins compute
each output of a leaf (the update, each new buffer) separately: one from the inputs themselves,
every other from its own copy of them passed through ``jax.lax.optimization_barrier``. The copies
are the same operations on the same numbers, but XLA's common-subexpression elimination cannot
merge them, so the loops share no intermediate and fuse into one: torch's single pass.
``derived`` lets an elementwise transform earlier in the chain (``clip_grad_norm``'s scaling,
``clip_grad_value``'s clamp) be recomputed the same way from its own inputs instead of being
written out and read back.

Without the option nothing changes: each output is computed once.
"""

from __future__ import annotations

import os
import re
import weakref
from typing import Callable

import jax

OPTION = "xla_cpu_use_multi_output_fusion"
XLA_FLAG = f"--xla_backend_extra_options={OPTION}"
_RECIPES: dict[int, tuple] = {}  # id(result) -> (weakref to result, fn, inputs), while it is alive


def enabled() -> bool:
    """Whether XLA:CPU's multi-output fusion is on for this process: ``XLA_FLAGS`` names the option
    (alone, ``=true`` or ``=1``) and JAX computes on the CPU."""
    match = re.search(rf"\b{OPTION}(?:=(\w*))?", os.environ.get("XLA_FLAGS", ""))
    return match is not None and (match.group(1) or "true").lower() in ("true", "1") and jax.default_backend() == "cpu"


def xla_flags(flags: str, on: bool) -> str:
    """``flags`` (an ``XLA_FLAGS`` value) with ``XLA_FLAG`` added (``on``) or taken out, for a
    process about to start JAX."""
    rest = " ".join(flag for flag in flags.split() if flag != XLA_FLAG)
    return f"{rest} {XLA_FLAG}".strip() if on else rest


def derived(fn: Callable, *inputs):
    """``fn(*inputs)``; under tracing in sibling form also remembered (while the result lives), so
    that ``leaf_update`` can recompute it from barriered inputs instead of sharing (and so
    writing out) the result."""
    result = fn(*inputs)
    if isinstance(result, jax.core.Tracer) and enabled():
        key = id(result)
        _RECIPES[key] = (weakref.ref(result), fn, inputs)
        weakref.finalize(result, _RECIPES.pop, key, None)
    return result


def _recipe(value):
    entry = _RECIPES.get(id(value))
    return entry if entry is not None and entry[0]() is value else None


def _sources(value) -> list:
    """The arrays ``value`` is recomputed from: itself, or the sources of its recipe's inputs
    (Python numbers stay constants)."""
    entry = _recipe(value)
    if entry is None:
        return [value] if isinstance(value, jax.Array) else []
    return [s for x in entry[2] for s in _sources(x)]


def _rebuild(value, fresh: dict):
    """``value`` recomputed from its sources, each replaced by ``fresh[id(source)]`` if there."""
    entry = _recipe(value)
    if entry is None:
        return fresh.get(id(value), value)
    _, fn, inputs = entry
    return fn(*(_rebuild(x, fresh) for x in inputs))


def _barriered(values, tag: int = 0) -> dict:
    """``{id(value): value through one optimization_barrier}``; ``tag`` tells apart barriers
    over the same values, which XLA would otherwise merge into one."""
    unique = list({id(v): v for v in values}.values())
    fresh = jax.lax.optimization_barrier((unique, tag))[0]
    return dict(zip((id(v) for v in unique), fresh))


def leaf_update(fn: Callable, grad, leaves) -> list:
    """``fn(grad, *leaves)`` as a list (``None`` leaves pass through); under tracing with
    ``enabled()``, in sibling form: the first new buffer is computed from the inputs themselves and
    every other output (the update, the other buffers) from its own barriered copy of the inputs
    and of the grad's sources, so that no two outputs share an intermediate array.
    """
    outs = list(fn(grad, *leaves))
    if not (enabled() and isinstance(grad, jax.core.Tracer)):
        return outs
    inputs = _sources(grad) + [x for x in leaves if x is not None]
    anchor = next((k for k in range(1, len(outs)) if outs[k] is not None), None)
    for k, out in enumerate(outs):
        if out is not None and k != anchor:
            fresh = _barriered(inputs, k)
            copies = (None if x is None else fresh[id(x)] for x in leaves)
            outs[k] = fn(_rebuild(grad, fresh), *copies)[k]
    return outs
