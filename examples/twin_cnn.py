"""A small CNN written twice (flax linen and torch), its data, and the JAX side of a training run.

The network: a 3x3 convolution without bias, BatchNorm, ReLU, a 3x3 depth-wise convolution with
bias, ReLU, global average pooling and a linear classifier. Module names are the same in both
frameworks (``conv``, ``bn``, ``dw``, ``head``), so a config's ``custom_keys`` select the same
parameters on both sides and ``purelr.training.from_torch.model_from_torch`` copies torch's initial weights
into flax with its default names.

BatchNorm trains on batch statistics in both frameworks with the same update of the running
averages: torch ``momentum=0.1`` is flax ``momentum=0.9``. One difference is kept: torch's
running variance uses the unbiased batch variance and flax's the biased one; in train mode neither
is read, so losses and parameters are unaffected.

The data are ``epoch_len`` fixed batches, drawn once from a seed and shown in the same order every
epoch: each class has a random template image and an example is its class's template plus noise.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import sys
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn

import purelr
from examples import progress
from purelr.params.groups import hyperparams_in_force
from purelr.params.module_kinds import dotted_names, module_kinds
from purelr.training.from_torch import default_names, kernel_layout, model_from_torch

WIDTH = 8
CLASSES = 4
IMAGE = 8


class Data(NamedTuple):
    """``epoch_len`` batches: ``images`` ``(epoch_len, batch, 3, IMAGE, IMAGE)`` in torch's NCHW
    layout (``nhwc`` gives flax's) and integer ``labels`` ``(epoch_len, batch)``."""

    images: np.ndarray
    labels: np.ndarray


class Run(NamedTuple):
    """What a training run leaves: ``losses`` ``(epochs, epoch_len)`` (the loss of each iteration,
    before its update), and after each epoch the ``params`` and ``batch_stats`` as
    ``{dotted flax name: array}`` and ``lrs`` ``{group: lr}`` (the lr of the epoch's last update)."""

    losses: np.ndarray
    params: list
    batch_stats: list
    lrs: list


class TwinCNN(nn.Module):
    """The flax twin of ``torch_model()``; ``dtype`` is the computation and parameter dtype."""

    width: int = WIDTH
    classes: int = CLASSES
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = True):
        kw = dict(dtype=self.dtype, param_dtype=self.dtype)
        x = nn.Conv(self.width, (3, 3), padding=1, use_bias=False, name="conv", **kw)(x)
        x = nn.BatchNorm(
            use_running_average=not train, momentum=0.9, epsilon=1e-5, use_fast_variance=False, name="bn", **kw
        )(x)
        x = nn.relu(x)
        x = nn.Conv(self.width, (3, 3), padding=1, feature_group_count=self.width, name="dw", **kw)(x)
        x = nn.relu(x).mean(axis=(1, 2))
        return nn.Dense(self.classes, name="head", **kw)(x)


def torch_model(seed: int = 0, dtype=None):
    """The torch network, initialised by torch from ``seed`` (``dtype``: a torch dtype)."""
    import torch

    torch.manual_seed(seed)
    layers = collections.OrderedDict(
        conv=torch.nn.Conv2d(3, WIDTH, 3, padding=1, bias=False),
        bn=torch.nn.BatchNorm2d(WIDTH, eps=1e-5, momentum=0.1),
        relu=torch.nn.ReLU(),
        dw=torch.nn.Conv2d(WIDTH, WIDTH, 3, padding=1, groups=WIDTH),
        relu_dw=torch.nn.ReLU(),
        pool=torch.nn.AdaptiveAvgPool2d(1),
        flatten=torch.nn.Flatten(),
        head=torch.nn.Linear(WIDTH, CLASSES),
    )
    return torch.nn.Sequential(layers).to(dtype or torch.float64).train()


