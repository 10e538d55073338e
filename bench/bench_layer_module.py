"""ecmoe.torch.MoE (the engine's layer as a PyTorch module) beside the best plain-PyTorch
formulation of the same layer (bench/bench_layer_torch.py's `index`), in one process, and
`ecmoe bench layer` on the same shape, to show what calling the engine through PyTorch costs.

Timed: forward, loss = sum(y · R) + aux loss, backward to x and every weight; the median of
--repeats runs after --warmup. fp32, and bf16: the module with precision="bf16" (bf16 expert GEMMs,
fp32 router), the peer under torch.autocast("cpu", torch.bfloat16). The engine runs as a
subprocess (no shell) with the same thread count; "overhead" is module ms − engine ms. Idle
OpenMP threads sleep in both (OMP_WAIT_POLICY=passive, the engine program's default, set here
before torch loads libgomp unless already set): spinning threads on a loaded machine would
charge the module for the load, not for the call.
From the repository root, after scripts/build.sh with Torch installed:

    PYTHONPATH=build/python /usr/bin/python3 -m bench.bench_layer_module [--repeats 5] [--json]
"""

import argparse
import json
import os
import statistics
import subprocess
import time

os.environ.setdefault("OMP_WAIT_POLICY", "passive")  # before libgomp loads (with torch)

from bench import bench_layer_torch as peer  # noqa: E402 (sets the peer's BLAS environment)

import torch  # noqa: E402

from ecmoe.torch import MoE, set_num_threads  # noqa: E402


def median_ms(fn, warmup, repeats):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def module_step(moe, x, r):
    x.grad = None
    for p in moe.parameters():
        p.grad = None
    out = moe(x)
    ((out.y * r).sum() + out.aux_loss).backward()


def time_module(args, precision):
    torch.manual_seed(0)
    lb = peer.LOAD_BALANCE_WEIGHT if args.router in ("top1", "top2") else 0.0
    moe = MoE(args.d_model, args.d_ff, args.experts, router=args.router,
              capacity_factor=args.capacity_factor, precision=precision,
              load_balance_weight=lb, router_init_std=args.router_std, seed=1)
    x = torch.randn(args.tokens, args.d_model, requires_grad=True)
    r = torch.randn(args.tokens, args.d_model)
    return median_ms(lambda: module_step(moe, x, r), args.warmup, args.repeats)


def time_peer(args, precision):
    x, wg, w1, w2, r = peer.make_params(args)
    params = [t.requires_grad_(True) for t in (x, wg, w1, w2)] + [r]

    def run():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            peer.step(peer.layer_index, args, params)
    return median_ms(run, args.warmup, args.repeats)


def time_engine(args, precision):
    command = [args.ecmoe, "--threads", str(args.threads), "bench", "layer",
               "--router", args.router, "--tokens", str(args.tokens),
               "--d-model", str(args.d_model), "--d-ff", str(args.d_ff),
               "--experts", str(args.experts), "--capacity-factor", str(args.capacity_factor),
               "--precision", precision, "--repeats", str(args.repeats),
               "--warmup", str(args.warmup), "--json"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"bench_layer_module: {' '.join(command)} failed: "
                         f"{done.stderr.strip()}")
    return json.loads(done.stdout.splitlines()[-1])["ms"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    peer.add_shape_arguments(parser)
    parser.add_argument("--router-std", type=float, default=0.5,
                        help="router init std, as `ecmoe bench layer` and the peer")
    parser.add_argument("--precision", default="both", choices=["fp32", "bf16", "both"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--ecmoe", default=os.path.join("build", "ecmoe"),
                        help="the engine's program (default build/ecmoe)")
    parser.add_argument("--json", action="store_true", help="one JSON object per precision")
    args = parser.parse_args()

    set_num_threads(args.threads)  # the engine's and torch's (one OpenMP runtime)
    blas = peer.peer_blas.check_peer(quiet=args.json)
    precisions = ["fp32", "bf16"] if args.precision == "both" else [args.precision]
    for precision in precisions:
        module = time_module(args, precision)
        torch_ms = time_peer(args, precision)
        engine = time_engine(args, precision)
        result = {"router": args.router, "tokens": args.tokens, "d_model": args.d_model,
                  "d_ff": args.d_ff, "experts": args.experts,
                  "capacity_factor": args.capacity_factor, "precision": precision,
                  "threads": args.threads, "repeats": args.repeats, "torch": torch.__version__,
                  "blas": blas, "omp_wait_policy": os.environ["OMP_WAIT_POLICY"],
                  "module_ms": round(module, 3), "torch_index_ms": round(torch_ms, 3),
                  "engine_ms": round(engine, 3), "overhead_ms": round(module - engine, 3)}
        if args.json:
            print(json.dumps(result))
        else:
            print(f"{precision}: ecmoe.torch.MoE {module:8.2f} ms | PyTorch index "
                  f"{torch_ms:8.2f} ms{' (autocast bf16)' if precision == 'bf16' else ''} | "
                  f"ecmoe bench layer {engine:8.2f} ms | overhead {module - engine:+.2f} ms  "
                  f"({args.router}, n={args.tokens} d={args.d_model} f={args.d_ff} "
                  f"e={args.experts} c={args.capacity_factor}, {args.threads} threads, median of "
                  f"{args.repeats})")


if __name__ == "__main__":
    main()
