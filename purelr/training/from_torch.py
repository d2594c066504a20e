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
``count`` is torch's ``step``, its ``hyperparams`` come from the param groups. Where an original
keeps its state otherwise (the step in the group or as an int, factored moments, a wrapped
optimizer, LBFGS's flat state), the twin's entry of ``purelr.training.torch_state.LAYOUTS`` says
so. Several twins (``optax.multi_transform``) each take the
torch groups that hold their params; ``purelr.training.to_torch`` goes the other way.

This module imports no torch: tensors are read with ``numpy.asarray`` (after ``.detach().cpu()``).
"""

from __future__ import annotations

import difflib
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from purelr.optim.block_quantization import QuantizedBuffer
from purelr.schedules import validate
from purelr.training import torch_state, torch_wrappers


class TorchRun(NamedTuple):
    """A PyTorch run's state for its JAX twin.

    Attributes:
      params: the flax params, laid out like the ``params`` given, filled from the model (the
        leaves schedulefree's wrappers update: from torch's eval mode ``x`` to the twin's ``y``).
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


def averaged_from_torch(state_dict: Mapping, average, *, names=None, n_averaged: int | None = None):
    """An ``AveragedState`` (``purelr.training.averaging``) from the ``state_dict()`` of torch's
    ``AveragedModel``, timm's ``ModelEmaV3`` or MMEngine's EMA model (its hook's
    ``checkpoint['ema_state_dict']``): ``average`` is the averaged tree's template, the params or
    ``{'params': ..., 'batch_stats': ...}`` (``use_buffers=True``); ``n_averaged`` for timm's,
    which keeps no count."""
    entries = torch_wrappers.module_entries(state_dict)
    count = torch_wrappers.averaged_count(state_dict, n_averaged)
    if _is_variables(average):
        tree = dict(
            zip(
                ("params", "batch_stats"),
                model_from_torch(entries, average["params"], names=names, batch_stats=average["batch_stats"]),
            )
        )
    else:
        tree = model_from_torch(entries, average, names=names)[0]
    return torch_wrappers.averaged_state(tree, count)


def _is_variables(tree) -> bool:
    return isinstance(tree, Mapping) and set(tree) == {"params", "batch_stats"}


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
    labels=None,
    scaler_state_dict: Mapping | None = None,
    iteration: int | None = None,
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
      labels: the label tree of an ``optax.multi_transform`` (``purelr.params`` groups): the twin
        under label ``l`` updates the leaves labelled ``l``. Needed with several twins of which
        one keeps no buffer like the params; each torch param group goes to the twin holding its
        params.
      scaler_state_dict: a loss scaler's state for the ``loss_scaled`` wrapper
        (``GradScaler.state_dict()``, MMCV ``LossScaler.state_dict()``, a DeepSpeed scaler's
        ``vars()``); see ``purelr.training.torch_wrappers``.
      iteration: training iterations so far, for an ``accumulate`` wrapper (torch keeps no
        accumulation state: a checkpoint is taken where the gradients were just applied).

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
    loaded, batch_stats = _filled(leaves, params, batch_stats)
    opt_state = _convert_optimizer(
        optimizer.init(loaded),  # buffers that start as the params (Schedule-Free's z) start as torch's
        optimizer_state_dict,
        order,
        layout,
        {n: leaves["params"][n] for n in _dotted(params)},
        count,
        labels,
    )
    opt_state = torch_wrappers.wrappers_from_torch(opt_state, scaler_state_dict, iteration)
    return TorchRun(torch_wrappers.wrapper_params(opt_state, loaded, train=True), batch_stats, opt_state, last_epoch)


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
    if "last_epoch" not in state and "last_step" in state:  # an MMEngine param scheduler
        return validate.nonnegative_int("scheduler_state_dict['last_step']", state["last_step"])
    if set(state) == {"best", "last_epoch"}:  # timm's PlateauLRScheduler: last_epoch counts metric steps
        raise ValueError(
            "scheduler_state_dict is timm's PlateauLRScheduler's, which follows metrics, not the update count: "
            "read it with purelr.training.plateau.plateau_from_timm and pass scheduler_state_dict=None"
        )
    if "last_epoch" not in state and "param_group_field" in state:
        raise ValueError(
            "a timm scheduler's state_dict keeps no step (timm is given the update number at each "
            "call): pass scheduler_state_dict=None and resume the schedule at the optimizer's count "
            "(t_in_epochs=True: at epoch count // epoch_len)"
        )
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
    shape: tuple  # the torch entry's shape


def _numpy(tensor):
    if not hasattr(tensor, "detach"):
        return np.asarray(tensor)
    if hasattr(tensor, "codes"):
        raise ValueError(f"torchao's quantized state ({type(tensor).__name__}: codes, scale) where no twin keeps one")
    tensor = tensor.detach().cpu()
    return np.asarray(tensor.float() if str(tensor.dtype) == "torch.bfloat16" else tensor)  # exact


def _quantized(x) -> bool:
    return isinstance(x, QuantizedBuffer)


def _dotted(tree) -> dict:
    """``{dotted leaf name: leaf}`` in leaf order (a ``QuantizedBuffer`` is one leaf)."""
    return {
        ".".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path): leaf
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree, is_leaf=_quantized)
    }


