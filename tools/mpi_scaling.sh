#!/usr/bin/env bash
# 1 -> 2 ranks on this machine, side by side: `ecmoe bench train` on one config as
#   1 rank x 1 thread, 1 rank x T threads, and P ranks x 1 thread (experts sharded, batch split),
# interleaved over --repeats rounds so that machine noise hits every layout alike; prints each
# layout's median tokens/s, its ratio to 1 rank x 1 thread, the time in the expert all-to-all,
# waiting for the slowest rank after backward, the gradient all-reduce, and the training state
# (parameters, gradients, AdamW moments) one rank holds.
#   tools/mpi_scaling.sh [--config small] [--ranks 2] [--repeats 3] [--steps 4] [-- --set k=v ...]
set -euo pipefail
cd "$(dirname "$0")/.."
config=small ranks=2 repeats=3 steps=4 extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --config) config=$2; shift 2 ;;
    --ranks) ranks=$2; shift 2 ;;
    --repeats) repeats=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "mpi_scaling.sh: unknown argument '$1'" >&2; exit 1 ;;
  esac
done
binary=build/ecmoe
[[ -x $binary ]] || { echo "mpi_scaling.sh: $binary not built (scripts/build.sh)" >&2; exit 1; }
data=()
[[ -f data/english/manifest.json ]] && data=(--set data.dir=data/english)
bench=(bench train --config "$config" --steps "$steps" --warmup 1 --json "${data[@]}" "${extra[@]}")
mpirun=(mpirun --allow-run-as-root --oversubscribe --bind-to none -np "$ranks")
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
export OMP_WAIT_POLICY=passive
for ((r = 1; r <= repeats; r++)); do
  "$binary" --threads 1 "${bench[@]}" >>"$out/one-1"
  "$binary" --threads "$ranks" "${bench[@]}" >>"$out/one-$ranks"
  "${mpirun[@]}" "$binary" --threads 1 "${bench[@]}" >>"$out/ranks-$ranks"
done
python3 - "$out" "$ranks" "$config" <<'PY'
import json, statistics, sys, pathlib
out, P, config = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
rows = [("1 rank x 1 thread", "one-1"), (f"1 rank x {P} threads", f"one-{P}"),
        (f"{P} ranks x 1 thread", f"ranks-{P}")]
runs = {k: [json.loads(l) for l in (out / k).read_text().splitlines() if l.strip()] for _, k in rows}
base = statistics.median(r["tokens_per_second"] for r in runs["one-1"])
first = runs["one-1"][0]
print(f"config {config}, {first['tokens_per_step']:.0f} tokens per step, data {first['data']}, "
      f"{len(runs['one-1'])} runs each, medians")
print("| layout | tokens/s | vs 1x1 | all-to-all ms/step | wait ms/step | all-reduce ms/step "
      "| parameters on a rank | training state MB on a rank |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for name, key in rows:
    rs = runs[key]
    med = lambda f: statistics.median(f(r) for r in rs)
    tps = med(lambda r: r["tokens_per_second"])
    a2a = med(lambda r: r.get("all_to_all_seconds", 0) * 1e3)
    ar = med(lambda r: r.get("allreduce_seconds", 0) * 1e3)
    wait = med(lambda r: r.get("wait_before_allreduce_seconds", 0) * 1e3)
    on_rank = rs[0].get("parameters_on_rank", rs[0]["parameters"])
    mb = rs[0].get("training_state_bytes_on_rank", 0) / 1e6
    print(f"| {name} | {tps:.0f} | {tps / base:.2f}x | {a2a:.1f} | {wait:.1f} | {ar:.1f} "
          f"| {on_rank} | {mb:.1f} |")
PY
