"""How each purelr twin's state sits in its original's ``optimizer.state_dict()``: one table entry
per twin, read by ``from_torch`` (torch -> purelr) and ``to_torch`` (purelr -> torch).

A twin's state (``purelr.optim.base``) is ``count``, ``hyperparams`` and buffers named after the
keys of the original's ``optimizer.state[p]``. A ``Layout`` says what differs from that default:
where the original keeps the update count (``state[p]['step']`` as a tensor or an int, the param
group's ``'step'``, nowhere), buffers stored under another key, buffers that reduce an axis of the
param (Adafactor's factored moments), keys the original recomputes at every step (not kept by the
twin), and a wrapped twin's state (Lookahead). Adding a twin is one entry of ``LAYOUTS``, keyed by
its state's class name; a twin without an entry converts with the default ``Layout()`` (buffers
under their own names, ``state[p]['step']`` a tensor).

Buffers come in four shapes: like the param (converted with the param's layout, e.g. a Linear
weight transposed), a scalar per param (NovoGrad's ``exp_avg_sq``, copied), one scalar for the
whole twin that the original keeps once per param, all equal (ASGD's ``eta``, NAdam's
``mu_product``), or the param reduced over one axis (``factored``). A leaf's empty buffer
(shape ``(0,)``: Adafactor's unused factors) has no key in the original's state.

This module imports no torch.
"""

from __future__ import annotations

from typing import Mapping, NamedTuple

import numpy as np


class Views(NamedTuple):
    """heavyball 3.2.1's state of a twin: ``state[p][0]`` (its one view of the param), keys named
    after the chained functions and their place in the chain.

    Attributes:
      keys: ``{twin field: heavyball key}``.
      batched: fields kept with a leading batch dimension of 1 (each factor of a list).
      view: the shape heavyball preconditions: ``"merged"`` (SOAP's ``merge_dims``) or
        ``"squeezed"`` (PSGD's dims of size 1 dropped).
      lines: factor fields kept as ``(shape, upper triangle as a line)`` (a diagonal as
        ``(None, diagonal)``) where the group's ``store_triu_as_line`` (default True).
      initialized: ``is_initialized``: the indices of the chain's transforms holding state.
      extra: heavyball keys the twin keeps nothing for: ``None``, or float64 zeros of that shape.
      inner_group: ``{twin field: key}`` of ``state_dict()['heavyball']['inner_group']``.
    """

    keys: Mapping[str, str]
    batched: tuple[str, ...]
    view: str
    lines: tuple[str, ...] = ()
    initialized: tuple[int, ...] = ()
    extra: Mapping[str, tuple | None] = {}
    inner_group: Mapping[str, str] = {"cumulative_prob": "cumulative_prob"}


