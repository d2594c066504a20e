"""Shardings of an optimizer state from the shardings of its params (ZeRO-1 / FSDP-style state).

``state_shardings(tx, params, param_shardings)`` gives every leaf of ``tx.init(params)`` a
sharding, so that ``jax.jit(step, in_shardings=..., out_shardings=...)`` keeps each buffer on the
devices that hold its param:

- a buffer shaped like its param (``exp_avg``, ``momentum_buffer``, ...) takes the param's sharding,
  also inside a subtree kept at the param's place (a quantized buffer's codes, a per-axis factor);
- a buffer reduced from its param (Adafactor's row and column statistics, with or without the
  reduced axes kept as size 1) takes the param's sharding on the axes it kept, replicated on the others;
- everything else (counts, hyperparameters in force, scalar norms, L-BFGS's flattened history,
  the empty placeholders of unfactored leaves) is replicated;
- the ``None`` buffers a twin keeps at other groups' leaves under ``optax.multi_transform`` (and
  ``optax.MaskedNode``) stay as they are: they are empty subtrees in the state and its shardings alike.

Which state trees are laid out like the params is found by ``optax.tree_utils.tree_map_params``,
through every chain, ``multi_transform`` and wrapper, so no spec is written by hand for the state.
``split_last_divisible(params, mesh)`` and ``replicated(params, mesh)`` are two rules for the
params themselves (fully sharded and data-parallel).
"""

from __future__ import annotations

import itertools
from typing import Any

import jax
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def replicated(tree: Any, mesh: Mesh) -> Any:
    """Every leaf of ``tree`` replicated over ``mesh`` (the data-parallel layout)."""
    return jax.tree.map(lambda _: NamedSharding(mesh, PartitionSpec()), tree)


def split_last_divisible(tree: Any, mesh: Mesh, axes: str | tuple[str, ...] | None = None) -> Any:
    """Each leaf of ``tree`` split over the mesh ``axes`` (default: all of them, together) along
    its last dimension whose size their device count divides; replicated when none does."""
    names = tuple(mesh.axis_names) if axes is None else (axes,) if isinstance(axes, str) else tuple(axes)
    unknown = [name for name in names if name not in mesh.shape]
    if unknown:
        raise ValueError(f"axes={axes!r}: {unknown} not among the mesh's axes {tuple(mesh.axis_names)}")
    size = 1
    for name in names:
        size *= mesh.shape[name]
    target = names[0] if len(names) == 1 else names

    def split(leaf) -> NamedSharding:
        shape = jax.numpy.shape(leaf)
        spec: list = [None] * len(shape)
        for axis in reversed(range(len(shape))):
            if shape[axis] % size == 0:
                spec[axis] = target
                break
        return NamedSharding(mesh, PartitionSpec(*spec))

    return jax.tree.map(split, tree)


def state_shardings(
    tx: optax.GradientTransformation, params: Any, param_shardings: Any, *, replicated_sharding: Any = None
) -> Any:
    """The shardings of ``tx.init(params)`` (computed abstractly: nothing is allocated), leaf for
    leaf, from ``param_shardings`` (a tree like ``params`` of ``NamedSharding``s). Leaves not laid
    out like a param get ``replicated_sharding`` (default: replicated over the params' mesh)."""
    expected, given = jax.tree.structure(params), jax.tree.structure(param_shardings, is_leaf=_is_sharding)
    if given != expected:  # type: ignore[operator]
        raise ValueError(f"param_shardings: its tree {given} is not the params' {expected}")
    if replicated_sharding is None:
        meshes = {
            s.mesh for s in jax.tree.leaves(param_shardings, is_leaf=_is_sharding) if isinstance(s, NamedSharding)
        }
        if len(meshes) != 1:
            raise ValueError(
                f"param_shardings: {len(meshes)} meshes among its NamedShardings; pass replicated_sharding="
            )
        replicated_sharding = NamedSharding(meshes.pop(), PartitionSpec())
    abstract = jax.eval_shape(tx.init, params)

    def masked(leaf) -> bool:
        return leaf is None or isinstance(leaf, optax.MaskedNode)

    def like_params(value, params, shardings):
        """A state tree laid out like the params: at each param's place, a buffer or a subtree of
        buffers (a quantized buffer's codes and scales, Kron's and SOAP's per-axis factors)."""
        treedef: Any = jax.tree.structure(params)
        places = zip(treedef.flatten_up_to(value), treedef.flatten_up_to(params), treedef.flatten_up_to(shardings))
        return treedef.unflatten(
            [
                jax.tree.map(
                    lambda leaf: leaf
                    if masked(leaf)
                    else _reduced(sharding, jax.numpy.shape(param), leaf.shape, replicated_sharding),
                    buffers,
                    is_leaf=masked,
                )
                for buffers, param, sharding in places
            ]
        )

    return optax.tree_utils.tree_map_params(
        tx,
        like_params,
        abstract,
        params,
        param_shardings,
        transform_non_params=lambda _: replicated_sharding,
        is_leaf=lambda _: True,  # like_params takes the whole tree
    )


def _is_sharding(x) -> bool:
    return isinstance(x, jax.sharding.Sharding)


def _reduced(sharding, param_shape: tuple, shape: tuple, replicated_sharding):
    """``sharding`` (the param's) for a buffer of ``shape``: the same when the shapes agree; for a
    reduction of the param, its spec on the axes the buffer kept; otherwise ``replicated_sharding``."""
    if shape == tuple(param_shape):
        return sharding
    if not isinstance(sharding, NamedSharding) or len(shape) == 0 or len(shape) > len(param_shape):
        return replicated_sharding
    spec = tuple(sharding.spec) + (None,) * (len(param_shape) - len(sharding.spec))
    if len(shape) == len(param_shape):  # reduced axes kept with size 1
        kept = [entry if n == m else None for entry, n, m in zip(spec, shape, param_shape)]
        if all(n == m or n == 1 for n, m in zip(shape, param_shape)):
            return NamedSharding(sharding.mesh, PartitionSpec(*kept))
        return replicated_sharding
    for dropped in itertools.combinations(range(len(param_shape)), len(param_shape) - len(shape)):
        axes = [axis for axis in range(len(param_shape)) if axis not in dropped]
        if tuple(param_shape[axis] for axis in axes) == tuple(shape):
            return NamedSharding(sharding.mesh, PartitionSpec(*(spec[axis] for axis in axes)))
    return replicated_sharding