def _fill(tree, values: dict):
    return jax.tree.unflatten(jax.tree.structure(tree, is_leaf=_quantized), [values[name] for name in _dotted(tree)])


def _quantized_from_torch(value, like, target, what: str) -> QuantizedBuffer:
    """torchao's quantized buffer (``OptimState8bit`` / ``4bit`` / ``Fp8``) as the twin's
    ``QuantizedBuffer``: the same codes and scales. Blocks run over each side's own order of the
    entries, so only a param its layout does not move converts."""
    import torch  # the value is a torch tensor: torch is loaded

    if not _quantized(like):
        raise ValueError(f"{what}: torchao's quantized {type(value).__name__}, the twin keeps a plain buffer there")
    if not hasattr(value, "codes"):
        raise ValueError(f"{what}: a plain {type(value).__name__}, the twin keeps a quantized buffer there")
    if torch_state.moves(target.transform, target.shape):
        raise ValueError(
            f"{what}: torchao's blocks run over torch's order of the entries, the twin's over flax's, "
            f"which this param's layout changes: its quantized state does not convert"
        )
    codes = value.codes.detach().cpu()
    codes = np.asarray(codes.view(torch.uint8)).view(like.codes.dtype) if codes.dtype != torch.uint8 else codes
    return QuantizedBuffer(
        _convert(np.asarray(codes), like.codes, f"{what} codes"),
        _convert(np.asarray(value.scale.detach().cpu()), like.scale, f"{what} scale"),
    )


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
    return _Target("", name, transform, tuple(shape))


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


class Twin(NamedTuple):
    """A twin's state inside an optimizer state, the flax leaves it updates and the torch param
    groups that hold those leaves."""

    path: tuple
    state: Any
    members: tuple[str, ...]  # dotted flax names
    groups: tuple[int, ...]
    route: tuple[str, str, bool] | None = None  # a routed pair's (state key, group key, this twin's flag)


def _label(path):
    """The ``optax.multi_transform`` label of a state at ``path`` (``None`` outside one)."""
    keys = list(path)
    for key, following in zip(keys, keys[1:]):
        if getattr(key, "name", None) == "inner_states":
            return getattr(following, "key", None)
    return None