class Layout(NamedTuple):
    """One twin's state in its original's ``state_dict``.

    Attributes:
      step: ``"state"`` (``state[p][step_key]``), ``"last"`` (``state[p][step_key]`` of each param
        group's last param: DeepSpeed's FusedAdam increments only that one, the others keep the
        step they started at), ``"group"`` (``param_groups[g][step_key]``) or ``None`` (the
        original keeps no count: ``from_torch`` needs ``count=``).
      step_type: ``"tensor"`` (a 0-d tensor of torch's default float dtype), ``"int64"`` (a 0-d
        int64 tensor) or ``"int"``.
      step_key: the key of the count.
      keys: ``{twin field: torch key}`` where they differ.
      factored: ``{twin field: (axis, keepdims)}`` for buffers that reduce one axis of the param
        (``axis`` from the end, in each side's own layout; ``None``: found from the shapes, the
        row reducing the later axis; ``"shape"``: the axis where the kept dimension is 1, the
        field keeping its key across layouts).
      recomputed: torch keys that every step recomputes before reading (the twin keeps none).
      group: ``{twin hyperparameter: (group key, index)}`` beyond ``GROUP_KEYS``.
      inner: the field holding a wrapped twin's state, whose keys share ``state[p]``.
      floats: torch keys kept as Python floats rather than tensors.
      lazy: fields the original creates at a later step: absent from torch's state, the twin's
        value stays as ``init`` left it; exported only once the twin's buffer is not all zeros.
      alternate: ``{field: (torch key, factor, group key)}``: another original of the same twin
        keeps the buffer times ``factor`` under that key; its param groups have ``group key``.
      flat: one state for all params, kept under the first param (LBFGS): vectors over the
        params raveled in torch's order and layout, histories as lists (``FLAT_LISTS``).
      unkept: fields the original keeps nowhere in its ``state_dict`` (a PRNG key: torch draws
        from its own generator): not exported; ``from_torch`` leaves them as ``init`` made them.
      counters: more torch keys holding the update count, as Python ints.
      ints: torch keys of one-per-twin scalars kept as Python ints.
      factors: fields holding per leaf a tuple of per-dimension factors (``None`` for a dimension
        without one), kept by torch as a list in the order of its own layout's dimensions.
      in_group: one-per-twin scalars the original keeps in every param group (D-Adaptation's
        ``d``, ``k``), as Python numbers.
      raveled: fields holding per leaf the param raveled in its own layout (Prodigy's ``p0``):
        reordered through the layout, which a slice (``slice_p > 1``) of a moved param cannot be,
        unless the ``torch_order`` field says they are raveled in torch's layout already.
      torch_order: a boolean field: true when the ``raveled`` fields follow torch's layout (Prodigy
        built with ``torch_layout``): copied as they are. Not exported.
      low: a field holding ``{in_group field: low half}``: the twin keeps those scalars as
        double-float pairs (``purelr.optim.double_float``); torch's Python float is the sum.
      foreign: ``{param group key: why}``: an original whose state this table does not describe,
        told by a key of its param groups; both directions refuse it.
      views: heavyball's state, per view of the param (``Views``; converted by
        ``purelr.training.heavyball_state``).
      step_beside: the step is kept only beside this buffer (AdaMuon's ``exp_avg_sq``); without
        it the original keeps no step.
      signed: quantized buffers (torchao's ``OptimState8bit`` / ``4bit``) whose code map is the
        signed one (``exp_avg``); the others' is unsigned.
      flags: ``{param group key: value}`` that the original's groups hold when it is this twin
        (timm's Muon: ``nesterov`` picks NAdamW or AdamW for its fallback); a group holding
        another value is refused.
      routed: ``(state key, group key)``: the original shares its param groups with the sibling
        twin of the same ``optax.multi_transform`` (timm's Muon and its NAdamW / AdamW fallback);
        ``state[p][state key]`` is ``True`` on this twin's params, ``False`` on the sibling's, whose
        lr is the group's times ``group[group key]``.
      attributes: hyperparameters the original keeps as attributes of the optimizer object, in
        no param group and no ``state_dict`` (schedulefree's wrappers' ``momentum``): not
        exported (build the torch optimizer with them); ``from_torch`` keeps the twin's.
      group_added: hyperparameters the original adds to the (wrapped) optimizer's param groups at
        its first step (schedulefree's wrappers' ``lr_max``, ``weight_sum``): exported once the
        twin has stepped, though the fresh groups lack them; groups holding them all mark a
        state of this original (``wrapped_by``).
    """

    step: str | None = "state"
    step_type: str = "tensor"
    step_key: str = "step"
    keys: Mapping[str, str] = {}
    factored: Mapping[str, tuple[int | str | None, bool]] = {}
    recomputed: tuple[str, ...] = ()
    group: Mapping[str, tuple[str, int | None]] = {}
    inner: str | None = None
    floats: tuple[str, ...] = ()
    lazy: tuple[str, ...] = ()
    alternate: Mapping[str, tuple[str, float, str]] = {}
    flat: bool = False
    unkept: tuple[str, ...] = ()
    counters: tuple[str, ...] = ()
    ints: tuple[str, ...] = ()
    factors: tuple[str, ...] = ()
    in_group: tuple[str, ...] = ()
    raveled: tuple[str, ...] = ()
    torch_order: str | None = None
    low: str | None = None
    foreign: Mapping[str, str] = {}
    views: Views | None = None
    step_beside: str | None = None
    signed: tuple[str, ...] = ()
    flags: Mapping[str, object] = {}
    routed: tuple[str, str] | None = None
    attributes: tuple[str, ...] = ()
    group_added: tuple[str, ...] = ()


# torch param-group entries that hold several of a twin's hyperparameters
GROUP_KEYS = {
    "beta1": ("betas", 0),
    "beta2": ("betas", 1),
    "beta3": ("betas", 2),
    "etaminus": ("etas", 0),
    "etaplus": ("etas", 1),
    "step_size_min": ("step_sizes", 0),
    "step_size_max": ("step_sizes", 1),
}

