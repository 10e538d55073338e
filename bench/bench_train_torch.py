"""PyTorch peer benchmark of a full training step, for comparison with `ecmoe bench train`.

Builds the ecmoe transformer (the model of tools/torch_model.py: token + learned position
embeddings, pre-LN attention and FFN blocks, every moe_every-th FFN a Mixture-of-Experts layer,
final LayerNorm, output tied to the token table) in float32 for the config the engine resolves
(`ecmoe train --config X --set ... --print-config`: built-in defaults, the config file, --set and
the router rule, so both sides train the same config), draws random token batches, and times
full training steps:

    batch (random tokens; encoder: 15% masked-LM targets, 80/10/10 [MASK]/random/unchanged;
    decoder: next-token targets) -> forward -> loss (cross-entropy at the target positions +
    weighted auxiliary losses) -> backward -> global gradient-norm clip (config clip_norm, as
    ecmoe's step does) -> torch.optim.AdamW step (decay on matrices only).

Prints the median tokens/s over the timed steps (after --warmup untimed ones).

--precision bf16 (ecmoe's `--set precision=bf16`): by default torch.autocast('cpu',
torch.bfloat16) around the forward, over fp32 parameters, as ecmoe's mixed precision does (every
GEMM with bf16 operands; the router kept in fp32 on both sides); --bf16-mode weights stores the
parameters, their gradients and AdamW's state in bf16 instead (no fp32 master weights: not the
same training, shown for speed only; docs/results.md, Mixed precision, compares the two here).

The MoE layer is the efficient index formulation, not tools/ reference loops: routing on the
[n, e] probabilities with topk (expert choice: each expert's top-k tokens; top-k: first choices
before second choices in position order, capacity round(cf·k·n/e), overflow dropped, gates
renormalised over the k choices), then gather -> batched expert GEMMs -> gated index_add.
--moe-impl picks how the expert GEMMs run: `index` (the default: torch.bmm over experts on
[e, cap, d]; token choice pads each expert to its capacity with zero rows, expert choice has no
padding) or `loop` (the filled slots only, gathered expert-major, one GEMM pair per expert on its
slice). For top-2 on `small` both measured the same within noise here (loop does ~20% fewer
FLOPs but in 8 smaller GEMMs and extra copies), index slightly ahead. The LM head
computes logits only at positions with a target (as ecmoe does). `--check` verifies the model
(loss and every gradient) against tools/torch_model.py on small cases in float64.

--device cuda runs the same model on the GPU (the peer of issue 16's GPU training): autocast on
CUDA, batches drawn on the host as on the CPU and copied, AdamW fused where this torch has it;
--compile puts the model's forward under torch.compile (PyTorch 2). Each step ends with the loss
read back, so the device is synchronised before a step's time is taken.

Run with Debian's python3-torch (1.13). On an AVX-512 CPU the script sets
OPENBLAS_CORETYPE=SkylakeX (Debian's OpenBLAS otherwise picks an older kernel, up to ~5x slower)
and ATEN_CPU_CAPABILITY=avx512 in its own environment before torch loads, unless they are set; it
refuses to run on the reference BLAS (libblas3; bench/peer_blas.py). From the repository root:

    /usr/bin/python3 -m bench.bench_train_torch --config small --router top2 --threads 2 \
        [--ecmoe build/ecmoe]
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

# Before torch loads: Debian's OpenBLAS reads OPENBLAS_CORETYPE when the library is loaded (it
# does not recognise this CPU and otherwise picks an SSE3 kernel, ~5x slower), and ATen reads
# ATEN_CPU_CAPABILITY at its first dispatch (Debian's build defaults to its AVX2 kernels; the
# AVX-512 ones measured ~10% faster here). Values already in the environment win.
from bench import peer_blas

peer_blas.prepare_environment()

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

MASK_ID = 4  # [MASK]
FIRST_ORDINARY_ID = 7  # ids below are special (pad, unk, bos, eos, mask, ...)

TOKEN_CHOICE = ("top1", "top2")
DEFAULT_BF16_MODE = "autocast"  # see --bf16-mode and docs/results.md, Mixed precision
ROUTERS = ("expert_choice", "top1", "top2", "dense")


# ---------------------------------------------------------------------------------------------
# Config: the engine's own resolution (built-in defaults, the config file, --set and the router
# rule), read from `ecmoe train --config X --set ... --print-config`.


def default_ecmoe():
    return os.environ.get("ECMOE") or os.path.join(ROOT, "build", "ecmoe")


def resolved_config(ecmoe, config, sets=()):
    """The config `ecmoe train --config CONFIG --set KEY=VALUE...` would train with, as a dict.
    vocab_size 0 (taken from the prepared data) becomes 8000, as `ecmoe bench train` does on
    random tokens."""
    if not os.access(ecmoe, os.X_OK):
        sys.exit(f"bench_train_torch: ecmoe executable {ecmoe!r} not found (give --ecmoe PATH or "
                 "set ECMOE; the config is resolved by `ecmoe train --print-config`)")
    command = [ecmoe, "train", "--config", config]
    for kv in sets:
        command += ["--set", kv]
    run = subprocess.run(command + ["--print-config"], capture_output=True, text=True)
    if run.returncode != 0:
        last = (run.stderr.strip().splitlines() or ["(no message)"])[-1]
        sys.exit(f"bench_train_torch: {' '.join(command)} --print-config failed: {last}")
    cfg = json.loads(run.stdout)
    if cfg["model"]["vocab_size"] == 0:
        cfg["model"]["vocab_size"] = 8000  # what `ecmoe prepare` makes by default
    return cfg


def load_config(ecmoe, name, router=None, sets=()):
    """--router R is `--set model.moe.router=R` (which also sets R's default capacity factors
    and auxiliary-loss weights unless those are --set too)."""
    router_set = [f"model.moe.router={router}"] if router is not None else []
    return resolved_config(ecmoe, name, router_set + list(sets))


def model_config(cfg):
    """The flat model description the layers below use."""
    m, moe = cfg["model"], cfg["model"]["moe"]
    router = moe["router"]
    if router not in ROUTERS:
        sys.exit(f"router {router!r} is not implemented here (have: {', '.join(ROUTERS)})")
    if moe["batch_prioritized"]:
        sys.exit("batch_prioritized routing is not implemented here")
    if moe["jitter"]:
        print("warning: router jitter is ignored", file=sys.stderr)
    k = moe["token_choice_k"] or (2 if router == "top2" else 1)
    return dict(kind=m["kind"], vocab_size=m["vocab_size"], seq_len=m["seq_len"],
                d_model=m["d_model"], n_layers=m["n_layers"], n_heads=m["n_heads"],
                d_ff=m["d_ff"], moe_every=m["moe_every"], init_std=m["init_std"],
                router=router, n_experts=moe["n_experts"],
                capacity_factor=moe["capacity_factor_train"], group_size=moe["group_size"],
                k=k, renormalize_gates=moe["renormalize_gates"],
                load_balance_weight=moe["load_balance_weight"],
                z_loss_weight=moe["z_loss_weight"])


# ---------------------------------------------------------------------------------------------
# Parameters (names and layout as the model's table: W is [in, out], y = x·W + b)


def is_moe(mc, l):
    return mc["moe_every"] > 0 and l % mc["moe_every"] == mc["moe_every"] - 1


def layer_router(mc, l):
    return mc["router"] if is_moe(mc, l) else "dense"


def param_shapes(mc):
    V, T, d, f = mc["vocab_size"], mc["seq_len"], mc["d_model"], mc["d_ff"]
    out = [("embed.tokens", [V, d]), ("embed.positions", [T, d])]
    for l in range(mc["n_layers"]):
        p = f"layers.{l}."
        out += [(p + "ln1.gain", [d]), (p + "ln1.bias", [d]),
                (p + "attn.qkv.weight", [d, 3 * d]), (p + "attn.qkv.bias", [3 * d]),
                (p + "attn.out.weight", [d, d]), (p + "attn.out.bias", [d]),
                (p + "ln2.gain", [d]), (p + "ln2.bias", [d])]
        router = layer_router(mc, l)
        e = 1 if router == "dense" else mc["n_experts"]
        if router != "dense":
            out.append((p + "ffn.router.weight", [d, e]))
        out += [(p + "ffn.experts.w1", [e, d, f]), (p + "ffn.experts.w2", [e, f, d])]
    out += [("final_ln.gain", [d]), ("final_ln.bias", [d])]
    return out


def init_params(mc, seed=1, dtype=torch.float32, device="cpu"):
    """As Transformer::init_params: gains 1, biases 0, other tensors N(0, init_std), residual
    outputs (attn.out.weight, ffn.experts.w2) scaled by 1/sqrt(2·n_layers)."""
    g = torch.Generator().manual_seed(seed)
    scale = 1.0 / math.sqrt(2.0 * mc["n_layers"])
    params = {}
    for name, shape in param_shapes(mc):
        if name.endswith(".gain"):
            t = torch.ones(shape, dtype=dtype)
        elif name.endswith(".bias"):
            t = torch.zeros(shape, dtype=dtype)
        else:
            std = mc["init_std"] * (scale if name.endswith(("attn.out.weight",
                                                            "ffn.experts.w2")) else 1.0)
            t = torch.randn(shape, generator=g, dtype=dtype) * std
        params[name] = t.to(device).requires_grad_(True)
    return params


# ---------------------------------------------------------------------------------------------
# The MoE layer, index formulation


# Capacity rounding, float32 config values and routing groups exactly as the reference layer
# (tools/make_moe_fixtures.py) defines them.
from tools.make_moe_fixtures import f32, groups_of, round_half_away  # noqa: E402


def route_expert_choice(mc, probs):
    """-> per group (begin, tokens [e, cap] absolute, gates [e, cap]); no empty slots."""
    n, e = probs.shape
    out = []
    for begin, size in groups_of(n, mc["group_size"]):
        cap = max(1, min(size, round_half_away(f32(mc["capacity_factor"]) * size / e)))
        gates, tokens = probs[begin:begin + size].t().topk(cap, dim=1)  # each expert's best
        out.append((tokens + begin, gates))
    return [torch.cat([t for t, _ in out], dim=1), torch.cat([g for _, g in out], dim=1)], None


def route_token_choice(mc, probs):
    """-> tokens [e, cap_total] (n marks an empty slot), gates [e, cap_total] (0 when empty),
    and the filled count per expert. Slots of each group are contiguous per expert; within a
    group an expert's slots fill first choices (in position order) before second choices."""
    n, e = probs.shape
    k = mc["k"]
    top_p, top_i = probs.topk(k, dim=1)  # [n, k]
    gate_all = top_p / top_p.sum(dim=1, keepdim=True) if (k > 1 and
                                                          mc["renormalize_gates"]) else top_p
    groups = groups_of(n, mc["group_size"])
    caps = [max(1, min(size, round_half_away(f32(mc["capacity_factor"]) * k * size / e)))
            for _, size in groups]
    width = sum(caps)
    dev = probs.device
    with torch.no_grad():
        slot_token = torch.full((e * width,), n, dtype=torch.long, device=dev)
        slot_src = torch.full((e * width,), n * k, dtype=torch.long, device=dev)
        filled = torch.zeros(e, dtype=torch.long, device=dev)
        offset = 0
        for (begin, size), cap in zip(groups, caps):
            used = torch.zeros(e, dtype=torch.long, device=dev)
            ti = top_i[begin:begin + size]
            positions = []
            for c in range(k):
                onehot = F.one_hot(ti[:, c], e)  # [size, e]
                positions.append(((onehot.cumsum(dim=0) - 1 + used) * onehot).sum(dim=1))
                used += onehot.sum(dim=0)
            pos = torch.stack(positions, dim=1)  # [size, k]
            keep = pos < cap
            slot = ti * width + offset + pos
            slot_token[slot[keep]] = (torch.arange(size, device=dev) + begin).unsqueeze(1).expand(
                size, k)[keep]
            slot_src[slot[keep]] = (torch.arange(size * k, device=dev) + begin * k).view(
                size, k)[keep]
            filled += used.clamp(max=cap)
            offset += cap
    gate_flat = torch.cat([gate_all.reshape(-1), gate_all.new_zeros(1)])
    slot_gate = gate_flat[slot_src]
    return [slot_token.view(e, width), slot_gate.view(e, width)], (top_i, filled)


