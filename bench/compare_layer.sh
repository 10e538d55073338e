#!/usr/bin/env bash
# MoE layer forward+backward: ecmoe against the PyTorch peer (bench/bench_layer_torch.py), same
# shapes, same thread count, in one run. Builds nothing.
#
#   bench/compare_layer.sh [path/to/ecmoe]          (default build/ecmoe)
#
# Environment: THREADS (2), TOKENS (4096), D_MODEL (256), D_FF (1024), EXPERTS ("8 32 64"),
# CAPACITY (2), ROUTERS ("expert_choice top2"), REPEATS (5), ECMOE_ARGS (extra flags for
# `ecmoe bench layer`), PYTHON (/usr/bin/python3, Debian's python3-torch).
#
# Contract with `ecmoe bench layer`: it accepts --tokens --d-model --d-ff --experts
# --capacity-factor --router --repeats --json and prints one JSON object with at least "ms"
# (median forward+backward milliseconds). The same capacity factor goes to both sides: for
# expert choice it is the average number of experts per token, for top-k the capacity multiplier
# (capacity = round(c·k·n/e)). If ecmoe is missing or fails, its column reads n/a. The torch
# side reports three formulations (index, einsum: the classic pair; loop: no padding).
set -euo pipefail

ECMOE=${1:-build/ecmoe}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# The peers are modules of the bench package (bench/__init__.py), imported from the root.
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
THREADS=${THREADS:-2}
TOKENS=${TOKENS:-4096}
D_MODEL=${D_MODEL:-256}
D_FF=${D_FF:-1024}
EXPERTS=${EXPERTS:-"8 32 64"}
CAPACITY=${CAPACITY:-2}
ROUTERS=${ROUTERS:-"expert_choice top2"}
REPEATS=${REPEATS:-5}
ECMOE_ARGS=${ECMOE_ARGS:-}
PYTHON=${PYTHON:-/usr/bin/python3}

# Both sides get the same OpenMP thread count. The peer sets OPENBLAS_CORETYPE=SkylakeX (and
# ATEN_CPU_CAPABILITY=avx512) for itself on an AVX-512 CPU unless set: Debian's OpenBLAS does
# not recognise recent CPUs and picks an older kernel. bench/peer_blas.py prints the BLAS and
# kernel the peer runs on, and stops here if that is the reference BLAS (libblas3).
export OMP_NUM_THREADS=$THREADS
"$PYTHON" -m bench.peer_blas || exit 1

json_field() {  # json_field FIELD [FORMAT]: one JSON object on stdin -> the field, or n/a
  "$PYTHON" -c '
import json, sys
try:
    v = json.loads(sys.stdin.read().strip().splitlines()[-1])[sys.argv[1]]
    print(sys.argv[2] % float(v))
except Exception:
    print("n/a")' "$1" "${2:-%.2f}"
}

if [[ ! -x $ECMOE ]]; then
  echo "note: $ECMOE not found or not executable; the ecmoe column will read n/a" >&2
fi

printf '%-14s %4s %5s %10s %12s %13s %11s %17s %14s\n' router E C "ecmoe ms" "torch index" \
  "torch einsum" "torch loop" "torch_best/ecmoe" "slots ec/torch"
for router in $ROUTERS; do
  for e in $EXPERTS; do
    shape=(--tokens "$TOKENS" --d-model "$D_MODEL" --d-ff "$D_FF" --experts "$e"
           --capacity-factor "$CAPACITY" --router "$router" --repeats "$REPEATS")
    ecmoe_ms=n/a
    ecmoe_slots=n/a
    if [[ -x $ECMOE ]]; then
      # shellcheck disable=SC2086  # ECMOE_ARGS is a list of flags
      if out=$("$ECMOE" --threads "$THREADS" bench layer "${shape[@]}" --json $ECMOE_ARGS \
        2>/dev/null); then
        ecmoe_ms=$(json_field ms <<<"$out")
        ecmoe_slots=$(json_field slots %d <<<"$out")
      fi
    fi
    torch_out=$("$PYTHON" -m bench.bench_layer_torch "${shape[@]}" --threads "$THREADS" \
      --formulation all --json)
    index_ms=$(json_field index_ms <<<"$torch_out")
    einsum_ms=$(json_field einsum_ms <<<"$torch_out")
    loop_ms=$(json_field loop_ms <<<"$torch_out")
    torch_slots=$(json_field slots %d <<<"$torch_out")
    ratio=$("$PYTHON" -c '
import sys
try:
    e = float(sys.argv[1])
    print("%.2f" % (min(float(v) for v in sys.argv[2:] if v != "n/a") / e))
except Exception:
    print("n/a")' "$ecmoe_ms" "$index_ms" "$einsum_ms" "$loop_ms")
    printf '%-14s %4s %5s %10s %12s %13s %11s %17s %14s\n' "$router" "$e" "$CAPACITY" \
      "$ecmoe_ms" "$index_ms" "$einsum_ms" "$loop_ms" "$ratio" "$ecmoe_slots/$torch_slots"
  done
done
echo "(N=$TOKENS D=$D_MODEL F=$D_FF, $THREADS threads, median of $REPEATS forward+backward runs;" \
  "torch_best = fastest torch formulation; ratio > 1: ecmoe faster. torch index and einsum pad" \
  "token choice to capacity, torch loop and ecmoe compute only the routed (filled) slots," \
  "counted in the last column.)"
echo "(load average during the run: $(cut -d' ' -f1-3 /proc/loadavg); on a shared machine a load" \
  "above the core count makes every figure unreliable)"
