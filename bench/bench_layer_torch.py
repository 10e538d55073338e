"""PyTorch peer benchmark of one MoE layer (forward + backward), for comparison with
`ecmoe bench layer`.

Two formulations of the same layer (router softmax in fp32, GELU experts W1 [e, d, f],
W2 [e, f, d], no biases):
  index  - gather each expert's tokens (index_select), torch.bmm over experts on [e, cap, d],
           GELU, bmm, gated index_add_ back; token choice pads every expert to its capacity.
  einsum - the Mesh-TensorFlow / GShard formulation: a one-hot dispatch tensor [n, e, cap] and a
           combine tensor (gates times dispatch), einsums for dispatch, experts and combine.
(--formulation all adds `loop`: a Python loop over experts on the filled slots only.)
Routers: expert_choice (k = round(c·n/e) tokens per expert), top1 / top2 (capacity
round(c·k·n/e) per expert, first choices before second choices, in position order, overflow
dropped, top-2 gates renormalised over both choices, load-balancing loss with weight 0.01), dense.

Timed: forward, loss = sum(y · R) (+ aux loss), backward to x and every weight. Warm-up runs,
then the median of --repeats runs. On an AVX-512 CPU, OPENBLAS_CORETYPE=SkylakeX is set before
torch loads unless already set (Debian's OpenBLAS otherwise picks an older kernel, up to ~5x
slower); the script refuses to run on the reference BLAS (bench/peer_blas.py). From the
repository root:

    /usr/bin/python3 -m bench.bench_layer_torch --tokens 4096 --experts 8 --router top2

--precision bf16 (default fp32): PyTorch's bf16 on the CPU, as --bf16-mode picks:
  autocast - fp32 tensors and weights, forward under torch.autocast('cpu', torch.bfloat16): the
             GEMMs (bmm, matmul, einsum's bmm) take bf16 operands and return bf16, as
             mixed-precision training runs; gradients reach the fp32 weights. The default: the
             same training as ecmoe's bf16, and not slower than `weights` here (docs/results.md,
             Mixed precision).
  weights  - x, the router and expert weights stored in bf16: every op, gradients included, in
             bf16. Less memory traffic, no fp32 master copy.
Both keep the router GEMM and softmax in fp32, as ecmoe does.

--device cuda: the same layer on the GPU (what `ecmoe bench layer --device cuda` is compared
with; scripts/gpu-check.sh runs both), autocast then on CUDA, timed with the device synchronised;
--compile adds each formulation under torch.compile (the first calls compile; they are warm-up).
"""

import argparse
import functools
import json
import math
import os
import statistics
import time

from bench import peer_blas

peer_blas.prepare_environment()  # before torch loads OpenBLAS

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

LOAD_BALANCE_WEIGHT = 0.01  # Switch / GShard default, as in the engine's token-choice config
DEFAULT_BF16_MODE = "autocast"  # see --bf16-mode and the module docstring


def round_half_away(v):
    return int(math.floor(v + 0.5))


def capacity(args, n):
    e = args.experts
    if args.router == "expert_choice":
        return max(1, min(n, round_half_away(args.capacity_factor * n / e)))
    k = 2 if args.router == "top2" else 1
    return max(1, min(n, round_half_away(args.capacity_factor * k * n / e)))


def storage_dtype(args):
    """bf16 weights mode stores x and the weights in bf16; otherwise fp32."""
    bf16_weights = args.precision == "bf16" and args.bf16_mode == "weights"
    return torch.bfloat16 if bf16_weights else torch.float32


def make_params(args, seed=0):
    g = torch.Generator().manual_seed(seed)
    n, d, f, e = args.tokens, args.d_model, args.d_ff, args.experts
    e_w = 1 if args.router == "dense" else e
    x = torch.randn(n, d, generator=g)
    wg = torch.randn(d, e, generator=g) * args.router_std
    w1 = torch.randn(e_w, d, f, generator=g) / math.sqrt(d)
    w2 = torch.randn(e_w, f, d, generator=g) / math.sqrt(f)
    r = torch.randn(n, d, generator=g)
    dt = storage_dtype(args)  # the same values, rounded when stored in bf16
    return tuple(t.to(device=args.device, dtype=dt) for t in (x, wg, w1, w2, r))