@contextlib.contextmanager
def one_thread():
    """torch on one intra-op thread while inside: on tensors this small, more threads only wait
    for each other (a 16x3x8x8 convolution takes ~0.05 ms on one thread, up to 20 ms on two of a
    loaded machine)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def make_data(epoch_len: int, batch: int = 16, seed: int = 0) -> Data:
    """``epoch_len`` batches of ``batch`` noisy class templates (float64)."""
    rng = np.random.default_rng(seed)
    templates = rng.normal(0.0, 1.0, (CLASSES, 3, IMAGE, IMAGE))
    labels = rng.integers(0, CLASSES, (epoch_len, batch))
    images = templates[labels] + rng.normal(0.0, 1.5, (epoch_len, batch, 3, IMAGE, IMAGE))
    return Data(images, labels)


def nhwc(images):
    """NCHW (torch) to NHWC (flax)."""
    return np.moveaxis(np.asarray(images), -3, -1)


def flax_model(dtype):
    """``(model, params template, batch_stats template)`` of the flax twin in ``dtype``."""
    model = TwinCNN(dtype=dtype)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, IMAGE, IMAGE, 3), dtype)))
    return model, shapes["params"], shapes["batch_stats"]


def from_torch_model(torch_module, dtype):
    """``(params, batch_stats)``: the torch network's state as flax trees in ``dtype``."""
    _, params, batch_stats = flax_model(dtype)
    return model_from_torch(torch_module.state_dict(), params, batch_stats=batch_stats)


def flat(tree) -> dict:
    """``{dotted name: numpy array}``."""
    return dict(zip(dotted_names(tree), (np.asarray(leaf) for leaf in jax.tree.leaves(tree))))


def kinds(dtype=jnp.float32) -> dict:
    """The norm / depth-wise conv kinds of the flax twin's modules, for ``paramwise_cfg``."""
    return module_kinds(TwinCNN(dtype=dtype), jnp.zeros((1, IMAGE, IMAGE, 3), dtype))


def train_step(model, tx):
    """The (unjitted) train step ``(params, batch_stats, opt_state, images, labels) -> (params,
    batch_stats, opt_state, loss)``: cross-entropy summed over the batch, on batch statistics, then ``tx``."""

    def step(params, batch_stats, opt_state, images, labels):
        def loss_fn(params):
            logits, updates = model.apply(
                {"params": params, "batch_stats": batch_stats}, images, train=True, mutable=["batch_stats"]
            )
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).sum()
            return loss, updates["batch_stats"]

        (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), batch_stats, opt_state, loss

    return step


def group_lrs(opt_state) -> dict:
    """``{group: lr}`` of the last update, read from the state (``purelr.params.groups``)."""
    return {label: float(h["lr"]) for label, h in hyperparams_in_force(opt_state).items()}


def run_jax(cfg, data: Data, *, epochs: int, seed: int = 0, dtype=jnp.float64, log=None) -> Run:
    """Trains the flax twin, started from torch's initialisation with ``seed``, for ``epochs``
    passes over ``data`` with ``purelr.build(cfg, ...)`` and one jit-compiled train step.

    ``dtype=jnp.float64`` needs ``jax_enable_x64``. ``log``: a stream for the progress output
    (``examples.progress``), or ``None``.
    """
    model = TwinCNN(dtype=dtype)
    params, batch_stats = from_torch_model(torch_model(seed), dtype)
    epoch_len = len(data.labels)
    tx = purelr.build(cfg, params, epoch_len=epoch_len, module_kinds=kinds(dtype))
    opt_state = tx.init(params)
    step = jax.jit(train_step(model, tx))
    images = jnp.asarray(nhwc(data.images), dtype)
    labels = jnp.asarray(data.labels)
    losses, snapshots, stats, lrs = [], [], [], []
    for epoch in range(epochs):
        epoch_losses = []
        for k in range(epoch_len):
            params, batch_stats, opt_state, loss = step(params, batch_stats, opt_state, images[k], labels[k])
            epoch_losses.append(loss)
            if log is not None:
                progress.step(log, epoch, epochs, k, epoch_len, float(loss))
        losses.append(np.asarray(jax.device_get(epoch_losses)))
        snapshots.append(flat(params))
        stats.append(flat(batch_stats))
        lrs.append(group_lrs(opt_state))
        if log is not None:
            progress.epoch(log, epoch, epochs, float(losses[-1].mean()), lrs[-1])
    return Run(np.stack(losses), snapshots, stats, lrs)


