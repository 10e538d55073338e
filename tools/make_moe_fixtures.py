"""Parity fixtures for the C++ MoE layer, from an independent PyTorch implementation.

Run from the repository root with Debian's python3-torch:

    /usr/bin/python3 -m tools.make_moe_fixtures [--out DIR]

Writes one safetensors file per case to tests/fixtures/moe/ (or --out). Each file holds the
inputs (x, token_ids, weights, the upstream gradient R), the reference outputs (y, the routing
plan as (expert, token, gate) triples, the auxiliary losses) and the gradients of
L = sum(y * R) + weighted aux losses with respect to x and every weight. The config travels as
strings in "__metadata__" (listed after the tensors, which are in name order).

The layer is written here from its definition (docs: paper.md and the MoE layer's header
comments), not from the C++ code: routing decisions are made with plain Python sorts whose tie
rules are spelled out, the math runs in float64, and the stored tensors are float32. Inputs are
drawn with torch.manual_seed; a seed is accepted only if every routing decision is far from a
tie (so float32 arithmetic in C++ cannot flip it) and a float32 run of this same code makes the
same decisions.

Rounding convention for capacities: round half away from zero (C's lround), e.g. 6.5 -> 7.
"""

import argparse
import math
import os
import struct
import sys

import torch
import torch.nn.functional as F

from tools import safetensors_io

# Smallest gap between two scores whose order decides a routing choice. float32 probabilities
# near 1 carry ~6e-8 absolute error; 1e-5 leaves a margin of two orders of magnitude.
MIN_GAP = 1e-5

WEIGHTED_ROUTERS = ("expert_choice", "expert_choice_capped", "top1", "top2")


def round_half_away(v):
    return int(math.floor(v + 0.5)) if v >= 0 else -int(math.floor(-v + 0.5))


def f32(v):
    """The value a C++ float field holds after parsing str(v)."""
    return struct.unpack("<f", struct.pack("<f", v))[0]


def groups_of(n, group_size):
    size = n if group_size <= 0 else group_size
    return [(b, min(size, n - b)) for b in range(0, n, size)]


def ec_capacity(g, e, c):
    return max(1, min(g, round_half_away(f32(c) * g / e)))


def tc_capacity(g, e, k, cf):
    return max(1, min(g, round_half_away(f32(cf) * k * g / e)))


