"""`purelr plot` / `purelr compare --against deepspeed` on published DeepSpeed configs (bare JSON
files, tests/data/deepspeed), in process (``purelr.cli.main``)."""

import os
import warnings

import numpy as np
import pytest

from purelr.cli import main
from purelr.cli.curves import config_curves

DATA = os.path.join(os.path.dirname(__file__), os.pardir, "data", "deepspeed")


@pytest.mark.parametrize("name", ["qanet_bsz512_1cycle", "t5_small_finetuning", "gan_deepspeed_config"])
def test_compare_against_deepspeed_passes(name, tmp_path, capsys):
    """OneCycle (its lr and Adam's beta1), WarmupDecayLR to its end, no scheduler: PASS at 1e-6."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(
            ["compare", os.path.join(DATA, f"{name}.json"), "--against", "deepspeed", "-o", str(tmp_path / "c.png")]
        )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "default/lr" in out and "default/momentum" in out and "PASS" in out
    assert (tmp_path / "c.png").stat().st_size > 0


def test_plot_length_and_style(tmp_path, capsys):
    """``--max-iters`` sets the updates drawn; ``--max-epochs`` is refused (DeepSpeed counts updates);
    ``compare --against mmcv`` on a DeepSpeed file names the right one."""
    path = os.path.join(DATA, "cifar_ds_config.json")
    assert main(["plot", path, "--max-iters", "1500", "-o", str(tmp_path / "p.png")]) == 0
    assert "1500 iterations" in capsys.readouterr().out
    assert main(["plot", path, "--max-epochs", "3", "-o", str(tmp_path / "p.png")]) == 2
    assert "give --max-iters" in capsys.readouterr().err
    assert main(["compare", path, "--against", "mmcv", "-o", str(tmp_path / "c.png")]) == 2
    assert "compare it --against deepspeed" in capsys.readouterr().err


def test_curves_of_a_warmup():
    """WarmupLR (log) over its default length, twice the warmup: min at 0, the peak from W on."""
    curves = config_curves({"deepspeed": os.path.join(DATA, "cifar_ds_config.json")})
    lr = curves.values[("default", "lr")]
    assert len(lr) == 2000 and lr[0] == 0 and np.isclose(lr[1000], 1e-3) and np.isclose(lr[-1], 1e-3)
    assert np.all(curves.values[("default", "momentum")] == np.float32(0.8))
