"""Loss scaling for float16 training: the scale to multiply the loss by, and a transformation
that unscales the gradients, skips the steps whose gradients overflow and moves the scale.

A scaler (``Scaler``) says how: ``grad_scaler`` twins ``torch.amp.GradScaler`` (what MMEngine's
``AmpOptimWrapper`` and MMCV 1.7.2's ``Fp16OptimizerHook`` use with torch >= 1.6),
``mmcv_loss_scaler`` MMCV's own ``mmcv.runner.fp16_utils.LossScaler`` (its hook for torch < 1.6),
``dynamic_loss_scaler`` / ``static_loss_scaler`` DeepSpeed's ``DynamicLossScaler`` / ``LossScaler``
(``deepspeed.runtime.fp16.loss_scaler``). ``loss_scaled(inner, scaler)`` applies one around an
optimizer; ``loss_scale(opt_state)`` reads the scale for the next loss, ``counting_skipped(schedule)`` makes a
schedule follow the iterations rather than the steps applied (as torch's schedulers do)::

    optimizer = loss_scaled(optax.chain(clip_grad_norm(1.0), adamw(lr=1e-3)), grad_scaler())
    def train_step(params, opt_state, batch):
        scale = loss_scale(opt_state)
        grads = jax.grad(lambda p: loss_fn(p, batch) * scale)(params)   # scaler.scale(loss).backward()
        updates, opt_state = optimizer.update(grads, opt_state, params)  # unscale_, clip, step, update
        return optax.apply_updates(params, updates), opt_state

Unscaling comes first, so a clipping transformation inside ``inner`` sees unscaled gradients, as
``scaler.unscale_(optimizer)`` then ``clip_grad_norm_`` in torch (and ``AmpOptimWrapper.step``).
Wrapped in ``purelr.training.accumulate.accumulate``, the scaled gradients are summed and the sum
unscaled and checked at the iteration that steps, as torch's ``GradScaler`` sees the accumulated
``.grad`` (the scale changes only there, so every summed gradient carries the same scale).
"""

from __future__ import annotations

import contextvars
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from purelr.schedules import validate


class Scaler(NamedTuple):
    """A loss-scaling rule: ``init() -> state`` (a NamedTuple whose ``scale`` the loss is multiplied
    by), ``overflow(grads) -> bool`` (checked on the scaled gradients), ``unscale(grads, state)`` and
    ``update(state, overflow) -> state`` (after the step, skipped or not)."""

    init: Callable[[], Any]
    overflow: Callable[[Any], jax.Array]
    unscale: Callable[[Any, Any], Any]
    update: Callable[[Any, jax.Array], Any]


class GradScalerState(NamedTuple):
    scale: jax.Array  # float32, torch's ``_scale``
    growth_tracker: jax.Array  # int32: steps without overflow since the scale last moved


class DynamicScalerState(NamedTuple):
    """The state of MMCV's ``LossScaler`` and DeepSpeed's scalers (both from apex/Megatron's)."""

    scale: jax.Array  # a Python float in the originals: float64 under x64
    iteration: jax.Array  # ``cur_iter``: updates so far
    last_overflow: jax.Array  # ``last_overflow_iter`` (-1: none yet)
    hysteresis: jax.Array  # DeepSpeed's ``cur_hysteresis``: overflows left before the scale drops


class LossScaleState(NamedTuple):
    scaler: Any  # the scaler's state: ``scaler.scale`` multiplies the next loss (``loss_scale``)
    found_inf: jax.Array  # whether the last gradients overflowed, so the step was skipped
    skipped: jax.Array  # int32: updates skipped so far
    inner_state: Any


_SKIPPED = contextvars.ContextVar("purelr_loss_scale_skipped", default=None)


def _wide():
    """float64 under x64, else float32: the precision of the originals' Python-float arithmetic."""
    return jax.dtypes.canonicalize_dtype(jnp.float64)


