"""Continuing a JAX run in PyTorch: the reverse of ``purelr.training.from_torch``. The flax params,
a purelr optimizer state (any twin, any ``multi_transform`` groups, inside ``loss_scaled`` /
``accumulate`` / clipping) and an ``AveragedState`` become the ``state_dict()``s that the torch
twin's ``load_state_dict`` takes, so that torch continues on the same trajectory.

The torch side is described by its own fresh state dicts (``model.state_dict()``,
``optimizer.state_dict()`` of the torch optimizer built as the original was): they give the names,
shapes and dtypes, the param groups with their flags, and which optimizer index is which param.
Names map as in ``from_torch`` (``names=``), and each twin's state as its ``torch_state.LAYOUTS``
entry says; a layout transform is undone by following where it sends each entry (any transform
that rearranges entries, such as ``kernel_layout``, is undone exactly).

Hyperparameters: a group gets the twin's values (those of its last update); a scheduled one is
read where torch's next update reads it: pass the schedule in ``hyperparams``, or the torch
scheduler built on the fresh optimizer (``scheduler=``), which is stepped as many times as the run
stepped it and then sets the group values it owns, as its ``state_dict`` says.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Mapping, NamedTuple

import jax
import numpy as np

from purelr.schedules import validate
from purelr.training import torch_state, torch_wrappers
from purelr.training.from_torch import (
    _check_optimizer_state,
    _convert_model,
    _dotted,
    _is_variables,
    _numpy,
    _param_order,
    flat_order,
    twins,
)
from purelr.training.loss_scale import loss_scale_state


class TorchState(NamedTuple):
    """State dicts for the torch twin's ``load_state_dict`` (``None`` where nothing was asked)."""

    model_state_dict: dict
    optimizer_state_dict: dict
    scheduler_state_dict: dict | None
    scaler_state_dict: dict | None


def _torch():
    import torch  # the target of the export: imported only here

    return torch


def _inverse(transform: Callable, shape) -> Callable:
    """The inverse of a layout ``transform`` on torch arrays of ``shape``: where it sends entry ``i``."""
    size = int(np.prod(shape))
    index = np.asarray(transform(np.arange(size).reshape(shape))).ravel()
    if index.size != size or not np.array_equal(np.sort(index), np.arange(size)):
        raise ValueError(f"a names= transform on shape {tuple(shape)} does not rearrange entries: it has no inverse")

    def inverse(array):
        out = np.empty(size, np.asarray(array).dtype)
        out[index] = np.asarray(array).ravel()
        return out.reshape(shape)

    return inverse


def _tensor(array, like=None):
    torch = _torch()
    array = np.asarray(array)
    half = array.dtype.name == "bfloat16"  # numpy's bfloat16 (ml_dtypes): torch reads it as float32
    tensor = torch.from_numpy(np.array(array, dtype=np.float32 if half else None, copy=True))
    return tensor.to(torch.bfloat16 if like is None and half else tensor.dtype if like is None else like.dtype)


def _scalar_dtype():
    """torch's ``_get_scalar_dtype()``: float64 under ``set_default_dtype(float64)``, else float32."""
    torch = _torch()
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def model_to_torch(params, model_state_dict: Mapping, *, names=None, batch_stats=None) -> dict:
    """``model_state_dict`` (the torch model's, naming and shaping every entry) with the entries
    that map to flax leaves replaced by those of ``params`` / ``batch_stats`` (others kept)."""
    _, layout = _convert_model(model_state_dict, names, params=params, batch_stats=batch_stats)
    flax = {"params": _dotted(params), "batch_stats": {} if batch_stats is None else _dotted(batch_stats)}
    out = {}
    for torch_name, tensor in model_state_dict.items():
        target = layout.get(torch_name)
        if target is None:
            out[torch_name] = tensor
            continue
        array = _inverse(target.transform, target.shape)(np.asarray(flax[target.collection][target.name]))
        out[torch_name] = _tensor(array, tensor)
    return out


