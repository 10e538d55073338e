"""The package's transformer (ecmoe.model) against the committed model parity fixtures
(tests/fixtures/model/, which the C++ transformer is checked against): with the reference MoE
layer plugged in (tools/torch_model.py, float64) it reproduces their loss, auxiliary losses and
every gradient; with ecmoe.torch.MoE (when built) their loss. A change to the package's model that
would change the fixtures fails here."""

import glob
import os

import pytest
import torch

from engine_util import HAVE_EXTENSION, ROOT
from ecmoe import safetensors
from tools import torch_model

FIXTURES = sorted(glob.glob(os.path.join(ROOT, "tests", "fixtures", "model", "*.safetensors")))


def fixture(path):
    tensors, meta = safetensors.read(path)
    cfg = {k: torch_model.typed(k, meta[k]) for k in torch_model.DEFAULTS}
    params = {n: tensors[n] for n, _ in torch_model.param_shapes(cfg)}
    return cfg, params, tensors


def test_there_are_fixtures():
    assert len(FIXTURES) >= 11


@pytest.mark.parametrize("path", FIXTURES, ids=os.path.basename)
def test_reference_model_reproduces_the_fixture(path):
    cfg, params, t = fixture(path)
    leaves = {n: p.double().requires_grad_(True) for n, p in params.items()}
    out = torch_model.forward(cfg, leaves, t["tokens"], t["targets"], t["valid_len"])
    out["loss"].backward()
    for key, stored in (("loss", "loss"), ("lm_loss", "lm_loss"), ("aux_total", "aux_total"),
                        ("load_balance", "aux_load_balance"), ("z_loss", "aux_z_loss")):
        assert float(out[key]) == pytest.approx(float(t[stored]), rel=1e-6, abs=1e-7), key
    for n, leaf in leaves.items():
        torch.testing.assert_close(leaf.grad.float(), t["grad." + n], rtol=1e-5, atol=1e-6)
    for l, plan in enumerate(out["plans"]):
        load = torch.bincount(torch.tensor([i for i, _ in plan], dtype=torch.long),
                              minlength=t[f"routing.{l}.tokens_per_expert"].numel())
        assert load.tolist() == t[f"routing.{l}.tokens_per_expert"].tolist()


@pytest.mark.skipif(not HAVE_EXTENSION, reason="ecmoe.torch (the compiled extension) not built")
@pytest.mark.parametrize("path", FIXTURES, ids=os.path.basename)
def test_model_with_ecmoe_moe_reproduces_the_fixture_loss(path):
    from ecmoe.checkpoint import ecmoe_moe
    from ecmoe.model import Transformer

    cfg, params, t = fixture(path)
    model = Transformer(torch_model.model_config(cfg), ecmoe_moe)  # training mode: as the fixture
    missing, unexpected = model.load_state_dict(params, strict=False)
    assert not unexpected and all(n.endswith("router.cutoff") for n in missing)  # router state
    out = model.loss(t["tokens"], t["targets"], t["valid_len"])
    assert float(out.loss) == pytest.approx(float(t["loss"]), rel=1e-5)
    assert float(out.aux_loss) == pytest.approx(float(t["aux_total"]), rel=1e-5, abs=1e-7)