def _nonfinite(grads) -> jax.Array:
    """Whether any gradient holds an infinity or a NaN (torch's ``found_inf``)."""
    leaves = jax.tree.leaves(grads)
    return jnp.any(jnp.stack([~jnp.all(jnp.isfinite(g)) for g in leaves])) if leaves else jnp.asarray(False)


def _times_inverse(grads, scale, *, float32_inverse: bool = True):
    """``g * (1 / scale)``, the reciprocal taken in the originals' double precision and, with
    ``float32_inverse``, rounded to float32 (torch's ``inv_scale = scale.double().reciprocal().float()``;
    DeepSpeed's ``grad.mul_(1. / cur_scale)`` multiplies by the double, rounded to the gradient's
    precision). float16 / bfloat16 gradients are multiplied in float32 and rounded back, as
    torch's ``_amp_foreach_non_finite_check_and_unscale_`` and its half-precision kernels do."""
    inverse = 1.0 / jnp.asarray(scale).astype(_wide())
    if float32_inverse:
        inverse = inverse.astype(jnp.float32)

    def leaf(g):
        wide = jnp.promote_types(g.dtype, jnp.float32)
        return (g.astype(wide) * inverse.astype(wide)).astype(g.dtype)

    return jax.tree.map(leaf, grads)


def _never(grads):
    del grads
    return jnp.asarray(False)


def grad_scaler(
    init_scale=2.0**16,
    growth_factor=2.0,
    backoff_factor=0.5,
    growth_interval: int = 2000,
    enabled: bool = True,
    *,
    static: bool = False,
) -> Scaler:
    """Twin of ``torch.amp.GradScaler`` (``torch.cuda.amp.GradScaler``).

    The scale is float32. ``unscale_``: ``found_inf`` if any scaled gradient is not finite, then
    ``g *= float32(1 / scale)``. ``update`` (``torch._amp_update_scale_``), products taken in
    float64 and rounded to float32::

        found_inf:       scale = scale * backoff_factor;  tracker = 0
        else: tracker + 1 == growth_interval:
                         scale = scale * growth_factor (kept if that is not finite);  tracker = 0
              otherwise: tracker += 1

    ``static=True``: the scale stays ``float32(init_scale)`` (overflowing steps are still skipped):
    what MMEngine's ``AmpOptimWrapper`` and MMCV's ``Fp16OptimizerHook`` do with a float
    ``loss_scale``, calling ``update(new_scale=loss_scale)`` after every step.
    ``enabled=False``: the scale is 1, gradients pass unchanged and no step is skipped.
    Outside x64 the products are float32 ones: equal to torch's when the factors are exact in
    float32 (2.0, 0.5: the defaults), else within one float32 rounding of each update.
    """
    if not validate.flag("enabled", enabled):
        return Scaler(
            lambda: GradScalerState(jnp.ones((), jnp.float32), jnp.zeros((), jnp.int32)),
            _never,
            lambda grads, state: grads,
            lambda state, found: state,
        )
    init_scale = validate.positive("init_scale", init_scale)
    if validate.real("growth_factor", growth_factor) <= 1.0:
        raise ValueError(f"growth_factor must be > 1 (torch: 'The growth factor must be > 1.0'), got {growth_factor!r}")
    backoff_factor = validate.in_range("backoff_factor", backoff_factor, 0.0, 1.0, low_open=True, high_open=True)
    growth_interval = validate.positive_int("growth_interval", growth_interval)
    static = validate.flag("static", static)

    def init():
        return GradScalerState(jnp.asarray(init_scale, jnp.float32), jnp.zeros((), jnp.int32))

    def update(state, found):
        if static:
            return init()._replace(growth_tracker=state.growth_tracker)
        wide = state.scale.astype(_wide())
        backed_off = (wide * backoff_factor).astype(jnp.float32)
        grown = (wide * growth_factor).astype(jnp.float32)
        successful = state.growth_tracker + 1
        grow = successful == growth_interval
        scale = jnp.where(found, backed_off, jnp.where(grow & jnp.isfinite(grown), grown, state.scale))
        return GradScalerState(scale, jnp.where(found | grow, 0, successful).astype(jnp.int32))

    return Scaler(init, _nonfinite, lambda grads, state: _times_inverse(grads, state.scale), update)


