#!/usr/bin/env bash
# `ecmoe train ARGS...` that does the expected thing when run again (scripts/main.sh's last step):
#   - no checkpoint in the run's output folder: trains;
#   - a checkpoint short of the run's steps (an interrupted run): resumes it (--resume);
#   - a finished run: says so, prints its evaluation again (`ecmoe eval`), and how to start over.
# The output folder and step count are the config's (configs/small.json: runs/small, 600 steps)
# after ARGS (--config, --set, --out). ARGS with --resume or --print-config go to train as they are.
#   scripts/train-or-resume.sh [--config NAME] [--set key=value ...] [--out DIR]
# Environment: ECMOE (build/ecmoe), PYTHON (python3; reads the config and checkpoint header).
set -euo pipefail
ecmoe=${ECMOE:-build/ecmoe}
python=${PYTHON:-python3}
for a in "$@"; do
  [[ $a == --resume || $a == --print-config ]] && exec "$ecmoe" train "$@"
done

# The resolved config's output folder and steps (a bad argument stops here, with train's error).
config=$("$ecmoe" train "$@" --print-config)
resolved=$("$python" -c 'import json, sys; c = json.load(sys.stdin); print(c["steps"]); print(c["out"])' \
  <<<"$config")
steps=$(head -n 1 <<<"$resolved")
out=$(tail -n +2 <<<"$resolved")
checkpoint=$out/checkpoint.safetensors
if [[ ! -e $checkpoint ]]; then
  exec "$ecmoe" train "$@"
fi

# The step a checkpoint holds: its safetensors header's __metadata__ "step" (docs/checkpoint-format.md).
root=$(cd "$(dirname "$0")/.." && pwd)
step=$(PYTHONPATH="$root" "$python" -c 'import sys
from tools.safetensors_io import read_header
print(int(read_header(sys.argv[1])[1]["step"]))' "$checkpoint") ||
  { echo "train-or-resume.sh: cannot read the step of $checkpoint" >&2; exit 1; }

if ((step < steps)); then
  echo "$out holds an interrupted run (step $step of $steps): resuming it"
  out_arg=(--out "$out")  # --resume without --config needs it
  for a in "$@"; do [[ $a == --out || $a == --out=* ]] && out_arg=(); done
  exec "$ecmoe" train "$@" "${out_arg[@]}" --resume
fi
echo "$out holds a finished run ($step steps); its evaluation:"
"$ecmoe" eval --checkpoint "$checkpoint"
echo "(to train it again from scratch: remove $out first; to train it longer: add --set steps=N;" \
  "for another run: --out DIR)"
