"""The MMCV 1.7.2 hook driver lives in the package (``purelr.references.mmcv``, used by ``purelr
compare``); the tests import it under this name."""

from purelr.references.mmcv import build_hook, make_optimizer, run_epoch_based, run_iter_based, sample_epoch_based

__all__ = ["build_hook", "make_optimizer", "run_epoch_based", "run_iter_based", "sample_epoch_based"]
