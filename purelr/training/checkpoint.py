"""Saving and restoring optimizer, schedule and averaging states with orbax-checkpoint, bit for bit.

Any pytree of arrays (an optax/purelr optimizer state, a ``PlateauState``, an ``AveragedState``,
params, a dict of them) is saved with ``orbax.checkpoint.StandardCheckpointer``; its structure
(tree definition, leaf shapes and dtypes) goes beside it as JSON, so restoring into a tree of
another optimizer or another model fails with an error naming both instead of misreading arrays.
Arrays come back as saved: a resumed run continues exactly as the uninterrupted one.

The structure record is written last, atomically (a temporary file renamed over its name), so a
directory holding it holds complete arrays: a save interrupted at any moment leaves a directory
that ``restore`` reports as incomplete, and never touches an earlier checkpoint. Restoring a
checkpoint that is incomplete or damaged (missing, truncated or overwritten files) raises
``CheckpointError`` naming the directory.
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

_STRUCTURE = "purelr_structure.json"


class CheckpointError(ValueError):
    """A checkpoint that cannot be restored: incomplete, damaged, or of another tree."""


def _structure(tree) -> dict:
    leaves = jax.tree.leaves(tree)
    return dict(
        treedef=str(jax.tree.structure(tree)), leaves=[[list(np.shape(x)), str(jnp.asarray(x).dtype)] for x in leaves]
    )


def save(directory: str, tree) -> None:
    """Writes ``tree`` to ``directory`` (which must not exist; an absolute path is taken): the
    arrays, then the structure record, atomically."""
    directory = os.path.abspath(directory)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(os.path.join(directory, "state"), _fill_empty(tree))
    checkpointer.wait_until_finished()
    path = os.path.join(directory, _STRUCTURE)
    with open(f"{path}.tmp-{os.getpid()}", "w") as f:
        json.dump(_structure(tree), f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(f.name, path)


def restore(directory: str, like):
    """The tree saved in ``directory``, in the structure of ``like`` (e.g. ``optimizer.init(params)``).

    Raises ``CheckpointError`` naming the directory when the checkpoint is incomplete (a save that
    did not finish) or damaged, or when it holds another tree: the saved and expected tree
    definitions (another optimizer, other flags, another model), or the first leaf whose shape or
    dtype differs.
    """
    directory = os.path.abspath(directory)
    saved = _saved_structure(directory)
    expected = _structure(like)
    if saved["treedef"] != expected["treedef"]:
        raise CheckpointError(
            f"checkpoint {directory} holds a tree of structure {saved['treedef']}, expected {expected['treedef']}"
        )
    for i, (a, b) in enumerate(zip(saved["leaves"], expected["leaves"])):
        if a != b:
            raise CheckpointError(f"checkpoint {directory}: leaf {i} is saved with shape/dtype {a}, expected {b}")
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _fill_empty(like))
    try:
        restored = ocp.StandardCheckpointer().restore(os.path.join(directory, "state"), abstract)
    except Exception as error:  # orbax and tensorstore raise many types for damaged files
        raise _damaged(
            directory,
            f"its arrays cannot be read ({type(error).__name__}: {(str(error).splitlines() or [''])[0][:200]})",
        ) from error
    return jax.tree.map(lambda x, ref: jnp.zeros_like(ref) if jnp.size(ref) == 0 else x, restored, like)


def _saved_structure(directory: str) -> dict:
    """The structure record ``save`` writes last; a checkpoint without a readable one is incomplete
    or damaged."""
    if not os.path.isdir(directory):
        raise CheckpointError(f"no checkpoint at {directory}: the directory does not exist")
    try:
        with open(os.path.join(directory, _STRUCTURE), encoding="utf-8") as f:
            saved = json.load(f)
    except FileNotFoundError as error:
        raise _damaged(directory, f"{_STRUCTURE} is missing (the save did not finish)") from error
    except (OSError, ValueError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise _damaged(directory, f"{_STRUCTURE} cannot be read ({error})") from error
    if (
        not isinstance(saved, dict)
        or not isinstance(saved.get("treedef"), str)
        or not isinstance(saved.get("leaves"), list)
    ):
        raise _damaged(directory, f"{_STRUCTURE} is not a structure record")
    return saved


def _damaged(directory: str, why: str) -> CheckpointError:
    return CheckpointError(f"checkpoint {directory} is incomplete or damaged: {why}")


def _fill_empty(tree):
    """Zero-size leaves (Adafactor's factors of a vector), which orbax cannot write, as a scalar
    placeholder: they hold no data, and ``restore`` rebuilds them from ``like``."""
    return jax.tree.map(lambda x: jnp.zeros((), jnp.asarray(x).dtype) if jnp.size(x) == 0 else x, tree)