def _members(path, state, params: dict, labels: dict | None, alone: bool, routed: bool) -> tuple[str, ...]:
    """The flax leaves a twin updates: its label's, else all (a lone twin), else those of its first
    buffer like the params; a routed pair's twin (empty where it has no leaf) narrows its label's."""
    members = tuple(params)
    if labels is not None:
        members = tuple(name for name in params if labels[name] == _label(path))
    if (labels is not None or alone) and not routed:
        return members
    for field in torch_state.buffer_fields(state):
        names = _dotted(getattr(state, field))
        like = all(not _quantized(v) and np.shape(v) == np.shape(params[n]) for n, v in names.items())
        if (names or routed) and set(names) <= set(params) and like:
            return tuple(n for n in members if n in names)
    raise ValueError(
        f"the optimizer's state holds several twins and the {type(state).__name__} at "
        f"{jax.tree_util.keystr(path)} keeps no buffer like the params: pass labels= (the label tree)"
    )


def twins(template, groups, order: dict, layout: dict, params: dict, labels=None) -> list[Twin]:
    """Each purelr twin in ``template`` (an optimizer state) with its flax leaves and torch groups.

    ``order`` is ``{torch optimizer index: torch name}``, ``layout`` ``{torch name: _Target}``;
    a torch group belongs to the twin whose leaves hold all of its params, and each twin's leaves
    must be exactly those of its groups."""
    found = [(p, s) for p, s in jax.tree_util.tree_leaves_with_path(template, is_leaf=torch_state.is_twin)]
    found = [(p, s) for p, s in found if torch_state.is_twin(s)]
    if not found:
        raise ValueError("the optimizer's state holds no purelr.optim twin state")
    if labels is not None:
        labels = _dotted(labels)
        if set(labels) != set(params):
            raise ValueError(f"labels must be laid out like the params: leaves {sorted(set(labels) ^ set(params))}")
    for index, torch_name in order.items():
        if torch_name not in layout or layout[torch_name].collection != "params":
            raise ValueError(
                f"torch optimizer parameter {index} ({torch_name!r}) is not a model entry that goes to the flax params"
            )
    for _, state in found:  # an original whose state the table does not describe
        foreign = torch_state.layout(state).foreign
        for key in (k for group in groups for k in foreign if k in group):
            raise ValueError(f"the {type(state).__name__} twin: torch's param groups have {key!r}: {foreign[key]}")
        wrapped = torch_state.wrapped_by(state, groups)
        if wrapped is not None:
            raise ValueError(wrapped)
    routes, pairs = _routes(found)
    result = [
        Twin(p, s, _members(p, s, params, labels, len(found) == 1, k in routes), (), routes.get(k))
        for k, (p, s) in enumerate(found)
    ]
    for g, group in enumerate(groups):
        names = {layout[order[i]].name for i in group["params"]}
        holders = [k for k, twin in enumerate(result) if names <= set(twin.members)]
        # an empty group: the twin with no leaves it was made for (a Muon part with none), else the first
        owners = sorted(holders, key=lambda k: bool(names or result[k].members))[:1] or None
        if owners is None:  # a routed pair shares the group
            pair = next((pair for pair in pairs if names <= {n for k in pair for n in result[k].members}), None)
            owners = [k for k in pair or () if names & set(result[k].members)] or None
        if owners is None:
            raise ValueError(
                f"torch param group {g} holds {sorted(names)}; no twin state of the optimizer updates all of them"
            )
        for owner in owners:
            result[owner] = result[owner]._replace(groups=result[owner].groups + (g,))
    for twin in result:
        for key, value in torch_state.layout(twin.state).flags.items():
            for g in (g for g in twin.groups if key in groups[g] and groups[g][key] != value):
                raise ValueError(
                    f"torch param group {g} has {key}={groups[g][key]!r}; the {type(twin.state).__name__} twin "
                    f"is its original's with {key}={value!r}: other flags"
                )
        held = {layout[order[i]].name for g in twin.groups for i in groups[g]["params"]}
        if twin.route is not None:  # the sibling's params are the sibling's
            held &= set(twin.members)
        if held != set(twin.members):
            raise ValueError(
                f"the {type(twin.state).__name__} at {jax.tree_util.keystr(twin.path)} updates "
                f"{sorted(twin.members)}, its torch param groups hold {sorted(held)}"
            )
    return result