def moe_ffn(mc, router, x, wg, w1, w2, impl):
    """x [n, d] -> y [n, d], weighted aux loss (0-d tensor or None)."""
    n, d = x.shape
    if router == "dense":
        return F.gelu(x @ w1[0]) @ w2[0], None
    rdt = torch.float64 if x.dtype == torch.float64 else torch.float32  # float64: --check
    with torch.autocast(x.device.type, enabled=False):  # the router in fp32 (or 64), as ecmoe's
        logits = x.to(rdt) @ wg.to(rdt)
    probs = torch.softmax(logits, dim=-1)
    e = probs.shape[1]
    if router == "expert_choice":
        (slot_token, slot_gate), extra = route_expert_choice(mc, probs)
    else:
        (slot_token, slot_gate), extra = route_token_choice(mc, probs)
    aux = None
    if mc["load_balance_weight"]:  # per group e·Σ f_i·P_i (f from each argmax), mean of groups
        with torch.no_grad():
            top1 = extra[0][:, 0] if extra is not None else probs.argmax(dim=1)
        lbs = []
        for begin, size in groups_of(n, mc["group_size"]):
            f = F.one_hot(top1[begin:begin + size], e).to(probs.dtype).mean(dim=0)
            lbs.append(e * (f * probs[begin:begin + size].mean(dim=0)).sum())
        aux = f32(mc["load_balance_weight"]) * torch.stack(lbs).mean()
    if mc["z_loss_weight"]:
        z = f32(mc["z_loss_weight"]) * (torch.logsumexp(logits, dim=-1) ** 2).mean()
        aux = z if aux is None else aux + z
    cap = slot_token.shape[1]
    if router == "expert_choice" or impl == "index":
        flat = slot_token.reshape(-1)
        if router == "expert_choice":  # every slot is filled
            x_in = x.index_select(0, flat).view(e, cap, d)
        else:  # a zero row for the padding
            x_in = torch.cat([x, x.new_zeros(1, d)]).index_select(0, flat).view(e, cap, d)
        out = torch.bmm(F.gelu(torch.bmm(x_in, w1)), w2)
        out = out * slot_gate.to(out.dtype).unsqueeze(-1)
        y = x.new_zeros(n + 1, d).index_add(0, flat, out.view(-1, d).to(x.dtype))
        return y[:n], aux
    # loop: the filled slots only (no padding), gathered expert-major into one [S, d] tensor,
    # then one GEMM pair per expert on its contiguous slice. unbind, not w1[i]: each indexing
    # op's backward would materialise a full-size zero gradient of W1 / W2.
    keep = (slot_token < n).reshape(-1)
    tokens = slot_token.reshape(-1)[keep]
    gates = slot_gate.reshape(-1)[keep]
    counts = (slot_token < n).sum(dim=1).tolist()
    parts = x.index_select(0, tokens).split(counts)
    outs = [F.gelu(p @ w1_i) @ w2_i for p, w1_i, w2_i in zip(parts, w1.unbind(0), w2.unbind(0))
            if p.shape[0] > 0]
    out = torch.cat(outs)
    out = out * gates.to(out.dtype).unsqueeze(-1)
    return x.new_zeros(n, d).index_add(0, tokens, out.to(x.dtype)), aux


