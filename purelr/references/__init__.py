"""Drivers of the original libraries, stepped as their runners step them (for ``purelr compare``
and the parity tests). Each module imports its library (torch, mmcv, mmengine) when loaded."""
