"""Continuing a PyTorch run in JAX: a model's ``state_dict()``, its ``torch.optim`` optimizer's
``state_dict()`` and its ``lr_scheduler``'s ``state_dict()`` turned into flax params and the state
of the purelr twin, so that the next updates are the ones torch would have made.

Names: each entry of the model's ``state_dict`` is sent to a dotted leaf name of the flax params
(``"fc.kernel"``) or batch statistics (``"bn.mean"``) by ``default_names`` (Linear / Conv /
BatchNorm / LayerNorm naming), by a mapping that overrides it name by name, or by a function.
A leaf called ``kernel`` takes ``kernel_layout`` (torch ``(out, in, *spatial)`` to flax
``(*spatial, in, out)``); anything else is copied as is unless the mapping gives a transform.

Optimizer: torch keeps ``optimizer.state[p]`` per parameter, keyed by buffer name; a purelr twin
keeps one tree per buffer, in a field of the same name (``purelr.optim.base``). The twin's
``count`` is torch's ``step``, its ``hyperparams`` come from the param group. Every twin whose
buffers are laid out like the params converts (SGD, Adam, AdamW, Adamax, NAdam, RAdam, Adagrad,
Adadelta, RMSprop, Rprop, ASGD); Adafactor's factored moments and LBFGS's flat history do not.

This module imports no torch: tensors are read with ``numpy.asarray`` (after ``.detach().cpu()``).
"""

from __future__ import annotations

import difflib
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from purelr.schedules import validate

# torch param-group entries that hold several of a twin's hyperparameters
_GROUP_TUPLES = {
    "beta1": ("betas", 0),
    "beta2": ("betas", 1),
    "etaminus": ("etas", 0),
    "etaplus": ("etas", 1),
    "step_size_min": ("step_sizes", 0),
    "step_size_max": ("step_sizes", 1),
}


class TorchRun(NamedTuple):
    """A PyTorch run's state for its JAX twin.

    Attributes:
      params: the flax params, laid out like the ``params`` given, filled from the model.
      batch_stats: the flax batch statistics (``None`` when no ``batch_stats`` were given).
      opt_state: ``optimizer.init(params)`` with the twin's state filled from torch's.
      last_epoch: the scheduler's ``last_epoch`` (``None`` without a scheduler): the step at
        which the purelr schedule twin continues (see ``resume_schedule``).
    """

    params: Any
    batch_stats: Any
    opt_state: Any
    last_epoch: int | None


def kernel_layout(array):
    """torch's weight layout ``(out, in, *spatial)`` (Linear, Conv1d/2d/3d) as flax's kernel
    ``(*spatial, in, out)``: a Linear weight transposed, a Conv2d weight from OIHW to HWIO."""
    array = np.asarray(array)
    return np.transpose(array, tuple(range(2, array.ndim)) + (1, 0))


def default_names(torch_name: str, shape) -> str | None:
    """The flax leaf of a torch ``state_dict`` entry, module path kept: ``weight`` is a
    ``kernel`` (two or more dimensions: Linear, Conv) or a ``scale`` (one: BatchNorm,
    LayerNorm, GroupNorm); ``running_mean`` / ``running_var`` are BatchNorm's ``mean`` / ``var``;
    ``num_batches_tracked`` has no flax counterpart (``None``: skipped). Others keep their name.

    Linen names list members ``layers_0`` where torch says ``layers.0``: map those yourself.
    """
    module, _, leaf = torch_name.rpartition(".")
    if leaf == "num_batches_tracked":
        return None
    if leaf == "weight":
        leaf = "kernel" if len(shape) >= 2 else "scale"
    leaf = {"running_mean": "mean", "running_var": "var"}.get(leaf, leaf)
    return f"{module}.{leaf}" if module else leaf


def resume_schedule(schedule: Callable, last_epoch: int, count: int) -> Callable:
    """The schedule a twin reads at its ``count`` when torch's scheduler stood at ``last_epoch``
    after ``count`` optimizer steps: ``step -> schedule(step - count + last_epoch)``.

    With one ``scheduler.step()`` per ``optimizer.step()`` from the start, ``last_epoch == count``
    and this is ``schedule`` itself.
    """
    offset = validate.nonnegative_int("last_epoch", last_epoch) - validate.nonnegative_int("count", count)
    return lambda step: schedule(step + offset)


def model_from_torch(model_state_dict: Mapping, params, *, names=None, batch_stats=None):
    """``(params, batch_stats)``: a torch ``model.state_dict()`` in the flax trees given (see
    ``from_torch`` for ``names``; ``batch_stats`` is ``None`` when none are given)."""
    leaves, _ = _convert_model(model_state_dict, names, params=params, batch_stats=batch_stats)
    return _filled(leaves, params, batch_stats)


