"""Torch-style parameter groups as one ``optax.multi_transform``, per-group schedules, unfreezing.

``torch.optim.SGD([{'params': model.base.parameters()}, {'params': model.fc.parameters(),
'lr': 1e-3}], lr=1e-2, momentum=0.9)`` becomes::

    param_groups(purelr.optim.sgd, params, [{"params": "base"}, {"params": "fc", "lr": 1e-3}],
                 lr=1e-2, momentum=0.9)

A selector picks leaves by dotted name (see ``purelr.params.module_kinds.dotted_names``): a string is a
path prefix ending at a ``.`` (``"fc"`` takes ``fc.kernel``, not ``fc2.kernel``), a compiled
``re.Pattern`` is searched in the name, a callable is a predicate ``(name, leaf) -> bool``, and a
list or tuple takes the union of its selectors.

Per-group schedules: ``schedules={"lr": factory}`` with ``factory(base) -> schedule`` (such as
``functools.partial(purelr.schedules.torch.cosine_annealing_lr, T_max=100, eta_min=1e-5)``) gives
every group the schedule started from its own base value, as torch's and MMCV's schedulers scale
each group's own ``initial_lr``; arguments bound in the factory (``eta_min``) stay absolute.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax

from purelr.optim.adagrad import adagrad
from purelr.optim.dadapt_adagrad import dadapt_adagrad
from purelr.optim.dadapt_adam import dadapt_adam
from purelr.optim.dadapt_adan import dadapt_adan
from purelr.optim.dadapt_lion import dadapt_lion
from purelr.optim.dadapt_sgd import dadapt_sgd
from purelr.optim.prodigy import prodigy
from purelr.params.module_kinds import dotted_names

GROUP_KEYS = ("params", "name", "frozen", "frozen_until")
# Settings torch takes from the constructor's arguments whatever a group says: Adagrad fills
# ``state['sum']`` with the constructor's ``initial_accumulator_value``.
CONSTRUCTOR_ONLY = {adagrad: ("initial_accumulator_value",)}
# Optimizers whose step sums over every group (one ``d`` estimate): their groups go into the one
# transformation (``groups=``, ``param_labels=``), not an ``optax.multi_transform``.
GLOBAL_SUMS = (prodigy, dadapt_adam, dadapt_sgd, dadapt_adagrad, dadapt_adan, dadapt_lion)


class DelayedState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as optax's states do
    inner_state: Any


def matches(selector, name: str, leaf) -> bool:
    """Whether ``selector`` (prefix, ``re.Pattern``, predicate, or a list of them) takes the leaf."""
    if isinstance(selector, str):
        return name == selector or name.startswith(selector + ".") or selector == ""
    if isinstance(selector, re.Pattern):
        return selector.search(name) is not None
    if isinstance(selector, (list, tuple)):
        return any(matches(s, name, leaf) for s in selector)
    if callable(selector):
        return bool(selector(name, leaf))
    raise TypeError(
        f"a selector must be a path prefix, a re.Pattern, a predicate (name, leaf) or a list of them, got {selector!r}"
    )


def selected(selector, params, what: str) -> list[bool]:
    """One flag per leaf; raises naming ``what`` when the selector takes no leaf."""
    flags = [matches(selector, name, leaf) for name, leaf in zip(dotted_names(params), jax.tree.leaves(params))]
    if not any(flags):
        raise ValueError(f"{what} = {selector!r} matches no parameter")
    return flags


def delayed(inner: optax.GradientTransformation, start: int) -> optax.GradientTransformation:
    """Zero updates for updates ``0 .. start - 1``, then ``inner`` from its initial state: torch's
    ``optimizer.add_param_group`` after ``start`` steps (the new params' state starts empty)."""

    def init_fn(params):
        return DelayedState(jnp.zeros((), jnp.int32), inner.init(params))

    def update_fn(updates, state, params=None):
        active = state.count >= start
        new_updates, new_inner = inner.update(updates, state.inner_state, params)
        pick = lambda new, old: jnp.where(active, new, old)
        return (
            jax.tree.map(lambda u: jnp.where(active, u, jnp.zeros_like(u)), new_updates),
            DelayedState(optax.safe_int32_increment(state.count), jax.tree.map(pick, new_inner, state.inner_state)),
        )

    return optax.GradientTransformation(init_fn, update_fn)


def group_transform(
    optimizer: Callable,
    hyperparams: Mapping[str, Any],
    schedules: Mapping[str, Callable] | None = None,
    *,
    frozen: bool = False,
    frozen_until: int | None = None,
) -> optax.GradientTransformation:
    """``optimizer(**hyperparams)`` for one group, each ``schedules[name]`` applied to the group's
    base value of ``name``; ``optax.set_to_zero()`` when frozen; ``delayed`` by ``frozen_until``
    updates, its schedules then read at the global step (``count + frozen_until``)."""
    if frozen:
        return optax.set_to_zero()
    hyperparams = dict(hyperparams)
    for name, factory in (schedules or {}).items():
        if name not in hyperparams:
            raise ValueError(f"schedules[{name!r}] needs a base value: give {name}=...")
        hyperparams[name] = factory(hyperparams[name])
    if not frozen_until:
        return optimizer(**hyperparams)
    shift = lambda f: (lambda step: f(step + frozen_until)) if callable(f) else f
    return delayed(optimizer(**{k: shift(v) for k, v in hyperparams.items()}), frozen_until)


def param_groups(
    optimizer: Callable,
    params,
    groups: Sequence[Mapping[str, Any]],
    *,
    schedules: Mapping[str, Callable] | None = None,
    **defaults,
) -> optax.GradientTransformation:
    """Twin of ``torch.optim.Optimizer(params=[group, ...], **defaults)``.

    Each group is a dict: ``params`` (a selector), optional ``name`` (its label, else ``group{i}``),
    ``frozen=True`` (never updated), ``frozen_until=N`` (``add_param_group`` after N updates; for
    epoch E give ``E * epoch_len``), and hyperparameter overrides given to ``optimizer`` over
    ``defaults``. Every leaf must be in exactly one group (torch raises "some parameters appear in
    more than one parameter group"). The state's hyperparameters per group: ``hyperparams_in_force``.
    A group's ``initial_accumulator_value`` for ``adagrad`` is ignored, as torch ignores it
    (``CONSTRUCTOR_ONLY``). The optimizers of ``GLOBAL_SUMS`` (Prodigy, D-Adaptation) get their
    groups inside one transformation, as their step sums over all groups.
    """
    names = dotted_names(params)
    owner: list[str | None] = [None] * len(names)
    transforms = {}
    for i, group in enumerate(groups):
        if not isinstance(group, Mapping) or "params" not in group:
            raise TypeError(f"groups[{i}] must be a dict with a 'params' selector, got {group!r}")
        label = str(group.get("name", f"group{i}"))
        if label in transforms:
            raise ValueError(f"groups[{i}]: name {label!r} is used twice")
        for j, taken in enumerate(selected(group["params"], params, f"groups[{i}]['params']")):
            if taken and owner[j] is not None:
                raise ValueError(f"parameter {names[j]!r} is in more than one group: {owner[j]!r} and {label!r}")
            owner[j] = label if taken else owner[j]
        ignored = GROUP_KEYS + CONSTRUCTOR_ONLY.get(optimizer, ())
        if optimizer in GLOBAL_SUMS:
            if group.get("frozen") or group.get("frozen_until") or schedules:
                raise ValueError(
                    f"groups[{i}]: frozen, frozen_until and schedules= are not supported for "
                    f"{optimizer.__name__}, whose groups share one step size estimate (give a group lr=0 "
                    "or a schedule as the lr)"
                )
            transforms[label] = {k: v for k, v in group.items() if k not in ignored}
            continue
        hyperparams = {**defaults, **{k: v for k, v in group.items() if k not in ignored}}
        transforms[label] = group_transform(
            optimizer,
            hyperparams,
            schedules,
            frozen=bool(group.get("frozen", False)),
            frozen_until=group.get("frozen_until"),
        )
    missing = [name for name, label in zip(names, owner) if label is None]
    if missing:
        raise ValueError(f"parameters in no group: {missing}")
    if optimizer in GLOBAL_SUMS:
        return optimizer(**defaults, groups=transforms, param_labels=by_name(dict(zip(names, owner))))
    return optax.multi_transform(transforms, by_name(dict(zip(names, owner))))


def by_name(labels: Mapping[str, str] | Any) -> Callable:
    """``params -> label tree`` from ``{dotted name: label}`` or a label pytree: the labels follow
    the names, so the tree optax is given may differ in its wrappers (an nnx ``State`` of
    ``Param``s at ``init``, of plain arrays at ``update``)."""
    if not isinstance(labels, Mapping) or not all(isinstance(v, str) for v in labels.values()):
        labels = dict(zip(dotted_names(labels), jax.tree.leaves(labels)))

    def label_tree(params):
        return jax.tree.unflatten(jax.tree.structure(params), [labels[name] for name in dotted_names(params)])

    return label_tree


def hyperparams_in_force(state) -> dict[str, dict[str, jax.Array]]:
    """``{label: {name: value used at the last update}}``: the ``hyperparams`` of every purelr
    optimizer state inside ``state``, whatever wraps it (``optax.chain``, clipping,
    ``purelr.training.accumulate``, ``optax.masked``, ``optax.MultiSteps``, ``optax.inject_hyperparams``,
    a flax ``TrainState``, ...); torch's ``optimizer.param_groups[i]['lr']`` for logging.

    The label is the ``optax.multi_transform`` label of the group the optimizer is in (labels of
    nested ``multi_transform``s joined by ``/``), or ``"default"`` outside any. Frozen groups
    (``optax.set_to_zero``) keep no hyperparameters and are left out. Raises ``ValueError`` when
    ``state`` holds no purelr optimizer state, or two under one label.
    """
    found = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(state, is_leaf=_is_optimizer_state)[0]:
        if not _is_optimizer_state(leaf):
            continue
        label = "/".join(_group_labels(path)) or "default"
        if label in found:
            raise ValueError(
                f"two purelr optimizer states under the label {label!r}: "
                "hyperparams_in_force reads one optimizer per group"
            )
        found[label] = dict(leaf.hyperparams)
    if not found:
        raise ValueError(
            f"hyperparams_in_force: no purelr optimizer state (a NamedTuple with "
            f"count and hyperparams from purelr.optim) in this "
            f"{type(state).__name__}: pass the state of a transformation built on "
            f"purelr.optim twins, such as purelr.build's"
        )
    return found


def _is_optimizer_state(node) -> bool:
    """A purelr.optim twin's state: a NamedTuple ``(count, hyperparams, *buffers)`` of purelr's."""
    return getattr(type(node), "_fields", ())[:2] == ("count", "hyperparams") and type(node).__module__.startswith(
        "purelr."
    )


def _group_labels(path) -> list[str]:
    """The ``multi_transform`` labels along a key path: the keys of ``inner_states`` dicts."""
    return [
        str(key.key)
        for parent, key in zip(path, path[1:])
        if getattr(parent, "name", None) == "inner_states" and hasattr(key, "key")
    ]
