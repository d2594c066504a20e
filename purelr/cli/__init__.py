"""The ``purelr`` command (``plot``, ``compare``) with the curve evaluation and breakpoint table it
uses. The top layer: may import every other layer, and ``purelr.references`` for ``compare``."""

from purelr.cli.commands import main

__all__ = ["main"]
