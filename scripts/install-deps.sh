#!/usr/bin/env bash
# Installs every Debian package ecmoe needs (idempotent; run as root, or with sudo, on Debian 12).
#   scripts/install-deps.sh          build, test and data dependencies, gnuplot (report figures),
#                                    clang (the test command's second compiler)
#   scripts/install-deps.sh --bench  also PyTorch (the peer in benchmarks) on OpenBLAS
#   scripts/install-deps.sh --test   also what the Python package's extension and its tests need
#                                    (libtorch, python3-torch, pytest, pybind11; scripts/test.sh)
# Both options may be given.
# Prints one line per step; apt's and dpkg's output goes to build/install-deps.log (INSTALL_LOG
# overrides), whose last lines are printed if a step fails.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
log=${INSTALL_LOG:-$root/build/install-deps.log}

# ocl-icd-opencl-dev: oneDNN's CMake config looks for OpenCL (Debian builds it with the OpenCL
# GPU runtime) and stops the configure step without it; apt only pulls it in as a recommendation.
packages=(build-essential cmake pkg-config git libdnnl-dev ocl-icd-opencl-dev libomp-dev
          nlohmann-json3-dev libcli11-dev libsentencepiece-dev zlib1g-dev libgtest-dev libgmock-dev
          libbenchmark-dev python3 nodejs npm bible-kjv python3-pattern gnuplot-nox
          libopenmpi-dev openmpi-bin clang clang-format
          libclang-rt-14-dev)  # libclang-rt: libFuzzer (scripts/fuzz.sh), only recommended by clang
for arg in "$@"; do
  case "$arg" in
    # Without an optimised BLAS, python3-torch runs on the reference one (libblas3, ~3-4
    # GFLOP/s); libopenblas0-pthread takes over libblas.so.3 through Debian's alternatives.
    --bench) packages+=(python3-torch libopenblas0-pthread) ;;
    # The PyTorch extension (CMake's ECMOE_PYTHON, docs/python.md): libtorch's headers and CMake
    # config, python3-torch, Python's headers and pybind11 (torch/extension.h includes it);
    # pytest runs tests/python (ctest python_tests).
    --test) packages+=(libtorch-dev python3-torch python3-dev pybind11-dev python3-pytest) ;;
    *) echo "install-deps.sh: unknown argument '$arg' (--bench, --test)" >&2; exit 1 ;;
  esac
done

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
if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages already installed"
  exit 0
fi

mkdir -p "$(dirname "$log")"
: >"$log"
step() {  # step MESSAGE COMMAND...: one line on the terminal, the command's output in the log
  echo "install-deps: $1"
  if ! "${@:2}" >>"$log" 2>&1; then
    echo "install-deps: failed: $1; the last lines of $log:" >&2
    tail -n 25 "$log" >&2
    exit 1
  fi
}
sudo_cmd=()
[[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
apt=("${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -y -o Dpkg::Use-Pty=0)
echo "install-deps: ${#missing[@]} packages to install (log: $log)"
step "updating the package lists" "${apt[@]}" update
step "installing ${missing[*]} (minutes on a fresh machine)" "${apt[@]}" install --no-install-recommends "${missing[@]}"
echo "install-deps: done"
