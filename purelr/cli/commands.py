"""``purelr plot CONFIG``: the lr and momentum curves of every parameter group of a config; ``purelr convert``:
torch checkpoints to purelr checkpoint directories and back (``purelr.cli.convert``).

Prints a table of the breakpoints (start, end of warmup, each decay, end) and writes a PNG (and
a CSV). ``purelr compare CONFIG --against mmcv|mmengine|timm|hf|fvcore|deepspeed`` steps the original library too,
prints the largest difference of each curve and a pass/fail line against ``--rtol`` (exit 1 on
fail). Errors in the command or the config print one line and exit 2.
"""

from __future__ import annotations

import argparse
import sys
import time

import purelr
from purelr.cli.compare import AGAINST
from purelr.recipes.config import ConfigError

DESCRIPTION = """\
Learning-rate and momentum curves of MMDetection 2.x (MMCV), MMEngine, timm, Hugging Face Trainer,
detectron2 and DeepSpeed configs, as
purelr evaluates them, drawn or checked against the original library.

`purelr convert` moves a torch checkpoint to a purelr checkpoint directory and back.

A .py config is read as data, not run (MMCV and MMEngine run it): code outside the config subset is refused.
`purelr COMMAND --help` gives each command's options."""


def count(text: str) -> int:
    """An argparse type: a positive integer (a number of epochs or iterations)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def positive(text: str) -> float:
    """An argparse type: a positive number (a tolerance)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {value:g}")
    return value


def run_length_options(command: argparse.ArgumentParser) -> None:
    """``--epoch-len`` and ``--max-epochs | --max-iters``, shared by ``plot`` and ``compare``."""
    command.add_argument(
        "--epoch-len",
        type=count,
        metavar="N",
        help="iterations (optimizer updates) per epoch: needed by epoch-based configs "
        "and every timm config (timm's updates_per_epoch); for hf=dict(...) configs the "
        "batches per epoch, len(train_dataloader)",
    )
    length = command.add_mutually_exclusive_group()
    length.add_argument("--max-epochs", type=count, metavar="N", help="override the run's length in epochs")
    length.add_argument("--max-iters", type=count, metavar="N", help="override the run's length in iterations")


def scope(text: str) -> tuple[str, str]:
    """An argparse type: ``NAME=PATH``, a config root for ``NAME::`` bases."""
    name, _, path = text.partition("=")
    if not name or not path:
        raise argparse.ArgumentTypeError(
            f"must be NAME=PATH (--scope mmdet=/path/to/mmdetection/configs), got {text!r}"
        )
    return name, path


def config_options(command: argparse.ArgumentParser) -> None:
    """``--scope NAME=PATH`` and ``--trust-config``, shared by ``plot`` and ``compare``."""
    command.add_argument(
        "--scope",
        type=scope,
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="the config root of NAME:: bases and of 'NAME.configs' pure-Python imports (repeatable)",
    )
    command.add_argument(
        "--trust-config",
        action="store_true",
        help="run what the config subset does not cover as Python, as MMCV/MMEngine do",
    )
    command.add_argument(
        "--world-size",
        type=count,
        metavar="N",
        help="the processes (GPUs) the original ran on, for auto_scale_lr=dict(enable=True)",
    )


