"""``purelr convert``: a torch checkpoint to a purelr checkpoint directory, and back.

``purelr convert ckpt.pth --to DIR --mapping M`` reads the model's, optimizer's, scheduler's and
loss scaler's state dicts from the checkpoint (a dict under the usual keys, or a bare
``model.state_dict()``) and saves ``{'params', 'batch_stats', 'opt_state', 'last_epoch'}`` with
``purelr.training.checkpoint``. ``purelr convert DIR --to-torch out.pth --like fresh.pth --mapping M``
restores that tree and writes the torch checkpoint, its state dicts shaped as in ``fresh.pth``
(the torch run's own checkpoint, or one of its freshly built model and optimizer).

The mapping ``M`` is ``module:function`` (returning a dict) or a JSON file, with the keys:
``optimizer`` (the purelr transformation; in JSON ``{"name": "adamw", "kwargs": {...}}``, a
``purelr.optim`` function), ``names`` (``from_torch``'s; in JSON ``{torch name: flax name or
null}``), optionally ``params`` and ``batch_stats`` templates (by default built from the torch
model's entries and ``names``), ``labels``, ``count``, ``iteration`` and ``keys`` (``{'model':
..., 'optimizer': ..., 'scheduler': ..., 'scaler': ...}``: where the checkpoint holds each).
A line is printed per group of tensors converted.
"""

from __future__ import annotations

import importlib
import json
import os
from typing import Any, Callable, Mapping

import jax.numpy as jnp
import numpy as np

from purelr.training import checkpoint
from purelr.training.from_torch import _numpy, _target, from_torch, model_from_torch
from purelr.training.to_torch import to_torch

KEYS = {  # where checkpoints keep each state dict, in the order tried
    "model": ("model", "state_dict", "model_state_dict", "module"),
    "optimizer": ("optimizer", "optimizer_state_dict", "optim"),
    "scheduler": ("scheduler", "lr_scheduler", "scheduler_state_dict"),
    "scaler": ("scaler", "grad_scaler", "loss_scaler", "amp"),
}


def load_mapping(spec: str) -> dict:
    """The mapping of a ``module:function`` or a ``.json`` file."""
    if spec.endswith(".json"):
        with open(spec, encoding="utf-8") as f:
            mapping = json.load(f)
        if not isinstance(mapping, dict):
            raise ValueError(f"--mapping {spec}: the JSON must be an object, got {type(mapping).__name__}")
        optimizer = mapping.get("optimizer")
        if isinstance(optimizer, dict):
            from purelr import optim

            if optimizer.get("name") not in optim.__all__:
                raise ValueError(
                    f"--mapping {spec}: optimizer name {optimizer.get('name')!r} is not a purelr.optim function"
                )
            mapping["optimizer"] = getattr(optim, optimizer["name"])(**optimizer.get("kwargs", {}))
        return mapping
    module, _, name = spec.partition(":")
    if not name:
        raise ValueError(f"--mapping must be module:function or a .json file, got {spec!r}")
    mapping = getattr(importlib.import_module(module), name)()
    if not isinstance(mapping, Mapping):
        raise TypeError(f"--mapping {spec} must return a dict, got {type(mapping).__name__}")
    return dict(mapping)


def load_torch(path: str) -> dict:
    """A torch checkpoint as a dict (``torch.load`` with ``weights_only``)."""
    import torch

    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:  # pickle and zip errors of many types
        first = (str(error).splitlines() or [""])[0][:200]
        raise ValueError(f"{path} is not a torch checkpoint ({type(error).__name__}: {first})") from error
    if not isinstance(loaded, Mapping):
        raise ValueError(f"{path} holds a {type(loaded).__name__}, not a checkpoint dict or a state_dict")
    return dict(loaded)


def _parts(loaded: dict, keys: Mapping) -> dict:
    """``{part: state dict or None}`` of a loaded checkpoint."""
    if loaded and all(hasattr(v, "shape") for v in loaded.values()):
        return {"model": loaded, "optimizer": None, "scheduler": None, "scaler": None}
    found = {}
    for part, tried in KEYS.items():
        choices = (keys[part],) if part in keys else tried
        found[part] = next((loaded[k] for k in choices if k in loaded), None)
    if found["model"] is None:
        raise ValueError(
            f"the checkpoint has no model state_dict under {KEYS['model']} (keys {list(loaded)[:8]}): set keys.model"
        )
    return found


