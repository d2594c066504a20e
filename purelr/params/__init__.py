"""Which parameter gets which settings: dotted names and module kinds of a flax tree, torch-style
groups, MMCV/MMEngine ``paramwise_cfg``, timm's weight-decay and layer-decay groups and the
layer-decay constructors of OpenMMLab's model zoos, one module per rule set. May import
``purelr.optim`` and ``purelr.schedules`` only."""
