"""The ecmoe transformer (src/model/transformer.h) as a PyTorch module, its FFN layer plugged in.

Pure PyTorch except for the FFN: every layer's FFN is built by a factory, `moe(options)`, from the
layer's options (ModelConfig.ffn_options) and must follow the interface of ecmoe.torch.MoE:

    parameters  router.weight [d, e] (absent for dense and hash), experts.w1 [e, d, f],
                experts.w2 [e, f, d]
    forward     out = ffn(x [n, d], token_ids [n] int32)  ->  out.y [n, d],
                out.aux_loss (0-d tensor: the layer's weighted auxiliary losses), out.aux (dict of
                0-d tensors), out.stats (dict); evaluation capacity factor when not training

The model (written from its definition, as in docs/checkpoint-format.md):

    h = embed.tokens[tokens] + embed.positions[0:T]
    for each layer l:  h += attn(ln1(h)) · Wo + bo;   h += ffn_l(ln2(h))
    logits = final_ln(h) · embed.tokensᵀ                       (output tied to the embedding)
    loss = mean cross-entropy over positions with target >= 0  +  Σ_l weighted aux losses

attn: packed qkv = x · Wqkv + bqkv ([q | k | v], head h at columns h·hd of each),
softmax(q·kᵀ/√hd) with a causal mask (decoder) and key padding (keys >= valid_len[b] masked);
LayerNorm eps 1e-5; every matrix stored [in, out]. Each FFN routes all B·T tokens of the batch
(row-major, sequence by sequence) as one batch, as the engine does, so a token's output may depend
on the other sequences of the batch (expert choice). Layer l's FFN is an MoE layer when
l % moe_every == moe_every − 1, else one dense expert. state_dict() names are the checkpoint's
tensor names.
"""

import math
from dataclasses import dataclass, field
from types import SimpleNamespace

import torch
import torch.nn as nn
import torch.nn.functional as F

# model.moe of a run config (src/moe/moe_config.h MoeConfig), flattened: capped.* without prefix.
MOE_DEFAULTS = dict(router="expert_choice", n_experts=8, capacity_factor_train=2.0,
                    capacity_factor_eval=2.0, group_size=0, global_routing=False,
                    token_choice_k=0, renormalize_gates=True, batch_prioritized=False,
                    load_balance_weight=0.0, z_loss_weight=0.0, jitter=0.0,
                    threshold_ema_rate=0.05, threshold_warmup_steps=100,
                    max_experts_per_token=2, capped_lambda=1e-3, capped_max_iterations=100,
                    capped_tolerance=1e-3, capped_epsilon_scaling=True)
ROUTERS = ("expert_choice", "expert_choice_capped", "top1", "top2", "dense", "hash",
           "expert_threshold")
ROUTERS_WITH_WEIGHTS = ("expert_choice", "expert_choice_capped", "top1", "top2",
                        "expert_threshold")


