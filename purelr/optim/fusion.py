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

The option is opt-in: with ``PURELR_XLA_CPU_FUSION=1`` in the environment, importing
``purelr.optim`` adds it to ``XLA_FLAGS`` (``switch_on``) when no XLA backend has started yet in
the process, since XLA reads the flags when its first backend starts. It is not on by default
because with it XLA:CPU (jax 0.10.2) aborts the process compiling ordinary programs: two scatters
that read the same indices (``a.at[rows].set(u)`` and ``b.at[rows].add(v)`` in one jitted
function) become one multi-output loop whose emitter fails ``Check failed: GetNumDims() ==
other.GetNumResults()`` in ``symbolic_map.cc`` (``tests/optim/test_fusion.py`` re-checks it).
purelr's tests do not abort with it (LBFGS writes its history rows by a select), but a user's
program may, and the option cannot be confined to purelr's update: ``jax.jit``'s
``compiler_options`` set only scalar fields of XLA's ``DebugOptions``, and the backend extra
options are a map (benchmarks/README.md, "With the default flags"). It is left alone when
``XLA_FLAGS`` already names it or a backend is already running (``enabled()`` says what the
process has). XLA switches the option on by its name alone (``...=false`` switches it on too).
"""

from __future__ import annotations

import os
import re
import weakref
from typing import Callable, Mapping

import jax
from jax._src import xla_bridge

OPTION = "xla_cpu_use_multi_output_fusion"
EXTRA_OPTIONS = "--xla_backend_extra_options"
XLA_FLAG = f"{EXTRA_OPTIONS}={OPTION}"
OPT_IN = "PURELR_XLA_CPU_FUSION"  # "1": switch the option on at import
_RECIPES: dict[int, tuple] = {}  # id(result) -> (weakref to result, fn, inputs), while it is alive


def enabled() -> bool:
    """Whether XLA:CPU's multi-output fusion is on for this process: ``XLA_FLAGS`` names the option
    in its backend extra options (XLA reads the name, whatever value follows) and JAX computes on the CPU."""
    return _named(os.environ.get("XLA_FLAGS", "")) and jax.default_backend() == "cpu"


def _named(flags: str) -> bool:
    return re.search(rf"{EXTRA_OPTIONS}=\S*(?<![\w]){OPTION}\b", flags) is not None


def switch_on() -> bool:
    """Adds the option to ``XLA_FLAGS`` (to the backend extra options already there, if any) when
    ``PURELR_XLA_CPU_FUSION=1``, unless the flags already name it or an XLA backend has started (the
    flags are read then). Whether it added it."""
    flags = os.environ.get("XLA_FLAGS", "")
    if os.environ.get(OPT_IN, "0") != "1" or _named(flags) or xla_bridge.backends_are_initialized():
        return False
    os.environ["XLA_FLAGS"] = xla_flags(flags, True)
    return True


def xla_flags(flags: str, on: bool) -> str:
    """``flags`` (an ``XLA_FLAGS`` value) with the option added to its backend extra options
    (``on``) or taken out of them, for a process about to start JAX."""
    out, found = [], False
    for flag in flags.split():
        if flag.startswith(f"{EXTRA_OPTIONS}="):
            options = [o for o in flag.split("=", 1)[1].split(",") if o and o.split("=")[0] != OPTION]
            options += [OPTION] if on and not found else []
            found = True
            flag = f"{EXTRA_OPTIONS}={','.join(options)}" if options else ""
        out.append(flag)
    out += [XLA_FLAG] if on and not found else []
    return " ".join(flag for flag in out if flag)


def environ(on: bool, base: Mapping[str, str] = os.environ) -> dict:
    """``base`` for a process about to start JAX with the option ``on`` or off (``XLA_FLAGS`` with or
    without it, and no opt-in when off, so that importing purelr does not switch it on)."""
    env = dict(base, XLA_FLAGS=xla_flags(base.get("XLA_FLAGS", ""), on))
    env.pop(OPT_IN, None)
    return env


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


switch_on()
