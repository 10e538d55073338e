#!/usr/bin/env bash
# Fails when a C++ or CUDA file of src/, tests/ or python/csrc/ differs from what clang-format (.clang-format) makes of
# it, and names the files. ctest runs it as `format`; `clang-format -i FILE` fixes one.
set -euo pipefail
cd "${1:-$(dirname "$0")/..}"
command -v clang-format >/dev/null || { echo "check-format: clang-format is not installed (scripts/install-deps.sh)" >&2; exit 1; }
mapfile -t files < <(find src tests python/csrc -name '*.cpp' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' | grep -v '^tests/fixtures/' | sort)
bad=()
for f in "${files[@]}"; do
  clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
if ((${#bad[@]})); then
  echo "check-format: ${#bad[@]} of ${#files[@]} files are not clang-formatted: ${bad[*]}" >&2
  exit 1
fi
echo "check-format: ${#files[@]} files clang-formatted"
