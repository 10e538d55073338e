"""The reference ecmoe transformer: the package's model (python/ecmoe/model.py, written from the
model's definition, not from the C++ code) with the reference MoE layer plugged in.

Run with Debian's /usr/bin/python3 (python3-torch). The model (ecmoe.model's docstring has it):

    h = tokens_table[tokens] + positions[0:T]
    for each layer l:  h += attn(ln1(h)) · Wo + bo;   h += ffn_l(ln2(h))
    logits = final_ln(h) · tokens_tableᵀ
    loss = mean cross-entropy over positions with target >= 0  +  Σ_l weighted aux losses

ffn_l is the MoE layer of tools/make_moe_fixtures.py (its `layer`, the reference the MoE fixtures
use, here as the module ReferenceMoE), with every MoE layer routing all B·T tokens (row-major,
sequence by sequence) as one group unless group_size is set; non-MoE layers (l % moe_every !=
moe_every − 1) are one dense expert. Arithmetic in float64 by default.

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
from types import SimpleNamespace

import torch
import torch.nn as nn

from tools import safetensors_io  # first: puts python/ on sys.path for ecmoe
from tools.make_moe_fixtures import WEIGHTED_ROUTERS
from tools.make_moe_fixtures import layer as moe_layer  # the reference MoE layer
from ecmoe.model import ModelConfig, Transformer

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


def typed(key, value):
    if key in INT_KEYS:
        return int(value)
    if key in FLOAT_KEYS:
        return float(value)
    if key in BOOL_KEYS:
        return value if isinstance(value, bool) else str(value).lower() == "true"
    return value


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
# The model: ecmoe.model.Transformer with the reference MoE layer plugged in


class ReferenceMoE(nn.Module):
    """make_moe_fixtures.layer as an FFN of ecmoe.model.Transformer (the interface of
    ecmoe.torch.MoE): parameters router.weight [d, e] (weighted routers), experts.w1 [e, d, f],
    experts.w2 [e, f, d]; the training capacity factor in training mode, the evaluation one
    otherwise; never jitters. out.stats holds the plan ((expert, token, gate) triples) and the
    smallest gap between scores that decided a routing choice ("margin")."""

    def __init__(self, options):
        super().__init__()
        router, e = options["router"], options["n_experts"]
        if router not in WEIGHTED_ROUTERS + ("dense", "hash"):
            raise ValueError(f"the reference MoE layer has no router {router!r}")
        d, f = options["d_model"], options["d_ff"]
        self.options = dict(options)
        if router in WEIGHTED_ROUTERS:
            self.router = nn.Module()
            self.router.weight = nn.Parameter(torch.zeros(d, e))
        else:
            self.router = None
        self.experts = nn.Module()
        self.experts.w1 = nn.Parameter(torch.zeros(e, d, f))
        self.experts.w2 = nn.Parameter(torch.zeros(e, f, d))

    def forward(self, x, token_ids=None):
        o = self.options
        fc = dict(router=o["router"], n_experts=o["n_experts"], group_size=o["group_size"],
                  capacity_factor=o["capacity_factor_train" if self.training
                                    else "capacity_factor_eval"],
                  k=o["token_choice_k"] or (2 if o["router"] == "top2" else 1),
                  renormalize_gates=o["renormalize_gates"],
                  batch_prioritized=o["batch_prioritized"],
                  load_balance_weight=o["load_balance_weight"], z_loss_weight=o["z_loss_weight"],
                  max_experts_per_token=o["max_experts_per_token"])
        wg = None if self.router is None else self.router.weight
        y, plan, aux, margin, _ = moe_layer(fc, x, token_ids, wg, self.experts.w1,
                                            self.experts.w2)
        return SimpleNamespace(y=y, aux_loss=aux["total"],
                               aux={"load_balance": aux["load_balance"], "z_loss": aux["z_loss"]},
                               stats={"plan": plan, "margin": margin})


def model_config(cfg):
    """The ecmoe.model.ModelConfig of a flat config (DEFAULTS' keys), routing with
    cfg["capacity_factor"] in training and evaluation alike."""
    moe = {k: cfg[k] for k in ("router", "n_experts", "group_size", "token_choice_k",
                               "renormalize_gates", "batch_prioritized", "load_balance_weight",
                               "z_loss_weight", "max_experts_per_token")}
    moe.update(capacity_factor_train=cfg["capacity_factor"],
               capacity_factor_eval=cfg["capacity_factor"])
    return ModelConfig(**{k: cfg[k] for k in ("kind", "vocab_size", "seq_len", "d_model",
                                              "n_layers", "n_heads", "d_ff", "moe_every")},
                       moe=moe)


def reference_model(cfg):
    """ecmoe.model.Transformer with the reference MoE layer, its parameters zero."""
    return Transformer(model_config(cfg), ReferenceMoE)


def param_shapes(cfg):
    """[(name, shape)] in the model's table order (transformer.h)."""
    return [(n, list(p.shape)) for n, p in reference_model(cfg).named_parameters()]


def bind(model, params):
    """Replaces the model's parameters by the given tensors (name -> tensor; gradients then flow
    to them, e.g. to leaves the caller created)."""
    for name, tensor in params.items():
        *path, leaf = name.split(".")
        module = model.get_submodule(".".join(path))
        delattr(module, leaf)
        setattr(module, leaf, tensor)
    return model


def forward(cfg, params, tokens, targets, valid_len=None):
    """params: name -> tensor (any float dtype; leaves may require grad); tokens, targets [B, T].
    Returns dict(loss, lm_loss, load_balance, z_loss, aux_total, plans, margin)."""
    model = bind(reference_model(cfg), {n: params[n] for n, _ in param_shapes(cfg)})
    out = model.loss(tokens, targets, valid_len)
    zero = torch.zeros((), dtype=out.loss.dtype)
    plans = [sorted((i, t) for i, t, _ in layer.stats["plan"]) for layer in out.layers]
    margin = min([math.inf] + [layer.stats["margin"] for layer in out.layers])
    return dict(loss=out.loss, lm_loss=out.lm_loss,
                load_balance=out.aux.get("load_balance", zero),
                z_loss=out.aux.get("z_loss", zero), aux_total=out.aux_loss, plans=plans,
                margin=margin)


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