def capped_capacity(g, e, b, c):
    return min(ec_capacity(g, e, c), (g * b) // e)


class Margin:
    """Collects the smallest gap between scores that decided a routing choice."""

    def __init__(self):
        self.smallest = math.inf

    def gap(self, a, b):
        self.smallest = min(self.smallest, abs(a - b))


# ---------------------------------------------------------------------------------------------
# Routers. Each returns a list of (expert, token, gate) with gate a 0-d tensor (differentiable
# where the gate depends on the scores), plus a dict of facts for the metadata.


def route_expert_choice(p, cfg, margin):
    n, e = p.shape
    pv = p.detach().tolist()
    out = []
    for begin, size in groups_of(n, cfg["group_size"]):
        k = ec_capacity(size, e, cfg["capacity_factor"])
        for i in range(e):
            # Highest score first, ties to the lower token index.
            ranked = sorted(range(begin, begin + size), key=lambda t: (-pv[t][i], t))
            if k < size:
                margin.gap(pv[ranked[k - 1]][i], pv[ranked[k]][i])
            for t in sorted(ranked[:k]):
                out.append((i, t, p[t, i]))
    return out, {}


def token_ranking(pv_t, e):
    return sorted(range(e), key=lambda i: (-pv_t[i], i))


def route_token_choice(p, cfg, margin):
    n, e = p.shape
    k = cfg["k"]
    pv = p.detach().tolist()
    choices = []
    for t in range(n):
        ranked = token_ranking(pv[t], e)
        # The first k must be distinct from each other and from the (k+1)-th.
        for j in range(min(k, e - 1)):
            margin.gap(pv[t][ranked[j]], pv[t][ranked[j + 1]])
        choices.append(ranked[:k])
    renorm = cfg["renormalize_gates"] and k > 1
    out, dropped = [], 0
    for begin, size in groups_of(n, cfg["group_size"]):
        cap = tc_capacity(size, e, k, cfg["capacity_factor"])
        order = list(range(begin, begin + size))
        if cfg["batch_prioritized"]:
            top1 = lambda t: pv[t][choices[t][0]]
            order.sort(key=lambda t: -top1(t))  # stable: equal scores keep position order
            for a, b in zip(order, order[1:]):
                margin.gap(top1(a), top1(b))
        filled = [0] * e
        for r in range(k):  # every first choice before any second choice
            for t in order:
                i = choices[t][r]
                if filled[i] >= cap:
                    dropped += 1
                    continue
                filled[i] += 1
                gate = p[t, i]
                if renorm:  # the sum runs over all k choices, dropped ones included
                    gate = gate / sum(p[t, j] for j in choices[t])
                out.append((i, t, gate))
    return out, {"dropped_assignments": str(dropped)}


def route_dense(p, cfg, margin, n, token_ids):
    one = torch.tensor(1.0, dtype=torch.float64)
    return [(0, t, one) for t in range(n)], {}


def route_hash(p, cfg, margin, n, token_ids):
    one = torch.tensor(1.0, dtype=torch.float64)
    return [(int(token_ids[t]) % cfg["n_experts"], t, one) for t in range(n)], {}


def max_weight_capped(score, k, b):
    """Exact optimum of max sum S·A, rows (experts) sum to k, columns (tokens) sum to <= b,
    A in {0, 1}: a min-cost flow (source -> expert cap k -> token cap 1 -> sink cap b), solved by
    successive shortest paths with Bellman-Ford. The LP of capped expert choice at lambda -> 0
    has this integral optimum (the constraint matrix is totally unimodular).
    score: list [e][g] of floats. Returns (set of (i, t), objective)."""
    e, g = len(score), len(score[0])
    src, sink = e + g, e + g + 1
    nodes = e + g + 2
    # Edge list: to, capacity, cost, index of reverse edge
    graph = [[] for _ in range(nodes)]

    def add(u, v, cap, cost):
        graph[u].append([v, cap, cost, len(graph[v])])
        graph[v].append([u, 0, -cost, len(graph[u]) - 1])

    for i in range(e):
        add(src, i, k, 0.0)
        for t in range(g):
            if score[i][t] is not None:
                add(i, e + t, 1, -score[i][t])
    for t in range(g):
        add(e + t, sink, b, 0.0)
    flow = 0
    while flow < e * k:
        dist = [math.inf] * nodes
        prev = [None] * nodes
        dist[src] = 0.0
        for _ in range(nodes):
            changed = False
            for u in range(nodes):
                if dist[u] == math.inf:
                    continue
                for idx, (v, cap, cost, _) in enumerate(graph[u]):
                    if cap > 0 and dist[u] + cost < dist[v] - 1e-15:
                        dist[v] = dist[u] + cost
                        prev[v] = (u, idx)
                        changed = True
            if not changed:
                break
        if dist[sink] == math.inf:
            return None, -math.inf
        v = sink
        while v != src:
            u, idx = prev[v]
            graph[u][idx][1] -= 1
            graph[v][graph[u][idx][3]][1] += 1
            v = u
        flow += 1
    chosen = set()
    for i in range(e):
        for v, cap, cost, _ in graph[i]:
            if e <= v < e + g and cap == 0 and cost <= 0 and score[i][v - e] is not None:
                chosen.add((i, v - e))
    objective = sum(score[i][t] for i, t in chosen)
    return chosen, objective


def route_expert_choice_capped(p, cfg, margin):
    n, e = p.shape
    b = cfg["max_experts_per_token"]
    pv = p.detach().tolist()
    out = []
    for begin, size in groups_of(n, cfg["group_size"]):
        k = capped_capacity(size, e, b, cfg["capacity_factor"])
        score = [[pv[begin + t][i] for t in range(size)] for i in range(e)]
        chosen, best = max_weight_capped(score, k, b)
        # Uniqueness margin: forbidding any chosen pair must cost at least the margin.
        for i, t in chosen:
            score[i][t], saved = None, score[i][t]
            _, alt = max_weight_capped(score, k, b)
            score[i][t] = saved
            margin.gap(best, alt)
        for i in range(e):
            for t in sorted(t for (ii, t) in chosen if ii == i):
                out.append((i, begin + t, p[begin + t, i]))
    return out, {}


# ---------------------------------------------------------------------------------------------
# The layer.


def layer(cfg, x, token_ids, wg, w1, w2):
    """Returns y, plan (list of (expert, token, gate tensor)), aux dict, margin, facts."""
    n = x.shape[0]
    router = cfg["router"]
    margin = Margin()
    zero = torch.zeros((), dtype=x.dtype)
    aux = {"load_balance": zero, "z_loss": zero, "total": zero}
    if router in WEIGHTED_ROUTERS:
        logits = x @ wg
        p = torch.softmax(logits, dim=-1)
        if router == "expert_choice":
            plan, facts = route_expert_choice(p, cfg, margin)
        elif router == "expert_choice_capped":
            plan, facts = route_expert_choice_capped(p, cfg, margin)
        else:
            plan, facts = route_token_choice(p, cfg, margin)
        # Load balance per group: e · sum_i f_i · P_i, f from each token's argmax (no gradient).
        e = p.shape[1]
        pv = p.detach().tolist()
        lbs = []
        for begin, size in groups_of(n, cfg["group_size"]):
            f = torch.zeros(e, dtype=x.dtype)
            for t in range(begin, begin + size):
                ranked = token_ranking(pv[t], e)
                margin.gap(pv[t][ranked[0]], pv[t][ranked[1]])
                f[ranked[0]] += 1.0 / size
            lbs.append(e * (f * p[begin:begin + size].mean(dim=0)).sum())
        aux["load_balance"] = torch.stack(lbs).mean()
        aux["z_loss"] = (torch.logsumexp(logits, dim=-1) ** 2).mean()
        aux["total"] = (f32(cfg["load_balance_weight"]) * aux["load_balance"] +
                        f32(cfg["z_loss_weight"]) * aux["z_loss"])
    elif router == "dense":
        plan, facts = route_dense(None, cfg, margin, n, token_ids)
    elif router == "hash":
        plan, facts = route_hash(None, cfg, margin, n, token_ids)
    else:
        raise ValueError(router)

    y = torch.zeros_like(x)
    for i in range(w1.shape[0]):
        slots = [(t, gate) for (ii, t, gate) in plan if ii == i]
        if not slots:
            continue
        tokens = torch.tensor([t for t, _ in slots], dtype=torch.long)
        gates = torch.stack([g.to(x.dtype) for _, g in slots])
        hidden = F.gelu(x.index_select(0, tokens) @ w1[i])  # exact erf GELU
        y = y.index_add(0, tokens, gates[:, None] * (hidden @ w2[i]))
    return y, plan, aux, margin.smallest, facts


# ---------------------------------------------------------------------------------------------
# Cases.

SIZES = {
    "a": dict(n=13, d=8, f=12, e=4, ec_c=2.0),
    "b": dict(n=32, d=12, f=12, e=8, ec_c=1.25),
}


def cases():
    for size_name, s in SIZES.items():
        base = dict(n_tokens=s["n"], d_model=s["d"], d_ff=s["f"], n_experts=s["e"], group_size=0,
                    token_choice_k=0, renormalize_gates=True, batch_prioritized=False,
                    load_balance_weight=0.0, z_loss_weight=0.0, jitter=0.0,
                    max_experts_per_token=2)
        ec = dict(base, capacity_factor=s["ec_c"])
        tc = dict(base, capacity_factor=1.25, load_balance_weight=0.1, z_loss_weight=0.01)
        group = 5 if s["n"] == 13 else 8
        yield f"expert_choice_{size_name}", dict(ec, router="expert_choice")
        # Groups smaller than the batch (the last one shorter when n = 13), with aux losses on
        # so their per-group definition and gradient are exercised too.
        yield f"expert_choice_grouped_{size_name}", dict(
            ec, router="expert_choice", group_size=group, load_balance_weight=0.1,
            z_loss_weight=0.01)
        yield f"top1_{size_name}", dict(tc, router="top1")
        yield f"top2_{size_name}", dict(tc, router="top2")
        yield f"top2_prioritized_{size_name}", dict(tc, router="top2", batch_prioritized=True,
                                                     group_size=group)
        yield f"dense_{size_name}", dict(base, router="dense", capacity_factor=1.0)
        yield f"hash_{size_name}", dict(base, router="hash", capacity_factor=1.0)
        # The reference is the exact LP optimum; the engine's solver gets enough sweeps to
        # converge (its default of 100 may stop short on small groups: the C++ test checks that
        # case separately, for feasibility and near-optimality).
        yield f"expert_choice_capped_{size_name}", dict(ec, router="expert_choice_capped",
                                                         capped_max_iterations=1000)


def config_for(cfg):
    out = dict(cfg)
    out["k"] = 2 if cfg["router"] == "top2" else 1
    return out


def draw(cfg, seed):
    torch.manual_seed(seed)
    n, d, f, e = cfg["n_tokens"], cfg["d_model"], cfg["d_ff"], cfg["n_experts"]
    e_store = 1 if cfg["router"] == "dense" else e
    x = torch.randn(n, d)
    token_ids = torch.randint(0, 1000, (n,), dtype=torch.int32)
    # Router std 1/sqrt(d): logits of order 1, so scores are far from uniform and far apart.
    wg = torch.randn(d, e) / math.sqrt(d)
    w1 = torch.randn(e_store, d, f) / math.sqrt(d)
    w2 = torch.randn(e_store, f, d) / math.sqrt(f)
    r = torch.randn(n, d)
    return x, token_ids, wg, w1, w2, r


def plan_key(plan):
    return sorted((i, t) for i, t, _ in plan)


def build_case(name, cfg, first_seed):
    cfg = config_for(cfg)
    has_router = cfg["router"] in WEIGHTED_ROUTERS
    for seed in range(first_seed, first_seed + 1000):
        x32, ids, wg32, w132, w232, r32 = draw(cfg, seed)
        # float32 run: its routing must agree with the float64 one.
        _, plan32, _, _, _ = layer(cfg, x32, ids, wg32, w132, w232)
        leaves = [t.double().requires_grad_(True) for t in (x32, wg32, w132, w232)]
        x, wg, w1, w2 = leaves
        y, plan, aux, margin, facts = layer(cfg, x, ids, wg, w1, w2)
        if margin < MIN_GAP or plan_key(plan) != plan_key(plan32):
            continue
        if cfg["router"] == "expert_choice_capped":
            # Only interesting when the cap binds: uncapped EC would exceed it somewhere.
            _, ec_plan_check, _, _, _ = layer(dict(cfg, router="expert_choice"), x32, ids, wg32,
                                              w132, w232)
            per_token = [0] * cfg["n_tokens"]
            for _, t, _ in ec_plan_check:
                per_token[t] += 1
            if max(per_token) <= cfg["max_experts_per_token"]:
                continue
        # A case that tests an option must depend on it: the plan without it has to differ.
        variant = None
        if cfg["batch_prioritized"]:
            variant = dict(cfg, batch_prioritized=False)
        elif cfg["group_size"] > 0:
            variant = dict(cfg, group_size=0)
        if variant is not None:
            _, plan_variant, _, _, _ = layer(variant, x32, ids, wg32, w132, w232)
            if plan_key(plan_variant) == plan_key(plan32):
                continue
        loss = (y * r32.double()).sum() + aux["total"]
        loss.backward()
        break
    else:
        raise RuntimeError(f"{name}: no seed without near-ties")

    plan_sorted = sorted(plan, key=lambda a: (a[0], a[1]))
    tensors = {
        "x": x32,
        "token_ids": ids,
        "w1": w132,
        "w2": w232,
        "dy": r32,
        "y": y.detach().float(),
        "plan_expert": torch.tensor([a[0] for a in plan_sorted], dtype=torch.int32),
        "plan_token": torch.tensor([a[1] for a in plan_sorted], dtype=torch.int32),
        "plan_gate": torch.tensor([float(a[2]) for a in plan_sorted], dtype=torch.float32),
        "aux_load_balance": aux["load_balance"].detach().float().reshape(1),
        "aux_z_loss": aux["z_loss"].detach().float().reshape(1),
        "aux_total": aux["total"].detach().float().reshape(1),
        "loss": loss.detach().float().reshape(1),
        "grad_x": x.grad.float(),
        "grad_w1": w1.grad.float(),
        "grad_w2": w2.grad.float(),
    }
    if has_router:
        tensors["router"] = wg32
        tensors["grad_router"] = wg.grad.float()
    meta = {key: str(value).lower() if isinstance(value, bool) else str(value)
            for key, value in cfg.items() if key != "k"}
    meta.update(facts)
    meta.update({"case": name, "seed": str(seed), "min_decision_gap": repr(margin),
                 "generator": "tools/make_moe_fixtures.py (PyTorch " + torch.__version__ +
                 ", float64)"})
    return tensors, meta


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures", "moe"))
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    total = 0
    for index, (name, cfg) in enumerate(cases()):
        tensors, meta = build_case(name, cfg, args.seed + 1000 * index)
        path = os.path.join(args.out, name + ".safetensors")
        safetensors_io.write(path, {n: tensors[n] for n in sorted(tensors)}, meta,
                             metadata_last=True)
        size = os.path.getsize(path)
        total += size
        print(f"{name}: seed {meta['seed']}, {len(tensors['plan_token'])} slots, "
              f"min gap {float(meta['min_decision_gap']):.2e}, "
              f"loss {float(tensors['loss'][0]):.6f}, {size} bytes")
    print(f"total {total} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
