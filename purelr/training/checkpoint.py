"""Saving and restoring optimizer, schedule and averaging states with orbax-checkpoint, bit for bit.

Any pytree of arrays (an optax/purelr optimizer state, a ``PlateauState``, an ``AveragedState``,
params, a dict of them) is saved with ``orbax.checkpoint.StandardCheckpointer``; its structure
(tree definition, leaf shapes and dtypes) goes beside it as JSON, so restoring into a tree of
another optimizer or another model fails with an error naming both instead of misreading arrays.
Arrays come back as saved: a resumed run continues exactly as the uninterrupted one.
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

_STRUCTURE = "purelr_structure.json"


def _structure(tree) -> dict:
    leaves = jax.tree.leaves(tree)
    return dict(treedef=str(jax.tree.structure(tree)),
                leaves=[[list(np.shape(x)), str(jnp.asarray(x).dtype)] for x in leaves])


def save(directory: str, tree) -> None:
    """Writes ``tree`` to ``directory`` (which must not exist; an absolute path is taken)."""
    directory = os.path.abspath(directory)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(os.path.join(directory, "state"), _fill_empty(tree))
    checkpointer.wait_until_finished()
    with open(os.path.join(directory, _STRUCTURE), "w") as f:
        json.dump(_structure(tree), f)


def restore(directory: str, like):
    """The tree saved in ``directory``, in the structure of ``like`` (e.g. ``optimizer.init(params)``).

    Raises ``ValueError`` naming the saved and expected tree definitions (another optimizer,
    other flags, another model) or the first leaf whose shape or dtype differs.
    """
    directory = os.path.abspath(directory)
    with open(os.path.join(directory, _STRUCTURE)) as f:
        saved = json.load(f)
    expected = _structure(like)
    if saved["treedef"] != expected["treedef"]:
        raise ValueError(f"checkpoint {directory} holds a tree of structure {saved['treedef']}, "
                         f"expected {expected['treedef']}")
    for i, (a, b) in enumerate(zip(saved["leaves"], expected["leaves"])):
        if a != b:
            raise ValueError(f"checkpoint {directory}: leaf {i} is saved with shape/dtype {a}, "
                             f"expected {b}")
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _fill_empty(like))
    restored = ocp.StandardCheckpointer().restore(os.path.join(directory, "state"), abstract)
    return jax.tree.map(lambda x, ref: jnp.zeros_like(ref) if jnp.size(ref) == 0 else x,
                        restored, like)


def _fill_empty(tree):
    """Zero-size leaves (Adafactor's factors of a vector), which orbax cannot write, as a scalar
    placeholder: they hold no data, and ``restore`` rebuilds them from ``like``."""
    return jax.tree.map(lambda x: jnp.zeros((), jnp.asarray(x).dtype) if jnp.size(x) == 0 else x,
                        tree)
