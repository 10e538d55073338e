"""An independent PyTorch implementation of the ecmoe transformer (src/model/transformer.h).

Run with Debian's /usr/bin/python3 (python3-torch). Written from the model's definition, not from
the C++ code:

    h = tokens_table[tokens] + positions[0:T]
    for each layer l:  h += attn(ln1(h)) · Wo + bo;   h += ffn_l(ln2(h))
    logits = final_ln(h) · tokens_tableᵀ
    loss = mean cross-entropy over positions with target >= 0  +  Σ_l weighted aux losses

attn: packed qkv = x · Wqkv + bqkv ([q | k | v], head h at columns h·hd), softmax(q·kᵀ/√hd) with a
causal mask (decoder) and key padding (keys >= valid_len[b] masked), LayerNorm eps 1e-5, exact
(erf) GELU. ffn_l is the MoE layer of tools/make_moe_fixtures.py (its `layer`, the reference the
MoE fixtures use), with every MoE layer routing all B·T tokens (row-major, sequence by sequence)
as one group unless group_size is set; non-MoE layers (l % moe_every != moe_every − 1) are one
dense expert. Arithmetic in float64 by default.

As a tool, from the repository root:
    /usr/bin/python3 -m tools.torch_model CHECKPOINT BATCH [--config JSON] [--set key=value ...]
  CHECKPOINT  an ecmoe safetensors checkpoint (parameters under their table names; tensors with
              the optimizer prefixes adam_m./adam_v. and non-F32 bookkeeping are ignored)
  BATCH       a safetensors file with I32 "tokens" [B, T], "targets" [B, T] (-1: no loss) and
              optionally "valid_len" [B]
Sizes come from the tensor shapes; what shapes cannot tell (kind, n_heads, router options) comes
from the checkpoint's __metadata__ (the "config" JSON that ecmoe train stores, or flat keys), then
--config (a JSON file, nested like a run config or flat), then --set (key or path, e.g.
model.moe.router=top2). Routes with the evaluation capacity factor unless --train; never jitters.
Prints the config used, the loss, the LM loss and the auxiliary losses as JSON.
"""

import argparse
import json
import math
import sys

import torch
import torch.nn.functional as F

from tools import safetensors_io
from tools.make_moe_fixtures import layer as moe_layer  # the reference MoE layer

# ---------------------------------------------------------------------------------------------
# Configuration

DEFAULTS = dict(kind="encoder", vocab_size=8000, seq_len=128, d_model=256, n_layers=4, n_heads=4,
                d_ff=1024, moe_every=2, router="expert_choice", n_experts=8,
                capacity_factor=2.0, group_size=0, token_choice_k=0, renormalize_gates=True,
                batch_prioritized=False, load_balance_weight=0.0, z_loss_weight=0.0,
                max_experts_per_token=2)
INT_KEYS = ("vocab_size", "seq_len", "d_model", "n_layers", "n_heads", "d_ff", "moe_every",
            "n_experts", "group_size", "token_choice_k", "max_experts_per_token")
FLOAT_KEYS = ("capacity_factor", "load_balance_weight", "z_loss_weight")
BOOL_KEYS = ("renormalize_gates", "batch_prioritized")
WEIGHTED_ROUTERS = ("expert_choice", "expert_choice_capped", "top1", "top2")


def typed(key, value):
    if key in INT_KEYS:
        return int(value)
    if key in FLOAT_KEYS:
        return float(value)
    if key in BOOL_KEYS:
        return value if isinstance(value, bool) else str(value).lower() == "true"
    return value


def is_moe_layer(cfg, l):
    return cfg["moe_every"] > 0 and l % cfg["moe_every"] == cfg["moe_every"] - 1


def ffn_config(cfg, l):
    """The MoE-layer config of layer l in the dict form make_moe_fixtures.layer takes."""
    if is_moe_layer(cfg, l):
        router = cfg["router"]
        e = 1 if router == "dense" else cfg["n_experts"]
        k = cfg["token_choice_k"] or (2 if router == "top2" else 1)
        return dict(router=router, n_experts=e, group_size=cfg["group_size"],
                    capacity_factor=cfg["capacity_factor"], k=k,
                    renormalize_gates=cfg["renormalize_gates"],
                    batch_prioritized=cfg["batch_prioritized"],
                    load_balance_weight=cfg["load_balance_weight"],
                    z_loss_weight=cfg["z_loss_weight"],
                    max_experts_per_token=cfg["max_experts_per_token"])
    return dict(router="dense", n_experts=1, group_size=0, capacity_factor=1.0, k=1,
                renormalize_gates=True, batch_prioritized=False, load_balance_weight=0.0,
                z_loss_weight=0.0, max_experts_per_token=2)


