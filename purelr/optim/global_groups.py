"""Parameter groups inside one transformation, for the optimizers whose step reads sums over every
parameter of every group (Prodigy's and D-Adaptation's estimate ``d`` of the distance to the
solution).

``optax.multi_transform`` gives each group a transformation of its own, which would see only its
own leaves and split those sums. These optimizers take the groups themselves instead::

    prodigy(lr=1.0, weight_decay=0.01,
            param_labels={"backbone": "decay", "norm": "no_decay"},   # or params -> labels
            groups={"decay": {}, "no_decay": {"weight_decay": 0.0}})

is ``Prodigy([{'params': backbone}, {'params': norm, 'weight_decay': 0.0}], lr=1.0,
weight_decay=0.01)``: ``param_labels`` is a pytree of labels like the params (or a function of
the params returning one, as for ``optax.multi_transform``) and ``groups`` maps every label to its
overrides of the constructor's values, each a number or a schedule. Which keys a group may set is
the optimizer's: those its original reads per group. All sums run over the whole tree in one
jitted program, so they are global under any sharding of the params (``jnp.sum`` of a sharded
array is a global reduction).

What the twins share (``prodigy``, ``dadapt_adam``, ``dadapt_sgd``, ``dadapt_adagrad``,
``dadapt_adan``, ``dadapt_lion``): every number may be a schedule; each tensor is reduced in the
params' dtype, and ``d`` and the sums over tensors and updates, Python floats in the originals,
are double-float pairs for float32 params (``purelr.optim.double_float``; ``wide_scalars``); an
update whose sums are all 0 (all gradients 0 so far) keeps ``d`` and the sums, as the originals
return early; ``log_every`` (printing) is accepted and ignored, and so is ``fsdp_in_use`` but in
Prodigy (see there): the sums here are always global. Complex params are refused.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import optax

from purelr.optim import base
from purelr.optim import double_float as df
from purelr.optim import hyperparams as hp_lib
from purelr.optim.timm_common import positive
from purelr.schedules import validate

Checker = Callable[[str, Any], Any]
GroupsArg = Mapping[str, Mapping[str, Any]] | None
__all__ = ["Groups", "positive"]  # positive: timm_common's, a checker of the group keys


class Groups:
    """The checked ``groups`` and ``param_labels`` of one optimizer (see the module docstring)."""

    def __init__(
        self, optimizer: str, groups: Mapping[str, Mapping[str, Any]] | None, param_labels, keys: Mapping[str, Checker]
    ):
        if (groups is None) != (param_labels is None):
            raise ValueError(
                f"{optimizer}: give groups and param_labels together, got groups={groups!r}, param_labels={param_labels!r}"
            )
        self.optimizer = optimizer
        self.param_labels = param_labels
        self.overrides: dict[str, dict[str, Any]] = {}
        for label, overrides in validate.mapping("groups", groups or {}).items():
            overrides = validate.known_keys(
                f"groups[{label!r}]", overrides, keys, f" ({optimizer} reads only these per group)"
            )
            self.overrides[label] = {key: keys[key](f"groups[{label!r}][{key!r}]", v) for key, v in overrides.items()}

    def labels(self, params) -> list[str | None]:
        """One label per leaf of ``params`` (``None`` without groups); raises on an unknown label."""
        leaves = jax.tree.leaves(params)
        if self.param_labels is None:
            return [None] * len(leaves)
        tree = self.param_labels(params) if callable(self.param_labels) else self.param_labels
        labels = jax.tree.leaves(tree)
        if len(labels) != len(leaves):
            raise ValueError(f"{self.optimizer}: param_labels has {len(labels)} labels for {len(leaves)} params")
        for label in labels:
            if label not in self.overrides:
                raise ValueError(
                    f"{self.optimizer}: param_labels holds {label!r}, which is not a key of groups {sorted(self.overrides)}"
                )
        return labels

    def in_force(self, hyperparams: Mapping[str, Any], count) -> dict[str, Any]:
        """The values in force at update ``count``: the constructor's, and ``groups`` with each
        group's overrides (for ``state.hyperparams``)."""
        hp: dict[str, Any] = hp_lib.in_force(hyperparams, count)
        if self.overrides:
            hp["groups"] = {label: hp_lib.in_force(o, count) for label, o in self.overrides.items()}
        return hp

    def per_leaf(self, hp: Mapping[str, Any], labels: Sequence[str | None]) -> list[dict[str, Any]]:
        """The values each leaf sees: its group's overrides over the constructor's."""
        return [{**hp, **(hp["groups"][label] if label is not None else {})} for label in labels]

    def given(self, hyperparams: Mapping[str, Any], key: str, label: str | None, default=None):
        """What the constructor was given for ``key`` at a leaf of group ``label`` (a number or a
        schedule): its group's override, else the constructor's value (``default`` without one)."""
        value = hyperparams.get(key, default)
        return self.overrides[label].get(key, value) if label is not None else value

    def static(self, key: str, labels: Sequence[str | None], default):
        """``key`` per leaf where only constants may be given per group (a group's ``lr`` of 0)."""
        return [self.overrides[label].get(key, default) if label is not None else default for label in labels]


