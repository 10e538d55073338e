"""ecmoe.checkpoint.load (ecmoe.torch.load): a checkpoint trained by `ecmoe train`, loaded as a
PyTorch model, gives `ecmoe eval`'s validation loss on the same batches (ecmoe.data rebuilds
them: windows, masks and all), for encoders and decoders and several routers."""

import json

import pytest
import torch

from engine_util import (DTYPE, HAVE_EXTENSION, data_dir, moe_factory, run_ecmoe,  # noqa: F401
                         train)
from ecmoe import checkpoint, data

CASES = {
    "decoder_expert_choice": ["model.kind=decoder"],
    # Per-sequence routing groups and a smaller evaluation capacity than the training one.
    "decoder_grouped": ["model.kind=decoder", "model.moe.group_size=16",
                        "model.moe.capacity_factor_eval=1.0"],
    "encoder_top2": ["model.moe.router=top2", "model.moe.load_balance_weight=0.01",
                     "model.moe.z_loss_weight=0.01"],
    "encoder_hash": ["model.moe.router=hash", "model.moe_every=1"],
}
BATCHES, BATCH_SIZE = 3, 4


def python_eval_loss(model, ckpt, split):
    """Mean LM loss per counted target over the fixed validation batches, as `ecmoe eval`."""
    spec = data.BatchSpec.from_run_config(ckpt.config, BATCH_SIZE)
    total, counted = 0.0, 0
    for i in range(BATCHES):
        tokens, targets = data.fixed_batch(split, spec, BATCHES, i)
        with torch.no_grad():
            out = model.loss(torch.from_numpy(tokens), torch.from_numpy(targets))
        total += float(out.lm_loss) * out.counted
        counted += out.counted
    return total / counted, counted


@pytest.mark.parametrize("case", sorted(CASES))
def test_load_gives_the_engines_eval_loss(case, data_dir, tmp_path):
    path = train(data_dir, tmp_path / case, *CASES[case])
    engine = json.loads(run_ecmoe("eval", "--checkpoint", path, "--batches", BATCHES,
                                  "--batch-size", BATCH_SIZE, "--json"))
    model = checkpoint.load(str(path), moe=moe_factory(), dtype=DTYPE)
    assert not model.training
    ckpt = checkpoint.read(str(path))
    loss, counted = python_eval_loss(model, ckpt, data.open_split(str(data_dir), "val"))
    assert counted == engine["targets"]
    assert loss == pytest.approx(engine["loss"], rel=1e-5)


def test_loaded_model_forward_and_loss(data_dir, tmp_path):
    path = train(data_dir, tmp_path / "enc", "model.moe.router=top2",
                 "model.moe.load_balance_weight=0.5", "model.moe.z_loss_weight=0.1")
    model = checkpoint.load(str(path), moe=moe_factory(), dtype=DTYPE)
    tol = 1e-12 if DTYPE == torch.float64 else 1e-6
    cfg = model.config
    assert (cfg.kind, cfg.seq_len, cfg.d_model, cfg.moe["router"]) == ("encoder", 16, 32, "top2")
    tokens = torch.randint(7, cfg.vocab_size, (2, 16))
    logits = model(tokens)
    assert logits.shape == (2, 16, cfg.vocab_size)
    targets = torch.full((2, 16), -1)
    targets[:, 3] = tokens[:, 3]
    out = model.loss(tokens, targets)
    assert out.counted == 2
    lm = torch.nn.functional.cross_entropy(logits[:, 3], tokens[:, 3])
    assert float(out.lm_loss) == pytest.approx(float(lm), rel=tol)
    assert float(out.aux_loss) > 0  # weighted load-balance and z losses of the MoE layer
    assert float(out.loss) == pytest.approx(float(out.lm_loss + out.aux_loss), rel=tol)
    out.loss.backward()  # a trainable module: every parameter gets a gradient
    assert all(p.grad is not None for p in model.parameters())
    # Key padding: with valid_len 8, sequence 1's positions 8.. are not seen by its positions
    # < 8 (top-2 with evaluation capacity 2·2·32/4 = 32 slots per expert drops no token, so
    # routing is per token here and nothing else couples them).
    changed = tokens.clone()
    changed[1, 8:] = 7 + (changed[1, 8:] - 6) % (cfg.vocab_size - 7)
    valid_len = torch.tensor([16, 8])
    with torch.no_grad():
        a, b = model(tokens, valid_len), model(changed, valid_len)
        c, d = model(tokens), model(changed)
    assert torch.allclose(a[1, :8], b[1, :8], rtol=0, atol=tol)
    assert not torch.allclose(c[1, :8], d[1, :8], rtol=0, atol=1e-6)  # unmasked: they are seen


def test_load_refuses_what_is_not_a_checkpoint(tmp_path):
    from ecmoe import safetensors
    path = tmp_path / "other.safetensors"
    safetensors.write(str(path), {"w": torch.zeros(2)}, {"format": "something-else"})
    with pytest.raises(ValueError, match="is not an ecmoe checkpoint"):
        checkpoint.load(str(path), moe=moe_factory())


def test_load_refuses_a_checkpoint_missing_a_tensor(data_dir, tmp_path):
    from ecmoe import safetensors
    path = train(data_dir, tmp_path / "run", "model.kind=decoder", steps=2)
    tensors, meta = safetensors.read(str(path))
    del tensors["layers.1.ffn.router.weight"]
    broken = tmp_path / "broken.safetensors"
    safetensors.write(str(broken), tensors, meta)
    with pytest.raises(ValueError, match="no tensor layers.1.ffn.router.weight"):
        checkpoint.load(str(broken), moe=moe_factory())


@pytest.mark.skipif(not HAVE_EXTENSION, reason="ecmoe.torch (the compiled extension) not built")
def test_ecmoe_torch_load_is_the_loader():
    import ecmoe.torch
    assert ecmoe.torch.load is checkpoint.load


@pytest.mark.parametrize("router", ["top2", "expert_choice"])
def test_training_mode_loss_is_the_engines_training_loss(router, data_dir, tmp_path):
    """In training mode (training capacity factor) model.loss on training batch 2, with the
    parameters after 2 steps, is the loss (LM + weighted aux) `ecmoe train` logs at step 3."""
    sets = ["model.moe.router=" + router, "model.moe.capacity_factor_train=1.25",
            "model.moe.load_balance_weight=0.1", "model.moe.z_loss_weight=0.01", "log_interval=1"]
    after_two = train(data_dir, tmp_path / "two", *sets, steps=2)
    train(data_dir, tmp_path / "three", *sets, steps=3)
    with open(tmp_path / "three" / "metrics.jsonl") as f:
        logged = [json.loads(line) for line in f]
    step3 = next(r for r in logged if r["type"] == "train" and r["step"] == 3)
    model = checkpoint.load(str(after_two), moe=moe_factory(), dtype=DTYPE).train()
    ckpt = checkpoint.read(str(after_two))
    spec = data.BatchSpec.from_run_config(ckpt.config, ckpt.config["batch_size"])
    tokens, targets = data.random_batch(data.open_split(str(data_dir), "train"), spec, 2)
    out = model.loss(torch.from_numpy(tokens), torch.from_numpy(targets))
    assert out.counted == step3["targets"]
    assert float(out.aux_loss) == pytest.approx(step3["aux"]["weighted_total"], rel=1e-5)
    assert float(out.loss) == pytest.approx(step3["loss"], rel=1e-5)
