"""python/examples/train_moe_transformer.py: its argument checks, and a 3-step run on tiny data
(with ecmoe.torch.MoE when built, else the reference layer plugged in)."""

import importlib.util
import math
import os

import pytest
import torch

from engine_util import ROOT, data_dir, moe_factory  # noqa: F401 (data_dir: a fixture)

spec = importlib.util.spec_from_file_location(
    "train_moe_transformer", os.path.join(ROOT, "python", "examples", "train_moe_transformer.py"))
example = importlib.util.module_from_spec(spec)
spec.loader.exec_module(example)

TINY = ["--steps", "3", "--batch-size", "2", "--seq-len", "16", "--d-model", "16", "--layers",
        "2", "--heads", "2", "--d-ff", "32", "--experts", "4", "--log-every", "1",
        "--eval-batches", "2"]


@pytest.mark.parametrize("args, message", [
    (["--steps", "0"], "--steps: must be positive, got 0"),
    (["--lr", "nan"], "--lr: must be positive, got nan"),
    (["--batch-size", "x"], "--batch-size: not a number: 'x'"),
    (["--d-model", "30", "--heads", "4"], "--d-model 30 is not a multiple of --heads 4"),
    (["--router", "top3"], "invalid choice: 'top3'"),
    (["--load-balance-weight", "-1"], "must be >= 0, got -1"),
])
def test_bad_arguments_are_one_line_errors(args, message, data_dir, capsys):
    with pytest.raises(SystemExit) as e:
        example.parse_args(["--data", str(data_dir)] + args)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_data_folder_names_prepare(tmp_path, capsys):
    with pytest.raises(SystemExit):
        example.parse_args(["--data", str(tmp_path / "nothing")])
    assert "no prepared data" in capsys.readouterr().err


def test_defaults_are_the_documented_ones(data_dir):
    a = example.parse_args(["--data", str(data_dir)])
    assert (a.steps, a.kind, a.router, a.save) == (300, "decoder", "expert_choice", None)


@pytest.mark.parametrize("kind", ["decoder", "encoder"])
def test_three_steps_on_tiny_data(kind, data_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    loss = example.main(["--data", str(data_dir), "--kind", kind] + TINY, moe=moe_factory())
    out = capsys.readouterr().out
    assert [line.split()[1] for line in out.splitlines() if line.startswith("step")] == \
        ["1", "2", "3"]
    assert "validation loss" in out and math.isfinite(loss)
    assert math.log(320) - 1.5 < loss < math.log(320) + 1.5  # near uniform after 3 steps
    assert os.listdir(tmp_path) == []  # saves nothing by default


def test_save_writes_a_state_dict(data_dir, tmp_path, capsys):
    path = tmp_path / "model.pt"
    example.main(["--data", str(data_dir), "--save", str(path), "--router", "top2"] + TINY,
                 moe=moe_factory())
    state = torch.load(path)
    assert state["layers.1.ffn.router.weight"].shape == (16, 4)
    assert state["embed.tokens"].shape == (320, 16)
