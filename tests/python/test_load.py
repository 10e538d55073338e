"""ecmoe.checkpoint.load (ecmoe.torch.load): a checkpoint trained by `ecmoe train`, loaded as a
PyTorch model, gives `ecmoe eval`'s validation loss on the same batches (ecmoe.data rebuilds
them: windows, masks and all), for encoders and decoders and several routers; in training mode
the loss `ecmoe train` logs; greedily, `ecmoe generate`'s text. Also: fine-tuned models, the
model's forward, loss and key padding, and the errors of files that are not checkpoints."""

import json
import random

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


@pytest.mark.skipif(not HAVE_EXTENSION, reason="threshold routing needs ecmoe.torch.MoE (the "
                    "reference layer has no expert_threshold router)")
def test_threshold_routed_checkpoint_loads_its_cutoffs(data_dir, tmp_path):
    """expert_threshold routes by the per-expert cutoffs the checkpoint stores (state.*): loaded
    into the layers' router.cutoff buffers, they give `ecmoe eval`'s loss."""
    path = train(data_dir, tmp_path / "thr", "model.kind=decoder",
                 "model.moe.router=expert_threshold", "model.moe.threshold_warmup_steps=2")
    engine = json.loads(run_ecmoe("eval", "--checkpoint", path, "--batches", BATCHES,
                                  "--batch-size", BATCH_SIZE, "--json"))
    model = checkpoint.load(str(path), moe=moe_factory(), dtype=DTYPE)
    ckpt = checkpoint.read(str(path))
    cutoff = ckpt.state["layers.1.ffn.router.cutoff"]
    assert (cutoff > 0).all()  # calibrated in training
    assert torch.equal(model.layers[1].ffn.router.cutoff, cutoff)
    loss, _ = python_eval_loss(model, ckpt, data.open_split(str(data_dir), "val"))
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
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint at all\n")
    with pytest.raises(ValueError, match="is not a readable safetensors file"):
        checkpoint.load(str(text), moe=moe_factory())
    with pytest.raises(ValueError, match="is not a readable safetensors file"):
        checkpoint.load(str(tmp_path / "missing.safetensors"), moe=moe_factory())


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


def sentencepiece_pieces(path):
    """The pieces of a SentencePiece model file, id order (ModelProto field 1, each piece's
    field 1), read with a minimal protobuf decoder (no sentencepiece module needed)."""
    def varint(buf, i):
        value, shift = 0, 0
        while True:
            b = buf[i]
            i += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                return value, i

    def fields(buf):
        i = 0
        while i < len(buf):
            key, i = varint(buf, i)
            wire = key & 7
            if wire == 0:
                value, i = varint(buf, i)
            elif wire == 1:
                value, i = buf[i:i + 8], i + 8
            elif wire == 2:
                n, i = varint(buf, i)
                value, i = buf[i:i + n], i + n
            elif wire == 5:
                value, i = buf[i:i + 4], i + 4
            else:
                raise ValueError(f"wire type {wire}")
            yield key >> 3, value

    with open(path, "rb") as f:
        model = f.read()
    return [next(v for n, v in fields(piece) if n == 1).decode()
            for number, piece in fields(model) if number == 1]


def test_greedy_generation_is_ecmoe_generates(data_dir, tmp_path):
    """A decoder routed by top-1 with an evaluation capacity that drops nothing routes every
    token on its own, as `ecmoe generate` (one token at a time) does: the loaded model's greedy
    continuation is generate's --temperature 0 text."""
    path = train(data_dir, tmp_path / "gen", "model.kind=decoder", "model.moe.router=top1",
                 "model.moe.capacity_factor_eval=4.0", steps=30)
    prompt = "The time"
    pieces = sentencepiece_pieces(str(data_dir / "tokenizer.model"))
    ids_of = {p: i for i, p in enumerate(pieces)}
    # The prompt's pieces as the engine's tokenizer cuts them (`ecmoe inspect` lists them).
    listing = run_ecmoe("inspect", "--checkpoint", path, "--text", prompt).splitlines()
    prompt_ids = [ids_of[line.split()[1]] for line in listing[2:] if line.strip()]
    assert "".join(pieces[i] for i in prompt_ids).replace("\u2581", " ").strip() == prompt
    model = checkpoint.load(str(path), moe=moe_factory(), dtype=DTYPE)
    ids = list(prompt_ids)
    with torch.no_grad():
        for _ in range(6):
            nxt = int(model(torch.tensor([ids]))[0, -1].argmax())
            if nxt == data.EOS_ID:
                break
            ids.append(nxt)
    text = "".join(pieces[i] for i in ids[len(prompt_ids):]).replace("\u2581", " ")
    engine = run_ecmoe("generate", "--checkpoint", path, "--prompt", prompt, "--temperature", 0,
                       "--max-tokens", 6)
    assert engine.rstrip("\n") == prompt + text


def test_load_reads_a_fine_tuned_model(data_dir, tmp_path):
    """`ecmoe finetune`'s model.safetensors loads as its encoder (built from the recorded
    pre-training config, the fine-tuned weights); the head comes with read(path).extra."""
    from ecmoe import safetensors
    pretrained = train(data_dir, tmp_path / "pre", steps=2)
    rng = random.Random(1)
    for split, rows in (("train", 40), ("dev", 20)):
        lines = ["sentence\tlabel"]
        for _ in range(rows):
            label = rng.randrange(2)
            words = [rng.choice(("the", "king", "house", "city")) for _ in range(6)]
            words[rng.randrange(6)] = "sea" if label else words[0]
            lines.append(" ".join(words) + " .\t" + str(label))
        (tmp_path / "sst").mkdir(exist_ok=True)
        (tmp_path / "sst" / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    run_ecmoe("finetune", "--checkpoint", pretrained, "--task", f"glue:sst2:{tmp_path / 'sst'}",
              "--set", "steps=3", "--set", "patience=0", "--out", tmp_path / "ft")
    path = str(tmp_path / "ft" / "model.safetensors")
    model = checkpoint.load(path, moe=moe_factory(), dtype=DTYPE)
    assert model.config.kind == "encoder" and model.config.d_model == 32
    tensors, _ = safetensors.read(path)
    before, _ = safetensors.read(str(pretrained))
    for name, p in model.named_parameters():
        assert torch.equal(p.detach().float(), tensors[name]), name
    assert not torch.equal(tensors["embed.tokens"], before["embed.tokens"])  # fine-tuned
    head = checkpoint.read(path).extra
    assert head["classifier.head.weight"].shape == (32, 2)
    assert model(torch.tensor([[7, 8, 9]])).shape == (1, 3, model.config.vocab_size)
