#!/usr/bin/env bash
# Training throughput: `ecmoe bench train` against the PyTorch peer (bench/bench_train_torch.py),
# same config, same routers, same thread count, one after the other in one run. Builds nothing.
#
#   bench/compare_train.sh [path/to/ecmoe]          (default build/ecmoe)
#
# Environment: CONFIG (small), ROUTERS ("expert_choice top2"), PRECISIONS ("fp32 bf16": ecmoe's
# --set precision=P, the peer's --precision P, torch.autocast for bf16 unless TORCH_ARGS says
# --bf16-mode weights), THREADS (2), STEPS (10), WARMUP (2), REPEATS (1: rounds over all routers
# and precisions; the summary gives medians per router and precision, and bf16 speed-ups),
# DATA (synthetic: ecmoe trains on random tokens like the peer, via --set data.dir=<a folder that
# does not exist>; "config": ecmoe reads the config's prepared data if present), ECMOE_ARGS
# (extra flags for `ecmoe bench train`), TORCH_ARGS (extra flags for the peer, e.g.
# "--moe-impl index"), WAIT_IDLE (0: seconds to wait, before each run, for the machine to go
# idle: other processes below 0.25 cores over 2 s; on timeout the run starts anyway),
# PYTHON (/usr/bin/python3, Debian's python3-torch).
#
# Contract with `ecmoe bench train`: it accepts --config --set --steps --warmup --json, and with
# --json prints one JSON object with "tokens_per_second" (or "tokens_per_s"): batch_size·seq_len
# over the median step time after the warm-up. `--set model.moe.router=R` also sets R's default
# capacity factors and auxiliary-loss weights (top2: 1.25 in training, load balance 0.01). The
# peer trains the config ecmoe resolves (`ecmoe train --config C --set model.moe.router=R
# --print-config`, its --router R), so it needs ECMOE too. If ecmoe is missing or fails, both
# columns read n/a.
#
# Load: the machine may be shared. For each run the script measures the CPU time the whole
# machine spent (/proc/stat) minus the run's own CPU time, over the run's wall time: "other"
# is how many cores other processes kept busy meanwhile (0 is a clean measurement; with 2 cores
# and 2 threads, anything above ~0.2 slows the run being measured).
set -euo pipefail

ECMOE=${1:-build/ecmoe}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# The peers are modules of the bench package (bench/__init__.py), imported from the root.
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
CONFIG=${CONFIG:-small}
ROUTERS=${ROUTERS:-"expert_choice top2"}
PRECISIONS=${PRECISIONS:-"fp32 bf16"}
THREADS=${THREADS:-2}
STEPS=${STEPS:-10}
WARMUP=${WARMUP:-2}
REPEATS=${REPEATS:-1}
DATA=${DATA:-synthetic}
ECMOE_ARGS=${ECMOE_ARGS:-}
TORCH_ARGS=${TORCH_ARGS:-}
WAIT_IDLE=${WAIT_IDLE:-0}
PYTHON=${PYTHON:-/usr/bin/python3}

# Both sides get the same OpenMP thread count. The peer sets OPENBLAS_CORETYPE=SkylakeX (and
# ATEN_CPU_CAPABILITY=avx512) for itself on an AVX-512 CPU unless set: Debian's OpenBLAS does
# not recognise recent CPUs and picks an older kernel. bench/peer_blas.py prints the BLAS and
# kernel the peer runs on, and stops here if that is the reference BLAS (libblas3).
export OMP_NUM_THREADS=$THREADS
"$PYTHON" -m bench.peer_blas || exit 1

# measured OUTFILE CMD...: runs CMD with stdout to OUTFILE; prints "wall_s own_cores other_cores"
# (own / other: average cores busy with CMD / with everything else during the run).
measured() {
  "$PYTHON" - "$@" <<'EOF'
import os, resource, subprocess, sys, time
def busy():
    f = [int(v) for v in open("/proc/stat").readline().split()[1:]]
    return (sum(f) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
out = open(sys.argv[1], "w")
r0, b0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), busy(), time.perf_counter()
rc = subprocess.call(sys.argv[2:], stdout=out, stderr=subprocess.DEVNULL)
r1, b1, t1 = resource.getrusage(resource.RUSAGE_CHILDREN), busy(), time.perf_counter()
own = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
wall = t1 - t0
print("%.1f %.2f %.2f" % (wall, own / wall, max(0.0, (b1 - b0 - own) / wall)))
sys.exit(rc)
EOF
}

