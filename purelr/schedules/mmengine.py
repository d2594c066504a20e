"""MMEngine 0.10.7 ``param_scheduler`` lists as one pure ``step -> value`` schedule.

``param_scheduler(cfgs, base_value, epoch_len=..., max_epochs=...)`` gives the value (learning
rate, momentum or Adam's beta1) that the optimizer holds during training iteration ``k``, when
MMEngine's runner builds the list (default ``end`` from the train loop, ``convert_to_iter_based``)
and ``ParamSchedulerHook`` steps the iteration-based schedulers after every iteration and the
epoch-based ones after every epoch, all acting on the same value one after the other.

This module imports jax and numpy only.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp

from purelr.schedules import core, validate
from purelr.schedules import mmengine_rules as rules
from purelr.schedules.core import MAX_STEP, as_steps, as_values, with_phases

INF = 10**9
"""MMEngine's default ``end`` when the train loop sets none."""

_FAMILIES: dict[str, dict[str, Any]] = {
    "Constant": dict(factor=1.0 / 3),
    "CosineAnnealing": dict(T_max=None, eta_min=None, eta_min_ratio=None),
    "Exponential": dict(gamma=None),
    "Linear": dict(start_factor=1.0 / 3, end_factor=1.0),
    "MultiStep": dict(milestones=None, gamma=0.1),
    "Step": dict(step_size=None, gamma=0.1),
    "Poly": dict(eta_min=0.0, power=1.0),
    "CosineRestart": dict(periods=None, restart_weights=(1,), eta_min=None, eta_min_ratio=None),
    "OneCycle": dict(
        eta_max=0.0,
        total_steps=None,
        pct_start=0.3,
        anneal_strategy="cos",
        div_factor=25.0,
        final_div_factor=1e4,
        three_phase=False,
    ),
}
_REQUIRED = {
    "Exponential": ("gamma",),
    "MultiStep": ("milestones",),
    "Step": ("step_size",),
    "CosineRestart": ("periods",),
}
_COMMON = dict(begin=0, end=None, by_epoch=True, convert_to_iter_based=False, last_step=-1, verbose=False)
_SUFFIXES = {"LR": "lr", "Momentum": "momentum", "ParamScheduler": None}
_ZOO_FAMILIES: dict[str, dict[str, Any]] = {
    "QuadraticWarmup": {},
    "CosineAnnealingWeightDecay": _FAMILIES["CosineAnnealing"],
    "PolyRatio": dict(eta_min=0.0, eta_min_ratio=None, power=1.0),
}
ZOO_TYPES = {
    "QuadraticWarmupLR": ("QuadraticWarmup", "lr"),  # mmdet.engine.schedulers (MMDetection 3.3.0)
    "QuadraticWarmupMomentum": ("QuadraticWarmup", "momentum"),
    "QuadraticWarmupParamScheduler": ("QuadraticWarmup", None),
    "CosineAnnealingWeightDecay": ("CosineAnnealingWeightDecay", "weight_decay"),  # mmpretrain.engine.schedulers
    "PolyLRRatio": ("PolyRatio", "lr"),  # mmseg.engine.schedulers (MMSegmentation 1.2.2)
}
"""``type: (family, parameter)`` of the schedulers MMDetection, MMPretrain and MMSegmentation register
in MMEngine's registry (``None``: the generic one's ``param_name``)."""
TYPES = tuple(
    family + suffix
    for family in _FAMILIES
    for suffix in _SUFFIXES
    if not (family == "OneCycle" and suffix == "Momentum")
) + tuple(ZOO_TYPES)
"""The scheduler types ``param_scheduler`` accepts (every MMEngine one but ReduceOnPlateau*, and `ZOO_TYPES`)."""
PLATEAU_TYPES = ("ReduceOnPlateauLR", "ReduceOnPlateauMomentum", "ReduceOnPlateauParamScheduler")
"""The metric-driven types, twinned by ``purelr.training.plateau_mmengine``."""


