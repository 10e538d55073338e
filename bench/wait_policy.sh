#!/usr/bin/env bash
# OpenMP wait policies, quiet and with a competing process: `ecmoe info`'s sgemm GFLOP/s and the
# median step of `ecmoe bench train --config tiny`, medians of REPEATS runs of each. Builds
# nothing; docs/training.md ("Sharing the cores") gives the numbers and the choice made.
#
#   bench/wait_policy.sh [path/to/ecmoe]          (default build/ecmoe)
#
# Environment: THREADS (2), REPEATS (5), STEPS (20: timed steps of the tiny config).
# Policies: "default" runs ecmoe with none of the variables set (so it re-executes itself with
# its choice, OMP_WAIT_POLICY=passive: core/threads.h), "libgomp" is the runtime's own default
# (~300,000 spins before sleeping; what ecmoe did before), "spin10k" GOMP_SPINCOUNT=10000,
# "passive" OMP_WAIT_POLICY=passive (sleep at once) set by hand. The competitor is `yes > /dev/null`, one process.
set -euo pipefail
ECMOE="${1:-build/ecmoe}"
THREADS="${THREADS:-2}"
REPEATS="${REPEATS:-5}"
STEPS="${STEPS:-20}"
declare -A ENVS=(
  [default]=""
  [libgomp]="ECMOE_WAIT_POLICY_SET=1"
  [spin10k]="ECMOE_WAIT_POLICY_SET=1 GOMP_SPINCOUNT=10000"
  [passive]="ECMOE_WAIT_POLICY_SET=1 OMP_WAIT_POLICY=passive"
)
clean=(-u OMP_WAIT_POLICY -u GOMP_SPINCOUNT -u ECMOE_WAIT_POLICY_SET)

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

sgemm() {  # policy -> GFLOP/s
  # shellcheck disable=SC2086
  env "${clean[@]}" ${ENVS[$1]} "$ECMOE" --threads "$THREADS" info |
    awk '/sgemm/ {print $3}'
}
step() {  # policy -> median step seconds of the tiny config
  # shellcheck disable=SC2086
  env "${clean[@]}" ${ENVS[$1]} "$ECMOE" --threads "$THREADS" bench train --config tiny \
    --set data.dir=/nonexistent --steps "$STEPS" --warmup 2 --json |
    sed 's/.*"median_step_seconds":\([0-9.e+-]*\).*/\1/'
}

competitor=""
trap '[ -n "$competitor" ] && kill "$competitor" 2>/dev/null' EXIT
printf "%-10s %-8s %14s %18s\n" load policy "sgemm GFLOP/s" "tiny step ms"
for load in quiet loaded; do
  competitor=""
  if [ "$load" = loaded ]; then
    yes >/dev/null &
    competitor=$!
  fi
  for policy in default libgomp spin10k passive; do
    g=$(for _ in $(seq "$REPEATS"); do sgemm "$policy"; done | median)
    s=$(for _ in $(seq "$REPEATS"); do step "$policy"; done | median)
    printf "%-10s %-8s %14.1f %18.2f\n" "$load" "$policy" "$g" "$(awk "BEGIN {print $s * 1000}")"
  done
  if [ -n "$competitor" ]; then kill "$competitor"; competitor=""; fi
done
