"""Drives timm 1.0.31's real schedulers as its ``train.py`` does.

timm's package ``__init__`` imports its models, which need torchvision; where torchvision is
missing, ``timm.scheduler`` is loaded through a stand-in ``timm`` package whose ``__path__`` is the
installed folder (nothing of timm's models is used).
"""

import importlib.util
import sys

import numpy as np
import torch

from purelr.references.shims import stub_package

if "timm" not in sys.modules and importlib.util.find_spec("torchvision") is None:
    _spec = importlib.util.find_spec("timm")
    if _spec is not None and _spec.submodule_search_locations:
        stub_package("timm", _spec.submodule_search_locations[0])

from timm.scheduler import create_scheduler_v2  # noqa: E402


def train_loop(base_lr, epochs, updates_per_epoch, **kwargs):
    """The lr in force at each optimizer update of timm's train.py (``step_update`` after every
    update, ``step(epoch + 1)`` after every epoch), cut where timm's own arithmetic fails."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base_lr)
    scheduler, _ = create_scheduler_v2(optimizer, updates_per_epoch=updates_per_epoch, **kwargs)
    values, num_updates = [], 0
    try:
        for epoch in range(epochs):
            for _ in range(updates_per_epoch):
                values.append(optimizer.param_groups[0]["lr"])
                num_updates += 1
                if scheduler is not None:
                    scheduler.step_update(num_updates=num_updates)
            if scheduler is not None:
                scheduler.step(epoch + 1)
    except ValueError:  # cycle_mul < 1 past the sum of all cycles: math domain error
        pass
    return np.asarray(values)
