"""PyTorch peer benchmark of the attention op alone (forward, then backward), for comparison with
`ecmoe bench attention`.

The same computation as the engine's op: qkv [batch, seq, 3·d] in fp32 (each row q | k | v,
head h at columns h·head_dim.. of each part), softmax(q·kᵀ/sqrt(head_dim)) · v per head, with or
without the causal mask, out [batch, seq, d]; backward from a fixed random dout to qkv. As a
user writes it: split and transpose qkv into [batch, heads, seq, head_dim] views, then
torch.nn.functional.scaled_dot_product_attention (PyTorch 2: on CUDA its fused kernels,
FlashAttention or cuDNN, whichever it picks), or where PyTorch has none (Debian's 1.13) the
plain formulation softmax(q·kᵀ·scale) · v. --precision bf16 runs it under torch.autocast (the
products' operands in bf16, as the engine's bf16 mode).

Timed: the forward, then the backward, each with the device synchronised, warm-up runs, then
the median of --repeats. FLOPs as `ecmoe bench attention` counts them (FlashAttention's
convention): 4·head_dim per visible (query, key) pair and head forward, 2.5 times that backward.
From the repository root:

    /usr/bin/python3 -m bench.bench_attention_torch --batch 32 --heads 4 --seq 128 --head-dim 64
    python3 -m bench.bench_attention_torch --device cuda --batch 64 --heads 12 --seq 512 --precision bf16

--compile also times it under torch.compile (the first calls compile; they are warm-up).
"""

import argparse
import json
import math
import statistics
import time

from bench import peer_blas

peer_blas.prepare_environment()  # before torch loads OpenBLAS

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def attention(qkv, args):
    b, t, _ = qkv.shape
    q, k, v = qkv.view(b, t, 3, args.heads, args.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
    if hasattr(F, "scaled_dot_product_attention"):
        o = F.scaled_dot_product_attention(q, k, v, is_causal=args.causal)
    else:
        s = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(args.head_dim))
        if args.causal:
            mask = torch.ones(t, t, dtype=torch.bool, device=qkv.device).triu(1)
            s = s.masked_fill(mask, float("-inf"))
        o = torch.matmul(torch.softmax(s.float(), dim=-1).to(v.dtype), v)
    return o.transpose(1, 2).reshape(b, t, args.heads * args.head_dim)


def formulation():
    return "sdpa" if hasattr(F, "scaled_dot_product_attention") else "math"


def synchronize(args):
    if args.device == "cuda":
        torch.cuda.synchronize()


def time_runs(fn, args, qkv, dout):
    fwd, bwd = [], []
    for i in range(args.warmup + args.repeats):
        qkv.grad = None
        synchronize(args)
        t0 = time.perf_counter()
        with torch.autocast(args.device, dtype=torch.bfloat16, enabled=args.precision == "bf16"):
            out = fn(qkv, args)
        synchronize(args)
        t1 = time.perf_counter()
        out.backward(dout)
        synchronize(args)
        t2 = time.perf_counter()
        if i >= args.warmup:
            fwd.append((t1 - t0) * 1e3)
            bwd.append((t2 - t1) * 1e3)
    return statistics.median(fwd), statistics.median(bwd), statistics.median(
        [a + b for a, b in zip(fwd, bwd)])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--causal", action="store_true")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compile", action="store_true",
                        help="also time it under torch.compile")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()
    for name in ("batch", "heads", "seq", "head_dim", "repeats"):
        if getattr(args, name) <= 0:
            parser.error("--%s must be positive" % name.replace("_", "-"))

    torch.set_num_threads(args.threads)
    blas = peer_blas.check_peer(quiet=args.json) if args.device == "cpu" else "cuda"
    gen = torch.Generator().manual_seed(7)
    d = args.heads * args.head_dim
    qkv = torch.randn(args.batch, args.seq, 3 * d, generator=gen).to(args.device)
    qkv.requires_grad_(True)
    dout = (1e-2 * torch.randn(args.batch, args.seq, d, generator=gen)).to(args.device)

    pairs = args.seq * (args.seq + 1) / 2 if args.causal else args.seq * args.seq
    fwd_flops = 4.0 * pairs * args.head_dim * args.batch * args.heads
    bwd_flops = 2.5 * fwd_flops
    result = {
        "batch": args.batch, "heads": args.heads, "seq": args.seq, "head_dim": args.head_dim,
        "causal": args.causal, "precision": args.precision, "device": args.device,
        "threads": args.threads, "repeats": args.repeats, "torch": torch.__version__,
        "formulation": formulation(), "blas": blas,
        "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None,
        "forward_flops": fwd_flops, "backward_flops": bwd_flops,
    }
    runs = [("eager", attention)]
    if args.compile:
        if not hasattr(torch, "compile"):
            raise SystemExit("--compile needs PyTorch 2 or later (this is %s)" % torch.__version__)
        runs.append(("compile", torch.compile(attention)))
    for label, fn in runs:
        fwd, bwd, total = time_runs(fn, args, qkv, dout)
        prefix = "" if label == "eager" else label + "_"
        result.update({prefix + "ms": total, prefix + "forward_ms": fwd,
                       prefix + "backward_ms": bwd,
                       prefix + "tflops": (fwd_flops + bwd_flops) / total * 1e-9})
        if not args.json:
            print("%-7s %s: forward+backward %.3f ms (forward %.3f, backward %.3f), %.2f TFLOP/s "
                  "(median of %d; %s, batch %d, %d heads of %d, seq %d%s, %s)" % (
                      label, result["formulation"], total, fwd, bwd,
                      (fwd_flops + bwd_flops) / total * 1e-9, args.repeats, args.precision,
                      args.batch, args.heads, args.head_dim, args.seq,
                      ", causal" if args.causal else "", args.device))
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
