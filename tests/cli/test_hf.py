"""`purelr plot` and `purelr compare --against hf` on a Hugging Face Trainer config (hf=dict(...))."""

import pytest

from purelr.cli import main

# alignment-handbook recipes/smollm3/sft/sft.yaml's optimization, as a config file's hf entry
CONFIG = """\
hf:
  learning_rate: 2.0e-05
  lr_scheduler_type: cosine_with_min_lr
  lr_scheduler_kwargs:
    min_lr_rate: 0.1
  max_grad_norm: 0.2
  num_train_epochs: 5
  gradient_accumulation_steps: 2
  warmup_ratio: 0.03
  bf16: true
  packing: true
"""


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "smollm3_sft.yaml"
    path.write_text(CONFIG)
    return path


def test_compare_against_the_trainer(config, tmp_path, capsys):
    """97 batches an epoch, accumulation 2: 49 updates an epoch, 245 in all."""
    code = main(["compare", str(config), "--against", "hf", "--epoch-len", "97", "-o", str(tmp_path / "c.png")])
    out = capsys.readouterr().out
    assert code == 0, out
    lines = [line for line in out.splitlines() if "max |purelr" in line]
    assert len(lines) == 1 and float(lines[0].rsplit("=", 1)[1]) < 1e-6, lines
    assert out.splitlines()[-1].startswith("PASS") and "over 245 iterations" in out
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_compare_with_a_shorter_run_and_plot(config, tmp_path, capsys):
    assert main(["compare", str(config), "--against", "hf", "--max-iters", "40", "-o", str(tmp_path / "c.png")]) == 0
    assert "over 40 iterations" in capsys.readouterr().out
    assert (
        main(
            [
                "plot",
                str(config),
                "--epoch-len",
                "10",
                "--max-epochs",
                "2",
                "-o",
                str(tmp_path / "lr.png"),
                "--csv",
                str(tmp_path / "lr.csv"),
            ]
        )
        == 0
    )
    assert "10 iterations" in capsys.readouterr().out


def test_hf_config_is_refused_against_another_library(config, tmp_path, capsys):
    assert main(["compare", str(config), "--against", "timm", "--epoch-len", "9", "-o", str(tmp_path / "c.png")]) == 2
    assert "compare it --against hf" in capsys.readouterr().err
    assert main(["plot", str(config), "-o", str(tmp_path / "lr.png")]) == 2
    assert "epoch_len" in capsys.readouterr().err
