"""The optimizers MMPretrain 1.2.0 registers (``mmpretrain.engine.optimizers``: ``LARS``, ``Lamb``,
``Adan``; MMClassification 0.25.0's ``Lamb`` is the same file), with their signatures and defaults,
as options of purelr's timm twins where the arithmetic is timm's:

- ``Lamb`` is timm's ``Lamb`` (the version MMPretrain copied, before caution and decoupled decay):
  the same formula, ``exp_avg`` updated as ``beta1 * m + (1 - beta1) * g`` where timm 1.0.31 lerps
  (a rounding apart). ``purelr.optim.lamb``.
- ``LARS`` adapts every parameter (timm's ``always_adapt``) but those of groups with
  ``lars_exclude=True``, and keeps ``lr`` inside the momentum buffer: ``purelr.optim.lars`` with
  ``always_adapt``, ``lars_exclude`` and ``lr_in_buffer`` (``eta`` is timm's ``trust_coeff``).
- ``Adan`` adds a global gradient clipping (``max_grad_norm > 0``: ``purelr.optim.adan.grad_clip``),
  sums its two steps before applying them (a rounding apart), and with its default ``foreach=True``
  and ``no_prox=True`` only decays the params (``purelr.optim.adan`` with ``decay_only``).

Lamb's and Adan's clipping spans every parameter group: ``global_grad_clip(hyperparams)`` says
what ``purelr.build`` puts before the groups (and the arguments the groups then take).
"""

from __future__ import annotations

import optax

from purelr.optim.adan import adan
from purelr.optim.adan import grad_clip as adan_grad_clip
from purelr.optim.hyperparams import check
from purelr.optim.lamb import grad_clip as lamb_grad_clip
from purelr.optim.lamb import lamb
from purelr.optim.lars import lars


def mmpretrain_lars(
    lr, momentum=0, weight_decay=0, dampening=0, eta=0.001, nesterov: bool = False, eps=1e-8, lars_exclude: bool = False
) -> optax.GradientTransformation:
    """Twin of ``mmpretrain.engine.optimizers.LARS``: with ``w = |param|``, ``n = |grad|``::

        trust = eta * w / (n + weight_decay * w + eps)     (1 where w or n is 0, or lars_exclude)
        g = (grad + weight_decay * param) * (trust * lr)
        buf = g at the first update, then momentum * buf + (1 - dampening) * g   (momentum != 0)
        param -= g + momentum * buf (nesterov)  or  buf  (or g without momentum)

    ``lars_exclude`` is a parameter-group key (``paramwise_cfg.custom_keys``)."""
    check("eta", eta)
    return lars(
        lr,
        momentum,
        dampening,
        weight_decay,
        nesterov,
        trust_coeff=eta,
        eps=eps,
        always_adapt=True,
        lars_exclude=lars_exclude,
        lr_in_buffer=True,
    )


def mmpretrain_lamb(
    lr=1e-3,
    bias_correction: bool = True,
    betas=(0.9, 0.999),
    eps=1e-6,
    weight_decay=0.01,
    grad_averaging: bool = True,
    max_grad_norm=1.0,
    trust_clip: bool = False,
    always_adapt: bool = False,
) -> optax.GradientTransformation:
    """Twin of ``mmpretrain.engine.optimizers.Lamb``: ``purelr.optim.lamb`` (timm's), whose
    docstring gives the formula; ``max_grad_norm=None`` (no clipping) is the twin's own."""
    return lamb(lr, bias_correction, betas, eps, weight_decay, grad_averaging, max_grad_norm, trust_clip, always_adapt)


def mmpretrain_adan(
    lr=1e-3,
    betas=(0.98, 0.92, 0.99),
    eps=1e-8,
    weight_decay=0.0,
    max_grad_norm=0.0,
    no_prox: bool = False,
    foreach: bool = True,
) -> optax.GradientTransformation:
    """Twin of ``mmpretrain.engine.optimizers.Adan``: ``purelr.optim.adan`` (timm's formula, in its
    docstring) after ``grad * min(max_grad_norm / (|grads| + eps), 1)`` where ``max_grad_norm > 0``;
    with ``foreach`` (the default) and ``no_prox`` the params are only decayed (``decay_only``)."""
    step = adan(lr, betas, eps, weight_decay, no_prox, decay_only=bool(foreach and no_prox))
    clip = _adan_clip(dict(max_grad_norm=max_grad_norm, eps=eps))
    return step if clip is None else optax.chain(clip, step)


def _adan_clip(hyperparams):
    max_grad_norm = check("max_grad_norm", hyperparams.get("max_grad_norm", 0.0))
    return (
        adan_grad_clip(max_grad_norm, hyperparams.get("eps", 1e-8))
        if callable(max_grad_norm) or max_grad_norm > 0
        else None
    )


def global_grad_clip(optimizer, hyperparams: dict):
    """``(clip, group_hyperparams)``: the clipping over every group that ``optimizer`` (one of this
    module's) does inside its step, as a transformation to put before the groups (None: none), and
    the arguments of the groups, which then clip nothing."""
    if optimizer is mmpretrain_lamb:
        max_grad_norm = hyperparams.get("max_grad_norm", 1.0)
        clip = None if max_grad_norm is None else lamb_grad_clip(max_grad_norm)
        return clip, {**hyperparams, "max_grad_norm": None}
    if optimizer is mmpretrain_adan:
        return _adan_clip(hyperparams), {**hyperparams, "max_grad_norm": 0.0}
    return None, hyperparams
