"""``purelr plot CONFIG``: the lr and momentum curves of every parameter group of a config.

Prints a table of the breakpoints (start, end of warmup, each decay, end) and writes a PNG (and
a CSV). ``purelr compare CONFIG --against mmcv|mmengine|timm`` steps the original library too and
prints the largest difference. Errors in the command or the config print one line and exit 2.
"""

from __future__ import annotations

import argparse
import sys
import time

from purelr.cli.compare import AGAINST
from purelr.recipes.config import ConfigError


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="purelr", description=__doc__.splitlines()[0])
    commands = root.add_subparsers(dest="command", required=True)
    plot = commands.add_parser("plot", help="draw the lr/momentum curves of a config")
    plot.add_argument("config", help="an MMDetection 2.x or MMEngine config file (.py, .json, .yaml)")
    plot.add_argument("--epoch-len", type=int, help="iterations per epoch (for epoch-based configs)")
    length = plot.add_mutually_exclusive_group()
    length.add_argument("--max-epochs", type=int, help="override the run's length in epochs")
    length.add_argument("--max-iters", type=int, help="override the run's length in iterations")
    plot.add_argument("-o", "--output", default="lr.png", help="the PNG to write (default lr.png)")
    plot.add_argument("--csv", help="also write every value to this CSV file")
    plot.add_argument("--by", choices=("iter", "epoch"), default="iter", help="x axis unit")
    plot.add_argument("--log", action="store_true", help="logarithmic lr axis")
    plot.add_argument("--model", help="module:factory giving params (or (params, module_kinds)) "
                                      "to group instead of the built-in example tree")
    compare = commands.add_parser("compare", help="overlay the original library's curves and print the difference")
    compare.add_argument("config", help="an MMDetection 2.x or MMEngine config file")
    compare.add_argument("--against", required=True, choices=AGAINST, help="the original to step")
    compare.add_argument("--epoch-len", type=int, help="iterations per epoch (for epoch-based configs)")
    compare.add_argument("-o", "--output", default="compare.png", help="the PNG to write")
    return root


def plot(args) -> int:
    from purelr.cli import plot as plot_lib
    from purelr.cli.curves import config_curves

    params, kinds = _model(args.model) if args.model else (None, None)
    start = time.perf_counter()
    curves = config_curves(args.config, epoch_len=args.epoch_len, max_epochs=args.max_epochs,
                           max_iters=args.max_iters, params=params, module_kinds=kinds)
    evaluated = time.perf_counter() - start
    print(plot_lib.table(curves))
    plot_lib.draw(curves, args.output, by=args.by, log=args.log, title=args.config)
    if args.csv:
        plot_lib.write_csv(curves, args.csv)
    written = [args.output] + ([args.csv] if args.csv else [])
    print(f"{len(curves.steps)} iterations, {len(curves.values)} curves evaluated in {evaluated:.2f} s; "
          f"wrote {', '.join(written)}")
    return 0


def _model(spec: str):
    """``module:factory`` -> ``(params, module_kinds)``; the factory returns either, or both."""
    import importlib

    module, _, name = spec.partition(":")
    if not name:
        raise ValueError(f"--model must be module:factory, got {spec!r}")
    made = getattr(importlib.import_module(module), name)()
    return made if isinstance(made, tuple) else (made, None)


def compare(args) -> int:
    from purelr.cli import plot as plot_lib
    from purelr.cli.compare import differences, reference_curves
    from purelr.cli.curves import config_curves

    ours = config_curves(args.config, epoch_len=args.epoch_len)
    reference = reference_curves(args.config, ours, args.against)
    for (group, quantity), difference in differences(ours, reference).items():
        print(f"{group}/{quantity}: max |purelr - {args.against}| / max |{args.against}| = {difference:.3g}")
    plot_lib.draw(ours, args.output, title=f"{args.config}: purelr (solid) vs {args.against} (dashed)",
                  overlay=reference)
    print(f"wrote {args.output}")
    return 0


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        return {"plot": plot, "compare": compare}[args.command](args)
    except (ConfigError, ValueError, TypeError, KeyError, ImportError, OSError) as error:
        print(f"purelr: error: {error}", file=sys.stderr)
        return 2
