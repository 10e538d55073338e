#!/usr/bin/env bash
# Here, after a GPU session that ran the paper-gpu suite (`scripts/gpu-check.sh --suite`, issue 17):
# brings the runs it finished (its paper-gpu-runs.tar.gz, among the device tool's files) together
# with those committed before (docs/results/pretrain-gpu/runs) and writes the report from all of
# them: docs/results/pretrain-gpu.md, its figures, and every finished run's raw files in
# docs/results/pretrain-gpu/runs, which the next GPU session imports. Commit that folder and the
# report. A suite not yet finished gets a partial report that says so.
#   scripts/paper-gpu-report.sh [TAR ...]
#   scripts/paper-gpu-report.sh --quick TAR   a dry run of `gpu-check.sh --suite-quick`'s file: the
#                                            report goes to runs/compare/paper-gpu-quick/report.md
# ECMOE=path/to/ecmoe (default build/ecmoe).
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
if [[ ${1-} == --quick ]]; then
  quick=1
  shift
fi
ecmoe=${ECMOE:-build/ecmoe}
[[ -x $ecmoe ]] || { echo "paper-gpu-report: no $ecmoe: run scripts/build.sh first" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if ((quick)); then
  args=(compare --suite paper-gpu --quick --report-only --out runs/compare/paper-gpu-quick)
else
  args=(compare --suite paper-gpu --report-only --out runs/compare/paper-gpu
        --report docs/results/pretrain-gpu.md)
  [[ -d docs/results/pretrain-gpu/runs ]] && args+=(--import docs/results/pretrain-gpu/runs)
fi
i=0
for tarball in "$@"; do
  [[ -f $tarball ]] || { echo "paper-gpu-report: no file '$tarball'" >&2; exit 1; }
  i=$((i + 1))
  mkdir "$tmp/$i"
  # Only <run>/<file> members, as gpu-check.sh packs them.
  if tar -tzf "$tarball" | grep -qvE '^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$'; then
    echo "paper-gpu-report: '$tarball' holds more than <run>/<file> members: not unpacked" >&2
    exit 1
  fi
  tar -xzf "$tarball" -C "$tmp/$i" --no-same-owner
  args+=(--import "$tmp/$i")
done
"$ecmoe" "${args[@]}"