def optimizer_to_torch(
    opt_state,
    params,
    model_state_dict: Mapping,
    optimizer_state_dict: Mapping,
    *,
    names=None,
    batch_stats=None,
    param_names=None,
    labels=None,
    hyperparams: Mapping[str, Any] | None = None,
) -> dict:
    """The torch ``optimizer.state_dict()`` of ``opt_state``: ``optimizer_state_dict`` (the fresh
    torch optimizer's) with its ``state`` and group values filled. ``hyperparams``: ``{name: value
    or schedule}`` set in every group, a schedule read at the twin's count (the next update)."""
    _check_optimizer_state(optimizer_state_dict)
    torch_wrappers.check_accumulated(opt_state)
    _, layout = _convert_model(model_state_dict, names, params=params, batch_stats=batch_stats)
    order = _param_order(optimizer_state_dict, param_names, layout)
    groups = [dict(group) for group in optimizer_state_dict["param_groups"]]
    flax = _dotted(params)
    state: dict = {}
    extra: dict = {}
    found = twins(opt_state, groups, order, layout, flax, labels)
    for twin in sorted(found, key=lambda t: t.route is not None and t.route[2]):  # a routed twin sets its lr last
        indices = {layout[order[i]].name: (i, g) for g in twin.groups for i in groups[g]["params"]}
        indices = {name: indices[name] for name in twin.members}  # a routed pair's shared groups
        if torch_state.layout(twin.state).flat:
            for g in twin.groups:
                _set_group(groups[g], twin.state, int(twin.state.count), hyperparams)
            if int(twin.state.count):
                first = groups[twin.groups[0]]["params"][0]
                state[first] = _flat_to_torch(twin.state, flat_order(twin, groups, order, layout, flax))
            continue
        if torch_state.layout(twin.state).views is not None:  # heavyball's
            heavyball = _heavyball_to_torch(
                twin, indices, order, groups, layout, flax, hyperparams, optimizer_state_dict
            )
            state.update(heavyball.pop("state", {}))
            extra.update(heavyball)
            continue
        for member in torch_state.chain(twin.state):
            count = int(member.count)
            for g in twin.groups:
                _set_group(groups[g], _routed_view(twin, member, groups[g]), count, hyperparams)
            if int(twin.state.count) == 0:
                continue  # a fresh torch optimizer: no state yet
            for name, (index, g) in indices.items():
                torch_name = order[index]
                state.setdefault(index, {}).update(
                    _param_state(member, name, flax[name], layout[torch_name], model_state_dict[torch_name], groups[g])
                )
                if twin.route is not None:
                    state[index][twin.route[0]] = twin.route[2]
    rest = {k: v for k, v in optimizer_state_dict.items() if k not in ("state", "param_groups")}
    return {"state": dict(sorted(state.items())), "param_groups": groups, **rest, **extra}


def _heavyball_to_torch(twin, indices, order, groups, layout, flax, hyperparams, fresh) -> dict:
    """heavyball's ``state`` entries of a twin (``{0: view state}`` per param, the count also in
    the first param's) and its ``state_dict()['heavyball']``; the groups' values set."""
    from purelr.training import heavyball_state

    count = int(twin.state.count)
    for g in twin.groups:
        _set_group(groups[g], twin.state, count, hyperparams)
    if count == 0:
        return {}
    state = {}
    for name, (index, g) in indices.items():
        target = layout[order[index]]
        state[index] = heavyball_state.param_to_torch(twin.state, name, flax[name], target, groups[g])
    for g in twin.groups:
        state[groups[g]["params"][0]][0]["step"] = _step(torch_state.layout(twin.state), count)
    entry = dict(fresh.get("heavyball", {}), inner_group=heavyball_state.inner_group(twin.state))
    return {"state": state, "heavyball": entry}


def _routed_view(twin, state, group: dict):
    """A routed pair's fallback twin with the lr of its torch group: its own divided by the group's
    scale (the float whose product with the scale is the twin's lr, where one is that near)."""
    if twin.route is None or twin.route[2] or "lr" not in state.hyperparams:
        return state
    scale_key = twin.route[1]
    if scale_key not in group:
        raise ValueError(
            f"torch's param group holds no {scale_key!r}: not the {type(twin.state).__name__} twin's original"
        )
    lr, scale = state.hyperparams["lr"], float(_numpy(group[scale_key]))
    want = float(lr)
    value = want / scale if scale else want
    for _ in range(4):
        if scale == 0 or float(np.asarray(value * scale, np.asarray(lr).dtype)) == want:
            break
        value = float(np.nextafter(value, np.inf if value * scale < want else -np.inf))
    return state._replace(hyperparams={**state.hyperparams, "lr": value})