# ---------------------------------------------------------------------------------------------
# The model


def forward(mc, params, tokens, targets, impl="index"):
    """tokens, targets [B, T] (targets -1: no loss) -> loss (0-d)."""
    B, T = tokens.shape
    d, H = mc["d_model"], mc["n_heads"]
    hd = d // H
    N = B * T
    E = params["embed.tokens"]
    h = (F.embedding(tokens, E) + params["embed.positions"][:T]).view(N, d)
    causal = None
    if mc["kind"] == "decoder":
        causal = torch.ones(T, T, dtype=torch.bool, device=tokens.device).triu(1)
    scale = 1.0 / math.sqrt(hd)
    aux_total = None
    for l in range(mc["n_layers"]):
        p = f"layers.{l}."
        x = F.layer_norm(h, (d,), params[p + "ln1.gain"], params[p + "ln1.bias"], eps=1e-5)
        qkv = torch.addmm(params[p + "attn.qkv.bias"], x, params[p + "attn.qkv.weight"])
        q, k, v = qkv.view(B, T, 3, H, hd).permute(2, 0, 3, 1, 4)  # each [B, H, T, hd]
        scores = torch.matmul(q * scale, k.transpose(-1, -2))  # [B, H, T, T]
        if causal is not None:
            scores = scores.masked_fill(causal, -math.inf)
        a = torch.matmul(torch.softmax(scores, dim=-1), v)  # [B, H, T, hd]
        a = a.transpose(1, 2).reshape(N, d)
        h = h + torch.addmm(params[p + "attn.out.bias"], a, params[p + "attn.out.weight"])
        x = F.layer_norm(h, (d,), params[p + "ln2.gain"], params[p + "ln2.bias"], eps=1e-5)
        y, aux = moe_ffn(mc, layer_router(mc, l), x, params.get(p + "ffn.router.weight"),
                         params[p + "ffn.experts.w1"], params[p + "ffn.experts.w2"], impl)
        h = h + y.to(h.dtype)
        if aux is not None:
            aux_total = aux if aux_total is None else aux_total + aux
    # LM head at the counted positions only (LayerNorm is per row, so select first).
    tgt = targets.reshape(-1)
    rows = (tgt >= 0).nonzero().squeeze(1)
    hs = F.layer_norm(h.index_select(0, rows), (d,), params["final_ln.gain"],
                      params["final_ln.bias"], eps=1e-5)
    logits = hs @ E.t()
    if logits.dtype == torch.bfloat16:  # bf16: the loss in fp32, as ecmoe's
        logits = logits.float()
    loss = F.cross_entropy(logits, tgt.index_select(0, rows))
    return loss if aux_total is None else loss + aux_total