def loaded(args) -> dict:
    """The config file: a detectron2 YAML (``SOLVER``, ``_BASE_``) as ``dict(detectron2=path)``,
    a DeepSpeed JSON as ``dict(deepspeed=...)``,
    anything else read by ``purelr.load_config``."""
    from purelr.recipes import deepspeed as deepspeed_lib
    from purelr.recipes.config import load_config
    from purelr.recipes.detectron2 import is_detectron2_yaml

    if is_detectron2_yaml(args.config):
        return {"detectron2": args.config}
    cfg = load_config(args.config, scopes=dict(args.scope), trust=args.trust_config)
    return {"deepspeed": cfg} if deepspeed_lib.is_deepspeed_config(cfg) else cfg


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="purelr", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    root.add_argument("--version", action="version", version=f"purelr {purelr.__version__}")
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands")
    plot = commands.add_parser("plot", help="draw the lr/momentum curves of a config")
    plot.add_argument(
        "config", help="an MMDetection 2.x, MMEngine, timm, hf, detectron2 or DeepSpeed config file (.py, .json, .yaml)"
    )
    run_length_options(plot)
    config_options(plot)
    plot.add_argument("-o", "--output", default="lr.png", help="the PNG to write (default lr.png)")
    plot.add_argument("--csv", help="also write every value to this CSV file")
    plot.add_argument("--by", choices=("iter", "epoch"), default="iter", help="x axis unit")
    scale = plot.add_mutually_exclusive_group()
    scale.add_argument(
        "--log",
        action="store_const",
        const=True,
        help="logarithmic lr axis (default: when the lr spans more than two decades)",
    )
    scale.add_argument("--linear", dest="log", action="store_const", const=False, help="linear lr axis")
    plot.add_argument(
        "--model",
        help="module:factory giving params (or (params, module_kinds)) to group instead of the built-in example tree",
    )
    compare = commands.add_parser(
        "compare", help="run the original library on the config and check that the curves agree"
    )
    compare.add_argument("config", help="an MMDetection 2.x, MMEngine, timm, hf or detectron2 config file")
    compare.add_argument(
        "--against",
        required=True,
        choices=AGAINST,
        help="the original to step: mmcv for MMDetection 2.x configs (optimizer, "
        "lr_config), mmengine for optim_wrapper / param_scheduler, timm for timm=dict(...), "
        "hf for hf=dict(...) (TrainingArguments), fvcore for detectron2 configs "
        "(a YAML with SOLVER, or detectron2=...), deepspeed for deepspeed=dict(...) or a DeepSpeed JSON",
    )
    run_length_options(compare)
    config_options(compare)
    compare.add_argument(
        "--rtol",
        type=positive,
        default=1e-6,
        help="the largest difference allowed, relative to each curve's largest value "
        "(default 1e-6: purelr evaluates in float32)",
    )
    compare.add_argument("-o", "--output", default="compare.png", help="the PNG to write")
    convert = commands.add_parser("convert", help="a torch checkpoint to a purelr checkpoint directory, or back")
    convert.add_argument("source", help="a torch checkpoint (.pth), or with --to-torch a purelr checkpoint directory")
    target = convert.add_mutually_exclusive_group(required=True)
    target.add_argument("--to", metavar="DIR", help="the purelr checkpoint directory to write (must not exist)")
    target.add_argument("--to-torch", metavar="FILE", help="the torch checkpoint to write")
    convert.add_argument(
        "--mapping",
        required=True,
        metavar="MODULE:FUNCTION|FILE.json",
        help="the purelr optimizer, names and keys: a function returning a dict, or a JSON file",
    )
    convert.add_argument("--like", metavar="FILE", help="with --to-torch: a torch checkpoint of the run (fresh or not)")
    return root


def plot(args) -> int:
    from purelr.cli import plot as plot_lib
    from purelr.cli.curves import config_curves

    params, kinds = _model(args.model) if args.model else (None, None)
    start = time.perf_counter()
    curves = config_curves(
        loaded(args),
        epoch_len=args.epoch_len,
        world_size=args.world_size,
        max_epochs=args.max_epochs,
        max_iters=args.max_iters,
        params=params,
        module_kinds=kinds,
    )
    evaluated = time.perf_counter() - start
    print(plot_lib.table(curves))
    plot_lib.draw(curves, args.output, by=args.by, log=args.log, title=args.config)
    if args.csv:
        plot_lib.write_csv(curves, args.csv)
    written = [args.output] + ([args.csv] if args.csv else [])
    print(
        f"{len(curves.steps)} iterations, {len(curves.values)} curves evaluated in {evaluated:.2f} s; "
        f"wrote {', '.join(written)}"
    )
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
    from purelr.cli.compare import check_style, differences, reference_curves
    from purelr.cli.curves import config_curves, with_run_length

    cfg = loaded(args)
    check_style(cfg, args.against)
    cfg = with_run_length(cfg, max_epochs=args.max_epochs, max_iters=args.max_iters)
    if "detectron2" in cfg:  # the reference reads the SOLVER as rescaled for --world-size
        from purelr.recipes.detectron2 import solver_of

        cfg = {**cfg, "detectron2": solver_of(cfg["detectron2"], args.world_size)}
    ours = config_curves(cfg, epoch_len=args.epoch_len, world_size=args.world_size)
    reference = reference_curves(cfg, ours, args.against)
    found = differences(ours, reference)
    for (group, quantity), difference in found.items():
        print(f"{group}/{quantity}: max |purelr - {args.against}| / max |{args.against}| = {difference:.3g}")
    plot_lib.draw(
        ours, args.output, title=f"{args.config}: purelr (solid) vs {args.against} (dashed)", overlay=reference
    )
    print(f"wrote {args.output}")
    (group, quantity), worst = max(found.items(), key=lambda item: item[1])
    verdict = "PASS" if worst <= args.rtol else "FAIL"
    relation = "<=" if worst <= args.rtol else ">"
    print(
        f"{verdict}: largest difference {worst:.3g} ({group}/{quantity}) {relation} tolerance "
        f"{args.rtol:g}, over {len(ours.steps)} iterations"
    )
    return 0 if verdict == "PASS" else 1


def convert(args) -> int:
    from purelr.cli import convert as convert_lib

    mapping = convert_lib.load_mapping(args.mapping)
    if args.to:
        convert_lib.to_purelr(args.source, args.to, mapping)
    else:
        if not args.like:
            raise ValueError(
                "--to-torch needs --like FILE: a torch checkpoint of the run, for names, shapes and groups"
            )
        convert_lib.to_torch_file(args.source, args.to_torch, args.like, mapping)
    return 0


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        return {"plot": plot, "compare": compare, "convert": convert}[args.command](args)
    except (ConfigError, ValueError, TypeError, KeyError, ImportError, OSError) as error:
        print(f"purelr: error: {error}", file=sys.stderr)
        return 2