def _routes(found) -> tuple[dict[int, tuple[str, str, bool]], list[tuple[int, int]]]:
    """``({index in found: route}, pairs)``: each twin whose layout has ``routed`` (flag ``True``)
    and its sibling in the same ``multi_transform`` (``False``)."""
    routes, pairs = {}, []
    for k, (path, state) in enumerate(found):
        routed = torch_state.layout(state).routed
        if routed is None:
            continue
        siblings = [j for j, (other, _) in enumerate(found) if j != k and other[:-2] == path[:-2]]
        if len(siblings) != 1:
            raise ValueError(f"the {type(state).__name__} at {jax.tree_util.keystr(path)} has no one sibling twin")
        routes[k], routes[siblings[0]] = (*routed, True), (*routed, False)
        pairs.append((k, siblings[0]))
    return routes, pairs


def _convert_optimizer(template, optimizer_state_dict, order, layout, params: dict, count, labels=None):
    """``template`` (an ``optimizer.init`` state) with its purelr twins' states filled from torch."""
    groups = optimizer_state_dict["param_groups"]
    states = {  # an empty state[p] (one that schedulefree's wrappers' train() / eval() looked up) is none
        order[int(i)]: {k: v for k, v in s.items() if v is not None}
        for i, s in optimizer_state_dict["state"].items()
        if s
    }
    filled = {}
    found = twins(template, groups, order, layout, params, labels)
    for twin in found:
        torch_names = {layout[order[i]].name: order[i] for g in twin.groups for i in groups[g]["params"]}
        own = {torch_names[n]: states[torch_names[n]] for n in twin.members if torch_names[n] in states}
        if torch_state.layout(twin.state).flat:
            first = order[groups[twin.groups[0]]["params"][0]]
            flat = flat_order(twin, groups, order, layout, params)
            filled[twin.path] = _flat_from_torch(twin.state, states.get(first, {}), flat, groups, count)
            continue
        if torch_state.layout(twin.state).views is not None:  # heavyball's
            from purelr.training import heavyball_state

            group_of = {order[i]: groups[g] for g in twin.groups for i in groups[g]["params"]}
            filled[twin.path] = heavyball_state.from_torch(
                twin.state,
                [groups[g] for g in twin.groups],
                own,
                group_of,
                optimizer_state_dict.get("heavyball"),
                layout,
                params,
                count,
            )
            continue
        twin_groups, twin_count = [groups[g] for g in twin.groups], count
        if twin.route is not None:
            pair = [t for t in found if t.route is not None and t.path[:-2] == twin.path[:-2]]
            held = {order[i] for t in pair for g in t.groups for i in groups[g]["params"]}
            own, twin_groups, twin_count = _routed(
                twin, own, twin_groups, {t: states[t] for t in held if t in states}, count
            )
        if torch_state.layout(twin.state).step == "last":
            own = _last_steps(own, twin_groups, order, torch_state.layout(twin.state).step_key)
        _check_keys(twin.state, own)
        filled[twin.path] = _fill_twin(twin.state, twin_groups, own, layout, params, twin_count)
    return _replace_twins(template, filled)


def _last_steps(own: dict, groups: list, order: dict, key: str) -> dict:
    """``own`` with each param's step read as its group's last param's (``Layout.step='last'``)."""
    out = dict(own)
    for group in groups:
        names = [order[i] for i in group["params"]]
        last = own.get(names[-1], {}) if names else {}
        if key in last:
            out.update({n: {**own[n], key: last[key]} for n in names if n in own})
    return out