def _dynamic_state(init_scale, hysteresis: int = 1) -> DynamicScalerState:
    int32 = lambda value: jnp.asarray(value, jnp.int32)
    return DynamicScalerState(jnp.asarray(init_scale, _wide()), int32(0), int32(-1), int32(hysteresis))


def mmcv_loss_scaler(init_scale=2**32, mode: str = "dynamic", scale_factor=2.0, scale_window: int = 1000) -> Scaler:
    """Twin of MMCV 1.x's ``mmcv.runner.fp16_utils.LossScaler`` (apex's), as its ``Fp16OptimizerHook``
    for torch < 1.6 drives it: overflow when a gradient's float32 sum is not finite (a gradient
    whose finite values sum past float32's range counts too, as in MMCV), gradients divided by the
    scale (``grad.div_(loss_scale)``), then ``update_scale``::

        overflow: scale = max(scale / scale_factor, 1);  last_overflow = iteration
        else: if (iteration - last_overflow) % scale_window == 0: scale *= scale_factor
        iteration += 1

    ``mode='static'``: no overflow check (no step skipped), the scale fixed. The scale is a Python
    float in MMCV: float64 under x64, float32 otherwise.
    """
    init_scale = validate.positive("init_scale", init_scale)
    dynamic = validate.one_of("mode", mode, ("dynamic", "static")) == "dynamic"
    scale_factor = validate.positive("scale_factor", scale_factor)
    scale_window = validate.positive_int("scale_window", scale_window)

    def overflow(grads):
        leaves = jax.tree.leaves(grads)
        if not dynamic or not leaves:
            return jnp.asarray(False)
        return jnp.any(jnp.stack([~jnp.isfinite(jnp.sum(g.astype(jnp.float32))) for g in leaves]))

    def unscale(grads, state):
        def leaf(g):
            wide = jnp.promote_types(g.dtype, jnp.float32)
            return (g.astype(wide) / state.scale.astype(wide)).astype(g.dtype)

        return jax.tree.map(leaf, grads)

    def update(state, found):
        if not dynamic:
            return state
        grown = (state.iteration - state.last_overflow) % scale_window == 0
        # a barrier keeps XLA from dividing by multiplying with the factor's rounded reciprocal
        divided = state.scale / jax.lax.optimization_barrier(jnp.asarray(scale_factor, state.scale.dtype))
        scale = jnp.where(found, jnp.maximum(divided, 1.0), jnp.where(grown, state.scale * scale_factor, state.scale))
        return state._replace(
            scale=scale.astype(state.scale.dtype),
            iteration=state.iteration + 1,
            last_overflow=jnp.where(found, state.iteration, state.last_overflow),
        )

    return Scaler(lambda: _dynamic_state(init_scale), overflow, unscale, update)


