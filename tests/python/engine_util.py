"""What the Python tests share: the ecmoe binary, a tiny prepared data folder (the fixture
data_dir: import it into a test module), checkpoints trained on it, and the FFN factory models are
built with. A module, not a conftest.py, so other test files of this folder stay independent.

Run with pytest (`python3 -m pytest tests/python`; ctest's python_tests does), the package
importable: PYTHONPATH=build/python (the built package, with ecmoe.torch) or nothing (python/ of
the source tree, pure-Python modules only: the reference MoE layer stands in for ecmoe.torch.MoE).
The engine's binary is $ECMOE_BINARY, else $ECMOE, else build/ecmoe.
"""

import os
import random
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.append(ROOT)  # tools (it appends python/ too, after any ecmoe on PYTHONPATH)
import tools  # noqa: E402,F401

from tools.torch_model import ReferenceMoE  # noqa: E402

try:
    from ecmoe.torch import MoE as _EcmoeMoE  # noqa: F401
    HAVE_EXTENSION = True
except ImportError:
    HAVE_EXTENSION = False


# ecmoe.torch.MoE takes float32; the reference layer computes in the dtype it is given.
DTYPE = torch.float32 if HAVE_EXTENSION else torch.float64


def moe_factory():
    """ecmoe.torch.MoE (the default of ecmoe.checkpoint.load) when the extension is built, else
    the float64 reference layer of tools/make_moe_fixtures.py."""
    if HAVE_EXTENSION:
        from ecmoe.checkpoint import ecmoe_moe
        return ecmoe_moe
    return ReferenceMoE


def ecmoe_binary():
    path = (os.environ.get("ECMOE_BINARY") or os.environ.get("ECMOE") or
            os.path.join(ROOT, "build", "ecmoe"))
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing: build the ecmoe target (or set $ECMOE_BINARY) first")
    return path


def run_ecmoe(*args, cwd=None):
    """Runs the engine; returns its stdout; fails the test with its stderr if it fails."""
    r = subprocess.run([ecmoe_binary(), *map(str, args)], capture_output=True, text=True,
                       cwd=cwd)
    if r.returncode != 0:
        pytest.fail(f"ecmoe {' '.join(map(str, args))} failed: {r.stderr.strip()}")
    return r.stdout


WORDS = ("the a of and to in is was for on that with as by at from it his her they were be this "
         "which or had are an not but one have their been has all would more there who when can "
         "said other into two time if about no out up only first new some could these may").split()


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """`ecmoe prepare` of a few made-up files: 320 pieces, a quarter of the files held out."""
    root = tmp_path_factory.mktemp("prepared")
    rng = random.Random(1)
    (root / "in").mkdir()
    for i in range(4):
        lines = (" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 15))).capitalize() + "."
                 for _ in range(250))
        (root / "in" / f"part{i}.txt").write_text("\n".join(lines) + "\n")
    run_ecmoe("prepare", "--input", root / "in", "--out", root / "data", "--vocab-size", 320,
              "--val-fraction", 0.25)
    return root / "data"


def train(data_dir, out, *sets, steps=8):
    """Trains the `tiny` config (seq_len 16) `steps` steps; returns the checkpoint's path. Its
    weights start large (init_std 0.2, not 0.02), so that every layer, the FFNs' routing
    included, moves the loss well beyond the tolerance of a parity test."""
    args = ["train", "--config", "tiny", "--set", f"data.dir={data_dir}", "--set",
            f"steps={steps}", "--set", "model.seq_len=16", "--set", "model.init_std=0.2",
            "--out", out]
    for s in sets:
        args += ["--set", s]
    run_ecmoe(*args)
    return out / "checkpoint.safetensors"