def _flat_to_torch(state, index) -> dict:
    """LBFGS's ``state[first param]`` for torch (its ``al`` scratch left to the next step)."""
    out: dict = {}
    for key in torch_state.FLAT_VECTORS:
        out[key] = _tensor(_unpermute(getattr(state, key), index))
    used = int(state.num_old)
    for key, vectors in torch_state.FLAT_LISTS.items():
        rows = np.asarray(getattr(state, key))[:used]
        out[key] = [_tensor(_unpermute(row, index)) if vectors else _tensor(row) for row in rows]
    for key, kind_of in torch_state.FLAT_NUMBERS.items():
        out[key] = kind_of(getattr(state, key))
    out["t"] = float(state.t)
    out["H_diag"] = _tensor(np.asarray(state.H_diag))
    return out


def _unpermute(flat, index):
    out = np.empty_like(np.asarray(flat))
    out[index] = np.asarray(flat)
    return out


def _set_group(group: dict, state, count: int, hyperparams) -> None:
    spec = torch_state.layout(state)
    if spec.step == "group" and (count or spec.step_key in group):
        group[spec.step_key] = _step(spec, count)
    low = getattr(state, spec.low) if spec.low is not None else {}
    for field in spec.in_group:
        value = getattr(state, field)
        group[spec.keys.get(field, field)] = (
            int(value)
            if np.issubdtype(np.result_type(value), np.integer)
            else float(value) + float(low[field])
            if field in low and np.isfinite(value)
            else float(value)
        )
    values = {name: float(value) for name, value in state.hyperparams.items()}
    for name, value in (hyperparams or {}).items():
        values[name] = float(value(count) if callable(value) else value)
    for name, value in values.items():
        key, index = torch_state.group_key(state, name)
        if name in spec.group_added and count:
            group[key] = value
        if name in spec.attributes or key not in group:
            continue
        if index is None:
            group[key] = _like(group[key], value)
        elif isinstance(group[key], (tuple, list)) and len(group[key]) > index:
            entries = list(group[key])
            entries[index] = _like(entries[index], value)
            group[key] = type(group[key])(entries)


def _like(old, value: float):
    """``value`` in the type of the group entry it replaces (an int stays an int when whole)."""
    if isinstance(old, bool) or old is None:
        return old
    if isinstance(old, int) and float(value).is_integer():
        return int(value)
    if hasattr(old, "dtype"):  # a tensor: in its dtype where that keeps the value (torchao's float32 lr)
        torch = _torch()
        kept = torch.tensor(value, dtype=old.dtype)
        exact = not old.dtype.is_floating_point or float(kept) == value
        return kept if exact else torch.tensor(value, dtype=torch.float64)
    return float(value)


def _step(spec, count: int):
    if spec.step_type == "int64":
        return _torch().tensor(count)
    return _torch().tensor(float(count), dtype=_scalar_dtype()) if spec.step_type == "tensor" else count


