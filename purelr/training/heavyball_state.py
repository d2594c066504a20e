"""heavyball 3.2.1's optimizer state (``heavyball.SOAP``, ``heavyball.PSGDKron``) both ways: the
twins' entries of ``torch_state.LAYOUTS`` carry ``Views``, read here by ``from_torch`` and
``to_torch``.

heavyball keeps per param ``state[p][0]``, the state of its one view of the param (``split``, which
makes more views, is not twinned), under keys named after its chained functions and their place in
the chain (``scale_by_soap_GG_3``); most buffers carry a leading batch dimension of 1. The count is
each param group's ``step_count`` (also ``state[first param][0]['step']``); the running sum of
preconditioner-update probabilities is ``state_dict()['heavyball']['inner_group']``'s
``cumulative_prob``, a Python float. PSGD keeps a triangular factor as its upper triangle in a
line, ``((1, n, n), line)``, and a diagonal one as ``(None, diagonal)``, where the group's
``store_triu_as_line`` (its default).

Buffers sit in heavyball's view of the param: SOAP merges dims (``merge_dims``), PSGD drops dims
of size 1. An elementwise buffer is reshaped to the torch param, moved by its layout and reshaped
to the twin's view. Per-dimension factors follow the view's dimensions through the layout: a layout
that moves entries within a merged dimension (a conv kernel's OIHW -> HWIO under ``merge_dims``) has
no such map and is refused; ``merge_dims=False`` or a ``names=`` transform keeping torch's layout
converts.

PSGD's normals come from torch's generator, which no ``state_dict`` keeps (nor does ``to_torch``
export the twin's ``key``): a trajectory continues alike on the other side where both are given
the same normals (``update(..., draws=)``).
"""

from __future__ import annotations

import inspect
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

from purelr.optim.soap import _layout, soap
from purelr.training import torch_state
from purelr.training.from_torch import _convert, _count, _hyperparams, _numpy

_SOAP_FLAGS = ("max_precond_dim", "merge_dims", "precondition_1d")
_SOAP_DEFAULTS = {name: inspect.signature(soap).parameters[name].default for name in _SOAP_FLAGS}
_KEPT = ("step", "is_initialized")  # heavyball keys of every view state that the twin keeps elsewhere


def _views(state) -> torch_state.Views:
    views = torch_state.layout(state).views
    if views is None:
        raise ValueError(f"the {type(state).__name__} twin's original is not heavyball's")
    return views


def view(views: torch_state.Views, shape, group: Mapping) -> tuple:
    """The shape heavyball preconditions for a param of ``shape`` in ``group``."""
    if views.view == "squeezed":
        return tuple(s for s in shape if s != 1)
    flags = [group.get(name, _SOAP_DEFAULTS[name]) for name in _SOAP_FLAGS]
    return tuple(_layout(jax.ShapeDtypeStruct(tuple(shape), jnp.float32), *flags)[0])


def _view_axes(target, torch_view, flax_view, what: str) -> tuple[int, ...]:
    """The axes ``a`` with ``flax view == np.transpose(torch view, a)`` of the same entries."""

    def moved(index):
        return np.reshape(target.transform(np.reshape(index, target.shape)), flax_view)

    axes = torch_state.transpose_axes(moved, torch_view)
    if axes is None:
        raise ValueError(
            f"{what}: heavyball's view {tuple(torch_view)} of torch's {tuple(target.shape)} and the twin's "
            f"{tuple(flax_view)} are not a transpose of each other (the layout moves entries within a merged "
            f"dimension): the preconditioners do not map; use merge_dims=False or a names= transform keeping "
            f"torch's layout"
        )
    return axes


def _name(path) -> str:
    return ".".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path)


def _per_leaf(tree):
    """``{dotted name: leaf}`` where a leaf is an array or a tuple of factors."""
    found = jax.tree_util.tree_leaves_with_path(
        tree, is_leaf=lambda x: isinstance(x, tuple) and not isinstance(x, optax.MaskedNode)
    )
    return {_name(path): leaf for path, leaf in found if not isinstance(leaf, optax.MaskedNode)}


