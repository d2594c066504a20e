"""MMEngine's ``ReduceOnPlateauLR`` inside a ``param_scheduler`` list, next to the schedulers
stepped by iteration or by epoch, as a pure state and three jittable steps.

MMEngine 0.10.7's runner builds the list in order (each scheduler but the plateau makes its first
event then), and ``ParamSchedulerHook`` steps the iteration-based schedulers after each training
iteration, the epoch-based ones (the plateau only counts the epoch) after each training epoch,
and the plateau's ``step(metrics)`` after each validation. All of them read and write the same
``param_groups[g]['lr']``: a warmup multiplies the lr the plateau left, a decay after a reduction
decays the reduced lr. The twin does the same with one lr per group in its state::

    chain = param_scheduler_with_plateau(
        [dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=500),
         dict(type="ReduceOnPlateauLR", monitor="loss", factor=0.5, patience=2, begin=1)],
        [0.02, 0.002], max_epochs=24)
    state = chain.init()
    # per iteration:  use state.lr (one per group, as in plateau.py), then
    #                 state = chain.step_iteration(state)
    # per epoch:      state = chain.step_epoch(state)
    # per validation: state = chain.step_validation(state, {"loss": val_loss})
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp

from purelr.schedules import mmengine, validate
from purelr.schedules.core import as_values
from purelr.training import plateau

Array = jax.Array

_PLATEAU_ARGS = dict(
    monitor="loss",
    rule="less",
    factor=0.1,
    patience=10,
    threshold=1e-4,
    threshold_rule="rel",
    cooldown=0,
    min_value=0.0,
    eps=1e-8,
)
_PLATEAU_COMMON = dict(
    begin=0,
    end=None,
    last_step=-1,
    by_epoch=True,
    convert_to_iter_based=False,
    verbose=False,
    type=None,
    param_name=None,
)


class PlateauChainState(NamedTuple):
    """``plateau.lr``: the lr in force (one per group for a list lr); ``plateau.epoch``: training
    epochs, the ``_global_step`` of the plateau and of every epoch-based scheduler; ``iteration``:
    training iterations, the ``_global_step`` of every iteration-based scheduler. ``anchor``: the
    lr after the last event replayed one by one, at ``anchor_iteration`` / ``anchor_epoch``."""

    plateau: plateau.PlateauState
    iteration: Array
    anchor: Array
    anchor_iteration: Array
    anchor_epoch: Array

    @property
    def lr(self) -> Array:
        return self.plateau.lr


class PlateauChain(NamedTuple):
    init: Callable[[], PlateauChainState]
    step_iteration: Callable[[PlateauChainState], PlateauChainState]
    step_epoch: Callable[[PlateauChainState], PlateauChainState]
    step_validation: Callable[..., PlateauChainState]  # step_validation(state, metrics)


def _param_of(name: str, cfg: dict) -> str:
    if cfg["type"] == "ReduceOnPlateauParamScheduler":
        param = cfg.get("param_name")
        if not isinstance(param, str):
            raise TypeError(f"{name}.param_name must name the parameter it schedules, got {param!r}")
        return param
    if "param_name" in cfg:
        raise TypeError(f"{name}.param_name is not an argument of {cfg['type']}, got {cfg['param_name']!r}")
    return "momentum" if cfg["type"].endswith("Momentum") else "lr"


def _plateau_cfg(cfgs, param_name: str):
    """``(name, cfg)`` of the one ReduceOnPlateau scheduling ``param_name``."""
    found = [
        (f"param_scheduler[{i}]", cfg)
        for i, cfg in enumerate(cfgs)
        if isinstance(cfg, dict) and cfg.get("type") in mmengine.PLATEAU_TYPES
    ]
    found = [(name, cfg) for name, cfg in found if _param_of(name, cfg) == param_name]
    if len(found) != 1:
        raise ValueError(
            f"param_scheduler_with_plateau needs one ReduceOnPlateau scheduling {param_name!r}, got "
            f"{[cfg['type'] for _, cfg in found]} (without one: purelr.schedules.mmengine.param_scheduler)"
        )
    return found[0]


def _plateau(name: str, cfg: dict, lr, loop, max_epochs) -> plateau.Plateau:
    """``cfg`` checked as MMEngine builds it, as a ``reduce_on_plateau_lr`` twin."""
    for key in cfg:
        if key not in {**_PLATEAU_ARGS, **_PLATEAU_COMMON}:
            raise TypeError(f"{name}.{key} is not an argument of {cfg['type']}, got {cfg[key]!r}")
    args = {**_PLATEAU_COMMON, **_PLATEAU_ARGS, **cfg}
    if args["by_epoch"] is not True or args["convert_to_iter_based"] is not False:
        raise ValueError(
            f"{name}: {cfg['type']} steps by epoch only (MMEngine asserts by_epoch=True), got "
            f"by_epoch={args['by_epoch']!r}, convert_to_iter_based={args['convert_to_iter_based']!r}"
        )
    if validate.integer(f"{name}.last_step", args["last_step"]) != -1:
        raise ValueError(f"{name}.last_step: resuming is not supported, got {args['last_step']!r}")
    if not isinstance(args["monitor"], str) or not args["monitor"]:
        raise TypeError(f"{name}.monitor must name a validation metric, got {args['monitor']!r}")
    end = args["end"]
    if end is None:  # the runner's default: the train loop's max_epochs (1 in an IterBasedTrainLoop)
        end = {"epoch": max_epochs, "iter": 1, None: mmengine.INF}[loop]
    kwargs = {key: args[key] for key in _PLATEAU_ARGS}
    try:
        return plateau.reduce_on_plateau_lr(lr, **kwargs, begin=args["begin"], end=end)
    except (TypeError, ValueError) as error:
        raise type(error)(f"{name}: {error}") from error


def _replayed(entries, counter, value):
    """``value`` after the events of ``entries`` (in list order) at ``counter``, each by its rule's
    ``step``, and whether one of them is a first event or a mark (which closed forms skip)."""
    marked = jnp.zeros((), bool)
    for e in entries:
        t = counter - e.begin
        active = (e.begin <= counter) & (counter < e.stop)
        value = jnp.where(active, e.rule.step(t, value), value)
        for mark in {0, *e.rule.marks}:
            marked = marked | (active & (t == mark))
    return value, marked


def _from_anchor(entries, anchor, then, now):
    """The value from ``anchor`` at the counters ``then`` to ``now`` by the rules' closed forms
    (``span``), and whether they are exact: only multiplying rules acted, or a single other one."""
    value, others, multiplied = anchor, jnp.zeros((), jnp.int32), jnp.zeros((), bool)
    for e in entries:
        if e.rule.kind == "sparse":  # acts at its marks only, replayed
            continue
        ta, tb = (jnp.clip(c[e.by_epoch], e.begin, e.stop - 1) - e.begin for c in (then, now))
        if e.rule.kind == "mult":
            value, multiplied = value * e.rule.span(ta, tb), multiplied | (tb > ta)
        else:
            value, others = e.rule.span(value, ta, tb), others + (tb > ta)
    return value, (others == 0) | ((others == 1) & ~multiplied)


def param_scheduler_with_plateau(
    cfgs: list,
    lr: float | Sequence[float],
    *,
    epoch_len: Optional[int] = None,
    max_epochs: Optional[int] = None,
    max_iters: Optional[int] = None,
    param_name: str = "lr",
) -> PlateauChain:
    """Twin of an MMEngine 0.10.7 ``param_scheduler`` list holding one ``ReduceOnPlateauLR``
    (or ``ReduceOnPlateauMomentum`` / ``ReduceOnPlateauParamScheduler`` with ``param_name``),
    stepped as ``ParamSchedulerHook`` steps it.

    ``lr``: the optimizer's value for ``param_name``, a list for several parameter groups (each
    group's schedulers use its own value as base, as MMEngine's ``initial_lr``). ``epoch_len``,
    ``max_epochs``, ``max_iters``: as in ``purelr.schedules.mmengine.param_scheduler`` (the train
    loop, for the default ``end`` of every scheduler and ``convert_to_iter_based``); the plateau's
    own default ``end`` is ``max_epochs`` (so a validation after the last epoch does nothing), 1 in
    an ``IterBasedTrainLoop`` (``max_iters``), MMEngine's ``INF`` without a loop.

    - ``init()``: the state after the runner built the list: the build events in list order.
    - ``step_iteration(state)`` (``after_train_iter``): ``iteration += 1``; each iteration-based
      scheduler with ``begin <= iteration < stop`` rewrites the lr by its rule at
      ``last_step = iteration - begin`` (``purelr.schedules.mmengine_rules``).
    - ``step_epoch(state)`` (``after_train_epoch``; an ``IterBasedTrainLoop`` runs it only at the
      end): ``epoch += 1``, then the epoch-based schedulers likewise at ``epoch``.
    - ``step_validation(state, metrics)`` (``after_val_epoch``): while ``begin <= epoch < end``,
      torch's plateau rule on the lr in force (``purelr.training.plateau.reduce_on_plateau_lr``)::

          better = metric < best * (1 - threshold)    (rule/threshold_rule as MMEngine)
          best, bad = (metric, 0) if better else (best, bad + 1)
          if cooldown_counter > 0: cooldown_counter -= 1; bad = 0
          if bad > patience: lr = max(lr * factor, min_value) where that lowers lr by more than eps

      ``metrics`` is a dict holding ``monitor`` (a ``KeyError`` otherwise) or the metric itself
      (``None``: nothing happens, as in the hook); a NaN metric is a bad epoch.

    Every step is pure and jittable (counters are arrays; use ``lax.scan`` over a run).

    Evaluation: MMEngine evaluates each event by its recursive form in double precision; replayed
    so in float32, a rounding per event would accumulate over thousands of iterations (1.3e-6
    after a 500-iteration warmup). The twin replays an event by its rule's ``step`` only where
    needed (a scheduler's first event, a mark such as a milestone or restart, two non-multiplying
    schedulers or one with another acting since the last replay, a plateau reduction) and keeps
    the value then as ``anchor``; in between it takes the rules' closed forms (``span``) from the
    anchor, as ``purelr.schedules.mmengine.param_scheduler`` does between its marks.
    """
    if isinstance(cfgs, dict):
        cfgs = [cfgs]
    if isinstance(cfgs, (str, bytes)) or not isinstance(cfgs, Sequence):
        raise TypeError(f"param_scheduler must be a list of dicts, got {cfgs!r}")
    groups = isinstance(lr, (list, tuple))
    bases = (
        [validate.nonnegative(f"lr[{i}]", v) for i, v in enumerate(lr)]
        if isinstance(lr, (list, tuple))
        else [validate.nonnegative("lr", lr)]
    )
    entries = [
        mmengine._entries(cfgs, base, epoch_len, max_epochs, max_iters, param_name, skip_plateaus=True)
        for base in bases
    ]
    loop = mmengine._loop(epoch_len, max_epochs, max_iters)[0]
    name, cfg = _plateau_cfg(cfgs, param_name)
    twin = _plateau(name, cfg, list(bases) if groups else bases[0], loop, max_epochs)

    def init() -> PlateauChainState:
        values = as_values(bases if groups else bases[0])
        built = each_group(values, lambda group, v: mmengine._events(group, 0, v))
        zero = jnp.zeros((), jnp.int32)
        return PlateauChainState(twin.init()._replace(lr=built), zero, built, zero, zero)

    def each_group(values, events):
        """``events(group's entries, group's values)``, stacked over the groups of a list lr."""
        if not groups:
            return events(entries[0], values)
        return jax.tree.map(lambda *xs: jnp.stack(xs), *[events(group, values[g]) for g, group in enumerate(entries)])

    def advance(state: PlateauChainState, counted: plateau.PlateauState, by_epoch: bool) -> PlateauChainState:
        """The events of the ``by_epoch`` schedulers at the new counters: replayed one by one where
        a closed form from the anchor would not be exact (then anchored there), else closed."""
        iteration = state.iteration + (not by_epoch)
        then, now = (state.anchor_iteration, state.anchor_epoch), (iteration, counted.epoch)
        counter = now[by_epoch]
        replayed, marked = each_group(
            counted.lr, lambda group, v: _replayed([e for e in group if e.by_epoch == by_epoch], counter, v)
        )
        closed, exact = each_group(state.anchor, lambda group, v: _from_anchor(group, v, then, now))
        anchor = jnp.any(marked) | ~jnp.all(exact)
        lr = jnp.where(anchor, replayed, closed)
        return PlateauChainState(
            counted._replace(lr=lr),
            iteration,
            jnp.where(anchor, lr, state.anchor),
            jnp.where(anchor, iteration, state.anchor_iteration),
            jnp.where(anchor, counted.epoch, state.anchor_epoch),
        )

    def step_iteration(state: PlateauChainState) -> PlateauChainState:
        return advance(state, state.plateau, False)

    def step_epoch(state: PlateauChainState) -> PlateauChainState:
        return advance(state, twin.step(state.plateau), True)

    def step_validation(state: PlateauChainState, metrics) -> PlateauChainState:
        if metrics is None:  # the hook skips a validation without metrics
            return state
        stepped = twin.step(state.plateau, metrics)
        reduced = jnp.any(stepped.lr != state.lr)
        return state._replace(
            plateau=stepped,
            anchor=jnp.where(reduced, stepped.lr, state.anchor),
            anchor_iteration=jnp.where(reduced, state.iteration, state.anchor_iteration),
            anchor_epoch=jnp.where(reduced, stepped.epoch, state.anchor_epoch),
        )

    return PlateauChain(init, step_iteration, step_epoch, step_validation)