@dataclass
class ModelConfig:
    """The architecture: the "model" section of a run config (docs/training.md)."""
    kind: str = "encoder"  # "encoder" (bidirectional, masked LM) or "decoder" (causal)
    vocab_size: int = 8000
    seq_len: int = 128  # the longest sequence (learned positions)
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4
    d_ff: int = 1024
    moe_every: int = 2
    moe: dict = field(default_factory=dict)  # MOE_DEFAULTS' keys; missing ones take the default

    @classmethod
    def from_json(cls, model):
        """From a run config's "model" object (as a checkpoint's "config" metadata holds it)."""
        fields = {k: model[k] for k in ("kind", "vocab_size", "seq_len", "d_model", "n_layers",
                                         "n_heads", "d_ff", "moe_every") if k in model}
        moe = dict(model.get("moe", {}))
        for key, value in moe.pop("capped", {}).items():
            moe["max_experts_per_token" if key == "max_experts_per_token" else "capped_" + key] = \
                value
        return cls(**fields, moe=moe)

    def __post_init__(self):
        unknown = sorted(set(self.moe) - set(MOE_DEFAULTS))
        if unknown:
            raise ValueError(f"model.moe: unknown key {unknown[0]!r}")
        self.moe = {**MOE_DEFAULTS, **self.moe}
        if self.kind not in ("encoder", "decoder"):
            raise ValueError(f"model.kind must be encoder or decoder, got {self.kind!r}")
        if self.moe["router"] not in ROUTERS:
            raise ValueError(f"model.moe.router: unknown router {self.moe['router']!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not a multiple of n_heads "
                             f"{self.n_heads}")

    def is_moe_layer(self, layer):
        return self.moe_every > 0 and layer % self.moe_every == self.moe_every - 1

    def ffn_options(self, layer):
        """Layer `layer`'s FFN: d_model, d_ff and the MoE options (MOE_DEFAULTS' keys); a
        non-MoE layer is one dense expert with default options (ModelConfig::ffn_config)."""
        moe = dict(self.moe) if self.is_moe_layer(layer) else dict(MOE_DEFAULTS, router="dense")
        if moe["router"] == "dense":
            moe["n_experts"] = 1
        return dict(moe, d_model=self.d_model, d_ff=self.d_ff)


class LayerNorm(nn.Module):
    """LayerNorm over the last dimension, eps 1e-5, parameters named gain and bias."""

    def __init__(self, d):
        super().__init__()
        self.gain = nn.Parameter(torch.ones(d))
        self.bias = nn.Parameter(torch.zeros(d))

    def forward(self, x):
        return F.layer_norm(x, x.shape[-1:], self.gain, self.bias, eps=1e-5)


class Affine(nn.Module):
    """y = x · weight + bias, weight stored [in, out] as in the checkpoint."""

    def __init__(self, d_in, d_out):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(d_in, d_out))
        self.bias = nn.Parameter(torch.zeros(d_out))

    def forward(self, x):
        return x @ self.weight + self.bias


class Attention(nn.Module):
    def __init__(self, d, n_heads, causal):
        super().__init__()
        self.n_heads, self.causal = n_heads, causal
        self.qkv = Affine(d, 3 * d)
        self.out = Affine(d, d)

    def forward(self, x, valid_len=None):
        """x [B, T, d], valid_len [B] or None -> the heads' outputs [B, T, d], before `out`."""
        B, T, d = x.shape
        H = self.n_heads
        hd = d // H
        qkv = self.qkv(x)  # [B, T, 3d]
        q, k, v = (qkv[..., i * d:(i + 1) * d].reshape(B, T, H, hd).transpose(1, 2)
                   for i in range(3))  # [B, H, T, hd]
        scores = q @ k.transpose(-1, -2) / math.sqrt(hd)  # [B, H, T, T]
        mask = torch.zeros(B, 1, T, T, dtype=torch.bool, device=x.device)
        if self.causal:
            mask |= torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
        if valid_len is not None:
            keys = torch.arange(T, device=x.device)
            mask |= (keys[None, :] >= torch.as_tensor(valid_len, device=x.device)[:, None]
                     )[:, None, None, :]
        probs = torch.softmax(scores.masked_fill(mask, -math.inf), dim=-1)
        return (probs @ v).transpose(1, 2).reshape(B, T, d)


class Block(nn.Module):
    def __init__(self, config, layer, moe):
        super().__init__()
        d = config.d_model
        self.ln1 = LayerNorm(d)
        self.attn = Attention(d, config.n_heads, config.kind == "decoder")
        self.ln2 = LayerNorm(d)
        self.ffn = moe(config.ffn_options(layer))

    def forward(self, h, token_ids, valid_len):
        """h [B, T, d], token_ids [B·T] int32 -> (h [B, T, d], the FFN's output)."""
        B, T, d = h.shape
        out = self.attn.out
        h = h + self.attn(self.ln1(h), valid_len) @ out.weight + out.bias
        out = self.ffn(self.ln2(h).reshape(B * T, d), token_ids)
        return h + out.y.reshape(B, T, d), out