def _param_state(state, name: str, param, target, like, group) -> dict:
    """One param's ``state[p]`` entries of a twin (its step and buffers)."""
    spec = torch_state.layout(state)
    out: dict = {}
    if spec.step in ("state", "last"):
        out[spec.step_key] = _step(spec, int(state.count))
    out.update({key: int(state.count) for key in spec.counters})
    for field in torch_state.buffer_fields(state):
        key, factor = torch_state.torch_key(state, field, group)
        value = getattr(state, field)
        if torch_state.one_per_twin(value):
            out[key] = float(value) if key in spec.floats else int(value) if key in spec.ints else _tensor(value)
            continue
        if field in spec.factors:
            out[key] = _factors_to_torch(torch_state.at(value, name), target, f"flax {name!r} {field}")
            continue
        if hasattr(torch_state.at(value, name), "codes"):
            what = f"flax {name!r} {field}"
            out[key] = _quantized_to_torch(torch_state.at(value, name), target, like, field in spec.signed, what)
            continue
        leaf = np.asarray(_dotted(value)[name])
        if leaf.size == 0 and np.size(param) != 0:
            continue  # a buffer this leaf does not use (Adafactor's factors of a vector)
        if field in spec.factored or (field in spec.lazy and not np.any(leaf)):
            continue
        if field in spec.raveled:
            index = torch_state.raveled_order(
                target.transform, target.shape, leaf.size, f"flax {name!r} {field}", torch_state.in_torch_order(state)
            )
            out[key] = _tensor(_unpermute(leaf, index), like)
            continue
        if leaf.shape == np.shape(param):
            out[key] = _tensor(_inverse(target.transform, target.shape)(leaf * factor), like)
        else:
            out[key] = float(leaf) if key in spec.floats else _tensor(leaf, like)
    for key, array in _factored_to_torch(state, spec, name, param, target).items():
        out[key] = _tensor(array, like)
    return out


def _quantized_to_torch(buffer, target, like, signed: bool, what: str):
    """A ``QuantizedBuffer`` as torchao's state tensor, built with torchao's own constructors:
    ``OptimState8bit`` (codes in the param's shape), ``OptimState4bit`` (two codes a byte) or
    ``OptimStateFp8`` (float8 codes), its apparent dtype the param's (as torchao makes them)."""
    torch = _torch()
    from torchao.optim import subclass_4bit, subclass_8bit, subclass_fp8

    if torch_state.moves(target.transform, target.shape):
        raise ValueError(
            f"{what}: the twin's blocks run over flax's order of the entries, torchao's over torch's, "
            f"which this param's layout changes: its quantized state does not convert"
        )
    codes, shape = np.asarray(buffer.codes), tuple(target.shape)
    scale = torch.from_numpy(np.array(buffer.scale, np.float32))
    if codes.dtype.name == "float8_e4m3fn":
        data = torch.from_numpy(codes.view(np.uint8).copy()).view(torch.float8_e4m3fn)
        return subclass_fp8.OptimStateFp8(data, scale, dtype=like.dtype)
    module = subclass_8bit if codes.shape == shape else subclass_4bit
    qmap = torch.tensor(module.get_qmap_signed() if signed else module.get_qmap_unsigned(), dtype=torch.float32)
    data = torch.from_numpy(codes.copy())
    if module is subclass_8bit:
        return subclass_8bit.OptimState8bit(data, scale, qmap, signed, dtype=like.dtype)
    return subclass_4bit.OptimState4bit(data, scale, qmap, signed, shape, dtype=like.dtype)


def _factors_to_torch(factors, target, what: str) -> list:
    """A leaf's per-dimension factors as torch's list, in the order of torch's dimensions (each
    factor in the twin's precision)."""
    order = torch_state.factor_order(factors, torch_state.transpose_axes(target.transform, target.shape), what)
    out: list = [None] * len(factors)
    for j, factor in enumerate(factors):
        out[order[j]] = None if factor is None else _tensor(factor)
    return out


def _factored_to_torch(state, spec, name: str, param, target) -> dict:
    """``{torch key: array}`` of a twin's factored moments at one leaf: each goes to the torch key
    that reduces the same axis after the layout is undone."""
    leaves = {f: np.asarray(_dotted(getattr(state, f))[name]) for f in spec.factored if getattr(state, f) is not None}
    leaves = {f: leaf for f, leaf in leaves.items() if leaf.size or not np.size(param)}
    if not leaves:
        return {}
    mine = torch_state.factored_axes(spec, {f: v.shape for f, v in leaves.items()}, np.shape(param), f"flax {name!r}")
    axes = torch_state.transpose_axes(target.transform, target.shape)
    if axes is None:
        raise ValueError(f"flax {name!r}: its layout is no transpose, so its factored moments do not map")
    inverse = tuple(int(a) for a in np.argsort(axes))
    moved = {f: torch_state.move_reduced(leaf, mine[f], inverse, spec.factored[f][1]) for f, leaf in leaves.items()}
    theirs = torch_state.fields_by_axis(spec, [axis for axis, _ in moved.values()], len(target.shape))
    out = {}
    for f, (torch_axis, array) in moved.items():
        key = f if spec.factored[f][0] == "shape" else theirs.get(torch_axis)
        if key is None:
            raise ValueError(f"flax {name!r}: its {f!r} reduces a torch axis no torch factored moment reduces")
        out[spec.keys.get(key, key)] = array
    return out


