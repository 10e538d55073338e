#!/usr/bin/env bash
# A few bf16 training steps of a small encoder (expert choice) and decoder (top-2) with head_dim
# 64 and a partial attention tile (seq 160), three ways: the CUDA backend on the emulation with
# the flash attention kernels, the same with the cuBLAS attention, and the CPU. Prints each run's
# losses by step side by side: a change that should keep the GPU's bits (a kernel rewritten, a
# pass fused) must leave the first two lines of each model unchanged to the last digit, and all
# three stay within bf16 rounding of each other.
#   scripts/cudaemu-train-check.sh [STEPS]      (default 6; needs build/ and build-cudaemu/)
set -euo pipefail
cd "$(dirname "$0")/.."
steps="${1:-6}"
cpu=build/ecmoe emu=build-cudaemu/ecmoe
for b in "$cpu" "$emu"; do
  [[ -x "$b" ]] || { echo "cudaemu-train-check: $b is missing (scripts/build.sh, scripts/test-cudaemu.sh)" >&2; exit 1; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$cpu" prepare --corpus kjv --out "$work/data" --vocab-size 2000 > /dev/null
for kind in encoder decoder; do
  router=expert_choice
  [[ $kind == decoder ]] && router=top2
  args=(train --config tiny --set "data.dir=$work/data" --set "model.kind=$kind"
        --set model.d_model=128 --set model.n_heads=2 --set model.d_ff=256 --set model.seq_len=160
        --set "model.moe.router=$router" --set precision=bf16 --set "steps=$steps"
        --set batch_size=4 --set log_interval=1 --set "eval.interval=$steps"
        --set checkpoint_interval=0)
  run() {  # NAME ENV... -- COMMAND...: quiet, its output shown only if it fails
    local name=$1
    shift
    "$@" --out "$work/$name-$kind" > "$work/log" 2>&1 || { cat "$work/log" >&2; exit 1; }
  }
  run flash env ECMOE_CUDA_ATTENTION=flash "$emu" "${args[@]}" --device cuda
  run cublas env ECMOE_CUDA_ATTENTION=cublas "$emu" "${args[@]}" --device cuda
  run cpu "$cpu" "${args[@]}"
  for run in flash cublas cpu; do
    python3 - "$work/$run-$kind/metrics.jsonl" "$kind ($router), $run" <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
losses = [r["loss"] for r in rows if r.get("type") == "train"]
val = [r["loss"] for r in rows if r.get("type") == "eval"]
print(f"{sys.argv[2]:<34}", " ".join(f"{x:.5f}" for x in losses), "| val", " ".join(f"{x:.5f}" for x in val))
EOF
  done
done
