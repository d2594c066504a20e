"""``purelr convert``: a torch checkpoint to a purelr checkpoint directory and back, the mapping as
a JSON file or a Python function; one progress line per tensor group; bad input in one line."""

import copy
import json

import jax
import jax.numpy as jnp
import pytest
import torch

from purelr import optim
from purelr.cli.commands import main
from purelr.training import checkpoint
from purelr.training.from_torch import from_torch
from tests.training.test_from_torch import TorchMLP, template
from tests.training.test_to_torch import assert_same, torch_steps

K = 3
MAPPING = {"optimizer": {"name": "adamw", "kwargs": {"lr": 0.01}}, "names": {"out.bias": "out.bias"}}


def mapping_function():
    """The same mapping as a Python function (``tests.cli.test_convert:mapping_function``)."""
    return {"optimizer": optim.adamw(0.01), "params": template()}


@pytest.fixture(scope="module")
def torch_run(tmp_path_factory):
    """A float64 AdamW run's checkpoint after K updates (with a scheduler) and a fresh one."""
    directory = tmp_path_factory.mktemp("convert")
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(0)
        model = TorchMLP()
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
        fresh = copy.deepcopy({"model": model.state_dict(), "optimizer": optimizer.state_dict()})
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=10)
        for k in range(K):
            torch_steps(model, optimizer, k, k + 1)
            scheduler.step()
        saved = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
        torch.save(saved, directory / "run.pth")
        torch.save(fresh, directory / "fresh.pth")
    finally:
        torch.set_default_dtype(previous)
    (directory / "mapping.json").write_text(json.dumps(MAPPING))
    return directory, copy.deepcopy(saved)


@pytest.mark.parametrize("spec", ["json", "function"])
def test_to_purelr_and_back(torch_run, spec, tmp_path, capsys):
    directory, saved = torch_run
    mapping = str(directory / "mapping.json") if spec == "json" else "tests.cli.test_convert:mapping_function"
    with jax.enable_x64(True):
        assert main(["convert", str(directory / "run.pth"), "--to", str(tmp_path / "jax"), "--mapping", mapping]) == 0
        out = capsys.readouterr().out
        assert "model: 4 tensors" in out and "optimizer group 0: 4 params (exp_avg, exp_avg_sq, step)" in out
        assert "scheduler: last_epoch 3" in out
        expected = from_torch(optim.adamw(0.01), template(), saved["model"], saved["optimizer"])
        like = dict(
            params=template(), batch_stats=None, opt_state=expected.opt_state, last_epoch=jnp.zeros((), jnp.int32)
        )
        restored = checkpoint.restore(str(tmp_path / "jax"), like)
        assert_same(restored["params"], expected.params)
        assert_same(restored["opt_state"], expected.opt_state)
        assert int(restored["last_epoch"]) == K
        back = str(tmp_path / "back.pth")
        assert (
            main(
                [
                    "convert",
                    str(tmp_path / "jax"),
                    "--to-torch",
                    back,
                    "--like",
                    str(directory / "fresh.pth"),
                    "--mapping",
                    mapping,
                ]
            )
            == 0
        )
    written = torch.load(back, weights_only=True)
    for name, tensor in saved["model"].items():
        assert torch.equal(written["model"][name], tensor)
    for index, state in saved["optimizer"]["state"].items():
        for key, value in state.items():
            assert torch.equal(written["optimizer"]["state"][index][key].to(value.dtype), value), (index, key)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--to", "{tmp}/x", "--mapping", "{dir}/mapping.json"], "is not a torch checkpoint"),
        (["--to", "{tmp}/x", "--mapping", "nomodule"], "--mapping must be module:function or a .json file"),
        (["--to-torch", "{tmp}/x.pth", "--mapping", "{dir}/mapping.json"], "--to-torch needs --like FILE"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(torch_run, args, message, tmp_path, capsys):
    directory, _ = torch_run
    (tmp_path / "notes.pth").write_text("not a checkpoint")
    args = [a.format(tmp=tmp_path, dir=directory) for a in args]
    assert main(["convert", str(tmp_path / "notes.pth"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