def train_torch(model, optimizer, data: Data, *, epochs: int, before_iter, update, after_epoch, log=None) -> Run:
    """Trains the torch network ``epochs`` times over ``data``, one thread, as a reference loop
    does: ``before_iter(epoch, k)``, the forward pass and loss (summed cross-entropy), then
    ``update(loss)`` (backward and step, as the reference does them) and at the end of each epoch
    ``after_epoch(epoch)``. The losses and states are recorded as ``run_jax`` records them; the lrs
    by module, as the optimizer holds them at the end of the epoch (a scheduler stepped after each
    update, as timm's, already holds the next update's)."""
    import torch

    images = torch.as_tensor(data.images, dtype=next(model.parameters()).dtype)
    labels = torch.as_tensor(data.labels)
    modules = {id(p): n.rpartition(".")[0] for n, p in model.named_parameters()}
    epoch_len = len(data.labels)
    losses, snapshots, stats, lrs = [], [], [], []
    with one_thread():
        for epoch in range(epochs):
            epoch_losses = []
            for k in range(epoch_len):
                before_iter(epoch, k)
                loss = torch.nn.functional.cross_entropy(model(images[k]), labels[k], reduction="sum")
                update(loss)
                epoch_losses.append(loss.item())
                if log is not None:
                    progress.step(log, epoch, epochs, k, epoch_len, epoch_losses[-1])
            after_epoch(epoch)
            losses.append(epoch_losses)
            params, batch_stats = torch_state(model)
            snapshots.append(params)
            stats.append(batch_stats)
            lrs.append({modules[id(p)]: g["lr"] for g in optimizer.param_groups for p in g["params"]})
            if log is not None:
                progress.epoch(log, epoch, epochs, float(np.mean(epoch_losses)), lrs[-1])
    return Run(np.asarray(losses), snapshots, stats, lrs)


def torch_state(torch_module) -> tuple[dict, dict]:
    """``(params, batch_stats)`` of the torch network as ``{dotted flax name: array}`` in flax's
    layouts, in numpy (no cast: float64 stays float64 whatever jax's mode)."""
    params, batch_stats = {}, {}
    for torch_name, tensor in torch_module.state_dict().items():
        name = default_names(torch_name, tuple(tensor.shape))
        if name is None:
            continue
        array = tensor.detach().cpu().numpy().copy()
        leaf = name.rpartition(".")[2]
        if leaf == "kernel":
            params[name] = kernel_layout(array)
        else:
            (batch_stats if leaf in ("mean", "var") else params)[name] = array
    return params, batch_stats


def relative_error(actual, expected) -> float:
    """``max |actual - expected| / max |expected|`` over an array (1 where ``expected`` is 0)."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    scale = float(np.max(np.abs(expected))) or 1.0
    return float(np.max(np.abs(actual - expected))) / scale


class Errors(NamedTuple):
    """Largest relative errors of one run against another, per epoch: ``losses`` (every iteration
    of the epoch), ``params`` (worst leaf), ``means`` (BatchNorm running means)."""

    losses: np.ndarray
    params: np.ndarray
    means: np.ndarray


def errors(actual: Run, expected: Run) -> Errors:
    """How far ``actual`` is from ``expected`` after each epoch (see ``Errors``)."""
    losses = [relative_error(a, e) for a, e in zip(actual.losses, expected.losses)]
    params = [max(relative_error(a[n], e[n]) for n in e) for a, e in zip(actual.params, expected.params)]
    means = [
        max(relative_error(a[n], e[n]) for n in e if n.endswith(".mean"))
        for a, e in zip(actual.batch_stats, expected.batch_stats)
    ]
    return Errors(np.asarray(losses), np.asarray(params), np.asarray(means))


def example_main(doc: str, cfg, run_torch, *, epoch_len: int, epochs: int, argv=None) -> None:
    """``python -m examples.<recipe>``: the JAX run in float64 with its progress output; with
    ``--torch``, the torch run too and the largest relative differences."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--torch", action="store_true", help="run the torch side as well and compare")
    parser.add_argument("--epoch-len", type=int, default=epoch_len)
    args = parser.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    epoch_len = args.epoch_len
    data = make_data(epoch_len)
    print(f"JAX (purelr.build), {epochs} epochs x {epoch_len} iterations, float64")
    actual = run_jax(cfg, data, epochs=epochs, log=sys.stdout)
    if args.torch:
        print("torch (reference)")
        expected = run_torch(cfg, data, epochs=epochs, log=sys.stdout)
        found = errors(actual, expected)
        print(
            f"largest relative difference over the run: losses {found.losses.max():.3g}, "
            f"params {found.params.max():.3g}, BatchNorm running means {found.means.max():.3g}"
        )
