"""Whole training runs ported from PyTorch to JAX with purelr, side by side with the original.

Run one with its progress output: ``python -m examples.retinanet_1x``, ``python -m
examples.timm_adamw``, ``python -m examples.sharded``. Nothing is imported here, so that
``examples.sharded`` can set ``XLA_FLAGS`` before jax loads.
"""