_NO_STEP = Layout(step=None)
_INT_STEP = Layout(step_type="int")
# schedulefree's ScheduleFreeWrapper(Reference): 'z' (and the Reference's 'x', 'y') beside the base's
# buffers in state[p]; 'k', 'lr_max', 'weight_sum' added to the base's groups at the first step
# (the Reference's 'weight_decay_at_y' at construction); the rest are attributes of the wrapper
_WRAPPER = Layout(
    step="group",
    step_type="int",
    step_key="k",
    inner="inner_state",
    attributes=("momentum", "r", "weight_lr_power", "weight_decay_at_y"),
    group_added=("lr_max", "weight_sum"),
)
WRAPPERS = {
    "ScheduleFreeWrapperState": "schedule_free_wrapper(base)",
    "ScheduleFreeWrapperReferenceState": "schedule_free_wrapper_reference(base)",
}
_SCHEDULE_FREE = Layout(step="group", step_type="int", step_key="k")
_TIMM_FACTORED = {"exp_avg_sq_row": (None, False), "exp_avg_sq_col": (None, False)}

# State class name -> Layout. Twins whose original keeps `state[p]['step']` as a tensor and every
# buffer under the field's name need no entry (torch.optim's Adam, AdamW, Adamax, NAdam, RAdam,
# Adagrad, Adadelta, RMSprop, Rprop, ASGD; timm's NAdamW, RMSpropTF, Adopt).
LAYOUTS: dict[str, Layout] = {
    "SGDState": _NO_STEP,  # torch.optim.SGD
    "SGDWState": _NO_STEP,  # timm.optim.SGDW
    "SGDPState": _NO_STEP,  # timm.optim.SGDP (buffer 'momentum')
    "LarsState": _NO_STEP,  # timm.optim.Lars, mmpretrain LARS
    "LionState": _NO_STEP,  # timm.optim.Lion
    "MuonState": _NO_STEP,  # torch.optim.Muon
    "SingleDeviceMuonState": _NO_STEP,  # muon.SingleDeviceMuon (Keller Jordan's muon package)
    "AuxAdamState": _INT_STEP,  # the Adam part of muon.SingleDeviceMuonWithAuxAdam
    "NAdamLegacyState": Layout(step_type="int", floats=("m_schedule",)),  # timm.optim.NAdamLegacy
    "LambState": Layout(step="group"),  # timm.optim.Lamb (a tensor), mmpretrain Lamb (an int)
    "AdanState": Layout(  # timm.optim.Adan; mmpretrain's Adan keeps +grad as 'pre_grad'
        step="group", step_type="int", alternate={"neg_pre_grad": ("pre_grad", -1.0, "max_grad_norm")}
    ),
    "AdaBeliefState": _INT_STEP,
    "AdamPState": _INT_STEP,
    "MADGRADState": _INT_STEP,
    "MarsState": _INT_STEP,
    "NovoGradState": _INT_STEP,  # timm.optim.NvNovoGrad
    "FusedAdamState": Layout(step="last", step_type="int"),  # deepspeed.ops.adam.FusedAdam
    "FusedLambState": _INT_STEP,  # deepspeed.ops.lamb.FusedLamb
    "AdafactorState": Layout(factored={"row_var": (-1, True), "col_var": (-2, True)}),  # torch.optim
    "HfAdafactorState": Layout(  # transformers.Adafactor
        step_type="int", factored={"exp_avg_sq_row": (-1, False), "exp_avg_sq_col": (-2, False)}
    ),
    "TimmAdafactorState": Layout(step_type="int", factored=_TIMM_FACTORED, recomputed=("RMS",)),
    "LaPropState": Layout(floats=("exp_avg_lr_1",)),  # timm.optim.LaProp
    "LBFGSState": Layout(step=None, flat=True),  # torch.optim.LBFGS
    "AdafactorBigVisionState": Layout(  # timm.optim.AdafactorBigVision
        factored={"exp_avg_sq_r": ("shape", True), "exp_avg_sq_c": ("shape", True)}
    ),
    # torchao.optim: its bf16 stochastic rounding draws from torch's generator
    "LowBitAdamState": Layout(unkept=("key",), signed=("exp_avg",)),
    "KronState": Layout(step_type="int", ints=("update_counter",), factors=("Q",), unkept=("key",)),  # timm.optim.Kron
    "AdahessianState": Layout(  # timm.optim.Adahessian; its estimate p.hess is an attribute of the param
        step_type="int", counters=("hessian step",), unkept=("hess", "key")
    ),
    # schedulefree's ScheduleFree, Reference and Closure forms: the update count is the group's 'k'
    "ScheduleFreeState": _SCHEDULE_FREE,
    "ScheduleFreeReferenceState": _SCHEDULE_FREE,
    "ScheduleFreeClosureState": _SCHEDULE_FREE,
    # schedulefree's ScheduleFreeWrapper(Reference) around any base (its params in eval mode: x)
    "ScheduleFreeWrapperState": _WRAPPER,
    "ScheduleFreeWrapperReferenceState": _WRAPPER._replace(attributes=("momentum", "r", "weight_lr_power")),
    "RAdamLegacyState": _INT_STEP,  # timm.optim.RAdamLegacy
    # timm.optim.Muon: Muon and fallback params in one param group, told apart by state[p]['use_muon']
    "TimmMuonState": Layout(step_beside="exp_avg_sq", routed=("use_muon", "fallback_lr_scale")),
    "NAdamWState": Layout(flags={"nesterov": True}),  # timm.optim.NAdamW; timm's Muon's fallback with nesterov
    "AdamWLegacyState": Layout(flags={"nesterov": False}),  # timm.optim.AdamWLegacy; Muon's fallback without
    "SOAPState": Layout(  # heavyball.SOAP
        factors=("GG", "Q"),
        views=Views(
            keys={
                f: f"scale_by_soap_{f}_{2 if f.startswith('exp') else 3}" for f in ("exp_avg", "exp_avg_sq", "GG", "Q")
            },
            batched=("exp_avg", "exp_avg_sq", "GG", "Q"),
            view="merged",
            initialized=(0, 2, 3),
        ),
        step="group",  # heavyball's count: the group's step_count (and state[first p][0]['step'])
        step_type="int64",
        step_key="step_count",
    ),
    "PSGDKronState": Layout(  # heavyball.PSGDKron: its normals come from torch's generator
        factors=("Q", "running_lower_bound"),
        unkept=("key",),
        views=Views(
            keys={
                "exp_avg": "exp_avg_exp_avg_6",
                "Q": "scale_by_psgd_Q_4",
                "running_lower_bound": "scale_by_psgd_running_lower_bound_4",
            },
            batched=("Q", "running_lower_bound"),
            view="squeezed",
            lines=("Q",),
            initialized=(0, 3, 4, 5, 6),
            extra={"scale_by_psgd_Q_cache_4": None, "scale_by_psgd_step_4": (1,)},
        ),
        step="group",  # heavyball's count: the group's step_count (and state[first p][0]['step'])
        step_type="int64",
        step_key="step_count",
    ),
    # prodigyopt.Prodigy, dadaptation's DAdaptAdam / SGD / AdaGrad / Adan / Lion: d and k in every group
    "ProdigyState": Layout(
        step_type="int",
        in_group=("k", "d", "d_max", "d_numerator"),
        raveled=("s", "p0"),
        torch_order="torch_order",
        low="low",
    ),
    "DAdaptAdamState": Layout(step_type="int", in_group=("k", "d", "numerator_weighted"), low="low"),
    "DAdaptAdanState": Layout(step_type="int", in_group=("k", "d", "gsq_weighted"), low="low"),
    "DAdaptSGDState": Layout(step=None, in_group=("k", "d", "numerator_weighted", "g0_norm"), low="low"),
    "DAdaptAdaGradState": Layout(step=None, in_group=("k", "d", "gsq_weighted", "sksq_weighted", "skl1"), low="low"),
    "DAdaptLionState": Layout(step=None, in_group=("k", "d", "numerator_weighted"), low="low"),
    "LookaheadState": Layout(
        step="group", step_type="int", step_key="lookahead_step", inner="inner_state", lazy=("lookahead_slow_buff",)
    ),
}