# ---------------------------------------------------------------------------------------------
# Routing: the same decisions for both formulations, returned as an expert-major slot table
# slot_token [e, cap] (n marks an empty slot) and slot_gate [e, cap] (0 for empty slots).


def route(args, x, wg):
    n, e = x.shape[0], args.experts
    dev = x.device
    with torch.autocast(dev.type, enabled=False):  # the router in fp32, as ecmoe's
        logits = x.float() @ wg.float()
    probs = torch.softmax(logits, dim=-1)
    cap = capacity(args, n)
    aux = x.new_zeros(())
    if args.router == "expert_choice":
        gates, tokens = probs.t().topk(cap, dim=1)  # [e, k]: each expert's best tokens
        return tokens, gates, aux
    k = 2 if args.router == "top2" else 1
    top_p, top_i = probs.topk(k, dim=1)  # [n, k]
    gate_all = top_p / top_p.sum(dim=1, keepdim=True) if k > 1 else top_p
    with torch.no_grad():
        # Slot position of each (token, choice): running count per expert, first choices first.
        positions, kept, used = [], [], torch.zeros(e, dtype=torch.long, device=dev)
        for c in range(k):
            onehot = F.one_hot(top_i[:, c], e)  # [n, e]
            pos = (onehot.cumsum(dim=0) - 1 + used) * onehot
            p = pos.sum(dim=1)
            positions.append(p)
            kept.append(p < cap)
            used += onehot.sum(dim=0)
        pos = torch.stack(positions, dim=1)  # [n, k]
        keep = torch.stack(kept, dim=1)
        slot = top_i * cap + pos
        slot_token = torch.full((e * cap,), n, dtype=torch.long, device=dev)
        slot_token[slot[keep]] = torch.arange(n, device=dev).unsqueeze(1).expand(n, k)[keep]
        # Which (token, choice) feeds each slot, for the gates (a differentiable gather).
        slot_src = torch.full((e * cap,), n * k, dtype=torch.long, device=dev)
        slot_src[slot[keep]] = torch.arange(n * k, device=dev).view(n, k)[keep]
        # Load balance: e · sum_i f_i · P_i, f from each token's first choice (no gradient).
        f = F.one_hot(top_i[:, 0], e).float().mean(dim=0)
    gate_flat = torch.cat([gate_all.reshape(-1), gate_all.new_zeros(1)])
    slot_gate = gate_flat[slot_src]
    aux = LOAD_BALANCE_WEIGHT * e * (f * probs.mean(dim=0)).sum()
    return slot_token.view(e, cap), slot_gate.view(e, cap), aux


# ---------------------------------------------------------------------------------------------
# Formulations.


def layer_index(args, x, wg, w1, w2):
    n, d = x.shape
    if args.router == "dense":
        return F.gelu(x @ w1[0]) @ w2[0], x.new_zeros(())
    slot_token, slot_gate, aux = route(args, x, wg)
    e, cap = slot_token.shape
    flat = slot_token.reshape(-1)
    if args.router == "expert_choice":  # no empty slots
        x_in = x.index_select(0, flat).view(e, cap, d)
    else:  # a zero row for padding
        x_in = torch.cat([x, x.new_zeros(1, d)]).index_select(0, flat).view(e, cap, d)
    out = torch.bmm(F.gelu(torch.bmm(x_in, w1)), w2)  # [e, cap, d]
    out = (out * slot_gate.to(out.dtype).unsqueeze(-1)).view(-1, d)
    y = x.new_zeros(n + 1, d).index_add_(0, flat, out.to(x.dtype))
    return y[:n], aux