def _replace_leaves(tree, values: dict):
    def leaf(path, old):
        return values.get(_name(path), old)

    return jax.tree_util.tree_map_with_path(
        leaf, tree, is_leaf=lambda x: isinstance(x, tuple) and not isinstance(x, optax.MaskedNode)
    )


def _view_state(torch_name: str, state_p, views: torch_state.Views, kind: str) -> Mapping:
    """heavyball's ``state[p][0]``, its keys checked."""
    if not isinstance(state_p, Mapping) or set(state_p) != {0} or not isinstance(state_p[0], Mapping):
        keys = list(state_p)[:5] if isinstance(state_p, Mapping) else type(state_p).__name__
        raise ValueError(
            f"torch state of {torch_name!r} is not heavyball's (one view, state[p][0]) but has {keys}: "
            f"another optimizer, or heavyball's split=True; the {kind} twin reads heavyball's"
        )
    known = set(views.keys.values()) | set(views.extra) | set(_KEPT)
    unknown = sorted(set(state_p[0]) - known)
    if unknown:
        raise ValueError(
            f"heavyball state of {torch_name!r} has {unknown[0]!r}, which the {kind} twin does not keep "
            f"({', '.join(sorted(known))}): another heavyball optimizer or other flags"
        )
    return state_p[0]


def _unbatch(array, torch_name: str, key: str):
    if np.ndim(array) == 0 or np.shape(array)[0] != 1:
        raise ValueError(
            f"heavyball state of {torch_name!r}, {key!r}: shape {np.shape(array)} lacks heavyball's batch dimension of 1"
        )
    return array[0]