def _routed(twin, own: dict, groups: list, held: dict, count):
    """A routed pair's twin (timm's Muon or its fallback): its params' routing flags checked and
    left out, the fallback's groups with the lr scaled, the count from any param of the pair
    (``held``) that keeps a step (Muon's params keep none)."""
    key, scale_key, mine = twin.route
    kind = type(twin.state).__name__
    for torch_name, state_p in own.items():
        if key in state_p and bool(state_p[key]) != mine:
            raise ValueError(
                f"torch state of {torch_name!r} has {key}={bool(state_p[key])}, but the {kind} twin built here "
                f"updates it: the twin's routing (use_muon, use_fallback, the leaf's shape) differs from torch's"
            )
    for g, group in enumerate(groups):
        if scale_key not in group:
            raise ValueError(f"torch's param group holds no {scale_key!r}: not the state of the {kind} twin's original")
    own = {name: {k: v for k, v in state_p.items() if k != key} for name, state_p in own.items()}
    if not mine:
        groups = [dict(g, lr=float(_numpy(g["lr"])) * float(_numpy(g[scale_key]))) for g in groups]
    step_key = torch_state.layout(twin.state).step_key
    steps = [int(_numpy(s[step_key])) for s in held.values() if step_key in s]
    return own, groups, count if count is not None or not steps else steps[0]


def flat_order(twin, groups, order, layout, params: dict) -> np.ndarray:
    """``index`` with ``flax_flat = torch_flat[index]``: torch ravels its params in the optimizer's
    order and its layout, ``ravel_pytree`` the flax leaves in tree order and flax's layout."""
    torch_order = [order[i] for g in twin.groups for i in groups[g]["params"]]
    offsets, start = {}, 0
    for torch_name in torch_order:
        offsets[torch_name] = start
        start += int(np.prod(layout[torch_name].shape))
    by_flax = {layout[t].name: t for t in torch_order}
    pieces = []
    for name in params:
        target = layout[by_flax[name]]
        index = np.arange(int(np.prod(target.shape))).reshape(target.shape) + offsets[by_flax[name]]
        pieces.append(np.asarray(target.transform(index)).ravel())
    return np.concatenate(pieces) if pieces else np.zeros(0, int)


def _flat_from_torch(state, torch_state_p: Mapping, index, groups, count):
    """LBFGS's state from torch's ``state[first param]``."""
    kind = type(state).__name__
    allowed = set(torch_state.FLAT_VECTORS) | set(torch_state.FLAT_LISTS) | set(torch_state.FLAT_NUMBERS)
    allowed |= {"H_diag"} | set(torch_state.FLAT_RECOMPUTED)
    unknown = sorted(set(torch_state_p) - allowed)
    if unknown:
        raise ValueError(f"torch state has {unknown[0]!r}, which the {kind} twin does not keep: another optimizer")
    if torch_state_p and count is None:
        raise ValueError(
            f"torch's state keeps no 'step' for the {kind} twin: pass count= (the number of optimizer.step() calls made)"
        )
    values: dict[str, Any] = dict(
        count=jnp.asarray(0 if count is None else count, state.count.dtype), hyperparams=_hyperparams(state, groups)
    )
    if not torch_state_p:
        return state._replace(**values)
    dtype = state.d.dtype
    for key in torch_state.FLAT_VECTORS:
        values[key] = jnp.asarray(_numpy(torch_state_p[key])[index], dtype)
    history = state.ro.shape[0]
    used = len(torch_state_p["ro"])
    if used > history:
        raise ValueError(f"torch's LBFGS history holds {used} entries, the twin's history_size is {history}")
    for key, vectors in torch_state.FLAT_LISTS.items():
        rows = [_numpy(v)[index] if vectors else _numpy(v) for v in torch_state_p[key]]
        full = np.zeros(getattr(state, key).shape, dtype)
        if rows:
            full[:used] = np.stack(rows)
        values[key] = jnp.asarray(full)
    for key, kind_of in torch_state.FLAT_NUMBERS.items():
        values[key] = jnp.asarray(kind_of(_numpy(torch_state_p[key])), jnp.result_type(getattr(state, key)))
    values["H_diag"] = jnp.asarray(_numpy(torch_state_p["H_diag"]), dtype)
    values["num_old"] = jnp.asarray(used, state.num_old.dtype)
    return state._replace(**values)