def dynamic_loss_scaler(
    init_scale=2**32,
    scale_window: int = 1000,
    min_scale=1,
    delayed_shift: int = 1,
    consecutive_hysteresis: bool = False,
) -> Scaler:
    """Twin of DeepSpeed's ``deepspeed.runtime.fp16.loss_scaler.DynamicLossScaler`` (factor 2).

    Overflow when any gradient is not finite (``has_inf_or_nan``); gradients times ``1 / scale``
    (``grad.mul_(1. / cur_scale)`` of its FP16 optimizers); ``update_scale``, with hysteresis
    (``delayed_shift`` overflows before the scale drops)::

        overflow: if delayed_shift == 1 or hysteresis == 1: scale = max(scale / 2, min_scale)
                  else: hysteresis -= 1
                  last_overflow = iteration
        else: if consecutive_hysteresis: hysteresis = delayed_shift
              stable = iteration - last_overflow - 1
              if stable > 0 and stable % scale_window == 0:
                  hysteresis = delayed_shift;  scale *= 2
        iteration += 1

    DeepSpeed raises 'Current loss scale already at minimum' on an overflow at ``min_scale`` (with
    its default ``raise_error_at_min_scale=True``); under ``jit`` nothing can raise: the scale stays
    at ``min_scale``, as with ``raise_error_at_min_scale=False`` (check ``state.found_inf`` and
    ``loss_scale``). The scale is a Python float in DeepSpeed: float64 under x64, float32 otherwise.
    DeepSpeed's ``fp16`` config section maps onto it as ``init_scale=2**initial_scale_power``,
    ``scale_window=loss_scale_window``, ``delayed_shift=hysteresis``, ``min_scale=min_loss_scale``
    (``deepspeed_fp16``).
    """
    init_scale = validate.positive("init_scale", init_scale)
    scale_window = validate.positive_int("scale_window", scale_window)
    min_scale = validate.positive("min_scale", min_scale)
    delayed_shift = validate.positive_int("delayed_shift", delayed_shift)
    consecutive = validate.flag("consecutive_hysteresis", consecutive_hysteresis)

    def update(state, found):
        drop = found & ((delayed_shift == 1) | (state.hysteresis == 1))
        stable = state.iteration - state.last_overflow - 1
        grow = ~found & (stable > 0) & (stable % scale_window == 0)
        scale = jnp.where(
            drop, jnp.maximum(state.scale / 2.0, min_scale), jnp.where(grow, state.scale * 2.0, state.scale)
        ).astype(state.scale.dtype)
        refill = ~found & (consecutive | grow)
        hysteresis = jnp.where(found & ~drop, state.hysteresis - 1, jnp.where(refill, delayed_shift, state.hysteresis))
        return DynamicScalerState(
            scale,
            state.iteration + 1,
            jnp.where(found, state.iteration, state.last_overflow),
            hysteresis.astype(jnp.int32),
        )

    return Scaler(lambda: _dynamic_state(init_scale, delayed_shift), _nonfinite, _deepspeed_unscale, update)


def static_loss_scaler(scale=1.0) -> Scaler:
    """Twin of DeepSpeed's static ``deepspeed.runtime.fp16.loss_scaler.LossScaler(scale)``: the
    scale fixed, no overflow check (no step skipped), gradients times ``1 / scale``."""
    scale = validate.positive("scale", scale)
    return Scaler(lambda: _dynamic_state(scale), _never, _deepspeed_unscale, lambda state, found: state)


def _deepspeed_unscale(grads, state):
    return _times_inverse(grads, state.scale, float32_inverse=False)


def deepspeed_fp16(section) -> Scaler:
    """The scaler of a DeepSpeed config's ``fp16`` section (``DeepSpeedFP16Config``):
    ``loss_scale=0`` (the default) is dynamic scaling (``dynamic_loss_scaler`` from
    ``initial_scale_power`` 16, ``loss_scale_window`` 1000, ``hysteresis`` 2,
    ``consecutive_hysteresis`` False, ``min_loss_scale`` 1), another value a static scale."""
    section = dict(validate.mapping("fp16", section))
    validate.known_keys(
        "fp16",
        section,
        (
            "enabled",
            "auto_cast",
            "loss_scale",
            "initial_scale_power",
            "loss_scale_window",
            "hysteresis",
            "consecutive_hysteresis",
            "min_loss_scale",
            "fp16_master_weights_and_grads",
        ),
    )
    static = validate.nonnegative("fp16.loss_scale", section.get("loss_scale", 0))
    if static:
        return static_loss_scaler(static)
    power = validate.integer("fp16.initial_scale_power", section.get("initial_scale_power", 16))
    return dynamic_loss_scaler(
        init_scale=2**power,
        scale_window=validate.positive_int("fp16.loss_scale_window", section.get("loss_scale_window", 1000)),
        min_scale=validate.positive("fp16.min_loss_scale", section.get("min_loss_scale", 1)),
        delayed_shift=validate.positive_int("fp16.hysteresis", section.get("hysteresis", 2)),
        consecutive_hysteresis=validate.flag(
            "fp16.consecutive_hysteresis", section.get("consecutive_hysteresis", False)
        ),
    )


