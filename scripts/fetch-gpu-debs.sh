#!/usr/bin/env bash
# Fetches, on this (Debian 12) machine, the Debian packages the CUDA build needs that the GPU
# machine's image lacks (oneDNN and the OpenCL headers its CMake config asks for, nlohmann-json,
# CLI11, GoogleTest/GoogleMock, SentencePiece's headers, zlib's headers with the library their
# libz.so link names), ~10 MB, into .gpu-debs/ (git-ignored).
# scripts/gpu-check.sh unpacks them there into a prefix inside its build tree, never over /.
# Nothing is installed here. docs/cuda.md.
#   scripts/fetch-gpu-debs.sh
set -euo pipefail
cd "$(dirname "$0")/.."
packages=(libdnnl2 libdnnl-dev ocl-icd-libopencl1 ocl-icd-opencl-dev opencl-c-headers
          opencl-clhpp-headers nlohmann-json3-dev libcli11-dev libgtest-dev libgmock-dev
          libsentencepiece0 libsentencepiece-dev zlib1g zlib1g-dev)
dir=.gpu-debs
rm -rf "$dir.tmp"
mkdir -p "$dir.tmp"
# apt's download sandbox user must be able to write the folder.
chmod 777 "$dir.tmp"
(cd "$dir.tmp" && apt-get download "${packages[@]}")
chmod 755 "$dir.tmp"
rm -rf "$dir"
mv "$dir.tmp" "$dir"
echo "fetch-gpu-debs: $(ls "$dir" | wc -l) packages, $(du -sh "$dir" | cut -f1) in $dir/"