# LBFGS: flat vectors, the history lists (rows of the twin's fixed-size arrays, ``num_old`` in
# use), Python numbers, tensors; ``al`` is scratch that every step rewrites
FLAT_VECTORS = ("d", "prev_flat_grad")
FLAT_LISTS = {"old_dirs": True, "old_stps": True, "ro": False}  # list of vectors or of scalars
FLAT_NUMBERS = {"t": float, "prev_loss": float, "n_iter": int, "func_evals": int}
FLAT_RECOMPUTED = ("al",)


def layout(state) -> Layout:
    spec = LAYOUTS.get(type(state).__name__, Layout())
    if spec.step_beside is not None and getattr(state, spec.step_beside, None) is None:
        return spec._replace(step=None)
    return spec


def wrapped_by(state, groups) -> str | None:
    """Why torch's param ``groups`` are not those of the twin ``state``: they hold every key
    schedulefree's wrappers add at their first step (``Layout.group_added``), which no twin of
    its chain keeps; ``None`` when they are not."""
    added = _WRAPPER.group_added
    kept = {name for member in chain(state) for name in member.hyperparams}
    for g, group in enumerate(groups):
        if all(key in group for key in added) and not set(added) <= kept:
            return (
                f"torch's param group {g} has {', '.join(map(repr, added))} (and 'k': {group.get('k')!r}): the "
                f"state of schedulefree's ScheduleFreeWrapper(Reference) around the optimizer, which the "
                f"{type(state).__name__} twin does not keep: build the twin as "
                f"purelr.optim.{' or '.join(WRAPPERS.values())} of it"
            )
    return None


