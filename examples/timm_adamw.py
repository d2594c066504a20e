"""A timm recipe, AdamW with a cosine schedule after a linear warmup, trained in torch (timm's
factories) and in JAX (purelr).

The recipe, in timm ``train.py``'s argument names: ``--opt adamw --lr 1e-2 --weight-decay 0.05
--sched cosine --epochs 12 --warmup-epochs 2 --warmup-lr 1e-5 --min-lr 1e-5 --sched-on-updates``;
timm's ``filter_bias_and_bn`` keeps weight decay off biases and norm parameters. 25 updates an
epoch, 300 in all.

torch: ``timm.optim.create_optimizer_v2`` and ``timm.scheduler.create_scheduler_v2``, stepped as
``train.py`` steps them (``step_update(num_updates)`` after every update, ``step(epoch + 1)``
after every epoch). JAX: ``purelr.build(dict(timm=TIMM), ...)`` and one jit-compiled train step
(``examples.twin_cnn``). ``python -m examples.timm_adamw`` runs the JAX side with its progress
output; ``--torch`` runs the torch side too and prints how far apart they are.
"""

from __future__ import annotations

import importlib.util
import sys
import types

from examples import twin_cnn

EPOCH_LEN = 25
EPOCHS = 12

TIMM = dict(
    opt="adamw",
    lr=1e-2,
    weight_decay=0.05,
    sched="cosine",
    epochs=EPOCHS,
    warmup_epochs=2,
    warmup_lr=1e-5,
    min_lr=1e-5,
    sched_on_updates=True,
)
CONFIG = dict(timm=TIMM)


def import_timm():
    """``(timm.optim, timm.scheduler)`` without running ``timm/__init__`` (it imports the models,
    which need torchvision): a stand-in package over the installed folder, as the test suite
    does, and a stand-in ``timm.models`` while ``timm.optim`` imports (only layer decay, unused
    here, reads it)."""
    if "timm" not in sys.modules:
        spec = importlib.util.find_spec("timm")
        package = types.ModuleType("timm")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["timm"] = package
    if "timm.optim" not in sys.modules:
        saved = sys.modules.get("timm.models")
        sys.modules["timm.models"] = types.SimpleNamespace(group_parameters=None)
        try:
            import timm.optim  # noqa: F401
        finally:
            if saved is None:
                del sys.modules["timm.models"]
            else:
                sys.modules["timm.models"] = saved
    import timm.optim
    import timm.scheduler

    return timm.optim, timm.scheduler


def run_torch(cfg, data: twin_cnn.Data, *, epochs: int, seed: int = 0, dtype=None, log=None) -> twin_cnn.Run:
    """Trains the torch network with timm's optimizer and scheduler factories, read from ``cfg``'s
    ``timm`` entry with timm's ``optimizer_kwargs`` / ``scheduler_kwargs`` and stepped as timm's
    ``train.py`` steps them. ``dtype``: a torch dtype (float64 by default)."""
    timm_optim, timm_scheduler = import_timm()
    args = types.SimpleNamespace(**{"momentum": 0.9, **cfg["timm"]})  # train.py's --momentum default
    model = twin_cnn.torch_model(seed, dtype)
    optimizer = timm_optim.create_optimizer_v2(model, **timm_optim.optimizer_kwargs(args))
    scheduler, _ = timm_scheduler.create_scheduler_v2(
        optimizer, **timm_scheduler.scheduler_kwargs(args), updates_per_epoch=len(data.labels)
    )
    num_updates = [0]

    def update(loss):
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        num_updates[0] += 1
        scheduler.step_update(num_updates=num_updates[0])

    return twin_cnn.train_torch(
        model,
        optimizer,
        data,
        epochs=epochs,
        before_iter=lambda epoch, k: None,
        update=update,
        after_epoch=lambda epoch: scheduler.step(epoch + 1),
        log=log,
    )


def main(argv=None):
    twin_cnn.example_main(__doc__, CONFIG, run_torch, epoch_len=EPOCH_LEN, epochs=EPOCHS, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