def param_shapes(cfg):
    """[(name, shape)] in the model's table order (transformer.h)."""
    V, T, d, f = cfg["vocab_size"], cfg["seq_len"], cfg["d_model"], cfg["d_ff"]
    out = [("embed.tokens", [V, d]), ("embed.positions", [T, d])]
    for l in range(cfg["n_layers"]):
        p = f"layers.{l}."
        out += [(p + "ln1.gain", [d]), (p + "ln1.bias", [d]),
                (p + "attn.qkv.weight", [d, 3 * d]), (p + "attn.qkv.bias", [3 * d]),
                (p + "attn.out.weight", [d, d]), (p + "attn.out.bias", [d]),
                (p + "ln2.gain", [d]), (p + "ln2.bias", [d])]
        fc = ffn_config(cfg, l)
        e = fc["n_experts"]
        if fc["router"] in WEIGHTED_ROUTERS:
            out.append((p + "ffn.router.weight", [d, e]))
        out += [(p + "ffn.experts.w1", [e, d, f]), (p + "ffn.experts.w2", [e, f, d])]
    out += [("final_ln.gain", [d]), ("final_ln.bias", [d])]
    return out


# Where each key lives in an ecmoe run config (docs/training.md), e.g. {"model": {"moe": ...}}.
CONFIG_PATHS = dict(
    kind="model.kind", vocab_size="model.vocab_size", seq_len="model.seq_len",
    d_model="model.d_model", n_layers="model.n_layers", n_heads="model.n_heads",
    d_ff="model.d_ff", moe_every="model.moe_every", router="model.moe.router",
    n_experts="model.moe.n_experts", capacity_factor="model.moe.capacity_factor_train",
    group_size="model.moe.group_size", token_choice_k="model.moe.token_choice_k",
    renormalize_gates="model.moe.renormalize_gates",
    batch_prioritized="model.moe.batch_prioritized",
    load_balance_weight="model.moe.load_balance_weight",
    z_loss_weight="model.moe.z_loss_weight",
    max_experts_per_token="model.moe.capped.max_experts_per_token")


def flatten(obj, prefix=""):
    """{"model": {"moe": {"router": "x"}}} -> {"model.moe.router": "x"}."""
    out = {}
    for key, value in obj.items():
        if isinstance(value, dict):
            out.update(flatten(value, prefix + key + "."))
        else:
            out[prefix + key] = value
    return out


def infer_config(params, metadata=None, overrides=None, eval_mode=False):
    """Sizes from the tensor shapes (they always win); everything else from, in increasing
    priority: the checkpoint's __metadata__ (its "config" JSON as ecmoe train writes it, or flat
    keys), then overrides ({key or config path: value}). eval_mode picks the evaluation capacity
    factor (model.moe.capacity_factor_eval) over the training one."""
    cfg = dict(DEFAULTS)
    sources = []
    metadata = dict(metadata or {})
    if "config" in metadata:
        sources.append(flatten(json.loads(metadata.pop("config"))))
    sources.append(metadata)
    sources.append(flatten(overrides or {}))
    for source in sources:
        for key in DEFAULTS:
            names = [key, CONFIG_PATHS[key], "model." + key, "model_" + key]
            if key == "capacity_factor" and eval_mode:
                names.append("model.moe.capacity_factor_eval")
            for name in names:  # later names win: the eval factor over the training one
                if name in source:
                    cfg[key] = typed(key, source[name])
    V, d = params["embed.tokens"].shape
    cfg.update(vocab_size=V, d_model=d, seq_len=params["embed.positions"].shape[0])
    layers = sorted({int(n.split(".")[1]) for n in params if n.startswith("layers.")})
    cfg["n_layers"] = len(layers)
    moe = []
    for l in layers:
        w1 = params[f"layers.{l}.ffn.experts.w1"]
        cfg["d_ff"] = w1.shape[2]
        if f"layers.{l}.ffn.router.weight" in params or w1.shape[0] > 1:
            moe.append(l)
            cfg["n_experts"] = w1.shape[0]
            if f"layers.{l}.ffn.router.weight" not in params:
                cfg["router"] = "hash"
    if moe:
        cfg["moe_every"] = moe[0] + 1
    elif cfg["router"] != "dense":
        cfg["moe_every"] = 0  # no layer routes (or every MoE layer is dense)
    return cfg


# ---------------------------------------------------------------------------------------------
# The model


def attention(qkv, cfg, valid_len, causal):
    """qkv [B, T, 3d] -> [B, T, d]."""
    B, T, _ = qkv.shape
    d, H = cfg["d_model"], cfg["n_heads"]
    hd = d // H
    q, k, v = (qkv[..., i * d:(i + 1) * d].reshape(B, T, H, hd).transpose(1, 2)
               for i in range(3))
    scores = q @ k.transpose(-1, -2) / math.sqrt(hd)  # [B, H, T, T]
    mask = torch.zeros(B, 1, T, T, dtype=torch.bool)
    if causal:
        mask |= torch.ones(T, T, dtype=torch.bool).triu(1)
    if valid_len is not None:
        for b in range(B):
            mask[b, :, :, int(valid_len[b]):] = True
    probs = torch.softmax(scores.masked_fill(mask, -math.inf), dim=-1)
    return (probs @ v).transpose(1, 2).reshape(B, T, d)