def is_twin(state) -> bool:
    """A purelr twin's state: a NamedTuple starting with ``count`` and ``hyperparams``."""
    return isinstance(state, tuple) and getattr(state, "_fields", ())[:2] == ("count", "hyperparams")


def chain(state) -> list:
    """The twin and the twins it wraps, outermost first (Lookahead, then its optimizer)."""
    states = [state]
    inner = layout(state).inner
    while inner is not None:
        states.append(getattr(states[-1], inner))
        inner = layout(states[-1]).inner
    return states


def at(tree, name: str):
    """The subtree of a params-like ``tree`` at a dotted leaf name (a leaf's tuple of factors)."""
    for part in name.split("."):
        tree = tree[int(part)] if isinstance(tree, (list, tuple)) else tree[part]
    return tree


def factor_order(factors, axes: tuple[int, ...] | None, what: str) -> list[int]:
    """``order`` with ``torch_list[order[j]] == factors[j]``: a leaf's per-dimension factors follow
    their dimensions through the layout ``np.transpose(torch, axes)``."""
    if axes is not None and len(factors) == len(axes):
        return list(axes)
    if axes is not None and list(axes) == sorted(axes):
        return list(range(len(factors)))
    raise ValueError(f"{what}: {len(factors)} per-dimension factors do not follow a layout of axes {axes}")


def raveled_order(transform, shape, size: int, what: str, torch_order: bool = False) -> np.ndarray:
    """``index`` with ``flax_raveled = torch_raveled[index]`` for a buffer of ``size`` entries
    holding a param of torch ``shape`` raveled (every ``slice_p``-th entry when shorter), in
    torch's layout already when ``torch_order``."""
    if torch_order:
        return np.arange(size)
    index = np.asarray(transform(np.arange(int(np.prod(shape))).reshape(shape))).ravel()
    if size == index.size:
        return index
    if np.array_equal(index, np.arange(index.size)):
        return np.arange(size)
    raise ValueError(
        f"{what}: a slice of a param its layout moves keeps other entries on each side "
        "(build the twin with torch_layout, or use slice_p=1)"
    )


def moves(transform, shape) -> bool:
    """Whether a layout ``transform`` of torch arrays of ``shape`` reorders their entries (row-major)."""
    index = np.arange(int(np.prod(shape))).reshape(shape)
    return not np.array_equal(np.asarray(transform(index)).ravel(), index.ravel())


def one_per_twin(value) -> bool:
    """A buffer that is one scalar for the whole twin (an array, not a tree like the params)."""
    return hasattr(value, "shape") and np.ndim(value) == 0


def buffer_fields(state) -> dict[str, str]:
    """``{twin field: torch key}`` of the buffers this twin keeps (not ``None``)."""
    spec = layout(state)
    return {
        field: spec.keys.get(field, field)
        for field in state._fields[2:]
        if field not in (spec.inner, spec.torch_order, spec.low)
        and field not in spec.unkept + spec.in_group
        and getattr(state, field) is not None
    }


def torch_key(state, field: str, group: Mapping) -> tuple[str, float]:
    """``(key, factor)`` of a buffer in the state of the original whose param ``group`` is given."""
    spec = layout(state)
    if field in spec.alternate and spec.alternate[field][2] in group:
        return spec.alternate[field][0], spec.alternate[field][1]
    return spec.keys.get(field, field), 1.0