def layer_einsum(args, x, wg, w1, w2):
    n, d = x.shape
    if args.router == "dense":
        return F.gelu(x @ w1[0]) @ w2[0], x.new_zeros(())
    slot_token, slot_gate, aux = route(args, x, wg)
    e, cap = slot_token.shape
    # dispatch[t, i, c] = 1 when slot c of expert i holds token t (the empty-slot index n is
    # one-hot encoded into an extra row that is cut off).
    dispatch = F.one_hot(slot_token, n + 1)[..., :n].permute(2, 0, 1).to(x.dtype)  # [n, e, cap]
    combine = dispatch * slot_gate.to(x.dtype).unsqueeze(0)
    x_in = torch.einsum("nec,nd->ecd", dispatch, x)
    h = F.gelu(torch.einsum("ecd,edf->ecf", x_in, w1))
    out = torch.einsum("ecf,efd->ecd", h, w2)
    y = torch.einsum("nec,ecd->nd", combine, out)
    return y.to(x.dtype), aux


def layer_loop(args, x, wg, w1, w2):
    """Not in the brief's pair: a Python loop over experts on the filled slots only (no padding),
    as an engine that computes only the routed tokens does. For expert choice it does the same
    work as `index`; for token choice it shows what the padding costs."""
    n, d = x.shape
    if args.router == "dense":
        return F.gelu(x @ w1[0]) @ w2[0], x.new_zeros(())
    slot_token, slot_gate, aux = route(args, x, wg)
    y = x.new_zeros(n, d)
    # unbind, not w1[i]: the backward of each indexing op would materialise a full-size zero
    # gradient of W1 / W2 per expert (64 experts: ~8 GB of memory traffic per step).
    parts = zip(slot_token.unbind(0), slot_gate.unbind(0), w1.unbind(0), w2.unbind(0))
    for tokens, gates, w1_i, w2_i in parts:
        filled = tokens < n
        tokens, gates = tokens[filled], gates[filled]
        if tokens.numel() == 0:
            continue
        out = F.gelu(x.index_select(0, tokens) @ w1_i) @ w2_i
        y.index_add_(0, tokens, (out * gates.to(out.dtype).unsqueeze(-1)).to(x.dtype))
    return y, aux


FORMULATIONS = {"index": layer_index, "einsum": layer_einsum, "loop": layer_loop}


def filled_slots(args):
    """Routed (token, expert) pairs, padding excluded: the work an unpadded engine does."""
    if args.router == "dense":
        return args.tokens
    x, wg, _, _, _ = make_params(args)
    with torch.no_grad():
        slot_token, _, _ = route(args, x, wg)
    return int((slot_token < args.tokens).sum())


def autocast(args):
    """torch.autocast to bf16 for --precision bf16 --bf16-mode autocast, else a no-op."""
    on = args.precision == "bf16" and args.bf16_mode == "autocast"
    return torch.autocast(args.device, dtype=torch.bfloat16, enabled=on)


def step(fn, args, params):
    x, wg, w1, w2, r = params
    for p in (x, wg, w1, w2):
        p.grad = None
    with autocast(args):
        y, aux = fn(args, x, wg, w1, w2)
    loss = (y.float() * r.float()).sum() + aux
    loss.backward()
    return y


def synchronize(args):
    if args.device == "cuda":
        torch.cuda.synchronize()


def time_formulation(fn, args, params):
    for _ in range(args.warmup):
        step(fn, args, params)
    times = []
    for _ in range(args.repeats):
        synchronize(args)
        t0 = time.perf_counter()
        step(fn, args, params)
        synchronize(args)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), times


def compiled(fn, args):
    """fn under torch.compile, args bound (a constant to the compiler)."""
    if not hasattr(torch, "compile"):
        raise SystemExit("--compile needs PyTorch 2 or later (this is %s)" % torch.__version__)
    bound = functools.partial(fn, args)
    return torch.compile(lambda _args, x, wg, w1, w2: bound(x, wg, w1, w2))


