"""``torch.optim.swa_utils.update_bn`` for flax ``nn.BatchNorm``: running statistics recomputed
over one pass of a data iterator, as a cumulative average (torch's ``momentum=None``)."""

from __future__ import annotations

from typing import Any, Iterable

import flax.linen as nn
import jax
import jax.numpy as jnp


def _batch_moments(model: nn.Module, variables, batch, kwargs):
    """``{bn path: (mean, unbiased var)}`` of every BatchNorm called in training mode on ``batch``."""
    moments = {}

    def interceptor(next_fun, args, call_kwargs, context):
        module = context.module
        if isinstance(module, nn.BatchNorm) and context.method_name == "__call__":
            x = jnp.asarray(args[0])
            use_running = nn.merge_param(
                "use_running_average",
                module.use_running_average,
                call_kwargs.get("use_running_average", args[1] if len(args) > 1 else None),
            )
            if not use_running:
                axis = module.axis if isinstance(module.axis, tuple) else (module.axis,)
                axes = tuple(a % x.ndim for a in axis)
                reduce = tuple(a for a in range(x.ndim) if a not in axes)
                mean = x.mean(reduce)
                count = x.size // mean.size
                squares = ((x - jnp.expand_dims(mean, reduce)) ** 2).sum(reduce)
                moments[module.path] = (mean, squares / max(count - 1, 1))  # unbiased
        return next_fun(*args, **call_kwargs)

    with nn.intercept_methods(interceptor):
        model.apply(variables, batch, mutable=["batch_stats"], **kwargs)
    return moments


def update_bn(loader: Iterable[Any], model: nn.Module, variables, **apply_kwargs):
    """Twin of ``torch.optim.swa_utils.update_bn``: new ``variables`` whose ``batch_stats`` hold,
    for every ``nn.BatchNorm`` the model calls in training mode, the average over the batches of
    ``loader`` (each a batch, or a list/tuple whose first element is) of the batch mean and of the
    unbiased batch variance, as torch's BatchNorm with ``momentum=None`` accumulates them::

        running = (1 - 1 / n) * running + (1 / n) * batch_stat      (n-th batch, from n = 1)

    ``apply_kwargs`` go to ``model.apply`` (e.g. ``train=True``: training mode is the caller's to
    set, as flax has no ``model.train()``). The unbiased variance (``var * N / (N - 1)``, ``N``
    values per feature) is torch's; flax's own BatchNorm keeps the biased one. A loader without
    batches leaves the variables as they are (torch too); BatchNorms it never reaches keep theirs
    (torch resets them). Each pass over a batch is jitted.
    """
    moments = jax.jit(lambda v, x: _batch_moments(model, v, x, apply_kwargs))
    average, n = None, 0
    for batch in loader:
        batch = batch[0] if isinstance(batch, (list, tuple)) else batch
        stats = moments(variables, batch)
        n += 1
        average = (
            stats
            if average is None
            else jax.tree.map(lambda run, new: (1 - 1 / n) * run + (1 / n) * new, average, stats)
        )
    if average is None:
        return variables
    batch_stats = jax.tree.map(lambda x: x, dict(variables["batch_stats"]))
    for path, (mean, var) in average.items():
        node = batch_stats
        for key in path[:-1]:
            node[key] = dict(node[key])
            node = node[key]
        node[path[-1]] = dict(node[path[-1]], mean=mean, var=var)
    return dict(variables, batch_stats=batch_stats)
