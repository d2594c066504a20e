"""MMDetection's RetinaNet 1x schedule, scaled down, trained in torch (MMCV) and in JAX (purelr).

The recipe (``configs/_base_/schedules/schedule_1x.py`` with RetinaNet's optimizer): SGD with
momentum 0.9 and weight decay 1e-4, no decay on norm layers, twice the lr on the classifier
(a ``custom_keys`` entry), gradients clipped to norm 35, linear warmup from 0.001 of the lr, and
the lr divided by 10 after epochs 8 and 11 of 12. Scaled down: 25 iterations an epoch (300 in all)
and a 50-iteration warmup instead of 500. The loss is summed over the batch (as detection losses
sum over anchors), so that early gradients pass the clipping threshold.

torch: ``torch.optim.SGD`` built by MMCV 1.7.2's ``DefaultOptimizerConstructor``, its
``StepLrUpdaterHook`` and ``OptimizerHook`` (zero_grad, backward, ``clip_grad_norm_``, step)
called as ``EpochBasedRunner`` calls them. JAX: ``purelr.build(CONFIG, ...)`` and one jit-compiled
train step (``examples.twin_cnn``). ``python -m examples.retinanet_1x`` runs the JAX side with
its progress output; ``--torch`` runs the torch side too and prints how far apart they are.
"""

from __future__ import annotations

import copy
import logging
import sys
import types

from examples import twin_cnn

EPOCH_LEN = 25
EPOCHS = 12

CONFIG = dict(
    optimizer=dict(
        type="SGD",
        lr=0.005,
        momentum=0.9,
        weight_decay=1e-4,
        paramwise_cfg=dict(norm_decay_mult=0.0, custom_keys={"head": dict(lr_mult=2.0)}),
    ),
    optimizer_config=dict(grad_clip=dict(max_norm=35, norm_type=2)),
    lr_config=dict(policy="step", warmup="linear", warmup_iters=50, warmup_ratio=0.001, step=[8, 11]),
    runner=dict(type="EpochBasedRunner", max_epochs=EPOCHS),
)


def run_torch(cfg, data: twin_cnn.Data, *, epochs: int, seed: int = 0, dtype=None, log=None) -> twin_cnn.Run:
    """Trains the torch network with MMCV 1.7.2's optimizer constructor and hooks, called in
    ``EpochBasedRunner``'s order: ``before_run``; per epoch ``before_train_epoch``; per iteration
    ``before_train_iter``, the forward pass, ``after_train_iter`` (OptimizerHook: zero_grad,
    backward, clip, step), ``runner.iter += 1``. ``dtype``: a torch dtype (float64 by default)."""
    from mmcv.runner import DefaultOptimizerConstructor
    from mmcv.runner.hooks import HOOKS
    from mmcv.utils import build_from_cfg

    from purelr.references.mmcv import build_hook  # first: stands in for torchvision if missing

    model = twin_cnn.torch_model(seed, dtype)
    optimizer_cfg = copy.deepcopy(cfg["optimizer"])
    paramwise_cfg = optimizer_cfg.pop("paramwise_cfg", None)
    optimizer = DefaultOptimizerConstructor(optimizer_cfg, paramwise_cfg)(model)
    hooks = [
        build_hook(cfg["lr_config"], "LrUpdaterHook"),
        build_from_cfg(dict(type="OptimizerHook", **cfg["optimizer_config"]), HOOKS),
    ]
    epoch_len = len(data.labels)
    runner = types.SimpleNamespace(
        model=model,
        optimizer=optimizer,
        data_loader=range(epoch_len),
        epoch=0,
        iter=0,
        inner_iter=0,
        max_epochs=epochs,
        max_iters=epochs * epoch_len,
        logger=logging.getLogger("examples"),
        log_buffer=types.SimpleNamespace(update=lambda *args, **kwargs: None),
    )
    for hook in hooks:
        hook.before_run(runner)

    def before_iter(epoch, k):
        runner.epoch, runner.inner_iter = epoch, k
        if k == 0:
            for hook in hooks:
                hook.before_train_epoch(runner)
        for hook in hooks:
            hook.before_train_iter(runner)

    def update(loss):
        runner.outputs = dict(loss=loss, num_samples=len(data.labels[0]))
        for hook in hooks:
            hook.after_train_iter(runner)
        runner.iter += 1

    return twin_cnn.train_torch(
        model,
        optimizer,
        data,
        epochs=epochs,
        before_iter=before_iter,
        update=update,
        after_epoch=lambda epoch: None,
        log=log,
    )


def main(argv=None):
    twin_cnn.example_main(__doc__, CONFIG, run_torch, epoch_len=EPOCH_LEN, epochs=EPOCHS, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
