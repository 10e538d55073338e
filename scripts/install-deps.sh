#!/usr/bin/env bash
# Installs every Debian package ecmoe needs (idempotent; run as root on Debian 12).
#   scripts/install-deps.sh          build, test and data dependencies, gnuplot (report figures)
#   scripts/install-deps.sh --bench  also PyTorch (the peer in benchmarks)
set -euo pipefail
packages=(build-essential cmake pkg-config git libdnnl-dev libomp-dev nlohmann-json3-dev
          libcli11-dev libsentencepiece-dev libgtest-dev libgmock-dev libbenchmark-dev
          python3 nodejs npm bible-kjv python3-pattern gnuplot-nox libopenmpi-dev openmpi-bin
          clang libclang-rt-14-dev)
if [[ "${1:-}" == "--bench" ]]; then
  packages+=(python3-torch)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# npm may come from a Node.js install outside Debian's packages; that one serves as well.
if command -v npm >/dev/null 2>&1; then
  filtered=()
  for p in "${missing[@]}"; do [[ "$p" == npm || "$p" == nodejs ]] || filtered+=("$p"); done
  missing=("${filtered[@]}")
fi
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  sudo_cmd=""
  [[ $(id -u) -ne 0 ]] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
