#!/usr/bin/env bash
# MoE layer forward+backward: ecmoe against the PyTorch peer (bench/bench_layer_torch.py), same
# shapes, same thread count, in one run. Builds nothing.
#
#   bench/compare_layer.sh [path/to/ecmoe]          (default build/ecmoe)
#
# Environment: THREADS (2), TOKENS (4096), D_MODEL (256), D_FF (1024), EXPERTS ("8 32 64"),
# CAPACITY (2), ROUTERS ("expert_choice top2"), PRECISIONS ("fp32 bf16": both sides run each;
# the peer's bf16 is torch.autocast unless TORCH_ARGS says --bf16-mode weights), REPEATS (5),
# ECMOE_ARGS (extra flags for `ecmoe bench layer`), TORCH_ARGS (extra flags for the peer),
# PYTHON (/usr/bin/python3, Debian's python3-torch).
#
# Contract with `ecmoe bench layer`: it accepts --tokens --d-model --d-ff --experts
# --capacity-factor --router --repeats --precision --json and prints one JSON object with at
# least "ms" (median forward+backward milliseconds). The same capacity factor goes to both sides:
# for expert choice it is the average number of experts per token, for top-k the capacity multiplier
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
PRECISIONS=${PRECISIONS:-"fp32 bf16"}
REPEATS=${REPEATS:-5}
ECMOE_ARGS=${ECMOE_ARGS:-}
TORCH_ARGS=${TORCH_ARGS:-}
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

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
summary=$tmp/summary  # router E precision ecmoe_ms torch_best_ms

printf '%-14s %4s %5s %5s %10s %12s %13s %11s %17s %14s\n' router E C prec "ecmoe ms" \
  "torch index" "torch einsum" "torch loop" "torch_best/ecmoe" "slots ec/torch"
for router in $ROUTERS; do
  for e in $EXPERTS; do
    for precision in $PRECISIONS; do
      shape=(--tokens "$TOKENS" --d-model "$D_MODEL" --d-ff "$D_FF" --experts "$e"
             --capacity-factor "$CAPACITY" --router "$router" --repeats "$REPEATS"
             --precision "$precision")
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
      # shellcheck disable=SC2086  # TORCH_ARGS is a list of flags
      torch_out=$("$PYTHON" -m bench.bench_layer_torch "${shape[@]}" --threads "$THREADS" \
        --formulation all --json $TORCH_ARGS)
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
      best=$("$PYTHON" -c '
import sys
v = [float(x) for x in sys.argv[1:] if x != "n/a"]
print("%.2f" % min(v) if v else "n/a")' "$index_ms" "$einsum_ms" "$loop_ms")
      printf '%-14s %4s %5s %5s %10s %12s %13s %11s %17s %14s\n' "$router" "$e" "$CAPACITY" \
        "$precision" "$ecmoe_ms" "$index_ms" "$einsum_ms" "$loop_ms" "$ratio" \
        "$ecmoe_slots/$torch_slots"
      echo "$router $e $precision $ecmoe_ms $best" >>"$summary"
    done
  done
done
# bf16 over fp32 on each side, from the medians above (> 1: bf16 faster).
if [[ " $PRECISIONS " == *" fp32 "* && " $PRECISIONS " == *" bf16 "* ]]; then
  echo "bf16 speed-up (fp32 ms / bf16 ms; torch: its best formulation in each precision):"
  "$PYTHON" - "$summary" <<'EOF'
import sys
rows = {}
for line in open(sys.argv[1]):
    router, e, precision, ecmoe, torch = line.split()
    rows.setdefault((router, e), {})[precision] = (ecmoe, torch)
def ratio(a, b):
    try:
        return "%.2f" % (float(a) / float(b))
    except ValueError:
        return "n/a"
print("%-14s %4s %12s %12s %22s" % ("router", "E", "ecmoe", "torch", "torch_bf16/ecmoe_bf16"))
for (router, e), p in rows.items():
    if "fp32" in p and "bf16" in p:
        print("%-14s %4s %12s %12s %22s" % (router, e, ratio(p["fp32"][0], p["bf16"][0]),
                                            ratio(p["fp32"][1], p["bf16"][1]),
                                            ratio(p["bf16"][1], p["bf16"][0])))
EOF
fi
echo "(N=$TOKENS D=$D_MODEL F=$D_FF, $THREADS threads, median of $REPEATS forward+backward runs;" \
  "torch_best = fastest torch formulation; ratio > 1: ecmoe faster. torch index and einsum pad" \
  "token choice to capacity, torch loop and ecmoe compute only the routed (filled) slots," \
  "counted in the last column.)"
echo "(load average during the run: $(cut -d' ' -f1-3 /proc/loadavg); on a shared machine a load" \
  "above the core count makes every figure unreliable)"