def zero_lr(name: str, value):
    """A group's ``lr``: only 0 (a group left out of the sums and moments), as the originals
    refuse a group lr other than 0 or the largest one."""
    if callable(value) or hp_lib.number(name, value) != 0:
        raise ValueError(
            f"Invalid {name}: {value!r} (a group's lr may only be 0: the original refuses different lr values "
            "in different parameter groups)"
        )
    return 0.0


def number(name: str, value, minimum: float | None = None):
    """A finite number (or schedule), at least ``minimum`` when given."""
    return hp_lib.check(name, value, minimum=minimum)


def growth(name: str, value):
    """``growth_rate``: a positive number, ``inf`` (the default: unbounded) allowed, or a schedule."""
    if callable(value):
        return value
    value = validate.real(name, hp_lib.number(name, value))
    if not value > 0:
        raise ValueError(f"Invalid {name}: {value!r} (must be > 0, inf for no limit)")
    return value


def scalar(value, leaves) -> jax.Array:
    """A state scalar (``d``, a running sum) in the params' dtype (the default float dtype for a tree
    without leaves, as optax's ``tree_map_params`` initialises on a placeholder)."""
    return jnp.asarray(value, jnp.result_type(*leaves) if leaves else jnp.result_type(float))


def wide_scalars(state, names: Sequence[str]) -> dict[str, df.Wide]:
    """The state's running scalars as ``double_float.Wide`` values (the field their high half,
    ``state.low`` their low halves)."""
    return {name: df.Wide(getattr(state, name), state.low[name]) for name in names}


def wide_init(values: Mapping[str, df.Wide]) -> dict[str, Any]:
    """State fields holding ``values``: each high half under its name, the low halves in ``low``."""
    values = {name: value.stored() for name, value in values.items()}
    return dict({name: value.hi for name, value in values.items()}, low={n: v.lo for n, v in values.items()})


def wide_kept(skip, new: Mapping[str, df.Wide], old) -> dict[str, Any]:
    """``new``'s scalars, each the ``old`` state's where the update is ``skip``ped (the originals'
    early ``return`` before they store their scalars), stored as ``wide_init`` stores them."""
    return wide_init({name: df.where(skip, df.Wide(getattr(old, name), old.low[name]), v) for name, v in new.items()})


def transformation(
    optimizer: str, state_type, hyperparams: Mapping[str, Any], spec: Groups, init_fields, update_fields
):
    """An ``optax.GradientTransformation`` over the whole tree, the leaves handed over as lists.

    ``init_fields(leaves, treedef, hp)`` returns the state's fields but ``count`` and
    ``hyperparams``; ``update_fields(grads, params, state, hp, leaf_hp, labels, treedef)`` returns
    ``(updates, fields)`` (``grads``, ``params`` and ``updates`` lists of leaves, ``leaf_hp`` the
    values each leaf sees, ``labels`` its group's label).
    """

    def init_fn(params):
        base.check_real(optimizer, params)
        spec.labels(params)  # an unknown label is refused before the first update
        leaves, treedef = jax.tree.flatten(params)
        hp = spec.in_force(hyperparams, jnp.zeros((), jnp.int32))
        return state_type(count=jnp.zeros((), jnp.int32), hyperparams=hp, **init_fields(leaves, treedef, hp))

    def update_fn(grads, state, params=None):
        base.require_params(params, True, optimizer)
        leaves, treedef = jax.tree.flatten(grads)
        labels = spec.labels(grads)
        hp = spec.in_force(hyperparams, state.count)
        updates, fields = update_fields(
            leaves,
            treedef.flatten_up_to(params),  # type: ignore[attr-defined]
            state,
            hp,
            spec.per_leaf(hp, labels),
            labels,
            treedef,
        )
        return treedef.unflatten(updates), state_type(  # type: ignore[attr-defined]
            count=optax.safe_int32_increment(state.count), hyperparams=hp, **fields
        )

    return optax.GradientTransformation(init_fn, update_fn)


def filled(leaves, treedef, fill=0.0):
    """A buffer like the params, ``fill`` everywhere."""
    return treedef.unflatten([jnp.full_like(p, fill) for p in leaves])


def copied(leaves, treedef):
    """A buffer holding the params (``x0``)."""
    return treedef.unflatten(list(leaves))


def flags(**values):
    for name, value in values.items():
        validate.flag(name, value)
