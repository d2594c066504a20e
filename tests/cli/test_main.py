"""`purelr plot`: the README's first command, its picture, CSV and table, and its errors."""

import csv
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import purelr
import purelr.configs
from purelr.cli import main
from purelr.cli.breakpoints import breakpoints
from purelr.cli.curves import config_curves

CONFIG = textwrap.dedent("""
    optimizer = dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001,
                     paramwise_cfg=dict(bias_lr_mult=2.0, norm_decay_mult=0.0))
    optimizer_config = dict(grad_clip=dict(max_norm=35, norm_type=2))
    lr_config = dict(policy='step', warmup='linear', warmup_iters=500, warmup_ratio=0.001, step=[8, 11])
    momentum_config = dict(policy='CosineAnnealing', min_momentum_ratio=0.9)
    runner = dict(type='EpochBasedRunner', max_epochs=12)
""")


def purelr_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "purelr", *map(str, args)], capture_output=True, text=True, cwd=cwd)


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "retinanet_like.py"
    path.write_text(CONFIG)
    return path


def test_plot_writes_png_csv_and_breakpoint_table(config, tmp_path):
    result = purelr_cli("plot", config, "--epoch-len", 733, "-o", tmp_path / "lr.png", "--csv", tmp_path / "lr.csv")
    assert result.returncode == 0, result.stderr
    png = (tmp_path / "lr.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    rows = [line.split() for line in result.stdout.splitlines()[1:-1]]
    # The phases of the schedules' structure (the warmup's end, the steps), each with the iteration
    # before it; the cosine momentum adds none.
    assert {int(r[0]) for r in rows} == {0, 499, 500, 8 * 733 - 1, 8 * 733, 11 * 733 - 1, 11 * 733, 12 * 733 - 1}
    lines = {int(line.split()[0]): line for line in result.stdout.splitlines()[1:-1]}
    assert lines[500].endswith("linear warmup ends") and lines[8 * 733].endswith("step at epoch 8")

    with open(tmp_path / "lr.csv") as file:
        table = list(csv.DictReader(file))
    assert len(table) == 12 * 733
    groups = [name[:-3] for name in table[0] if name.endswith("/lr")]
    assert set(groups) == {"default", "lr_mult=2.0", "decay_mult=0.0"}
    # The plotted values are purelr.build's: read the lr in force from the optimizer state.
    params = {"conv": {"kernel": jnp.ones((2, 2))}}
    transform = purelr.build(str(config), params, epoch_len=733)
    state = transform.init(params)
    update = jax.jit(transform.update)
    grads = jax.tree.map(jnp.zeros_like, params)
    for step in range(600):
        _, state = update(grads, state, params)
        force = purelr.params.groups.hyperparams_in_force(state)["default"]
        if step in (0, 1, 250, 499, 500, 599):
            assert float(table[step]["default/lr"]) == pytest.approx(float(force["lr"]), rel=1e-6)
            assert float(table[step]["default/momentum"]) == pytest.approx(float(force["momentum"]), rel=1e-6)


def test_curves_equal_the_built_schedules_at_every_step(config):
    with jax.enable_x64(True):
        curves = config_curves(str(config), epoch_len=100)
        built = purelr.schedules.mmcv.lr_config(
            dict(policy="step", warmup="linear", warmup_iters=500, warmup_ratio=0.001, step=[8, 11]),
            0.02,
            epoch_len=100,
            max_epochs=12,
        )
        np.testing.assert_allclose(
            curves.values[("lr_mult=2.0", "lr")], np.asarray(built(jnp.arange(1200))), rtol=1e-15
        )
    assert breakpoints(curves.values[("default", "lr")])[:2] == [0, 500]


@pytest.mark.parametrize(
    "args,message",
    [
        (["plot", "missing.py"], "config file not found"),
        (["plot", "{config}"], "epoch_len"),
        (["plot", "{empty}", "--epoch-len", "10"], "needs 'optimizer'"),
        (["plot", "{unknown}", "--epoch-len", "10"], "unknown optimizer type 'SDG'; did you mean"),
        (["plot", "{broken}"], "does not parse"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message, config, tmp_path):
    files = {
        "config": config,
        "empty": tmp_path / "empty.py",
        "unknown": tmp_path / "unknown.py",
        "broken": tmp_path / "broken.py",
    }
    files["empty"].write_text("runner = dict(max_epochs=1)\n")
    files["unknown"].write_text(CONFIG.replace("'SGD'", "'SDG'"))
    files["broken"].write_text("optimizer = dict(type='SGD'\n")
    result = purelr_cli(*[a.format(**files) for a in args], cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


MMENGINE_CONFIG = textwrap.dedent("""
    optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=1e-4),
                         paramwise_cfg=dict(custom_keys={'head': dict(lr_mult=0.1)}))
    param_scheduler = [
        dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=50),
        dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=6, T_max=6),
        dict(type='CosineAnnealingMomentum', by_epoch=True, begin=0, end=6, T_max=6, eta_min=0.85)]
    train_cfg = dict(by_epoch=True, max_epochs=6)
""")


@pytest.mark.parametrize("against", ["mmcv", "mmengine", "timm"])
def test_compare_overlays_the_original_and_reports_float32_agreement(against, config, tmp_path):
    if against == "mmengine":
        config = tmp_path / "mmengine_cfg.py"
        config.write_text(MMENGINE_CONFIG)
    if against == "timm":
        config = purelr.configs.path_of("timm_resnet50_cosine.py")
    result = purelr_cli("compare", config, "--against", against, "--epoch-len", 97, "-o", tmp_path / "c.png")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if "max |purelr" in line]
    assert len(lines) == {"mmcv": 6, "mmengine": 4, "timm": 1}[against]
    assert all(float(line.rsplit("=", 1)[1]) < 1e-6 for line in lines), lines
    assert result.stdout.splitlines()[-1].startswith("PASS: largest difference "), result.stdout
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_help_and_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    help_text = capsys.readouterr().out
    commands = help_text[help_text.index("\ncommands:") :]
    assert "    plot      draw the lr/momentum curves of a config" in commands
    assert "    compare   run the original library on the config" in commands
    assert "``" not in help_text and "read as data, not run" in help_text
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"purelr {purelr.__version__}"


def test_compare_with_run_length_ends_with_pass_or_fail(tmp_path, capsys):
    """``--max-epochs`` shortens the run as editing ``runner.max_epochs`` would: the cosine momentum
    then ends at epoch 9 in both purelr and MMCV; a tolerance below float32 rounding fails (exit 1)."""
    config = tmp_path / "one_group.py"
    config.write_text(CONFIG.replace("paramwise_cfg=dict(bias_lr_mult=2.0, norm_decay_mult=0.0)", ""))
    for rtol, code, verdict in ((1e-6, 0, "PASS"), (1e-12, 1, "FAIL")):
        assert (
            main(
                [
                    "compare",
                    str(config),
                    "--against",
                    "mmcv",
                    "--epoch-len",
                    "13",
                    "--max-epochs",
                    "9",
                    "--rtol",
                    str(rtol),
                    "-o",
                    str(tmp_path / "c.png"),
                ]
            )
            == code
        )
        last = capsys.readouterr().out.splitlines()[-1]
        assert last.startswith(f"{verdict}: largest difference ") and last.endswith(
            f"tolerance {rtol:g}, over {9 * 13} iterations"
        ), last


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["compare", "{mmcv}", "--against", "mmengine"],
            "--against mmengine: the config is an MMCV / "
            "MMDetection 2.x config (optimizer, no optim_wrapper), which mmengine cannot read; compare it --against mmcv",
        ),
        (
            ["compare", "{mmengine}", "--against", "mmcv"],
            "the config is an MMEngine config (optim_wrapper), which mmcv cannot read; compare it --against mmengine",
        ),
        (["compare", "{timm}", "--against", "mmengine", "--epoch-len", "5"], "the config is a timm config"),
        (
            ["plot", "{mmcv}", "--epoch-len", "5", "--max-iters", "100"],
            "the config's runner counts epochs (runner.max_epochs = 12): give --max-epochs",
        ),
        (["plot", "{timm}", "--epoch-len", "5", "--max-iters", "100"], "timm configs count epochs"),
        (["plot", "{mmcv}"], "epoch_len"),
    ],
)
def test_mismatched_config_or_length_is_one_line_and_exit_2(args, message, config, tmp_path, capsys):
    files = {
        "mmcv": config,
        "mmengine": tmp_path / "mmengine_cfg.py",
        "timm": purelr.configs.path_of("timm_resnet50_cosine.py"),
    }
    files["mmengine"].write_text(MMENGINE_CONFIG)
    assert main([a.format(**files) for a in args] + ["-o", str(tmp_path / "x.png")]) == 2
    error = capsys.readouterr().err
    assert message in error and error.startswith("purelr: error: ") and len(error.splitlines()) == 1, error


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["plot", "{mmcv}", "--epoch-len", "5", "--max-epochs", "0"],
            "argument --max-epochs: must be a positive integer, got 0",
        ),
        (["plot", "{mmcv}", "--epoch-len", "-7330"], "argument --epoch-len: must be a positive integer, got -7330"),
        (["plot", "{mmcv}", "--epoch-len", "0"], "argument --epoch-len: must be a positive integer, got 0"),
        (["plot", "{mmcv}", "--epoch-len", "1.5"], "argument --epoch-len: must be a positive integer, got '1.5'"),
        (
            ["compare", "{mmcv}", "--against", "mmcv", "--max-iters", "-1"],
            "argument --max-iters: must be a positive integer, got -1",
        ),
        (
            ["compare", "{mmcv}", "--against", "mmcv", "--max-epochs", "0"],
            "argument --max-epochs: must be a positive integer, got 0",
        ),
        (
            ["compare", "{mmcv}", "--against", "mmcv", "--rtol", "0"],
            "argument --rtol: must be a positive number, got 0",
        ),
        (
            ["compare", "{mmcv}", "--against", "mmcv", "--max-epochs", "2", "--max-iters", "3"],
            "not allowed with argument",
        ),
    ],
)
def test_invalid_run_lengths_are_errors(args, message, config, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([a.format(mmcv=config) for a in args])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(max_epochs=0), "--max-epochs must be positive, got 0"),
        (dict(max_iters=-3), "--max-iters must be positive, got -3"),
        (dict(epoch_len=0), "--epoch-len must be positive, got 0"),
    ],
)
def test_config_curves_refuses_invalid_lengths(kwargs, message, config):
    with pytest.raises(ValueError) as error:
        config_curves(str(config), **{"epoch_len": 10, **kwargs})
    assert message in str(error.value)