def loss_scaled(inner: optax.GradientTransformation, scaler: Scaler) -> optax.GradientTransformation:
    """``inner`` applied to gradients of a scaled loss: each update unscales the gradients
    (``scaler.unscale``), checks them (``scaler.overflow``, on the scaled values), runs ``inner``
    unless they overflow (then the update is zero and ``inner``'s state, its count included, stays
    as it was: torch's skipped ``optimizer.step()``), and updates the scale (``scaler.update``).
    ``loss_scale(state)`` is the scale to multiply the next loss by."""
    validate.transformation("inner", inner)
    if not isinstance(scaler, Scaler):
        raise TypeError(f"scaler must be a purelr.training.loss_scale.Scaler (grad_scaler(), ...), got {scaler!r}")

    def init_fn(params):
        return LossScaleState(scaler.init(), jnp.asarray(False), jnp.zeros((), jnp.int32), inner.init(params))

    def update_fn(updates, state, params=None):
        found = scaler.overflow(updates)
        unscaled = scaler.unscale(updates, state.scaler)

        def step(_):
            token = _SKIPPED.set(state.skipped)
            try:
                return inner.update(unscaled, state.inner_state, params)
            finally:
                _SKIPPED.reset(token)

        def skip(_):
            shapes = jax.eval_shape(step, None)[0]
            return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes), state.inner_state

        # a cond, not a select of both: XLA compiles selects over every buffer (nested in
        # accumulate's) several times slower
        stepped, inner_state = jax.lax.cond(found, skip, step, None)
        return stepped, LossScaleState(
            scaler.update(state.scaler, found), found, state.skipped + found.astype(jnp.int32), inner_state
        )

    return optax.GradientTransformation(init_fn, update_fn)


def counting_skipped(schedule):
    """``schedule`` read at the update's index counting the skipped ones: ``count + skipped``.

    A skipped update keeps ``inner``'s count, as torch keeps ``state['step']`` (Adam's bias
    correction, SGD's first momentum step), but torch's lr schedulers step every iteration,
    skipped or not. A schedule given to an optimizer inside ``loss_scaled`` reads the optimizer's
    count; wrapped in ``counting_skipped`` it reads ``count + skipped`` (``LossScaleState.skipped``,
    handed over while ``loss_scaled`` runs ``inner.update``; outside it, ``count``): what
    ``purelr.build`` does for a recipe's schedulers. The function stays pure: ``skipped`` is part
    of the state the update receives.
    """

    def read(count):
        skipped = _SKIPPED.get()
        return schedule(count if skipped is None else count + skipped)

    return read


def loss_scale_state(state) -> LossScaleState | None:
    """The ``LossScaleState`` inside an optimizer state, whatever wraps it (None if it has none):
    its ``found_inf`` says whether the last step was skipped, its ``scaler`` holds the scaler's
    counters (torch's ``growth_tracker``, DeepSpeed's ``hysteresis``)."""
    found = [
        node
        for node in jax.tree.leaves(state, is_leaf=lambda node: isinstance(node, LossScaleState))
        if isinstance(node, LossScaleState)
    ]
    if len(found) > 1:
        raise ValueError(f"the optimizer state holds {len(found)} loss scalers, expected one")
    return found[0] if found else None


def loss_scale(state) -> jax.Array:
    """The scale to multiply the next loss by, read from an optimizer state built with
    ``loss_scaled`` (``purelr.build`` of an ``AmpOptimWrapper`` / ``Fp16OptimizerHook`` / ``fp16``
    config), whatever wraps it; 1.0 when the state has no loss scaling (as a disabled GradScaler's
    ``scale(loss)`` returns the loss)."""
    found = loss_scale_state(state)
    return jnp.ones((), jnp.float32) if found is None else found.scaler.scale
