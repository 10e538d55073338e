#!/usr/bin/env bash
# Configures and builds ecmoe (Release) into build/; extra arguments go to cmake's configure step.
#   scripts/build.sh                      -> build/ecmoe and the tests
#   BUILD_DIR=build-asan scripts/build.sh -DECMOE_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo
#   CXX=clang++ BUILD_DIR=build-clang scripts/build.sh
#   TARGETS="ecmoe ecmoe_python" scripts/build.sh   -> only those targets (and what they need)
# ccache, when installed, caches compiled objects (paths relative to the repository, so clones
# and worktrees share them); it is optional.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${BUILD_DIR:-build}"
launcher=()
if command -v ccache >/dev/null 2>&1; then
  export CCACHE_BASEDIR="$PWD"
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release "${launcher[@]}" "$@" >/dev/null
targets=()
for t in ${TARGETS:-}; do targets+=(--target "$t"); done
cmake --build "$build_dir" -j"$(nproc)" "${targets[@]}"