def check_agreement(args, names):
    """Both formulations must compute the same layer (y and every gradient); in bf16 to within
    bf16 rounding (their rounding points differ: 2^-8 relative per rounding, a few in a row)."""
    tol = 3e-2 if args.precision == "bf16" else 1e-4
    results = []
    for name in names:
        x, wg, w1, w2, r = make_params(args)
        params = [t.requires_grad_(True) for t in (x, wg, w1, w2)] + [r]
        y = step(FORMULATIONS[name], args, params)
        grads = [p.grad if p.grad is not None else torch.zeros(()) for p in params[:4]]
        results.append([y.detach()] + grads)
    for other, name in zip(results[1:], names[1:]):
        for a, b in zip(results[0], other):
            a, b = a.float(), b.float()
            scale = max(float(a.abs().max()), 1e-3)
            if float((a - b).abs().max()) > tol * scale:
                raise SystemExit("%s and %s disagree: max diff %g of %g" %
                                 (names[0], name, float((a - b).abs().max()), scale))


def add_shape_arguments(parser):
    """The layer's shape and router, with `ecmoe bench layer`'s defaults (also used by
    bench/bench_layer_module.py)."""
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--d-ff", type=int, default=1024)
    parser.add_argument("--experts", type=int, default=8)
    parser.add_argument("--capacity-factor", type=float, default=2.0)
    parser.add_argument("--router", default="expert_choice",
                        choices=["expert_choice", "top1", "top2", "dense"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_shape_arguments(parser)
    parser.add_argument("--formulation", default="both",
                        choices=["index", "einsum", "loop", "both", "all"],
                        help="both = index and einsum (the pair the comparison reports); "
                        "all adds loop")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                        help="as `ecmoe bench layer --precision`")
    parser.add_argument("--bf16-mode", default=DEFAULT_BF16_MODE, choices=["autocast", "weights"],
                        help="with --precision bf16: torch.autocast over fp32 weights, or bf16 "
                        "weights and activations throughout (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--compile", action="store_true",
                        help="also time each formulation under torch.compile")
    parser.add_argument("--router-std", type=float, default=0.5,
                        help="router weight init std (0.5 as `ecmoe bench layer`: with x ~ N(0, 1)"
                        " the routing, and so top-k's drops, match in kind)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-check", action="store_true",
                        help="skip the check that both formulations agree")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    blas = peer_blas.check_peer(quiet=args.json) if args.device == "cpu" else "cuda"
    names = {"both": ["index", "einsum"], "all": ["index", "einsum", "loop"]}.get(
        args.formulation, [args.formulation])
    if len(names) > 1 and not args.no_check:
        check_agreement(args, names)

    result = {
        "router": args.router, "tokens": args.tokens, "d_model": args.d_model,
        "d_ff": args.d_ff, "experts": args.experts, "capacity_factor": args.capacity_factor,
        "capacity": capacity(args, args.tokens) if args.router != "dense" else args.tokens,
        "threads": args.threads, "repeats": args.repeats, "torch": torch.__version__,
        "precision": args.precision,
        "bf16_mode": args.bf16_mode if args.precision == "bf16" else None,
        "slots": filled_slots(args),
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE", ""), "blas": blas,
        "device": args.device,
        "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None,
    }
    for name in names:
        x, wg, w1, w2, r = make_params(args)
        params = [t.requires_grad_(True) for t in (x, wg, w1, w2)] + [r]
        median, times = time_formulation(FORMULATIONS[name], args, params)
        result[name + "_ms"] = round(median, 3)
        result[name + "_runs_ms"] = [round(t, 3) for t in times]
        runs = [(name, median)]
        if args.compile:
            median, times = time_formulation(compiled(FORMULATIONS[name], args), args, params)
            result[name + "_compile_ms"] = round(median, 3)
            result[name + "_compile_runs_ms"] = [round(t, 3) for t in times]
            runs.append((name + " (torch.compile)", median))
        for label, ms in runs if not args.json else []:
            print(f"{label:6s} {ms:9.3f} ms  (median of {args.repeats}; {args.precision}"
                  f"{' ' + args.bf16_mode if args.precision == 'bf16' else ''}, "
                  f"{args.router}, n={args.tokens} d={args.d_model} f={args.d_ff} "
                  f"e={args.experts} c={args.capacity_factor}, {args.device}"
                  f"{'' if args.device == 'cuda' else ', %d threads' % args.threads})")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