def test_scope_and_trust_options_reach_the_loader(tmp_path):
    """``--scope NAME=PATH`` resolves ``NAME::`` bases; ``--trust-config`` runs what the config subset
    refuses (here a call of a function the config defines)."""
    (tmp_path / "zoo" / "_base_").mkdir(parents=True)
    (tmp_path / "zoo" / "_base_" / "schedule.py").write_text(CONFIG)
    scoped = tmp_path / "scoped.py"
    scoped.write_text("_base_ = 'zoo::_base_/schedule.py'\nrunner = dict(max_epochs=2)\n")
    refused = purelr_cli("plot", scoped, "--epoch-len", 3, "-o", tmp_path / "a.png")
    assert refused.returncode == 2 and "names the scope 'zoo'" in refused.stderr
    plotted = purelr_cli(
        "plot", scoped, "--epoch-len", 3, "-o", tmp_path / "a.png", "--scope", f"zoo={tmp_path / 'zoo'}"
    )
    assert plotted.returncode == 0, plotted.stderr
    assert "6 iterations" in plotted.stdout
    programmed = tmp_path / "programmed.py"
    programmed.write_text(CONFIG + "def twelve():\n    return 12\nrunner = dict(max_epochs=twelve() // 6)\n")
    refused = purelr_cli("plot", programmed, "--epoch-len", 3, "-o", tmp_path / "b.png")
    assert refused.returncode == 2 and "calling twelve, defined here by the config" in refused.stderr
    trusted = purelr_cli("plot", programmed, "--epoch-len", 3, "-o", tmp_path / "b.png", "--trust-config")
    assert trusted.returncode == 0, trusted.stderr
    assert "6 iterations" in trusted.stdout
