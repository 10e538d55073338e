#!/usr/bin/env python3
"""Step-time model of one MoE layer under expert parallelism (EP) and data parallelism (DP).

Inputs are measured (`ecmoe bench layer`, docs/scaling.md says how); the network is stated.
Weak scaling: every rank keeps n tokens, P ranks, e experts (P <= e under EP).
  compute      t_c: one rank's forward+backward of the layer on its n tokens (measured; expert
               choice balances the experts exactly, so each owner runs S = c·n rows, like one rank)
  EP exchange  4 Alltoallv of S·d fp32 rows per layer per step, each sending (P-1)/P of them
               off-rank as P-1 messages: 4·((P-1)·alpha + 4·S·d·(P-1)/P / beta), plus one
               count exchange ((P-1)·alpha)
  EP gradients none for the experts: each rank keeps only its own experts' parameters, gradients
               and AdamW moments, and an owner already holds its experts' whole gradient
               (what ecmoe does)
  DP gradients ring all-reduce of the replicated expert table: 2·(P-1)·alpha +
               2·(P-1)/P·(2·e·d·f·4 bytes)/beta
  memory       expert training state per rank (parameters, gradients, two AdamW moments, fp32):
               4·2·e·d·f·4 bytes / P under EP, all of it under DP
Efficiency = t_c / step time. Router and attention gradients (d·e + O(d²) per layer) are left out:
they are the same under EP and DP and small beside the experts.
"""
import argparse


def model(P, a, t_c):
    S = a.capacity * a.tokens
    row_bytes = 4.0 * S * a.d_model
    a2a = 5 * (P - 1) * a.alpha + 4 * row_bytes * (P - 1) / P / a.beta
    expert_bytes = 4.0 * 2 * a.experts * a.d_model * a.d_ff
    allreduce = 2 * (P - 1) * a.alpha + 2 * (P - 1) / P * expert_bytes / a.beta
    state_bytes = 4 * expert_bytes  # parameters, gradients, AdamW m and v
    return {"ep": t_c + a2a, "dp": t_c + allreduce, "a2a": a2a, "allreduce": allreduce,
            "ep_mb": state_bytes / P / 1e6, "dp_mb": state_bytes / 1e6}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--compute-ms", type=float, required=True, help="measured t_c, ms")
    p.add_argument("--tokens", type=int, default=4096, help="tokens per rank")
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--d-ff", type=int, default=1024)
    p.add_argument("--experts", type=int, default=256)
    p.add_argument("--capacity", type=float, default=2.0)
    p.add_argument("--gbytes-per-s", type=float, required=True, help="per-rank bandwidth")
    p.add_argument("--latency-us", type=float, required=True)
    p.add_argument("--ranks", default="8,16,32,64,128,256")
    a = p.parse_args()
    a.beta = a.gbytes_per_s * 1e9
    a.alpha = a.latency_us * 1e-6
    t_c = a.compute_ms * 1e-3
    print(f"{a.gbytes_per_s:g} GB/s, {a.latency_us:g} us; n={a.tokens}/rank, d={a.d_model}, "
          f"f={a.d_ff}, e={a.experts}, c={a.capacity:g}, t_c={a.compute_ms:g} ms\n")
    print("| ranks | all-to-all ms | EP step ms | EP eff. | EP expert state MB/rank "
          "| all-reduce ms | DP step ms | DP eff. | DP expert state MB/rank |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for P in [int(x) for x in a.ranks.split(",")]:
        m = model(P, a, t_c)
        print(f"| {P} | {m['a2a']*1e3:.2f} | {m['ep']*1e3:.2f} | {t_c/m['ep']:.0%} | "
              f"{m['ep_mb']:.1f} | {m['allreduce']*1e3:.2f} | {m['dp']*1e3:.2f} | "
              f"{t_c/m['dp']:.0%} | {m['dp_mb']:.0f} |")


if __name__ == "__main__":
    main()