def scheduler_to_torch(scheduler, steps: int, epoch_len: int | None = None) -> dict:
    """Steps a scheduler built on the fresh torch optimizer as the run stepped it by update
    ``steps``, setting the group values it owns; returns its ``state_dict()``.

    A torch ``LRScheduler`` or MMEngine param scheduler: ``step()`` ``steps`` times. A timm
    scheduler (stateless, given the count at each call) as timm's ``train.py`` drives it:
    ``step_update(steps)`` with ``t_in_epochs=False``; with ``t_in_epochs=True``
    ``step(steps // epoch_len)``, the call after the last finished epoch (``epoch_len``: updates
    per epoch); at 0 the values its constructor set. timm's ``PlateauLRScheduler`` keeps its state elsewhere: see
    ``purelr.training.plateau.plateau_to_timm``.
    """
    steps = validate.nonnegative_int("steps", steps)
    _check_scheduler(scheduler)
    if type(scheduler).__name__ == "PlateauLRScheduler":
        raise ValueError(
            "timm's PlateauLRScheduler follows metrics, not the update count: export its purelr state "
            "with purelr.training.plateau.plateau_to_timm(state) and load that"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "lr_scheduler.step() before optimizer.step()"
        if hasattr(scheduler, "step_update") and getattr(scheduler, "t_in_epochs", False):
            if epoch_len is None:
                raise ValueError(
                    f"the {type(scheduler).__name__} steps per epoch (t_in_epochs=True): pass epoch_len= "
                    f"(optimizer updates per epoch)"
                )
            epoch = steps // validate.positive_int("epoch_len", epoch_len)
            if epoch:  # at epoch 0 the values its constructor set
                scheduler.step(epoch)
        elif hasattr(scheduler, "step_update"):
            if steps:  # before the first update: the values its constructor set
                scheduler.step_update(num_updates=steps)
        else:
            for _ in range(steps):
                scheduler.step()
    return scheduler.state_dict()


def _check_scheduler(scheduler) -> None:
    if not hasattr(scheduler, "state_dict") or not hasattr(scheduler, "optimizer"):
        raise TypeError(f"scheduler must be a torch, MMEngine or timm scheduler, got {type(scheduler).__name__}")


def to_torch(
    opt_state,
    params,
    model_state_dict: Mapping,
    optimizer_state_dict: Mapping,
    scheduler=None,
    *,
    names=None,
    batch_stats=None,
    param_names=None,
    labels=None,
    hyperparams: Mapping[str, Any] | None = None,
    scheduler_steps: int | None = None,
    epoch_len: int | None = None,
) -> TorchState:
    """A purelr run as the torch twin's state dicts (the reverse of ``from_torch``).

    Args:
      opt_state: the purelr optimizer state (a twin, ``multi_transform`` groups, wrappers).
      params, batch_stats: the flax trees.
      model_state_dict, optimizer_state_dict: the torch model's and the fresh torch optimizer's
        ``state_dict()`` (names, shapes, dtypes, groups and their flags).
      scheduler: the torch / MMEngine / timm scheduler built on that fresh optimizer, or ``None``;
        it is stepped ``scheduler_steps`` times (default: the first twin's count) and the group
        values it sets (lr, momentum, ...) replace the twin's; a timm scheduler with
        ``t_in_epochs=True`` needs ``epoch_len`` (updates per epoch, see ``scheduler_to_torch``).
      names, param_names, labels: as in ``from_torch``.
      hyperparams: ``{name: value or schedule}`` for every group (a schedule read at the count).

    Returns:
      A ``TorchState``: the model in schedulefree's wrappers' eval mode (``x``, as schedulefree
      checkpoints and a fresh wrapper expect: call ``optimizer.train()`` after loading); its ``scaler_state_dict`` holds the ``loss_scaled`` scaler's entries (to
      update the original scaler's ``state_dict()`` with), ``None`` without one.

    Raises:
      ValueError: as ``from_torch`` for names, shapes, groups and params; for a state holding
        gradients accumulated since the last update.
    """
    if scheduler is not None:
        _check_scheduler(scheduler)
    # schedulefree's wrappers: the torch model in eval mode (x), as a fresh wrapper takes it
    eval_params = torch_wrappers.wrapper_params(opt_state, params, train=False)
    model = model_to_torch(eval_params, model_state_dict, names=names, batch_stats=batch_stats)
    optimizer = optimizer_to_torch(
        opt_state,
        params,
        model_state_dict,
        optimizer_state_dict,
        names=names,
        batch_stats=batch_stats,
        param_names=param_names,
        labels=labels,
        hyperparams=hyperparams,
    )
    scheduler_state = None
    if scheduler is not None:
        counts = [
            int(s.count) for s in jax.tree.leaves(opt_state, is_leaf=torch_state.is_twin) if torch_state.is_twin(s)
        ]
        steps = counts[0] if scheduler_steps is None else scheduler_steps
        before = [dict(g) for g in scheduler.optimizer.param_groups]
        scheduler_state = scheduler_to_torch(scheduler, steps, epoch_len)
        for group, old, new in zip(optimizer["param_groups"], before, scheduler.optimizer.param_groups):
            for key, value in new.items():
                if key != "params" and (key == "lr" or key not in old or _changed(old[key], value)):
                    group[key] = value
    scaled = loss_scale_state(opt_state)
    scaler = None if scaled is None else torch_wrappers.scaler_to_torch(scaled.scaler)
    return TorchState(model, optimizer, scheduler_state, scaler)


def _changed(old, new) -> bool:
    try:
        return bool(
            np.any(
                np.asarray(_numpy(old) if hasattr(old, "detach") else old, dtype=object)
                != np.asarray(new, dtype=object)
            )
        )
    except (TypeError, ValueError):
        return old is not new


def averaged_to_torch(state, state_dict: Mapping, *, names=None) -> dict:
    """An ``AveragedState`` as the ``state_dict()`` of torch's ``AveragedModel``, timm's
    ``ModelEmaV3`` or MMEngine's EMA model: ``state_dict`` is that model's own (its ``module.*``
    entries, and its ``n_averaged`` / ``steps``)."""
    entries = torch_wrappers.module_entries(state_dict)
    if _is_variables(state.average):
        model = model_to_torch(state.average["params"], entries, names=names, batch_stats=state.average["batch_stats"])
    else:
        model = model_to_torch(state.average, entries, names=names)
    out = {k: v for k, v in state_dict.items()}
    out.update({f"module.{k}": v for k, v in model.items()})
    for key in ("n_averaged", "steps"):
        if key in out:
            out[key] = _tensor(np.asarray(int(state.n_averaged)), out[key])
    return out


def check_scheduler_state(scheduler, state_dict: Mapping, what: str = "scheduler_state_dict") -> None:
    """Refuses the ``state_dict`` of another scheduler type before ``scheduler.load_state_dict``
    (which takes any dict): its keys must be those of ``scheduler.state_dict()``, and so must the
    members' of a ``SequentialLR`` / ``ChainedScheduler``."""
    validate.mapping(what, state_dict)
    _check_keys_like(scheduler.state_dict(), state_dict, what, type(scheduler).__name__)


def _check_keys_like(expected: Mapping, given: Mapping, what: str, kind: str) -> None:
    missing, unknown = sorted(set(expected) - set(given)), sorted(set(given) - set(expected))
    if missing or unknown:
        raise ValueError(
            f"{what} is not a {kind}'s state: it lacks {missing} and has {unknown} (a scheduler of another type)"
        )
    for i, (mine, theirs) in enumerate(zip(expected.get("_schedulers", []), given.get("_schedulers", []))):
        _check_keys_like(mine, theirs, f"{what}['_schedulers'][{i}]", f"member {i}")