# ---------------------------------------------------------------------------------------------
# Batches


def make_batch(cfg, mc, gen):
    """Random ordinary tokens; encoder: masked LM as ecmoe's batches (docs/training.md),
    decoder: next token of a window of seq_len + 1."""
    B, T, V = cfg["batch_size"], mc["seq_len"], mc["vocab_size"]
    if mc["kind"] == "decoder":
        window = torch.randint(FIRST_ORDINARY_ID, V, (B, T + 1), generator=gen)
        return window[:, :T].contiguous(), window[:, 1:].contiguous()
    data = cfg["data"]
    original = torch.randint(FIRST_ORDINARY_ID, V, (B, T), generator=gen)
    draw = torch.rand(B, T, generator=gen)
    selected = draw < data["mask_prob"]
    if not selected.any():
        selected.view(-1)[draw.view(-1).argmin()] = True
    how = torch.rand(B, T, generator=gen)
    tokens = original.clone()
    to_mask = selected & (how < data["mask_token_prob"])
    to_random = selected & ~to_mask & (how < data["mask_token_prob"] + data["random_token_prob"])
    tokens[to_mask] = MASK_ID
    tokens[to_random] = torch.randint(FIRST_ORDINARY_ID, V, (int(to_random.sum()),),
                                      generator=gen)
    targets = torch.where(selected, original, torch.full_like(original, -1))
    return tokens, targets


