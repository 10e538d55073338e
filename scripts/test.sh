#!/usr/bin/env bash
# The test command: installs dependencies, builds, runs every test with ctest, then builds the
# unit tests with AddressSanitizer + UndefinedBehaviorSanitizer and runs them again, and fuzzes
# the file parsers for a minute each (scripts/fuzz.sh, docs/fuzzing.md).
#   scripts/test.sh            everything
#   scripts/test.sh --no-asan  skip the sanitizer builds (ASan and fuzzing)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
(cd build && ctest --output-on-failure -j"$(nproc)")
if [[ "${1:-}" != "--no-asan" ]]; then
  BUILD_DIR=build-asan scripts/build.sh -DECMOE_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo
  # Leak checking is off: LeakSanitizer cannot run under ptrace-restricted sandboxes.
  (cd build-asan && ASAN_OPTIONS=detect_leaks=0 ctest --output-on-failure -j"$(nproc)")
  scripts/fuzz.sh 60
fi