def from_torch(
    optimizer,
    params,
    model_state_dict: Mapping,
    optimizer_state_dict: Mapping,
    scheduler_state_dict: Mapping | None = None,
    *,
    names=None,
    batch_stats=None,
    param_names=None,
    count: int | None = None,
) -> TorchRun:
    """A PyTorch run (``model.state_dict()``, ``optimizer.state_dict()``, optionally
    ``scheduler.state_dict()``) as the state of its JAX twin.

    Args:
      optimizer: the purelr twin (an ``optax.GradientTransformation``, possibly chained with
        transforms that keep no such state); built with torch's flags (``amsgrad``, ``centered``,
        ``nesterov``, ...) and hyperparameters: the state says which buffers exist, not how the
        next updates use them.
      params: flax params (arrays or ``jax.ShapeDtypeStruct``s) giving the tree, shapes, dtypes.
      model_state_dict: ``model.state_dict()``.
      optimizer_state_dict: ``optimizer.state_dict()`` of a torch optimizer over all of ``params``.
      scheduler_state_dict: ``scheduler.state_dict()``; only its ``last_epoch`` is read.
      names: ``None`` (``default_names``), a mapping ``{torch name: entry}`` that overrides
        ``default_names`` for the names it holds, or a function ``(torch name, shape) -> entry``.
        An entry is a dotted flax leaf name, a ``(name, transform)`` pair (``transform`` maps a
        torch array to the flax layout; ``None``: ``kernel_layout`` for a ``kernel``, else as is)
        or ``None`` to skip the torch entry.
      batch_stats: flax ``batch_stats`` to fill with the BatchNorm buffers (``None``: none).
      param_names: torch's parameter names in the optimizer's order (``[n for n, _ in
        model.named_parameters()]``); by default the param groups' ``param_names`` (an optimizer
        built from ``named_parameters()``), else the model entries that go to ``params``, in
        ``state_dict`` order (which is ``model.parameters()``'s order).
      count: updates made so far, for optimizers whose state keeps no ``step`` (SGD); with a
        ``step`` it must agree.

    Returns:
      A ``TorchRun``. ``opt_state.hyperparams`` holds the param group's values: with a
      scheduler, the lr torch will use next (the twin overwrites it at its next update).

    Raises:
      ValueError: naming the torch entry and the flax leaf when a name has no leaf, a leaf has no
        entry or shapes differ; naming the parameter and key when the optimizer state is of another
        optimizer or other flags (unknown or missing keys), steps differ, or param counts differ.
    """
    validate.transformation("optimizer", optimizer)
    _check_optimizer_state(optimizer_state_dict)
    count = None if count is None else validate.nonnegative_int("count", count)
    last_epoch = None if scheduler_state_dict is None else _last_epoch(scheduler_state_dict)
    leaves, layout = _convert_model(model_state_dict, names, params=params, batch_stats=batch_stats)
    order = _param_order(optimizer_state_dict, param_names, layout)
    opt_state = _convert_optimizer(optimizer.init(params), optimizer_state_dict, order, layout, leaves["params"], count)
    return TorchRun(*_filled(leaves, params, batch_stats), opt_state, last_epoch)


_OPTIMIZER_KEYS = ("state", "param_groups")


def _check_optimizer_state(optimizer_state_dict) -> None:
    """An ``optimizer.state_dict()``: a dict with ``state`` and ``param_groups``."""
    validate.mapping("optimizer_state_dict", optimizer_state_dict)
    if not all(key in optimizer_state_dict for key in _OPTIMIZER_KEYS):
        raise ValueError(
            f"optimizer_state_dict must be optimizer.state_dict() (keys 'state' and "
            f"'param_groups'), got one with keys {list(optimizer_state_dict)[:5]}"
        )


def _last_epoch(scheduler_state_dict) -> int:
    """A ``scheduler.state_dict()``'s ``last_epoch`` (a ChainedScheduler's first member's)."""
    validate.mapping("scheduler_state_dict", scheduler_state_dict)
    state = scheduler_state_dict
    if "last_epoch" not in state and state.get("_schedulers"):  # ChainedScheduler: members step together
        state = state["_schedulers"][0]
    if "last_epoch" not in state:
        raise ValueError(
            f"scheduler_state_dict must be scheduler.state_dict() (with a 'last_epoch'), got "
            f"one with keys {list(scheduler_state_dict)[:5]}"
        )
    return validate.nonnegative_int("scheduler_state_dict['last_epoch']", state["last_epoch"])