def _replace_twins(template, filled: dict):
    """The twins filled; optax's count-only states beside them (``ScaleByScheduleState`` of a
    clipping that counts updates) take the first twin's count."""
    states = iter(filled.values())
    count = next(iter(filled.values())).count

    def fill(s):
        if torch_state.is_twin(s):
            return next(states)
        return s._replace(count=jnp.asarray(count, s.count.dtype)) if _counts_only(s) else s

    return jax.tree.map(fill, template, is_leaf=lambda s: torch_state.is_twin(s) or _counts_only(s))


def _counts_only(state) -> bool:
    return isinstance(state, tuple) and getattr(state, "_fields", ()) == ("count",)


def _check_keys(state, states: dict) -> None:
    kind = type(state).__name__
    allowed = set()
    for member in torch_state.chain(state):
        spec = torch_state.layout(member)
        allowed |= set(torch_state.buffer_fields(member).values()) | set(spec.recomputed)
        allowed |= {key for key, _, _ in spec.alternate.values()}
        allowed |= ({spec.step_key} if spec.step in ("state", "last") else set()) | set(spec.counters)
    for torch_name, state_p in states.items():
        unknown = sorted(set(state_p) - allowed)
        if unknown:
            raise ValueError(
                f"torch state of {torch_name!r} has {unknown[0]!r}, which the {kind} "
                f"twin built here does not keep ({', '.join(sorted(allowed))}): "
                f"another optimizer or other flags"
            )


def _fill_twin(state, groups, states: dict, layout, params, count):
    spec = torch_state.layout(state)
    kind = type(state).__name__
    if spec.group_added and states and not any(spec.step_key in group for group in groups):
        keys = ", ".join(map(repr, (spec.step_key, *spec.group_added)))
        raise ValueError(
            f"torch's state holds buffers but its param groups no {keys}: the state of a plain optimizer, "
            f"not of schedulefree's wrapper around it that the {kind} twin is (build the twin as the base alone)"
        )
    filled = state._replace(
        count=jnp.asarray(_count(spec, groups, states, count, kind), state.count.dtype),
        hyperparams=_hyperparams(state, groups),
        **{
            field: _buffer(
                state, field, *torch_state.torch_key(state, field, groups[0]), spec, states, layout, params, kind
            )
            for field in torch_state.buffer_fields(state)
            if states
        },
    )
    scalars = {field: _in_group(state, field, spec, groups, kind) for field in spec.in_group}
    if spec.low is not None:  # double-float pairs: the float32 nearest torch's float, and the rest
        kept = {field: getattr(state, spec.low)[field] for field in getattr(state, spec.low)}
        low = {field: _low_half(scalars[field], value) for field, value in kept.items()}
        filled = filled._replace(**{spec.low: low})
        scalars = {f: jnp.asarray(value, jnp.result_type(getattr(state, f))) for f, value in scalars.items()}
    filled = filled._replace(**scalars)
    if spec.inner is not None:  # an inner twin keeping no count of its own steps with its wrapper
        inner = getattr(state, spec.inner)
        inner_count = int(filled.count) if count is None and torch_state.layout(inner).step is None else count
        filled = filled._replace(**{spec.inner: _fill_twin(inner, groups, states, layout, params, inner_count)})
    return filled


