#!/usr/bin/env bash
# Fuzzes the safetensors header reader and the config reader (docs/fuzzing.md): builds the
# libFuzzer targets tests/fuzz/fuzz_*.cpp with clang, ASan and UBSan into build-fuzz/ (only the
# libraries they need), then runs each for SECONDS (default 60) from a copy of its committed seed
# corpus and regression inputs, and prints the corpus size and executions per second. Fails on
# any finding (crash, sanitizer report, uncaught exception, timeout, memory limit); the input
# that caused it is left in build-fuzz/findings/<target>/.
#   scripts/fuzz.sh        60 s per target
#   scripts/fuzz.sh 600    longer
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
[[ "$seconds" =~ ^[1-9][0-9]*$ ]] || { echo "usage: scripts/fuzz.sh [SECONDS]" >&2; exit 1; }
targets=(safetensors config)
build_dir=build-fuzz

launcher=()
if command -v ccache >/dev/null 2>&1; then
  export CCACHE_BASEDIR="$PWD"
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
cmake -S . -B "$build_dir" -DCMAKE_CXX_COMPILER="${CXX:-clang++}" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DECMOE_FUZZ=ON -DECMOE_BUILD_TESTS=OFF "${launcher[@]}" \
  >/dev/null
cmake --build "$build_dir" -j"$(nproc)" --target "${targets[@]/#/fuzz_}"

# Leak checking is off as in scripts/test.sh (LeakSanitizer cannot run under ptrace).
export ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1 OMP_WAIT_POLICY=passive
failed=()
for t in "${targets[@]}"; do
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  cp tests/fuzz/corpus/"$t"/* "$work"/
  findings="$build_dir/findings/$t"
  mkdir -p "$findings"
  log="$build_dir/fuzz-$t.log"
  # Past findings first, each run once whole (a fuzzing run would truncate them to -max_len).
  for input in tests/fuzz/regressions/"$t"/*; do
    [[ -f "$input" ]] || continue
    if ! "$build_dir/tests/fuzz/fuzz_$t" -timeout=10 -rss_limit_mb=2048 "$input" \
        >"$log.regression" 2>&1; then
      echo "  $t: regression input $input fails; the report ends:"
      grep -E 'ERROR|SUMMARY|runtime error|what\(\)' "$log.regression" | tail -4 |
        cut -c1-200 | sed 's/^/    /'
      failed+=("$input")
    fi
  done
  echo "fuzzing $t for ${seconds} s (log: $log)"
  status=0
  "$build_dir/tests/fuzz/fuzz_$t" "$work" -dict="tests/fuzz/$t.dict" \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -max_len=16384 \
    -artifact_prefix="$findings/" -print_final_stats=1 >"$log" 2>&1 || status=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  echo "  $t: corpus $(find "$work" -type f | wc -l) inputs ($(du -sb "$work" | cut -f1) bytes)," \
       "${runs:-?} runs, ${rate:-?} exec/s"
  if ((status != 0)); then
    echo "  $t: FINDING (exit $status); the input is in $findings/, the report ends:"
    grep -E 'ERROR|SUMMARY|runtime error|what\(\)' "$log" | head -6 | cut -c1-200 |
      sed 's/^/    /'
    failed+=("$t")
  fi
  rm -rf "$work"
  trap - EXIT
done
if ((${#failed[@]})); then
  echo "fuzz.sh: findings in ${failed[*]}" >&2
  exit 1
fi
echo "fuzz.sh: no findings"
