#!/usr/bin/env bash
# Installs the Python package ecmoe (ecmoe.torch.MoE: the engine's MoE layer as a PyTorch module;
# docs/python.md) for Debian's /usr/bin/python3: the packages it needs (scripts/install-deps.sh
# --test: libtorch, python3-torch, pybind11, ...), the extension and the ecmoe program
# (scripts/build.sh -DECMOE_PYTHON=ON, into build/python/ecmoe and build/ecmoe; the unit tests are
# not built), then a file ecmoe.pth in the user's site-packages that puts build/python on
# Python's path. Run again after changing the sources (it rebuilds); nothing is copied outside
# the repository except that one line.
#   scripts/install-python.sh              install, then check `import ecmoe.torch`
#   scripts/install-python.sh --uninstall  remove ecmoe.pth
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=/usr/bin/python3  # Debian's python3-torch belongs to the system interpreter
site=$("$python" -m site --user-site)
pth="$site/ecmoe.pth"
case "${1:-}" in
  --uninstall) rm -f "$pth"; echo "install-python: removed $pth"; exit 0 ;;
  "") ;;
  *) echo "install-python.sh: unknown argument '$1' (only --uninstall)" >&2; exit 1 ;;
esac
"$root/scripts/install-deps.sh" --test
BUILD_DIR="$root/build" TARGETS="ecmoe ecmoe_python" "$root/scripts/build.sh" -DECMOE_PYTHON=ON
mkdir -p "$site"
echo "$root/build/python" >"$pth.tmp"
mv "$pth.tmp" "$pth"
# From another folder, so the repository's python/ does not shadow the installed package.
(cd / && "$python" -c "import ecmoe.torch as t; t.MoE(8, 16, 2)(__import__('torch').zeros(4, 8))")
echo "install-python: ecmoe imports in $python (build/python via $pth)"