# ---------------------------------------------------------------------------------------------
# Training step and timing


def make_optimizer(cfg, params, foreach, fused=False):
    o = cfg["optimizer"]
    matrices = [t for t in params.values() if t.dim() >= 2]
    vectors = [t for t in params.values() if t.dim() < 2]
    groups = [{"params": matrices, "weight_decay": o["weight_decay"]},
              {"params": vectors, "weight_decay": 0.0}]
    extra = {"fused": True} if fused else {"foreach": foreach}
    return torch.optim.AdamW(groups, lr=cfg["schedule"]["peak_lr"], betas=(o["beta1"],
                             o["beta2"]), eps=o["eps"], **extra)


def train_step(cfg, mc, params, plist, opt, gen, impl, precision="fp32", bf16_mode="autocast",
               device="cpu", forward_fn=None):
    tokens, targets = make_batch(cfg, mc, gen)
    tokens, targets = tokens.to(device, non_blocking=True), targets.to(device, non_blocking=True)
    opt.zero_grad(set_to_none=True)
    on = precision == "bf16" and bf16_mode == "autocast"
    with torch.autocast(device, dtype=torch.bfloat16, enabled=on):
        loss = (forward_fn or forward)(mc, params, tokens, targets, impl)
    loss.backward()
    if cfg["clip_norm"] > 0:
        torch.nn.utils.clip_grad_norm_(plist, cfg["clip_norm"])
    opt.step()
    return float(loss)


