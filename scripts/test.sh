#!/usr/bin/env bash
# The test command: installs dependencies (with the test extras: PyTorch for the Python package,
# whose pytest suite ctest runs as python_tests), builds, runs every test with ctest and the script
# checks (bench/test_peer_blas.py; bench/test_bench_attention_torch.py under /usr/bin/python3, whose
# Debian PyTorch it needs: the peers' own tests;
# scripts/check_includes.py), runs the CUDA backend's tests on cudaemu, the host emulation of CUDA
# (scripts/test-cudaemu.sh: no GPU needed), then builds everything again with clang and
# AddressSanitizer + UndefinedBehaviorSanitizer and runs the tests again (a second compiler and
# standard library also catch a missing #include), and fuzzes the file parsers for a minute each
# (scripts/fuzz.sh, docs/fuzzing.md). The sanitizer build is clang's: on 2 cores it took 12 min
# where g++'s took 28 (2026-12-03), and it is the clang build, which had been a separate
# compile-only build of 7 min.
# The last line says what ran.
#   scripts/test.sh                       everything
#   scripts/test.sh --no-asan             skip the sanitizer build and fuzzing (the clang build is
#                                         then compile only, unoptimised)
#   scripts/test.sh --no-asan --no-clang  skip both
#   scripts/test.sh --no-cudaemu          skip the CUDA tests on the emulation
set -euo pipefail
cd "$(dirname "$0")/.."
asan=1 clang=1 cudaemu=1
for a in "$@"; do
  case "$a" in
    --no-asan) asan=0 ;;
    --no-clang) clang=0 ;;
    --no-cudaemu) cudaemu=0 ;;
    *) echo "test.sh: unknown argument '$a' (--no-asan, --no-clang, --no-cudaemu)" >&2; exit 1 ;;
  esac
done
ran=()
summary() { local IFS=,; echo "${ran[*]:-nothing}" | sed 's/,/, /g'; }
trap 'echo "test.sh: FAILED; passed before the failure: $(summary)" >&2' ERR
scripts/install-deps.sh --test
scripts/build.sh
(cd build && ctest --output-on-failure -j"$(nproc)")
ran+=("gcc build and its $(cd build && ctest -N | sed -n 's/^Total Tests: //p') ctest tests")
out=$(python3 -m bench.test_peer_blas 2>&1) || { echo "$out" >&2; false; }
out=$(/usr/bin/python3 -m bench.test_bench_attention_torch 2>&1) || { echo "$out" >&2; false; }
python3 scripts/check_includes.py
ran+=("bench/test_peer_blas.py" "bench/test_bench_attention_torch.py" "scripts/check_includes.py")
if ((cudaemu)); then
  scripts/test-cudaemu.sh
  ran+=("the CUDA tests on cudaemu ($(cd build-cudaemu && ctest -N -L cuda | sed -n 's/^Total Tests: //p'))")
fi
if ((clang && !asan)); then
  # Unoptimised (-DCMAKE_BUILD_TYPE=None): a compile check needs no -O3.
  CXX=clang++ BUILD_DIR=build-clang scripts/build.sh -DCMAKE_BUILD_TYPE=None
  ran+=("clang build (compile only)")
fi
if ((asan)); then
  CXX=clang++ BUILD_DIR=build-asan scripts/build.sh -DECMOE_SANITIZE=ON \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo
  # Leak checking is off: LeakSanitizer cannot run under ptrace-restricted sandboxes.
  (cd build-asan && ASAN_OPTIONS=detect_leaks=0 ctest --output-on-failure -j"$(nproc)")
  ran+=("clang ASan+UBSan build and its ctest tests")
  scripts/fuzz.sh 60
  ran+=("fuzzing (scripts/fuzz.sh 60)")
fi
echo "test.sh: passed: $(summary)"
