"""Parity fixtures for the C++ transformer, from the PyTorch model in tools/torch_model.py.

Run from the repository root with Debian's python3-torch:

    /usr/bin/python3 -m tools.make_model_fixtures [--out DIR]

Writes one safetensors file per case to tests/fixtures/model/ (or --out), read by
tests/model/test_model_parity.cpp. Each file holds:
  every parameter under its table name (F32), a batch ("tokens", "targets", "valid_len": I32),
  the reference "loss", "lm_loss", "aux_load_balance", "aux_z_loss", "aux_total" (F32 [1]),
  "routing.L.tokens_per_expert" (I32 [e]) per layer, and "grad." + name for every parameter:
  the gradient of loss = LM loss + weighted auxiliary losses.
The model config travels as strings in "__metadata__". Parameters are drawn in float32 (the exact
values the C++ side reads), the math runs in float64, results are stored as float32. A seed is
accepted only if every routing decision of every layer is far from a tie (so float32 arithmetic
in C++ cannot flip it) and a float32 run of the same model makes the same decisions.
The model is tiny (d 8, 3 layers: dense, MoE, dense) to keep all fixtures well under 500 KB.
"""

import argparse
import os
import sys

import torch

from tools import safetensors_io, torch_model

MIN_GAP = 1e-5  # as in make_moe_fixtures.py: float32 scores carry ~6e-8 absolute error

BASE = dict(vocab_size=32, seq_len=10, d_model=8, n_layers=3, n_heads=2, d_ff=16, moe_every=2,
            n_experts=4, group_size=0, token_choice_k=0, renormalize_gates=True,
            batch_prioritized=False, load_balance_weight=0.0, z_loss_weight=0.0,
            max_experts_per_token=2)
BATCH, SEQ = 2, 8
VALID_LEN = [8, 6]  # sequence 1 is padded: keys 6, 7 masked, no targets there
MASK_TOKEN, PAD_TOKEN = 4, 0


def cases():
    for kind in ("encoder", "decoder"):
        base = dict(BASE, kind=kind)
        yield f"{kind}_expert_choice", dict(base, router="expert_choice", capacity_factor=2.0)
        yield f"{kind}_top1", dict(base, router="top1", capacity_factor=1.25,
                                   load_balance_weight=0.01, z_loss_weight=0.01)
        yield f"{kind}_top2", dict(base, router="top2", capacity_factor=1.25,
                                   load_balance_weight=0.01, z_loss_weight=0.01)
        yield f"{kind}_dense", dict(base, router="dense", capacity_factor=1.0)
        yield f"{kind}_hash", dict(base, router="hash", capacity_factor=1.0)
    # Per-sequence routing groups, with the auxiliary losses on (their per-group definition).
    yield "decoder_expert_choice_grouped", dict(BASE, kind="decoder", router="expert_choice",
                                                capacity_factor=1.0, group_size=SEQ,
                                                load_balance_weight=0.1, z_loss_weight=0.01)


def draw_params(cfg):
    """float32 parameters: matrices N(0, 0.3²) (router N(0, 1): scores far apart), LayerNorm
    gains 1 + N(0, 0.1²), biases N(0, 0.1²), so that no term is trivially 1 or 0."""
    params = {}
    for name, shape in torch_model.param_shapes(cfg):
        if name.endswith(".gain"):
            t = 1.0 + 0.1 * torch.randn(shape)
        elif name.endswith(".bias"):
            t = 0.1 * torch.randn(shape)
        elif name.endswith("router.weight"):
            t = torch.randn(shape)
        else:
            t = 0.3 * torch.randn(shape)
        params[name] = t.to(torch.float32)
    return params


def draw_batch(cfg):
    V = cfg["vocab_size"]
    tokens = torch.randint(5, V, (BATCH, SEQ), dtype=torch.int32)
    targets = torch.full((BATCH, SEQ), -1, dtype=torch.int32)
    if cfg["kind"] == "encoder":
        mask = torch.rand(BATCH, SEQ) < 0.3
        mask[0, 0] = True
        targets[mask] = tokens[mask]
        tokens[mask] = MASK_TOKEN
    else:
        targets[:, :-1] = tokens[:, 1:]
    for b, n in enumerate(VALID_LEN):
        tokens[b, n:] = PAD_TOKEN
        targets[b, n:] = -1
        if cfg["kind"] == "decoder":
            targets[b, n - 1] = -1  # the next token is padding
    return tokens, targets, torch.tensor(VALID_LEN, dtype=torch.int32)


def build_case(name, cfg, first_seed):
    for seed in range(first_seed, first_seed + 1000):
        torch.manual_seed(seed)
        params32 = draw_params(cfg)
        tokens, targets, valid_len = draw_batch(cfg)
        with torch.no_grad():
            out32 = torch_model.forward(cfg, params32, tokens, targets, valid_len)
        leaves = {n: t.double().requires_grad_(True) for n, t in params32.items()}
        out = torch_model.forward(cfg, leaves, tokens, targets, valid_len)
        if out["margin"] < MIN_GAP or out["plans"] != out32["plans"]:
            continue
        out["loss"].backward()
        break
    else:
        raise RuntimeError(f"{name}: no seed without near-ties")

    tensors = dict(params32)
    tensors["tokens"] = tokens
    tensors["targets"] = targets
    tensors["valid_len"] = valid_len
    for key in ("loss", "lm_loss"):
        tensors[key] = out[key].detach().float().reshape(1)
    for key, src in (("aux_load_balance", "load_balance"), ("aux_z_loss", "z_loss"),
                     ("aux_total", "aux_total")):
        tensors[key] = torch.as_tensor(out[src], dtype=torch.float64).detach().float().reshape(1)
    for l, plan in enumerate(out["plans"]):
        e = torch_model.model_config(cfg).ffn_options(l)["n_experts"]
        load = [0] * e
        for i, _ in plan:
            load[i] += 1
        tensors[f"routing.{l}.tokens_per_expert"] = torch.tensor(load, dtype=torch.int32)
    for n, leaf in leaves.items():
        tensors["grad." + n] = leaf.grad.float()
    meta = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in cfg.items()}
    meta.update({"case": name, "seed": str(seed), "min_decision_gap": repr(out["margin"]),
                 "generator": "tools/make_model_fixtures.py (PyTorch " + torch.__version__ +
                 ", float64)"})
    return tensors, meta


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures", "model"))
    parser.add_argument("--seed", type=int, default=4321)
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    total = 0
    for index, (name, cfg) in enumerate(cases()):
        tensors, meta = build_case(name, cfg, args.seed + 1000 * index)
        path = os.path.join(args.out, name + ".safetensors")
        safetensors_io.write(path, tensors, meta)
        size = os.path.getsize(path)
        total += size
        print(f"{name}: seed {meta['seed']}, loss {float(tensors['loss'][0]):.6f}, "
              f"min gap {float(meta['min_decision_gap']):.2e}, {size} bytes")
    print(f"total {total} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