def bench(cfg, args):
    mc = model_config(cfg)
    torch.manual_seed(0)
    bf16_weights = args.precision == "bf16" and args.bf16_mode == "weights"
    params = init_params(mc, seed=1, dtype=torch.bfloat16 if bf16_weights else torch.float32,
                         device=args.device)
    plist = list(params.values())
    fused = args.device == "cuda" and "fused" in torch.optim.AdamW.__init__.__code__.co_varnames
    opt = make_optimizer(cfg, params, foreach=args.foreach, fused=fused)
    forward_fn = None
    if args.compile:
        if not hasattr(torch, "compile"):
            sys.exit("--compile needs PyTorch 2 or later (this is %s)" % torch.__version__)
        forward_fn = torch.compile(forward)
    gen = torch.Generator().manual_seed(2)
    seconds, losses = [], []
    for s in range(args.warmup + args.steps):
        t0 = time.perf_counter()  # the step's float(loss) synchronises the device
        losses.append(train_step(cfg, mc, params, plist, opt, gen, args.moe_impl,
                                 args.precision, args.bf16_mode, args.device, forward_fn))
        if s >= args.warmup:
            seconds.append(time.perf_counter() - t0)
    median = statistics.median(seconds)
    tokens_per_step = cfg["batch_size"] * mc["seq_len"]
    return dict(median_step_seconds=median, tokens_per_step=tokens_per_step,
                tokens_per_s=tokens_per_step / median,
                step_seconds=[round(t, 4) for t in seconds],
                first_loss=losses[0], last_loss=losses[-1],
                parameters=sum(t.numel() for t in plist), adamw_fused=fused)


# ---------------------------------------------------------------------------------------------
# Verification against tools/torch_model.py (float64, small cases)