class _Target(NamedTuple):
    collection: str  # "params" or "batch_stats"
    name: str  # dotted flax leaf name
    transform: Callable


def _numpy(tensor):
    return np.asarray(tensor.detach().cpu() if hasattr(tensor, "detach") else tensor)


def _dotted(tree) -> dict:
    """``{dotted leaf name: leaf}`` in leaf order."""
    return {
        ".".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path): leaf
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
    }


def _fill(tree, values: dict):
    return jax.tree.unflatten(jax.tree.structure(tree), [values[name] for name in _dotted(tree)])


def _filled(leaves, params, batch_stats) -> tuple[Any, Any]:
    return (_fill(params, leaves["params"]), None if batch_stats is None else _fill(batch_stats, leaves["batch_stats"]))


def _target(names, torch_name: str, shape) -> _Target | None:
    if callable(names):
        entry = names(torch_name, shape)
    elif names is not None and torch_name in names:
        entry = names[torch_name]
    else:
        entry = default_names(torch_name, shape)
    if entry is None:
        return None
    name, transform = entry if isinstance(entry, tuple) and len(entry) == 2 else (entry, None)
    if not isinstance(name, str) or not (transform is None or callable(transform)):
        raise TypeError(
            f"names[{torch_name!r}] must be a flax leaf name, a (name, transform) pair or None, got {entry!r}"
        )
    if transform is None:
        transform = kernel_layout if name.rpartition(".")[2] == "kernel" else np.asarray
    return _Target("", name, transform)


def _convert(array, like, what: str):
    """``array`` as a leaf like ``like`` (shape checked, dtype cast)."""
    if tuple(array.shape) != tuple(like.shape):
        raise ValueError(f"{what}: shape {tuple(array.shape)} does not match the flax leaf's {tuple(like.shape)}")
    return jnp.asarray(array, dtype=like.dtype)


def _convert_model(model_state_dict, names, **trees):
    """``({collection: {flax name: array}}, {torch name: _Target})`` of the model's entries."""
    validate.mapping("model_state_dict", model_state_dict)
    if all(key in model_state_dict for key in _OPTIMIZER_KEYS):
        raise ValueError(
            f"model_state_dict must be model.state_dict(), got one with keys "
            f"{list(model_state_dict)}: an optimizer's state_dict"
        )
    if not (names is None or callable(names) or isinstance(names, Mapping)):
        raise TypeError(f"names must be None, a dict {{torch name: entry}} or a function, got {names!r}")
    flax = {collection: {} if tree is None else _dotted(tree) for collection, tree in trees.items()}
    leaves: dict[str, dict] = {collection: {} for collection in trees}
    layout = {}
    for torch_name, tensor in model_state_dict.items():
        array = _numpy(tensor)
        target = _target(names, torch_name, array.shape)
        if target is None:
            continue
        collection = next((c for c in flax if target.name in flax[c]), None)
        if collection is None:
            known = [n for tree in flax.values() for n in tree]
            close = difflib.get_close_matches(target.name, known, n=3)
            raise ValueError(
                f"torch {torch_name!r} maps to flax {target.name!r}, which is not a "
                f"leaf of {' or '.join(trees)}" + (f" (close: {', '.join(close)})" if close else "")
            )
        if target.name in leaves[collection]:
            raise ValueError(f"torch {torch_name!r} maps to flax {target.name!r}, already filled")
        target = target._replace(collection=collection)
        converted = target.transform(array)
        leaves[collection][target.name] = _convert(
            converted,
            flax[collection][target.name],
            f"torch {torch_name!r} {tuple(array.shape)} -> flax {target.name!r} "
            f"({tuple(np.shape(converted))} after its layout)",
        )
        layout[torch_name] = target
    for collection, tree in flax.items():
        missing = [name for name in tree if name not in leaves[collection]]
        if missing:
            raise ValueError(f"flax {collection} {', '.join(map(repr, missing))}: no torch state_dict entry maps there")
    return leaves, layout


def _param_order(optimizer_state_dict, param_names, layout) -> dict:
    """``{torch optimizer index: torch param name}``."""
    groups = optimizer_state_dict["param_groups"]
    indices = [i for group in groups for i in group["params"]]
    if param_names is None and all("param_names" in group for group in groups):
        param_names = [name for group in groups for name in group["param_names"]]
        return dict(zip(indices, param_names))
    if param_names is None:
        param_names = [name for name, target in layout.items() if target.collection == "params"]
    param_names = validate.strings("param_names", param_names)
    if len(param_names) != len(indices):
        raise ValueError(
            f"the torch optimizer holds {len(indices)} parameters, the model "
            f"{len(param_names)} ({', '.join(param_names)}): pass param_names="
        )
    return dict(zip(indices, param_names))