class _Entry(NamedTuple):
    """A built scheduler: its counter advances every ``unit`` iterations, after each iteration
    (or each epoch, ``by_epoch``); its events ``begin <= counter < stop`` can change the value, the
    one made while it is built by ``built`` (OneCycle's values may change later)."""

    index: int  # type: ignore[assignment]  # shadows tuple.index
    by_epoch: bool
    unit: int
    begin: int
    stop: int
    rule: rules.Rule
    built: rules.Rule

    @property
    def first(self) -> int:
        return self.begin * self.unit

    @property
    def last(self) -> int:
        return (self.stop - 1) * self.unit

    def fires_at(self, tau: int) -> bool:
        return tau % self.unit == 0 and self.begin <= tau // self.unit < self.stop

    def fires_within(self, low: int, high: int) -> bool:
        """Whether an event falls in the iterations ``low..high``."""
        low, high = max(low, self.first), min(high, self.last)
        return low <= high and high // self.unit * self.unit >= low

    def last_step(self, tau):
        """The scheduler's ``last_step`` after the events up to iteration ``tau``."""
        return jnp.minimum(as_steps(tau) // self.unit, min(self.stop - 1, MAX_STEP)) - self.begin


def unscoped(kind):
    """A type without the MMEngine registry scope before it (``'mmdet.QuadraticWarmupLR'``, as
    MMDetection's YOLOX configs write it, is ``'QuadraticWarmupLR'``)."""
    scope, dot, rest = kind.partition(".") if isinstance(kind, str) else ("", "", kind)
    return rest if dot and scope.startswith("mm") and scope.isidentifier() else kind


def _split_type(name: str, kind):
    """``(family, parameter)`` of a type name (``None``: a generic ``*ParamScheduler``)."""
    kind = unscoped(kind)
    if kind in PLATEAU_TYPES:
        raise ValueError(
            f"{name}.type = {kind!r} steps on validation metrics, which a step -> value schedule cannot "
            "see: use purelr.training.plateau_mmengine.param_scheduler_with_plateau"
        )
    if kind in ZOO_TYPES:
        return ZOO_TYPES[kind]
    for suffix, param in _SUFFIXES.items():
        if kind in TYPES and kind.endswith(suffix) and kind[: -len(suffix)] in _FAMILIES:
            return kind[: -len(suffix)], param
    raise ValueError(
        f"{name}.type must be one of {list(TYPES)} (ReduceOnPlateau*: see "
        f"purelr.training.plateau_mmengine), got {kind!r}"
    )


def _args(name: str, cfg, family: str) -> dict:
    """The scheduler's arguments: the config's, then MMEngine's defaults; unknown keys rejected."""
    own = {**_FAMILIES, **_ZOO_FAMILIES}[family]
    known = {**_COMMON, **own, "type": None, "param_name": None}
    for key in cfg:
        if key not in known:
            raise TypeError(f"{name}.{key} is not an argument of {cfg['type']}, got {cfg[key]!r}")
    for key in _REQUIRED.get(family, ()):
        if cfg.get(key) is None:
            raise ValueError(f"{name}.{key} is required by {cfg['type']}, got {cfg.get(key)!r}")
    return {**_COMMON, **own, **cfg}


def _eta_min(name: str, args: dict, base: float, required: bool) -> float:
    eta_min, ratio = args["eta_min"], args["eta_min_ratio"]
    if eta_min is not None and ratio is not None:
        raise ValueError(f"{name} takes eta_min or eta_min_ratio, not both, got {eta_min!r} and {ratio!r}")
    if ratio is not None:
        return base * validate.nonnegative(f"{name}.eta_min_ratio", ratio)
    if eta_min is None and required:
        raise ValueError(f"{name} needs eta_min or eta_min_ratio")
    return validate.nonnegative(f"{name}.eta_min", eta_min or 0.0)


def _rule(name: str, family: str, args: dict, base: float, begin: int, end: int, scale: int, cycle) -> rules.Rule:
    """The family's `Rule`; step-valued arguments are multiplied by ``scale`` (the epoch length
    when ``convert_to_iter_based``, as ``build_iter_from_epoch`` does); ``cycle``: `_cycle_values`."""

    def steps(key, value):
        return validate.positive_int(f"{name}.{key}", validate.positive_int(f"{name}.{key}", value) * scale)

    def gamma():
        return validate.nonnegative(f"{name}.gamma", args["gamma"])

    total_iters = end - begin - 1
    if family == "Constant":
        factor = validate.in_range(f"{name}.factor", args["factor"], 0.0, 1.0, low_open=True)
        return rules.constant_rule(factor, total_iters)
    if family == "Exponential":
        return rules.exponential_rule(gamma())
    if family == "Step":
        return rules.step_rule(steps("step_size", args["step_size"]), gamma())
    if family == "MultiStep":
        milestones = validate.step_list(f"{name}.milestones", args["milestones"], allow_duplicates=True)
        milestones = validate.step_list(f"{name}.milestones", [m * scale for m in milestones], allow_duplicates=True)
        return rules.multistep_rule(milestones, gamma())
    if family == "Linear":
        start = validate.in_range(f"{name}.start_factor", args["start_factor"], 0.0, 1.0, low_open=True)
        stop = validate.in_range(f"{name}.end_factor", args["end_factor"], 0.0, 1.0)
        return rules.linear_rule(start, stop, total_iters)
    if family == "Poly":
        eta_min = validate.nonnegative(f"{name}.eta_min", args["eta_min"])
        return rules.poly_rule(eta_min, validate.nonnegative(f"{name}.power", args["power"]), total_iters)
    if family == "QuadraticWarmup":
        if end >= INF:
            raise ValueError(f"{name}.end must be set (MMDetection refuses the default end=INF), got {end}")
        return rules.quadratic_warmup_rule(base, end - begin)
    if family == "PolyRatio":
        ratio = args["eta_min_ratio"]
        eta_min = validate.nonnegative(f"{name}.eta_min", args["eta_min"])
        eta_min = eta_min if ratio is None else base * validate.nonnegative(f"{name}.eta_min_ratio", ratio)
        return rules.poly_rule(eta_min, validate.nonnegative(f"{name}.power", args["power"]), total_iters)
    if family == "CosineAnnealingWeightDecay" and base == 0:
        return rules.zero_rule()
    if family in ("CosineAnnealing", "CosineAnnealingWeightDecay"):
        t_max = args["T_max"]
        t_max = steps("T_max", t_max) if t_max else validate.positive_int(f"{name}.end - begin", end - begin)
        return rules.cosine_rule(t_max, _eta_min(name, args, base, False), base, end - begin)
    if family == "CosineRestart":
        periods = args["periods"]
        if isinstance(periods, (str, bytes)) or not isinstance(periods, Sequence) or not periods:
            raise TypeError(f"{name}.periods must be a non-empty list of integers, got {periods!r}")
        periods = tuple(steps(f"periods[{i}]", p) for i, p in enumerate(periods))
        validate.positive_int(f"{name}.periods (their sum)", sum(periods))
        weights = args["restart_weights"]
        if not isinstance(weights, Sequence) or len(weights) != len(periods):
            raise ValueError(f"{name}.restart_weights must have one weight per period, got {weights!r}")
        weights = tuple(validate.nonnegative(f"{name}.restart_weights[{i}]", w) for i, w in enumerate(weights))
        return rules.cosine_restart_rule(periods, weights, _eta_min(name, args, base, True), base)
    return _one_cycle(name, args, begin, end, scale, cycle)


def _cycle_values(name: str, args: dict) -> dict:
    """``initial``, ``max`` and ``min`` of a OneCycle, which it writes into the parameter group
    when built and every OneCycle reads from there when it steps."""
    eta_max = validate.nonnegative(f"{name}.eta_max", args["eta_max"])
    initial = eta_max / validate.positive(f"{name}.div_factor", args["div_factor"])
    final_div = validate.positive(f"{name}.final_div_factor", args["final_div_factor"])
    return dict(initial=initial, max=eta_max, min=initial / final_div)


def _one_cycle(name: str, args: dict, begin: int, end: int, scale: int, values: dict) -> rules.Rule:
    total = args["total_steps"]
    total = end - begin if total is None else validate.positive_int(f"{name}.total_steps", total) * scale
    if end - begin - 1 > total:
        raise ValueError(
            f"{name}.total_steps must be >= end - begin - 1 = {end - begin - 1} (MMEngine raises once "
            f"it steps past total_steps), got {total}"
        )
    pct = validate.in_range(f"{name}.pct_start", args["pct_start"], 0.0, 1.0)
    strategy = validate.one_of(f"{name}.anneal_strategy", args["anneal_strategy"], ("cos", "linear"))
    phases = rules.one_cycle_phases(total, pct, validate.flag(f"{name}.three_phase", args["three_phase"]))
    if phases[0][0] == 0 or (phases[-1][0] == phases[-2][0] and end - begin - 1 >= total):
        raise ValueError(
            f"{name}.pct_start = {pct!r} leaves an empty phase of {total} steps (MMEngine divides by zero)"
        )
    return rules.one_cycle_rule(values, phases, strategy == "cos")


def _loop(epoch_len, max_epochs, max_iters):
    """``("epoch" | "iter" | None, max_epochs, max_iters)`` of the train loop the runner would build."""
    if epoch_len is not None:
        epoch_len = validate.positive_int("epoch_len", epoch_len)
    if max_epochs is not None:
        max_epochs = validate.positive_int("max_epochs", max_epochs)
        if max_iters is not None and (epoch_len is None or max_iters != max_epochs * epoch_len):
            raise ValueError(
                f"max_iters must be max_epochs * epoch_len (EpochBasedTrainLoop), or pass max_iters "
                f"alone (IterBasedTrainLoop), got max_iters={max_iters!r}, max_epochs={max_epochs!r}, "
                f"epoch_len={epoch_len!r}"
            )
        return "epoch", epoch_len, max_epochs
    if max_iters is not None:
        validate.positive_int("max_iters", max_iters)
        return "iter", epoch_len, 1
    return None, epoch_len, None


def _entries(cfgs, base_value: float, epoch_len, max_epochs, max_iters, param_name, skip_plateaus=False):
    loop, epoch_len, max_epochs = _loop(epoch_len, max_epochs, max_iters)
    if isinstance(cfgs, dict):
        cfgs = [cfgs]
    if isinstance(cfgs, (str, bytes)) or not isinstance(cfgs, Sequence):
        raise TypeError(f"param_scheduler must be a list of dicts, got {cfgs!r}")
    parsed = []
    for i, cfg in enumerate(cfgs):
        name = f"param_scheduler[{i}]"
        if not isinstance(cfg, dict) or "type" not in cfg:
            raise TypeError(f"{name} must be a dict with a 'type', got {cfg!r}")
        if skip_plateaus and cfg["type"] in PLATEAU_TYPES:
            continue
        family, param = _split_type(name, cfg["type"])
        if param is None:
            param = cfg.get("param_name")
            if not isinstance(param, str):
                raise TypeError(f"{name}.param_name must name the parameter {cfg['type']} schedules, got {param!r}")
        elif "param_name" in cfg:
            raise TypeError(f"{name}.param_name is not an argument of {cfg['type']}, got {cfg['param_name']!r}")
        if family == "OneCycle" and param != "lr":
            raise ValueError(f"{name}.param_name: OneCycle schedules only 'lr', got {param!r}")
        parsed.append((name, family, param, _args(name, cfg, family)))
    params = sorted({param for _, _, param, _ in parsed})
    if param_name is None and len(params) > 1:
        raise ValueError(f"param_scheduler schedules several parameters {params}: pick one with param_name")
    chosen = [(i, *p) for i, p in enumerate(parsed) if param_name is None or p[2] == param_name]
    cycles = [_cycle_values(name, args) for _, name, family, _, args in chosen if family == "OneCycle"]
    entries, initial = [], base_value
    for i, name, family, param, args in chosen:
        if validate.integer(f"{name}.last_step", args["last_step"]) != -1:
            raise ValueError(f"{name}.last_step: resuming is not supported, got {args['last_step']!r}")
        by_epoch = validate.flag(f"{name}.by_epoch", args["by_epoch"])
        convert = validate.flag(f"{name}.convert_to_iter_based", args["convert_to_iter_based"])
        if convert and not by_epoch:
            raise ValueError(f"{name}.convert_to_iter_based needs by_epoch=True, got by_epoch=False")
        needs_len = (
            convert or (by_epoch and loop != "iter") or (not by_epoch and loop == "epoch" and args["end"] is None)
        )
        if needs_len and epoch_len is None:
            raise ValueError(f"{name} ({args['type']}, by_epoch={by_epoch}) needs epoch_len, got None")
        begin = validate.nonnegative_int(f"{name}.begin", args["begin"])
        end = args["end"]
        if end is None and loop == "epoch":
            end = max_epochs if by_epoch else max_epochs * epoch_len
        elif end is None:
            end = (1 if by_epoch else max_iters) if loop == "iter" else INF
        end = validate.integer(f"{name}.end", end)
        if end <= begin:
            raise ValueError(f"{name}.end must be larger than begin = {begin}, got {end}")
        scale = epoch_len if convert else 1
        if convert:
            begin, end = begin * scale, (end * scale if end != INF else end)
        own = _cycle_values(name, args) if family == "OneCycle" else None
        initial = own["initial"] if own else initial
        rule = _rule(name, family, args, initial, begin, end, scale, cycles[-1] if own else None)
        built = _rule(name, family, args, initial, begin, end, scale, own) if own else rule
        stop = min(end, begin + rule.length) if rule.length else end
        if by_epoch and not convert:
            if loop == "iter":  # IterBasedTrainLoop runs after_train_epoch only once training is over
                if begin > 0:
                    continue
                entries.append(_Entry(i, True, 1, 0, 1, rule, built))
                continue
            entries.append(_Entry(i, True, epoch_len, begin, stop, rule, built))
        else:
            entries.append(_Entry(i, False, 1, begin, stop, rule, built))
    return [e for e in entries if e.first <= MAX_STEP]


def _marks(entries) -> list:
    """The iterations whose events are evaluated one by one: 0, every scheduler's first and last
    event, sparse events, restarts."""
    times = {0}
    for e in entries:
        times.add(e.first)
        times.add(e.last)
        times.update((e.begin + m) * e.unit for m in e.rule.marks if m < e.stop - e.begin)
    return sorted(t for t in times if t <= MAX_STEP)


def _events(entries, tau: int, value):
    """``value`` after the events at iteration ``tau``, in the hook's order: at 0 the schedulers
    are built in list order; later the iteration-based ones step first, then the epoch-based."""
    order = sorted(entries, key=lambda e: (tau > 0 and e.by_epoch, e.index))
    for e in order:
        if e.fires_at(tau):
            value = (e.built if tau == 0 else e.rule).step(tau // e.unit - e.begin, value)
    return value


def _between(entries, start: int, stop: int):
    """``f(v, k)``: the value at iteration ``start <= k < stop`` given ``v`` at ``start``, when only
    the non-sparse ``entries`` act in ``start < tau < stop``: a closed form when they all multiply or
    only one acts, the events one by one (`jax.lax.fori_loop`, ``O(k - start)``) otherwise."""
    active = [e for e in entries if e.rule.kind != "sparse" and e.fires_within(start + 1, stop - 1)]
    if not active:
        return lambda v, k: v + jnp.zeros(jnp.shape(k), core.float_dtype())
    if all(e.rule.kind == "mult" for e in active):

        def product(v, k):
            for e in active:
                v = v * e.rule.span(e.last_step(start), e.last_step(k))
            return v

        return product
    if len(active) == 1:
        (e,) = active
        return lambda v, k: e.rule.span(v, e.last_step(start), e.last_step(k))
    return _stepwise(sorted(active, key=lambda e: (e.by_epoch, e.index)), start)


def _stepwise(active, start: int):
    units = {e.unit for e in active}
    tick = units.pop() if len(units) == 1 else 1
    origin = start // tick * tick

    def run(v, k):
        ticks = (as_steps(k) - origin) // tick
        v = v + jnp.zeros(jnp.shape(k), core.float_dtype())

        def body(count, v):
            tau = origin + count * tick
            for e in active:
                fires = (tau % e.unit == 0) & (count <= ticks)
                v = jnp.where(fires, e.rule.step(tau // e.unit - e.begin, v), v)
            return v

        return jax.lax.fori_loop(1, jnp.max(ticks) + 1, body, v)

    return run


def param_scheduler(
    cfgs: list,
    base_value: float,
    *,
    epoch_len: Optional[int] = None,
    max_epochs: Optional[int] = None,
    max_iters: Optional[int] = None,
    param_name: Optional[str] = None,
) -> core.Schedule:
    """The value used at training iteration ``k`` under an MMEngine ``param_scheduler`` list.

    Twin of ``mmengine.optim.scheduler`` (``ConstantLR``, ``CosineAnnealingLR``, ``ExponentialLR``,
    ``LinearLR``, ``MultiStepLR``, ``StepLR``, ``PolyLR``, ``OneCycleLR``, ``CosineRestartLR``, their
    ``*Momentum`` and generic ``*ParamScheduler`` forms; see `TYPES`) and of the schedulers the
    model zoos register (`ZOO_TYPES`): MMDetection's ``QuadraticWarmup{LR,Momentum,ParamScheduler}``
    (``v = base * (2 t + 1) / T ** 2`` at ``t = 0``, then ``v += base * (2 t + 1) / T ** 2``,
    ``T = end - begin``: alone ``base * ((t + 1) / T) ** 2``; ``end`` must be set), MMPretrain's
    ``CosineAnnealingWeightDecay`` (``CosineAnnealingParamScheduler`` on ``weight_decay``, except
    that a base value of 0 stays 0) and MMSegmentation's ``PolyLRRatio`` (``PolyLR`` with
    ``eta_min = base * eta_min_ratio`` where the ratio is given), as built by
    ``Runner.build_param_scheduler`` and stepped by ``ParamSchedulerHook``:

    - scheduler ``i`` keeps a counter ``g``: 0 once built (in list order, before iteration 0),
      then ``g = k`` before iteration ``k`` (``by_epoch=False``) or ``g = k // epoch_len``
      (``by_epoch=True``: stepped after each epoch, after the iteration-based ones). Each step with
      ``begin <= g < end`` is an event at ``last_step = g - begin`` that rewrites the value
      (chainable/recursive forms, so overlapping schedulers compose exactly as in MMEngine).
    - ``end`` defaults to ``max_epochs`` (``by_epoch``) or ``max_iters``, else MMEngine's
      ``INF = 10**9``. ``max_epochs`` means an ``EpochBasedTrainLoop`` (``max_iters``, if also
      given, must be ``max_epochs * epoch_len``); ``max_iters`` alone an ``IterBasedTrainLoop``,
      which has ``max_epochs = 1`` and runs ``after_train_epoch`` only after the last iteration,
      so there an epoch-based scheduler acts once, when built.
    - ``convert_to_iter_based=True`` multiplies ``begin``, ``end``, ``T_max``, ``step_size``,
      ``milestones``, ``periods`` and ``total_steps`` by ``epoch_len`` (``build_iter_from_epoch``).
    - ``OneCycleLR`` sets ``initial_lr = eta_max / div_factor``, the base of schedulers built after
      it; each OneCycle anneals between its own values when built, and between those of the last
      OneCycle built afterwards (they share the parameter group's ``initial_lr``/``max_lr``/``min_lr``).

    ``base_value`` is the parameter group's value of the parameter when the schedulers are built
    (``initial_<param>``: ``lr``, ``momentum`` or Adam's ``betas[0]`` for the ``*Momentum``
    schedulers, ``weight_decay``, ...). ``param_name`` selects the schedulers of one parameter from
    a mixed list (``"lr"``, ``"momentum"``, ``"weight_decay"`` or a generic scheduler's ``param_name``).

    Evaluation: between the iterations where something changes shape (a scheduler's first and last
    event, MultiStep/Constant events, restarts) the value has a closed form when every scheduler
    acting there multiplies the value (Step, Exponential, Linear, and Cosine/Poly/CosineRestart with
    ``eta_min = 0``) or only one acts. Where a Cosine/Poly/CosineRestart with ``eta_min > 0`` or a
    OneCycle overlaps another scheduler that acts in the same span, the events are replayed one by
    one with `jax.lax.fori_loop`: ``O(length of that overlap)`` per call. Step comparisons are in
    integer arithmetic, exact for every step in ``[0, 2**31 - 1]``; values differ from MMEngine's
    float64 recursion by rounding only.
    """
    base_value = validate.nonnegative("base_value", base_value)
    entries = _entries(cfgs, base_value, epoch_len, max_epochs, max_iters, param_name)
    marks = _marks(entries)
    spans = [_between(entries, a, b) for a, b in zip(marks, marks[1:] + [MAX_STEP + 1])]

    def schedule(step):
        k = jnp.maximum(as_steps(step), 0)
        value = _events(entries, 0, as_values(base_value))
        starts = [value]
        for span, after in zip(spans, marks[1:]):
            value = _events(entries, after, span(value, after - 1))
            starts.append(value)
        result = None
        for span, start, low, high in zip(spans, starts, marks, marks[1:] + [MAX_STEP + 1]):
            value = span(start, jnp.clip(k, low, high - 1))
            result = value if result is None else jnp.where(k >= low, value, result)
        return result

    listed = [cfgs] if isinstance(cfgs, dict) else list(cfgs)
    phases = []
    for e in entries:
        kind = str(listed[e.index].get("type", "scheduler")) if e.index < len(listed) else "scheduler"
        phases += [(e.first, f"{kind} begins")] if e.first > 0 else []
        phases += [(e.stop * e.unit, f"{kind} ends")] if e.stop < MAX_STEP // e.unit else []
        phases += [((e.begin + m) * e.unit, f"{kind} milestone") for m in e.rule.marks if 0 < m < e.stop - e.begin]
    return with_phases(schedule, [(step, what) for step, what in phases if step <= MAX_STEP])