wait_idle() {  # waits up to WAIT_IDLE seconds for other processes to leave the CPUs alone
  ((WAIT_IDLE > 0)) || return 0
  "$PYTHON" - "$WAIT_IDLE" <<'EOF'
import os, sys, time
def busy():
    f = [int(v) for v in open("/proc/stat").readline().split()[1:]]
    return (sum(f) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK")
deadline = time.time() + float(sys.argv[1])
while True:
    b0 = busy(); time.sleep(2); cores = (busy() - b0) / 2
    if cores < 0.25:
        break
    if time.time() > deadline:
        print("note: machine still busy (%.1f cores) after %s s; measuring anyway"
              % (cores, sys.argv[1]), file=sys.stderr)
        break
EOF
}

json_field() {  # json_field FILE FORMAT FIELD...: the first field present in the last line
  "$PYTHON" - "$@" <<'EOF'
import json, sys
try:
    j = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
    v = next(j[k] for k in sys.argv[3:] if k in j)
    print(sys.argv[2] % v if not isinstance(v, str) else v)
except Exception:
    print("n/a")
EOF
}

if [[ ! -x $ECMOE ]]; then
  echo "note: $ECMOE not found or not executable; the ecmoe column will read n/a" >&2
fi
data_set=()
if [[ $DATA == synthetic ]]; then
  data_set=(--set "data.dir=/nonexistent/ecmoe-bench-synthetic")
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
summary=$tmp/summary

printf '%-14s %5s %3s %12s %12s %7s %13s %13s %9s\n' router prec "#" "ecmoe tok/s" \
  "torch tok/s" ratio "ecmoe other" "torch other" "loadavg"
for ((rep = 1; rep <= REPEATS; rep++)); do
  for router in $ROUTERS; do
    for precision in $PRECISIONS; do
      ecmoe_tps=n/a
      ecmoe_other=n/a
      if [[ -x $ECMOE ]]; then
        wait_idle
        # shellcheck disable=SC2086  # ECMOE_ARGS is a list of flags
        if m=$(measured "$tmp/ecmoe.json" "$ECMOE" --threads "$THREADS" bench train \
          --config "$CONFIG" --set "model.moe.router=$router" --set "precision=$precision" \
          "${data_set[@]}" \
          --steps "$STEPS" --warmup "$WARMUP" --json $ECMOE_ARGS); then
          ecmoe_tps=$(json_field "$tmp/ecmoe.json" %.0f tokens_per_second tokens_per_s)
          ecmoe_other=$(cut -d' ' -f3 <<<"$m")
        fi
      fi
      torch_tps=n/a
      torch_other=n/a
      wait_idle
      # shellcheck disable=SC2086  # TORCH_ARGS is a list of flags
      if m=$(measured "$tmp/torch.json" "$PYTHON" -m bench.bench_train_torch --ecmoe "$ECMOE" \
        --config "$CONFIG" --router "$router" --threads "$THREADS" --steps "$STEPS" \
        --warmup "$WARMUP" --precision "$precision" --json $TORCH_ARGS); then
        torch_tps=$(json_field "$tmp/torch.json" %.0f tokens_per_s tokens_per_second)
        torch_other=$(cut -d' ' -f3 <<<"$m")
      fi
      ratio=$("$PYTHON" -c '
import sys
try:
    print("%.2f" % (float(sys.argv[1]) / float(sys.argv[2])))
except Exception:
    print("n/a")' "$ecmoe_tps" "$torch_tps")
      load=$(cut -d' ' -f1 /proc/loadavg)
      printf '%-14s %5s %3s %12s %12s %7s %13s %13s %9s\n' "$router" "$precision" "$rep" \
        "$ecmoe_tps" "$torch_tps" "$ratio" "$ecmoe_other" "$torch_other" "$load"
      echo "$router $precision $ecmoe_tps $torch_tps $ratio" >>"$summary"
    done
  done
done

# Medians per router and precision (over the rounds), then bf16 over fp32 on each side from
# those medians (> 1: bf16 faster).
echo "medians over $REPEATS round(s):"
"$PYTHON" - "$summary" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    router, precision, *vals = line.split()
    rows.setdefault((router, precision), []).append(vals)
def med(vals):
    nums = [float(v) for v in vals if v != "n/a"]
    return statistics.median(nums) if nums else None
def fmt(v, f):
    return "n/a" if v is None else f % v
medians = {}
for (router, precision), runs in rows.items():
    cols = list(zip(*runs))
    medians[router, precision] = (med(cols[0]), med(cols[1]))
    print("%-14s %5s %3s %12s %12s %7s" % (router, precision, "med", fmt(med(cols[0]), "%.0f"),
                                          fmt(med(cols[1]), "%.0f"), fmt(med(cols[2]), "%.2f")))
routers = [r for r, p in medians if p == "bf16" and (r, "fp32") in medians]
if routers:
    print("bf16 speed-up (bf16 tokens/s / fp32 tokens/s, medians):")
    print("%-14s %8s %8s" % ("router", "ecmoe", "torch"))
    for r in routers:
        (e32, t32), (e16, t16) = medians[r, "fp32"], medians[r, "bf16"]
        print("%-14s %8s %8s" % (r, fmt(e16 / e32 if e16 and e32 else None, "%.2f"),
                                 fmt(t16 / t32 if t16 and t32 else None, "%.2f")))
EOF
echo "(config $CONFIG, $THREADS threads, tokens/s = batch·seq_len / median step over $STEPS" \
  "steps after $WARMUP warm-up; a step is batch, forward, loss, backward, clip, AdamW;" \
  "ecmoe data: $DATA, torch: random tokens; ratio = ecmoe / torch, target >= 2.)"
echo "(other = cores kept busy by other processes during that run; loadavg = 1-minute load" \
  "average after the row, which counts this benchmark's own ~$THREADS threads)"