def _factor_from_torch(value, like, field: str, views, torch_name: str, key: str):
    """One factor: a tensor (a line's triangle filled), its batch dimension dropped."""
    what = f"heavyball state of {torch_name!r}, {key!r}"
    if field in views.lines and isinstance(value, (tuple, list)):
        shape, value = value
        array = _numpy(value)
        if shape is not None:
            n = int(shape[-1])
            line = _unbatch(array, torch_name, key)
            if line.shape != (n * (n + 1) // 2,):
                raise ValueError(f"{what}: a line of {line.shape} entries does not fill an upper triangle of {n} x {n}")
            full = np.zeros((n, n), line.dtype)
            full[np.triu_indices(n)] = line
            return _convert(full, like, what)
    else:
        array = _numpy(value)
    return _convert(_unbatch(array, torch_name, key) if field in views.batched else array, like, what)


def from_torch(state, groups: list, states: dict, group_of: dict, entry, layout: dict, params: dict, count):
    """The twin ``state`` (``init``'s) filled from heavyball's ``states`` (``{torch name: state[p]}``
    of its params), its param ``groups`` (``group_of``: each torch name's) and ``entry``
    (``state_dict()['heavyball']``)."""
    spec = torch_state.layout(state)
    views = _views(state)
    kind = type(state).__name__
    view_states = {t: _view_state(t, s, views, kind) for t, s in states.items()}
    filled = state._replace(
        count=jnp.asarray(_count(spec, groups, states, count, kind), state.count.dtype),
        hyperparams=_hyperparams(state, groups),
    )
    inner = (entry or {}).get("inner_group", {}) if isinstance(entry, Mapping) else {}
    for field, key in views.inner_group.items():
        if states and key not in inner:
            raise ValueError(
                f"optimizer_state_dict has no ['heavyball']['inner_group'][{key!r}], which the {kind} twin "
                f"keeps: not a heavyball optimizer's state_dict"
            )
        filled = filled._replace(**{field: jnp.asarray(inner.get(key, 0.0), jnp.result_type(getattr(state, field)))})
    by_flax = {layout[t].name: t for t in states}
    for field, key in views.keys.items():
        leaves = _per_leaf(getattr(state, field))
        values = {}
        for name, like in leaves.items():
            if name not in by_flax:
                continue  # a param heavyball has not stepped yet
            torch_name = by_flax[name]
            group = group_of[torch_name]
            target = layout[torch_name]
            if key not in view_states[torch_name]:
                raise ValueError(f"heavyball state of {torch_name!r} has no {key!r}, which the {kind} twin keeps")
            value = view_states[torch_name][key]
            torch_view, flax_view = view(views, target.shape, group), view(views, np.shape(params[name]), group)
            if field not in spec.factors:
                array = _numpy(value)
                array = _unbatch(array, torch_name, key) if field in views.batched else array
                if array.size != np.size(like):
                    raise ValueError(
                        f"heavyball state of {torch_name!r}, {key!r}: shape {array.shape} does not hold torch's "
                        f"param {tuple(target.shape)}"
                    )
                moved = np.reshape(target.transform(np.reshape(array, target.shape)), np.shape(like))
                values[name] = _convert(moved, like, f"heavyball state of {torch_name!r}, {key!r}")
                continue
            if not isinstance(value, (list, tuple)) or len(value) != len(like):
                size = len(value) if isinstance(value, (list, tuple)) else type(value).__name__
                raise ValueError(
                    f"heavyball state of {torch_name!r}, {key!r}: {size} factors, the {kind} twin keeps "
                    f"{len(like)} for flax {name!r} {tuple(np.shape(params[name]))}"
                )
            order = _view_axes(target, torch_view, flax_view, f"torch {torch_name!r} -> flax {name!r}")
            factors = []
            for j, factor in enumerate(like):
                given = value[order[j]]
                if (factor is None) != (given is None):
                    raise ValueError(
                        f"heavyball state of {torch_name!r}, {key!r}[{order[j]}]: heavyball keeps "
                        f"{'no factor' if given is None else 'a factor'}, the {kind} twin "
                        f"{'one' if given is None else 'none'}"
                    )
                factors.append(
                    None if factor is None else _factor_from_torch(given, factor, field, views, torch_name, key)
                )
            values[name] = tuple(factors)
        filled = filled._replace(**{field: _replace_leaves(getattr(filled, field), values)})
    return filled


def param_to_torch(state, name: str, param, target, group: Mapping) -> dict:
    """heavyball's ``state[p]`` (``{0: view state}``) of the twin ``state`` at flax leaf ``name``."""
    from purelr.training.to_torch import _inverse, _tensor

    spec = torch_state.layout(state)
    views = _views(state)
    torch_view, flax_view = view(views, target.shape, group), view(views, np.shape(param), group)
    out: dict[str, Any] = {}
    for field, key in views.keys.items():
        leaf = _per_leaf(getattr(state, field))[name]
        batched = field in views.batched
        if field not in spec.factors:
            array = _inverse(target.transform, target.shape)(np.reshape(np.asarray(leaf), np.shape(param)))
            array = np.reshape(array, (1, *torch_view) if batched else target.shape)
            out[key] = _tensor(array)
            continue
        order = _view_axes(target, torch_view, flax_view, f"flax {name!r} -> torch")
        factors: list = [None] * len(leaf)
        for j, factor in enumerate(leaf):
            if factor is not None:
                factors[order[j]] = _factor_to_torch(
                    np.asarray(factor), field, views, group, f"flax {name!r} {field}[{j}]"
                )
        out[key] = factors
    for key, shape in views.extra.items():
        out[key] = None if shape is None else _tensor(np.zeros(shape, np.float64))
    out["is_initialized"] = set(views.initialized)
    return {0: out}


def _factor_to_torch(factor, field: str, views, group: Mapping, what: str):
    from purelr.training.to_torch import _tensor

    if field in views.lines and group.get("store_triu_as_line", True):
        if factor.ndim == 1:
            return (None, _tensor(factor[None]))
        n = factor.shape[-1]
        if np.any(np.tril(factor, -1)):
            raise ValueError(f"{what}: not upper triangular, and heavyball keeps a triangular factor's upper triangle")
        return ((1, n, n), _tensor(factor[np.triu_indices(n)][None]))
    return _tensor(factor[None] if field in views.batched else factor)


def inner_group(state) -> dict:
    """``state_dict()['heavyball']['inner_group']`` of a twin that has stepped ``count`` times."""
    views = _views(state)
    out: dict[str, Any] = {key: float(getattr(state, field)) for field, key in views.inner_group.items()}
    out.update({f"{key}_prob_step": int(state.count) for key in views.inner_group.values()})
    return out