def group_key(state, name: str) -> tuple[str, int | None]:
    return layout(state).group.get(name, GROUP_KEYS.get(name, (name, None)))


def transpose_axes(transform, shape) -> tuple[int, ...] | None:
    """The axes ``a`` with ``transform(x) == np.transpose(x, a)`` for arrays of ``shape`` (``None``
    when ``transform`` is no transpose), found by following the entries' indices."""
    shape = tuple(shape)
    index = np.arange(int(np.prod(shape))).reshape(shape)
    moved = np.asarray(transform(index))
    if moved.ndim != len(shape) or sorted(moved.shape) != sorted(shape):
        return None
    strides = [int(np.prod(shape[i + 1 :])) for i in range(len(shape))]
    axes, free = [], [i for i in range(len(shape))]
    for j, size in enumerate(moved.shape):
        if size > 1:
            step = int(moved[(0,) * j + (1,) + (0,) * (moved.ndim - j - 1)] - moved.flat[0])
            axis = strides.index(step) if step in strides else -1
        else:
            axis = next((i for i in free if shape[i] == 1), -1)
        if axis not in free:
            return None
        free.remove(axis)
        axes.append(axis)
    return tuple(axes) if np.array_equal(np.transpose(index, axes), moved) else None


def _without(shape, axis: int, keepdims: bool) -> tuple:
    shape = tuple(shape)
    return shape[:axis] + ((1,) if keepdims else ()) + shape[axis + 1 :]


def factored_axes(spec: Layout, shapes: Mapping[str, tuple], param_shape, what: str) -> dict[str, int]:
    """``{field: axis of the param it reduces}`` for the factored buffers in ``shapes`` (their
    shapes, on one side). A fixed axis is the table's; timm's (``None``) pair is ``(col, row)`` =
    ``(0, 1)`` or ``(n - 2, n - 1)``, whichever the shapes fit (the row reduces the later axis)."""
    n = len(param_shape)
    axes = {f: a % n for f in shapes if isinstance(a := spec.factored[f][0], int)}
    for f in (f for f in shapes if spec.factored[f][0] == "shape"):
        ones = [i for i in range(n) if tuple(shapes[f])[i : i + 1] == (1,) and param_shape[i] != 1]
        if len(shapes[f]) != n or len(ones) != 1:
            raise ValueError(f"{what}: cannot tell which axis of {tuple(param_shape)} {f} {tuple(shapes[f])} reduces")
        axes[f] = ones[0]
    free = [f for f in spec.factored if f in shapes and spec.factored[f][0] is None]
    for pair in ((1, 0), (n - 1, n - 2)) if free else ((),):
        guess = dict(zip(free, pair))
        if all(tuple(shapes[f]) == _without(param_shape, a, spec.factored[f][1]) for f, a in guess.items()):
            return {**axes, **guess}
    raise ValueError(
        f"{what}: cannot tell which axes of {tuple(param_shape)} the factored moments {dict(shapes)} reduce"
    )


def fields_by_axis(spec: Layout, axes, n: int) -> dict[int, str]:
    """``{param axis: field}``: which factored buffer reduces each of ``axes`` (a fixed axis is the
    table's; of timm's pair, the row reduces the later axis)."""
    fixed = {a % n: f for f, (a, _) in spec.factored.items() if isinstance(a, int)}
    free = [f for f, (a, _) in spec.factored.items() if a is None]
    rest = sorted((a for a in axes if a not in fixed), reverse=True)
    return {**{a: fixed[a] for a in axes if a in fixed}, **dict(zip(rest, free))}


def move_reduced(stat, axis: int, axes: tuple[int, ...], keepdims: bool):
    """``(new axis, array)``: a buffer reducing ``axis`` of a param, in the layout ``np.transpose(param, axes)``."""
    stat = np.asarray(stat)
    full = stat if keepdims else np.expand_dims(stat, axis)
    moved = np.transpose(full, axes)
    new_axis = axes.index(axis)
    return new_axis, moved if keepdims else np.squeeze(moved, new_axis)


def in_torch_order(state) -> bool:
    """Whether the twin's ``raveled`` fields follow torch's layout already (``Layout.torch_order``)."""
    field = layout(state).torch_order
    return field is not None and bool(np.asarray(getattr(state, field)))
