"""Which parameter gets which settings: dotted names and module kinds of a flax tree, torch-style
groups, MMCV/MMEngine ``paramwise_cfg`` and timm's weight-decay and layer-decay groups, one module
per rule set. May import ``purelr.optim`` and ``purelr.schedules`` only."""
