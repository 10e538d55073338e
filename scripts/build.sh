#!/usr/bin/env bash
# Configures and builds ecmoe (Release) into build/; extra arguments go to cmake's configure step.
#   scripts/build.sh                      -> build/ecmoe and the tests
#   BUILD_DIR=build-asan scripts/build.sh -DECMOE_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${BUILD_DIR:-build}"
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build "$build_dir" -j"$(nproc)"