def forward(cfg, params, tokens, targets, valid_len=None):
    """params: name -> tensor (any float dtype; leaves may require grad); tokens, targets [B, T].
    Returns dict(loss, lm_loss, load_balance, z_loss, aux_total, plans, margin)."""
    B, T = tokens.shape
    d = cfg["d_model"]
    causal = cfg["kind"] == "decoder"
    E = params["embed.tokens"]
    h = E[tokens.long()] + params["embed.positions"][:T]  # [B, T, d]
    flat_ids = tokens.reshape(-1).to(torch.int32)
    aux = {"load_balance": 0.0, "z_loss": 0.0, "total": 0.0}
    plans, margin = [], math.inf
    for l in range(cfg["n_layers"]):
        p = f"layers.{l}."
        x = F.layer_norm(h, (d,), params[p + "ln1.gain"], params[p + "ln1.bias"], eps=1e-5)
        qkv = x @ params[p + "attn.qkv.weight"] + params[p + "attn.qkv.bias"]
        h = h + attention(qkv, cfg, valid_len, causal) @ params[p + "attn.out.weight"] \
            + params[p + "attn.out.bias"]
        x = F.layer_norm(h, (d,), params[p + "ln2.gain"], params[p + "ln2.bias"], eps=1e-5)
        fc = ffn_config(cfg, l)
        y, plan, layer_aux, layer_margin, _ = moe_layer(
            fc, x.reshape(B * T, d), flat_ids, params.get(p + "ffn.router.weight"),
            params[p + "ffn.experts.w1"], params[p + "ffn.experts.w2"])
        h = h + y.reshape(B, T, d)
        for key in aux:
            aux[key] = aux[key] + layer_aux[key]
        plans.append(sorted((i, t) for i, t, _ in plan))
        margin = min(margin, layer_margin)
    h = F.layer_norm(h, (d,), params["final_ln.gain"], params["final_ln.bias"], eps=1e-5)
    logits = h.reshape(B * T, d) @ E.t()
    tgt = targets.reshape(-1).long()
    counted = tgt >= 0
    if counted.any():
        lm = F.cross_entropy(logits[counted], tgt[counted], reduction="mean")
    else:
        lm = logits.sum() * 0.0
    return dict(loss=lm + aux["total"], lm_loss=lm, load_balance=aux["load_balance"],
                z_loss=aux["z_loss"], aux_total=aux["total"], plans=plans, margin=margin)


def load_checkpoint(path):
    """Model parameters of an ecmoe checkpoint (optimizer moments and bookkeeping dropped)."""
    tensors, metadata = safetensors_io.read(path)
    params = {n: t for n, t in tensors.items()
              if t.dtype == torch.float32 and not n.startswith(("adam_m.", "adam_v."))}
    return params, metadata


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("batch")
    parser.add_argument("--config", help="JSON file of config keys")
    parser.add_argument("--set", action="append", default=[], help="key=value")
    parser.add_argument("--float32", action="store_true", help="compute in float32")
    parser.add_argument("--train", action="store_true",
                        help="training capacity factor (default: the evaluation one)")
    args = parser.parse_args()
    params, metadata = load_checkpoint(args.checkpoint)
    overrides = {}
    if args.config:
        with open(args.config) as f:
            overrides.update(json.load(f))
    for kv in args.set:
        key, value = kv.split("=", 1)
        overrides[key] = value
    cfg = infer_config(params, metadata, overrides, eval_mode=not args.train)
    expected = dict(param_shapes(cfg))
    missing = [n for n in expected if n not in params]
    if missing:
        sys.exit(f"checkpoint lacks {missing[:5]} (config {cfg})")
    for name, shape in expected.items():
        if list(params[name].shape) != shape:
            sys.exit(f"{name}: shape {list(params[name].shape)}, config wants {shape}")
    dtype = torch.float32 if args.float32 else torch.float64
    params = {n: params[n].to(dtype) for n in expected}
    batch, _ = safetensors_io.read(args.batch)
    with torch.no_grad():
        out = forward(cfg, params, batch["tokens"], batch["targets"], batch.get("valid_len"))
    result = {k: float(out[k]) for k in ("loss", "lm_loss", "load_balance", "z_loss", "aux_total")}
    result["config"] = cfg
    print(json.dumps(result))


if __name__ == "__main__":
    main()
