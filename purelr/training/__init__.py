"""The stateful pieces of a training loop as pure state + update functions: accumulation, plateau,
averaging (SWA/EMA), BatchNorm statistics, loss scaling, checkpoints, a torch run's state both ways
and the shardings of the optimizer state. May import
``purelr.params``, ``purelr.optim`` and ``purelr.schedules`` only."""

from purelr.training.plateau_mmengine import param_scheduler_with_plateau  # noqa: E402,F401