class Embedding(nn.Module):
    def __init__(self, vocab_size, seq_len, d):
        super().__init__()
        self.tokens = nn.Parameter(torch.zeros(vocab_size, d))
        self.positions = nn.Parameter(torch.zeros(seq_len, d))


class Transformer(nn.Module):
    """The ecmoe transformer. moe: the FFN factory (options dict -> module), e.g.
    ecmoe.checkpoint.ecmoe_moe (ecmoe.torch.MoE). Parameters start at zero (the FFNs' as the
    factory makes them): load a checkpoint (ecmoe.checkpoint.load, or load_state_dict with its
    tensors) or call init_parameters."""

    def __init__(self, config, moe):
        super().__init__()
        self.config = config
        self.embed = Embedding(config.vocab_size, config.seq_len, config.d_model)
        self.layers = nn.ModuleList(Block(config, l, moe) for l in range(config.n_layers))
        self.final_ln = LayerNorm(config.d_model)

    def init_parameters(self, std=0.02, generator=None):
        """GPT-2 style, as the engine (not its random stream): matrices N(0, std²), the
        projections into the residual stream (attn.out.weight, experts.w2) further scaled by
        1/sqrt(2·n_layers); biases 0, LayerNorm gains 1."""
        scaled = std / math.sqrt(2 * self.config.n_layers)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith(".gain"):
                    p.fill_(1.0)
                elif name.endswith(".bias"):
                    p.zero_()
                else:
                    s = scaled if name.endswith(("attn.out.weight", "experts.w2")) else std
                    p.normal_(0.0, s, generator=generator)

    def run(self, tokens, valid_len=None):
        """tokens [B, T] (T <= seq_len) -> SimpleNamespace(logits [B, T, V], aux_loss (0-d: the
        weighted auxiliary losses summed over layers), aux (dict: each aux entry summed over
        layers), layers (each layer's FFN output))."""
        B, T = tokens.shape
        if T > self.config.seq_len:
            raise ValueError(f"sequence of {T} tokens, longer than seq_len {self.config.seq_len}")
        emb = self.embed.tokens
        h = emb[tokens.long()] + self.embed.positions[:T]  # [B, T, d]
        token_ids = tokens.reshape(-1).to(torch.int32)
        aux_loss = torch.zeros((), dtype=h.dtype, device=h.device)
        aux, outs = {}, []
        for block in self.layers:
            h, out = block(h, token_ids, valid_len)
            aux_loss = aux_loss + out.aux_loss
            for key, value in out.aux.items():
                aux[key] = aux[key] + value if key in aux else value
            outs.append(out)
        logits = (self.final_ln(h).reshape(B * T, -1) @ emb.t()).reshape(B, T, -1)  # [B, T, V]
        return SimpleNamespace(logits=logits, aux_loss=aux_loss, aux=aux, layers=outs)

    def forward(self, tokens, valid_len=None):
        """tokens [B, T] -> logits [B, T, V]."""
        return self.run(tokens, valid_len).logits

    def loss(self, tokens, targets, valid_len=None):
        """The engine's training loss: SimpleNamespace(loss = lm_loss + aux_loss, lm_loss (mean
        cross-entropy over targets >= 0; 0 if there are none), aux_loss, aux, layers, logits,
        counted (targets >= 0)). The engine's evaluation loss is lm_loss."""
        out = self.run(tokens, valid_len)
        V = out.logits.shape[-1]
        tgt = targets.reshape(-1).long()
        counted = tgt >= 0
        logits = out.logits.reshape(-1, V)
        if counted.any():
            lm = F.cross_entropy(logits[counted], tgt[counted], reduction="mean")
        else:
            lm = logits.sum() * 0.0
        out.lm_loss, out.loss, out.counted = lm, lm + out.aux_loss, int(counted.sum())
        return out