def _templates(model_state_dict: Mapping, names) -> tuple[dict, dict | None]:
    """flax ``params`` / ``batch_stats`` templates from the torch entries (running stats -> batch_stats)."""
    trees: dict[str, dict] = {"params": {}, "batch_stats": {}}
    for torch_name, tensor in model_state_dict.items():
        array = _numpy(tensor)
        target = _target(names, torch_name, array.shape)
        if target is None:
            continue
        collection = "batch_stats" if torch_name.rpartition(".")[2] in ("running_mean", "running_var") else "params"
        node = trees[collection]
        *path, leaf = target.name.split(".")
        for key in path:
            node = node.setdefault(key, {})
        node[leaf] = jnp.zeros(np.shape(target.transform(array)), array.dtype)
    return trees["params"], trees["batch_stats"] or None


def _describe(name: str, tree) -> str:
    import jax

    leaves = [_numpy(x) for x in jax.tree.leaves(tree) if hasattr(x, "shape")]
    size = sum(x.nbytes for x in leaves)
    return f"{name}: {len(leaves)} tensors, {size / 2**20:.2f} MiB"


def to_purelr(source: str, directory: str, mapping: dict, say: Callable = print) -> None:
    parts = _parts(load_torch(source), mapping.get("keys", {}))
    names = mapping.get("names")
    params, batch_stats = mapping.get("params"), mapping.get("batch_stats")
    if params is None:
        params, batch_stats = _templates(parts["model"], names)
    say(_describe("model", parts["model"]))
    tree: dict[str, Any] = {}
    if parts["optimizer"] is None:
        tree["params"], tree["batch_stats"] = model_from_torch(
            parts["model"], params, names=names, batch_stats=batch_stats
        )
    else:
        if "optimizer" not in mapping:
            raise ValueError("the checkpoint holds an optimizer state: the mapping needs 'optimizer' (the purelr twin)")
        for g, group in enumerate(parts["optimizer"]["param_groups"]):
            kept = {k for i in group["params"] for k in parts["optimizer"]["state"].get(i, {})}
            say(f"optimizer group {g}: {len(group['params'])} params ({', '.join(sorted(kept)) or 'no state yet'})")
        run = from_torch(
            mapping["optimizer"],
            params,
            parts["model"],
            parts["optimizer"],
            parts["scheduler"],
            names=names,
            batch_stats=batch_stats,
            count=mapping.get("count"),
            labels=mapping.get("labels"),
            scaler_state_dict=parts["scaler"],
            iteration=mapping.get("iteration"),
        )
        tree = dict(params=run.params, batch_stats=run.batch_stats, opt_state=run.opt_state)
        if run.last_epoch is not None:
            tree["last_epoch"] = jnp.asarray(run.last_epoch, jnp.int32)
            say(f"scheduler: last_epoch {run.last_epoch}")
    checkpoint.save(directory, tree)
    say(f"wrote {os.path.abspath(directory)}")


def to_torch_file(source: str, output: str, like: str, mapping: dict, say: Callable = print) -> None:
    import torch

    template = load_torch(like)
    parts = _parts(template, mapping.get("keys", {}))
    names = mapping.get("names")
    params, batch_stats = mapping.get("params"), mapping.get("batch_stats")
    if params is None:
        params, batch_stats = _templates(parts["model"], names)
    if parts["optimizer"] is None or "optimizer" not in mapping:
        raise ValueError(f"--like {like} and the mapping must both give the optimizer (its torch state_dict, its twin)")
    like_tree = dict(params=params, batch_stats=batch_stats, opt_state=mapping["optimizer"].init(params))
    try:
        restored = checkpoint.restore(source, {**like_tree, "last_epoch": jnp.zeros((), jnp.int32)})
    except checkpoint.CheckpointError:
        restored = checkpoint.restore(source, like_tree)
    exported = to_torch(
        restored["opt_state"],
        restored["params"],
        parts["model"],
        parts["optimizer"],
        names=names,
        batch_stats=restored["batch_stats"],
        labels=mapping.get("labels"),
    )
    say(_describe("model", exported.model_state_dict))
    for g, group in enumerate(exported.optimizer_state_dict["param_groups"]):
        say(f"optimizer group {g}: {len(group['params'])} params")
    out = dict(template)
    keys = {
        part: next((k for k in ((mapping.get("keys", {}).get(part),) + KEYS[part]) if k in template), KEYS[part][0])
        for part in KEYS
    }
    if all(hasattr(v, "shape") for v in template.values()):
        out = dict(exported.model_state_dict)
    else:
        out[keys["model"]] = exported.model_state_dict
        out[keys["optimizer"]] = exported.optimizer_state_dict
        if exported.scaler_state_dict is not None and keys["scaler"] in template:
            out[keys["scaler"]] = {**template[keys["scaler"]], **exported.scaler_state_dict}
    torch.save(out, output)
    say(f"wrote {os.path.abspath(output)}")
