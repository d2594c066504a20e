"""The wrappers around a twin in torch's terms, both ways: loss scalers, accumulation, averaged
models.

- ``loss_scaled``'s ``GradScalerState`` is ``torch.amp.GradScaler.state_dict()`` (``scale``,
  ``_growth_tracker``); its ``DynamicScalerState`` is MMCV's ``LossScaler.state_dict()``
  (``cur_scale``, ``cur_iter``, ``last_overflow_iter``) or a DeepSpeed ``DynamicLossScaler``'s
  attributes (``vars(scaler)``, with ``cur_hysteresis``).
- ``accumulate``'s ``AccumulateState``: torch keeps the summed gradients in ``.grad``, outside
  every ``state_dict``; a checkpoint is taken after an update, where the sum is zero. Its
  ``iteration`` comes from the caller.
- schedulefree's ``ScheduleFreeWrapper`` / ``ScheduleFreeWrapperReference`` keep their mode in an
  attribute (``train_mode``, in no ``state_dict``; a fresh wrapper is in eval mode) and
  schedulefree saves checkpoints after ``optimizer.eval()``: the torch model holds ``x``, the
  twin's params are ``y`` (``wrapper_params``).
- An ``AveragedState`` is the ``state_dict()`` of torch's ``AveragedModel`` (``module.*`` entries
  and ``n_averaged``), of MMEngine's ``ExponentialMovingAverage`` (``steps``; the EMA hook saves it as
  ``checkpoint['ema_state_dict']``) or of timm's ``ModelEmaV3`` (``module.*`` only).

This module imports no torch; ``to_torch`` turns the numbers it gives into tensors.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from purelr.optim import schedule_free as sf
from purelr.schedules import validate
from purelr.training import torch_state
from purelr.training.accumulate import AccumulateState
from purelr.training.averaging import AveragedState
from purelr.training.loss_scale import DynamicScalerState, GradScalerState, LossScaleState

_SCALER_KEYS = {  # state field -> key of each original's state dict, in the order tried
    "scale": ("scale", "cur_scale"),
    "growth_tracker": ("_growth_tracker",),
    "iteration": ("cur_iter",),
    "last_overflow": ("last_overflow_iter",),
    "hysteresis": ("cur_hysteresis",),
}
_COUNTS = ("n_averaged", "steps")  # torch AveragedModel, MMEngine BaseAveragedModel


def _scalar(value) -> Any:
    return np.asarray(value.detach().cpu() if hasattr(value, "detach") else value).item()


def _nodes(state, kind) -> list:
    return [n for n in jax.tree.leaves(state, is_leaf=lambda n: isinstance(n, kind)) if isinstance(n, kind)]


def _replace(state, kind, fn):
    return jax.tree.map(lambda n: fn(n) if isinstance(n, kind) else n, state, is_leaf=lambda n: isinstance(n, kind))


def scaler_from_torch(template, scaler_state_dict: Mapping):
    """``template`` (a ``GradScalerState`` or ``DynamicScalerState``) filled from the original's state."""
    validate.mapping("scaler_state_dict", scaler_state_dict)
    values = {}
    for field in template._fields:
        key = next((k for k in _SCALER_KEYS[field] if k in scaler_state_dict), None)
        if key is None and not (field == "hysteresis" and "cur_iter" in scaler_state_dict):
            raise ValueError(
                f"scaler_state_dict has no {' or '.join(map(repr, _SCALER_KEYS[field]))} for the "
                f"{type(template).__name__} twin (keys {sorted(scaler_state_dict)}): a scaler of another type"
            )
        like = getattr(template, field)
        value = like if key is None else scaler_state_dict[key]
        values[field] = jnp.asarray(like if value is None else _scalar(value), like.dtype)
    return type(template)(**values)


