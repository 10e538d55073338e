#!/usr/bin/env bash
# Fetches, on this (Debian 12) machine, the Debian packages the CUDA build needs that the GPU
# machine's image lacks (oneDNN and the OpenCL headers its CMake config asks for, nlohmann-json,
# CLI11, GoogleTest/GoogleMock, SentencePiece's headers, zlib's headers and static library, and
# pkgconf for an image without pkg-config), ~10 MB, into .gpu-debs/ (git-ignored). Not zlib1g, the
# runtime: the GPU machine has its own libz.so.1, and zlib1g-dev's libz.so link (absolute, to
# Debian's /lib/x86_64-linux-gnu/libz.so.1.2.13) is pointed at it by gpu-check.sh.
# scripts/gpu-check.sh unpacks them there into a prefix inside its build tree, never over /.
# Nothing is installed here. docs/cuda.md.
#   scripts/fetch-gpu-debs.sh
set -euo pipefail
cd "$(dirname "$0")/.."
packages=(libdnnl2 libdnnl-dev ocl-icd-libopencl1 ocl-icd-opencl-dev opencl-c-headers
          opencl-clhpp-headers nlohmann-json3-dev libcli11-dev libgtest-dev libgmock-dev
          libsentencepiece0 libsentencepiece-dev zlib1g-dev pkgconf-bin libpkgconf3)
dir=.gpu-debs
rm -rf "$dir.tmp"
mkdir -p "$dir.tmp"
# apt's download sandbox user must be able to write the folder.
chmod 777 "$dir.tmp"
(cd "$dir.tmp" && apt-get download "${packages[@]}")
chmod 755 "$dir.tmp"
rm -rf "$dir"
mv "$dir.tmp" "$dir"
debs=("$dir"/*.deb)
echo "fetch-gpu-debs: ${#debs[@]} packages, $(du -sh "$dir" | cut -f1) in $dir/"