def _is_twin(state) -> bool:
    return isinstance(state, tuple) and getattr(state, "_fields", ())[:2] == ("count", "hyperparams")


def _convert_optimizer(template, optimizer_state_dict, order, layout, params: dict, count):
    """``template`` (an ``optimizer.init`` state) with its purelr twin's state filled from torch."""
    twins = [s for s in jax.tree.leaves(template, is_leaf=_is_twin) if _is_twin(s)]
    if len(twins) != 1:
        raise ValueError(
            f"the optimizer's state holds {len(twins)} purelr.optim twin states, "
            f"expected one (one torch optimizer over all params)"
        )
    (twin,) = twins
    kind = type(twin).__name__
    for index, torch_name in order.items():
        if torch_name not in layout or layout[torch_name].collection != "params":
            raise ValueError(
                f"torch optimizer parameter {index} ({torch_name!r}) is not a model entry that goes to the flax params"
            )
    states = {
        order[int(i)]: {k: v for k, v in s.items() if v is not None} for i, s in optimizer_state_dict["state"].items()
    }
    buffers = {field: getattr(twin, field) for field in twin._fields[2:]}
    allowed = {"step"} | {field for field, value in buffers.items() if value is not None}
    for torch_name, state in states.items():
        unknown = sorted(set(state) - allowed)
        if unknown:
            raise ValueError(
                f"torch state of {torch_name!r} has {unknown[0]!r}, which the {kind} "
                f"twin built here does not keep ({', '.join(sorted(allowed))}): "
                f"another optimizer or other flags"
            )
    filled = twin._replace(
        count=jnp.asarray(_count(states, count, kind), twin.count.dtype),
        hyperparams=_hyperparams(twin.hyperparams, optimizer_state_dict["param_groups"]),
        **{
            field: _buffer(value, field, states, order, layout, params, kind)
            for field, value in buffers.items()
            if value is not None and states
        },
    )
    return jax.tree.map(lambda s: filled if _is_twin(s) else s, template, is_leaf=_is_twin)


def _count(states, count, kind):
    steps = {name: int(_numpy(state["step"])) for name, state in states.items() if "step" in state}
    if len(set(steps.values())) > 1:
        raise ValueError(f"torch params are at different steps ({steps}); the {kind} twin keeps one count")
    if steps and count is not None and count not in steps.values():
        raise ValueError(f"count={count} but torch's state is at step {next(iter(steps.values()))}")
    if steps:
        return next(iter(steps.values()))
    if count is None and states:
        raise ValueError(
            f"torch's state keeps no 'step' for the {kind} twin: pass count= (the "
            f"number of optimizer.step() calls made)"
        )
    return 0 if count is None else count


def _buffer(template, field, states, order, layout, params, kind):
    """One twin field from torch's ``state[p][field]``: a tree like the params, or a scalar
    that torch keeps once per parameter (all equal)."""

    def value(torch_name):
        if field not in states.get(torch_name, {}):
            raise ValueError(
                f"torch state of {torch_name!r} has no {field!r}, which the {kind} "
                f"twin keeps: another optimizer or other flags"
            )
        return _numpy(states[torch_name][field])

    if hasattr(template, "shape") and np.shape(template) == ():
        values = {name: value(name) for name in order.values()}
        if len({v.item() for v in values.values()}) > 1:
            raise ValueError(f"torch's {field!r} differs between params ({values}); the {kind} twin keeps one")
        return jnp.asarray(next(iter(values.values())), template.dtype)
    leaves = _dotted(template)
    if set(leaves) != set(params) or any(np.shape(leaves[n]) != np.shape(params[n]) for n in params):
        raise ValueError(f"{kind}.{field} is not laid out like the params: not one to one with torch's state")
    converted = {}
    for torch_name in order.values():
        target = layout[torch_name]
        converted[target.name] = _convert(
            target.transform(value(torch_name)), leaves[target.name], f"torch state of {torch_name!r}, {field!r}"
        )
    return _fill(template, converted)


def _hyperparams(template: dict, groups) -> dict:
    """The twin's hyperparameters from the param groups (which must agree on them)."""
    values = {}
    for name, like in template.items():
        key, index = _GROUP_TUPLES.get(name, (name, None))
        found = {float(_numpy(g[key] if index is None else g[key][index])) for g in groups if key in g}
        if len(found) > 1:
            raise ValueError(
                f"torch's param groups differ in {name} ({sorted(found)}); the twin "
                f"keeps one value: convert each group on its own"
            )
        values[name] = jnp.asarray(found.pop(), jnp.result_type(like)) if found else like
    return values