def check(ecmoe, verbose=True):
    from tools import torch_model  # the reference model (imported only for --check)

    small = {"vocab_size": 50, "seq_len": 8, "d_model": 16, "n_layers": 3, "n_heads": 2,
             "d_ff": 24, "moe_every": 2, "init_std": 0.3}
    cases = [
        ("expert_choice", "encoder", {"n_experts": 4}),
        ("expert_choice", "decoder", {"n_experts": 4, "capacity_factor_train": 1.25}),
        ("expert_choice", "encoder", {"n_experts": 4, "group_size": 6,
                                      "load_balance_weight": 0.1, "z_loss_weight": 0.01}),
        ("top2", "encoder", {"n_experts": 4, "load_balance_weight": 0.1,
                             "capacity_factor_train": 1.0}),
        ("top2", "decoder", {"n_experts": 4, "z_loss_weight": 0.01,
                             "capacity_factor_train": 0.75, "group_size": 7}),
        ("top1", "encoder", {"n_experts": 4, "capacity_factor_train": 1.0,
                             "load_balance_weight": 0.1}),
        ("dense", "encoder", {}),
    ]
    worst = 0.0
    for i, (router, kind, moe) in enumerate(cases):
        sets = [f"model.{k}={v}" for k, v in dict(small, kind=kind).items()]
        sets += [f"model.moe.{k}={v}" for k, v in moe.items()] + ["batch_size=3"]
        cfg = load_config(ecmoe, "small", router, sets)
        mc = model_config(cfg)
        gen = torch.Generator().manual_seed(10 + i)
        tokens, targets = make_batch(cfg, mc, gen)
        for impl in ("index", "loop"):
            params = init_params(mc, seed=i, dtype=torch.float64)
            loss = forward(mc, params, tokens, targets, impl)
            loss.backward()
            # The reference, with its config keys, on copies of the same parameters.
            ref_params = {n: t.detach().clone().requires_grad_(True) for n, t in params.items()}
            rc = torch_model.infer_config(ref_params, overrides={
                "model": {"kind": kind, "n_heads": small["n_heads"], "moe": {
                    "router": router, **{k: v for k, v in cfg["model"]["moe"].items()
                                         if k in ("capacity_factor_train", "group_size",
                                                  "load_balance_weight", "z_loss_weight")}}}})
            out = torch_model.forward(rc, ref_params, tokens, targets)
            out["loss"].backward()
            diffs = {"loss": abs(float(loss) - float(out["loss"])) / max(1.0, abs(float(loss)))}
            for n in params:
                a, b = params[n].grad, ref_params[n].grad
                a = torch.zeros_like(params[n]) if a is None else a
                b = torch.zeros_like(params[n]) if b is None else b
                diffs[n] = float((a - b).abs().max()) / max(float(b.abs().max()), 1e-6)
            name, diff = max(diffs.items(), key=lambda kv: kv[1])
            worst = max(worst, diff)
            if verbose:
                print(f"check {router:13s} {kind:7s} {impl:5s} moe={moe}: loss "
                      f"{float(loss):.6f} (reference {float(out['loss']):.6f}), largest "
                      f"relative difference {diff:.2e} ({name}), margin {out['margin']:.1e}",
                      file=sys.stderr)
            if diff > 1e-9:
                sys.exit(f"check failed: {router} {kind} {impl}: {name} differs by {diff:.3e}")
    return worst


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="small",
                        help="a config name or JSON path, as for `ecmoe train --config`")
    parser.add_argument("--ecmoe", default=default_ecmoe(),
                        help="the ecmoe executable that resolves the config (`ecmoe train "
                        "--print-config`; default: $ECMOE, else build/ecmoe of this checkout)")
    parser.add_argument("--router", choices=ROUTERS,
                        help="as ecmoe's --set model.moe.router=R (also sets that router's "
                        "default capacity factors and auxiliary-loss weights)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, as `ecmoe train --set`")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--moe-impl", default="index", choices=["index", "loop"],
                        help="expert GEMMs: index (bmm over experts, token choice padded to "
                        "capacity) or loop (one GEMM pair per expert on its filled slots)")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                        help="as ecmoe's `--set precision=P`")
    parser.add_argument("--bf16-mode", default=DEFAULT_BF16_MODE, choices=["autocast", "weights"],
                        help="with --precision bf16: torch.autocast over fp32 parameters "
                        "(mixed precision, as ecmoe), or parameters, gradients and AdamW state "
                        "in bf16 (default: %(default)s)")
    parser.add_argument("--no-foreach", dest="foreach", action="store_false",
                        help="AdamW without the multi-tensor (foreach) implementation")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--compile", action="store_true",
                        help="the forward under torch.compile (PyTorch 2)")
    parser.add_argument("--check", action="store_true",
                        help="verify the model against tools/torch_model.py first")
    parser.add_argument("--check-only", action="store_true", help="verify and exit")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    if args.check or args.check_only:
        worst = check(args.ecmoe)
        if args.check_only:
            print(f"check passed: largest relative difference {worst:.2e}")
            return
    cfg = load_config(args.ecmoe, args.config, args.router, args.set)
    blas = peer_blas.check_peer(quiet=args.json) if args.device == "cpu" else "cuda"
    mc = model_config(cfg)
    result = bench(cfg, args)
    result.update(
        config=args.config, router=mc["router"], kind=mc["kind"],
        capacity_factor=mc["capacity_factor"], load_balance_weight=mc["load_balance_weight"],
        batch_size=cfg["batch_size"], seq_len=mc["seq_len"], vocab_size=mc["vocab_size"],
        threads=torch.get_num_threads(), steps=args.steps, warmup=args.warmup,
        moe_impl=args.moe_impl, precision=args.precision,
        bf16_mode=args.bf16_mode if args.precision == "bf16" else None,
        adamw_foreach=args.foreach, torch=torch.__version__, device=args.device,
        compile=args.compile,
        gpu=torch.cuda.get_device_name() if args.device == "cuda" else None,
        openblas_coretype=os.environ.get("OPENBLAS_CORETYPE", ""), blas=blas,
        aten_cpu_capability=torch.backends.cpu.get_cpu_capability()
        if hasattr(torch.backends, "cpu") else os.environ.get("ATEN_CPU_CAPABILITY", ""),
        loadavg=open("/proc/loadavg").read().split()[:3])
    if args.json:
        print(json.dumps(result))
        return
    print(f"torch {torch.__version__}: config {args.config} ({mc['kind']}, {mc['router']} "
          f"router, moe impl {result['moe_impl']}, {args.precision}"
          f"{' ' + args.bf16_mode if args.precision == 'bf16' else ''}"
          f"{', torch.compile' if args.compile else ''}), "
          f"{result['gpu'] if args.device == 'cuda' else str(result['threads']) + ' threads'}, "
          f"{result['parameters']} parameters")
    print(f"median step {result['median_step_seconds']:.3f} s over {args.steps} steps (after "
          f"{args.warmup} warm-up): {result['tokens_per_s']:.0f} tokens/s  (loss "
          f"{result['first_loss']:.3f} -> {result['last_loss']:.3f}; load average "
          f"{' '.join(result['loadavg'])})")


if __name__ == "__main__":
    main()