def _count(spec, groups, states, count, kind):
    if spec.step == "group":
        steps = {
            f"param group {g}": int(_numpy(group[spec.step_key]))
            for g, group in enumerate(groups)
            if spec.step_key in group
        }
    else:
        steps = {name: int(_numpy(s[spec.step_key])) for name, s in states.items() if spec.step_key in s}
    if len(set(steps.values())) > 1:
        raise ValueError(f"torch params are at different steps ({steps}); the {kind} twin keeps one count")
    if steps and count is not None and count not in steps.values():
        raise ValueError(f"count={count} but torch's state is at step {next(iter(steps.values()))}")
    if steps:
        return next(iter(steps.values()))
    if count is None and states and spec.step is None:
        raise ValueError(
            f"torch's state keeps no 'step' for the {kind} twin: pass count= (the number of optimizer.step() calls made)"
        )
    return 0 if count is None else count


def _raw(states, torch_name, key, kind):
    if key not in states.get(torch_name, {}):
        raise ValueError(
            f"torch state of {torch_name!r} has no {key!r}, which the {kind} twin keeps: another optimizer or other flags"
        )
    return states[torch_name][key]


def _value(states, torch_name, key, kind):
    return _numpy(_raw(states, torch_name, key, kind))


def _buffer(twin, field, key, factor, spec, states, layout, params, kind):
    """One twin field from torch's ``state[p][key]``: a tree like the params (each leaf like its
    param, a scalar, a factored moment or empty), or one scalar that torch keeps per param."""
    names = {layout[t].name: t for t in states}
    template = getattr(twin, field)
    if field in spec.factors:
        return _factors(template, key, states, names, layout, f"{kind}.{field}")
    if torch_state.one_per_twin(template):
        values = {t: _value(states, t, key, kind) for t in states}
        if len({v.item() for v in values.values()}) > 1:
            raise ValueError(f"torch's {key!r} differs between params ({values}); the {kind} twin keeps one")
        return jnp.asarray(next(iter(values.values())), jnp.result_type(template))
    leaves = _dotted(template)
    if not set(leaves) <= set(params):
        raise ValueError(f"{kind}.{field} is not laid out like the params: not one to one with torch's state")
    converted = {}
    for name, like in leaves.items():
        torch_name = names.get(name)
        if torch_name is None:  # a param torch has not stepped yet
            converted[name] = like
        elif _quantized(like) or hasattr(states[torch_name].get(key), "codes"):
            what = f"torch state of {torch_name!r}, {key!r}"
            converted[name] = _quantized_from_torch(_raw(states, torch_name, key, kind), like, layout[torch_name], what)
        elif np.size(like) == 0 and np.size(params[name]) != 0:
            converted[name] = like
        elif field in spec.lazy and key not in states[torch_name]:
            converted[name] = like
        elif field in spec.raveled:
            target = layout[torch_name]
            index = torch_state.raveled_order(
                target.transform, target.shape, np.size(like), f"{kind}.{field}", torch_state.in_torch_order(twin)
            )
            array = _value(states, torch_name, key, kind)
            converted[name] = _convert(array.ravel()[index], like, f"torch state of {torch_name!r}, {key!r}")
        elif field in spec.factored:
            converted[name] = _factored(twin, field, spec, states, torch_name, layout, name, params[name], kind)
        else:
            target = layout[torch_name]
            array = _value(states, torch_name, key, kind) * factor
            moved = target.transform(array) if np.shape(like) == np.shape(params[name]) else array
            converted[name] = _convert(moved, like, f"torch state of {torch_name!r}, {key!r}")
    return _fill(template, converted)


def _in_group(state, field, spec, groups, kind):
    """A one-per-twin scalar the original keeps in every param group (which must agree): the
    Python number where the twin keeps a double-float pair (``spec.low``), else in the field's dtype."""
    key = spec.keys.get(field, field)
    found = {float(_numpy(group[key])) for group in groups if key in group}
    if len(found) > 1:
        raise ValueError(f"torch's param groups differ in {key!r} ({sorted(found)}); the {kind} twin keeps one")
    template = getattr(state, field)
    if not found:
        return template
    if spec.low is not None and field in getattr(state, spec.low):
        return found.pop()
    return jnp.asarray(found.pop(), jnp.result_type(template))


