"""Whole recipes: config files (``config``), the registry of named parts, and one reader per
framework (``mmcv``, ``mmengine``, ``timm``, ``hf``) turning its recipe into one optax transformation;
``build`` dispatches to them. May import the layers below (training, params, optim, schedules)."""