def scaler_to_torch(state) -> dict:
    """The original's scaler state entries (torch's GradScaler keys, or MMCV's / DeepSpeed's)."""
    if isinstance(state, GradScalerState):
        return {"scale": float(state.scale), "_growth_tracker": int(state.growth_tracker)}
    if isinstance(state, DynamicScalerState):
        return {
            "cur_scale": float(state.scale),
            "cur_iter": int(state.iteration),
            "last_overflow_iter": int(state.last_overflow),
            "cur_hysteresis": int(state.hysteresis),
        }
    raise TypeError(f"not a loss scaler's state: {type(state).__name__}")


def wrappers_from_torch(opt_state, scaler_state_dict: Mapping | None, iteration: int | None):
    """``opt_state`` with its ``loss_scaled`` scaler and ``accumulate`` iteration filled."""
    scaled = _nodes(opt_state, LossScaleState)
    if scaler_state_dict is not None and not scaled:
        raise ValueError("scaler_state_dict given, but the optimizer has no loss_scaled wrapper")
    if scaler_state_dict is not None:
        opt_state = _replace(
            opt_state, LossScaleState, lambda s: s._replace(scaler=scaler_from_torch(s.scaler, scaler_state_dict))
        )
    if _nodes(opt_state, AccumulateState):
        if iteration is None:
            raise ValueError("the optimizer accumulates gradients: pass iteration= (training iterations so far)")
        k = validate.nonnegative_int("iteration", iteration)
        opt_state = _replace(opt_state, AccumulateState, lambda s: s._replace(iteration=jnp.asarray(k, jnp.int32)))
    elif iteration is not None:
        raise ValueError(f"iteration={iteration!r} given, but the optimizer has no accumulate wrapper")
    return opt_state


def check_accumulated(opt_state) -> None:
    """Refuses a state holding gradients summed since the last update (torch's ``.grad``)."""
    for node in _nodes(opt_state, AccumulateState):
        if any(bool(jnp.any(g != 0)) for g in jax.tree.leaves(node.gradients)):
            raise ValueError(
                f"the accumulate state holds gradients summed since the last update (iteration "
                f"{int(node.iteration)}): torch keeps them outside its state_dict; export after an update"
            )


def averaged_count(state_dict: Mapping, n_averaged: int | None) -> int:
    """The updates an averaged model's ``state_dict`` has seen (``n_averaged`` / ``steps``; timm's
    ``ModelEmaV3`` keeps none: pass ``n_averaged``)."""
    found = [key for key in _COUNTS if key in state_dict]
    if found:
        value = int(_scalar(state_dict[found[0]]))
        if n_averaged is not None and n_averaged != value:
            raise ValueError(f"n_averaged={n_averaged} but the state_dict's {found[0]!r} is {value}")
        return value
    return 0 if n_averaged is None else validate.nonnegative_int("n_averaged", n_averaged)


def module_entries(state_dict: Mapping) -> dict:
    """An averaged model's ``module.*`` entries without the prefix."""
    validate.mapping("state_dict", state_dict)
    entries = {k[len("module.") :]: v for k, v in state_dict.items() if k.startswith("module.")}
    if not entries:
        raise ValueError(
            f"state_dict has no 'module.*' entries: not an AveragedModel / ModelEmaV3 / MMEngine EMA "
            f"state_dict (keys {list(state_dict)[:5]})"
        )
    return entries


def averaged_state(average, count: int) -> AveragedState:
    return AveragedState(average, jnp.asarray(count, jnp.int32))


def wrapper_params(opt_state, params, train: bool):
    """``params`` with the leaves schedulefree's wrappers update swapped between the twin's train
    params ``y`` and torch's eval params ``x`` (``train``: ``x`` to ``y``, as ``optimizer.train()``;
    else ``y`` to ``x``, as ``optimizer.eval()``); other leaves as they are."""
    wrappers = [
        s for s in jax.tree.leaves(opt_state, is_leaf=torch_state.is_twin) if type(s).__name__ in torch_state.WRAPPERS
    ]
    if not wrappers:
        return params
    return (sf.schedule_free_train_params if train else sf.schedule_free_eval_params)(wrappers, params)