def _low_half(value, template):
    """What a float32 half leaves of ``value`` (a Python float; an array: a pair's own low half)."""
    if not isinstance(value, float):
        return template
    high = np.asarray(value, np.result_type(template))
    low = value - float(high) if np.isfinite(high) else 0.0
    return jnp.asarray(low, np.result_type(template))


def _factors(template, key, states, names, layout, what: str):
    """Per-dimension factors (a tuple per leaf) from torch's lists, in the order of flax's dimensions."""

    def leaf(path, factors):
        name = ".".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
        torch_name = names.get(name)
        if torch_name is None:
            return factors
        target = layout[torch_name]
        given = states[torch_name].get(key)
        if not isinstance(given, (list, tuple)):
            raise ValueError(
                f"torch state of {torch_name!r} has no list {key!r}, which {what} keeps: another optimizer"
            )
        order = torch_state.factor_order(factors, torch_state.transpose_axes(target.transform, target.shape), what)
        if len(given) != len(factors):
            raise ValueError(
                f"torch state of {torch_name!r}, {key!r}: {len(given)} factors, {what} keeps {len(factors)}"
            )
        return tuple(
            like
            if like is None
            else _convert(_numpy(given[order[j]]), like, f"torch state of {torch_name!r}, {key!r}[{order[j]}]")
            for j, like in enumerate(factors)
        )

    return jax.tree_util.tree_map_with_path(leaf, template, is_leaf=lambda x: isinstance(x, tuple))


def _factored(twin, field, spec, states, torch_name, layout, name, param, kind):
    """A twin's factored moment from the torch one that reduces the same axis, after the layout."""
    target = layout[torch_name]
    mine = {f: np.shape(_dotted(getattr(twin, f))[name]) for f in spec.factored if getattr(twin, f) is not None}
    want = torch_state.factored_axes(spec, mine, np.shape(param), f"{kind} at flax {name!r}")[field]
    keys = {f: spec.keys.get(f, f) for f in spec.factored}
    stats = {f: _numpy(states[torch_name][k]) for f, k in keys.items() if k in states[torch_name]}
    torch_axes = torch_state.factored_axes(
        spec, {f: s.shape for f, s in stats.items()}, target.shape, f"torch state of {torch_name!r}"
    )
    axes = torch_state.transpose_axes(target.transform, target.shape)
    if axes is None:
        raise ValueError(f"torch {torch_name!r}: its layout is no transpose, so its factored moments do not map")
    for other, stat in stats.items():
        new_axis, moved = torch_state.move_reduced(stat, torch_axes[other], axes, spec.factored[other][1])
        if new_axis == want:
            return _convert(
                moved, _dotted(getattr(twin, field))[name], f"torch state of {torch_name!r}, {keys[other]!r}"
            )
    raise ValueError(
        f"torch state of {torch_name!r} has no factored moment that becomes {kind}.{field} "
        f"under its layout (a conv kernel's factors do not map to flax's HWIO)"
    )


def _hyperparams(state, groups) -> dict:
    """The twin's hyperparameters from the param groups (which must agree on them)."""
    values = {}
    attributes = torch_state.layout(state).attributes
    for name, like in state.hyperparams.items():
        if name in attributes:  # the original keeps it in no param group
            values[name] = like
            continue
        key, index = torch_state.group_key(state, name)
        found = {
            float(_numpy(g[key] if index is None else g[key][index]))
            for g in groups
            if key in g and (index is None or (isinstance(g[key], (tuple, list)) and len(g[key]) > index))
        }
        if len(found) > 1:
            raise ValueError(
                f"torch's param groups differ in {name} ({sorted(found)}); the twin "
                f"keeps one value: convert each group on its own"
            )
        values[name] = jnp.asarray(found.pop(), jnp.result_type(like)) if found else like
    return values
