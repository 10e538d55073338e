#!/usr/bin/env bash
# The CUDA backend's tests without a GPU: builds the backend's own sources (src/cuda/*.cu, as C++)
# against cudaemu, the host emulation of CUDA in tests/cudaemu (docs/cuda.md "Without a GPU"), and
# runs every ctest test labelled cuda: the emulator's own tests, each CUDA op against the CPU op,
# the whole model and training. ECMOE_CUDA_TESTS_MUST_RUN=1: none may skip.
#   scripts/test-cudaemu.sh              build-cudaemu/, all the CUDA tests
#   scripts/test-cudaemu.sh -R Flash     only those matching (ctest -R)
#   CUDAEMU_ORDER_CHECK=1 scripts/test-cudaemu.sh   each launch twice, in two orders (races)
#   CUDAEMU_PERTURB=0 scripts/test-cudaemu.sh   the host's rounding of expf/logf/erff, cuBLAS's sums
#                                        and WMMA's (the default here is 1: moved as far as a GPU
#                                        may move them, so no test relies on the host's bits)
#   CUDAEMU_LAUNCH_LOG=$PWD/launches.tsv scripts/test-cudaemu.sh   each kernel's largest launch, for
#                                        scripts/check_cuda_launches.py (registers, launch bounds
#                                        and shared memory as nvcc compiled them)
#   BUILD_DIR=build-cudaemu-nofma CUDAEMU_FLAGS=-ffp-contract=off scripts/test-cudaemu.sh
#                                        the kernels without fused multiply-adds (tests that
#                                        expect the CPU's bits only because g++ fuses both alike)
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${BUILD_DIR:-build-cudaemu}"
# Only what the CUDA tests need: the program (tests run `ecmoe ... --device cuda`) and their binaries.
targets="ecmoe"
for f in tests/cuda/test_*.cpp tests/cudaemu/test_*.cpp; do targets+=" $(basename "$f" .cpp)"; done
TARGETS="$targets" BUILD_DIR="$build_dir" scripts/build.sh -DECMOE_CUDA_EMULATOR=ON -DECMOE_PYTHON=OFF \
  "-DECMOE_CUDAEMU_FLAGS=${CUDAEMU_FLAGS:-}"
cd "$build_dir"
CUDAEMU_PERTURB="${CUDAEMU_PERTURB:-1}" ECMOE_CUDA_TESTS_MUST_RUN=1 ctest -L cuda --output-on-failure -j"$(nproc)" "$@"
