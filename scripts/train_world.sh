#!/usr/bin/env bash
# Train the whole built-in world, resuming whatever checkpoints/ already holds, then export to assets/experts.
#   bash scripts/train_world.sh BASE_MINUTES EXPERT_MINUTES [--device cuda]
# 1. a shared unconditional base on the unlabelled "base" split;
# 2. seg, sketch, text and joint, each fine-tuned from the base on its own disjoint split
#    (on a CPU the four run side by side, one thread each; on a GPU one after another);
# 3. EMA weights -> assets/experts/<name>.safetensors (fp16) with a model card and sample grid.
set -euo pipefail
cd "$(dirname "$0")/.."
BASE_MIN=${1:?base minutes}; EXPERT_MIN=${2:?expert minutes}; shift 2
PY=${PYTHON:-.venv/bin/python}
if [ "$BASE_MIN" != 0 ]; then
  $PY -m unite_demo.train --expert base --minutes "$BASE_MIN" "$@"
fi
FT=(--init checkpoints/base/last.safetensors --minutes "$EXPERT_MIN" --lr 5e-4 --batch 16 --warmup 100)
if [[ " $* " == *" cuda "* ]]; then
  for e in seg sketch text joint; do $PY -m unite_demo.train --expert "$e" "${FT[@]}" "$@"; done
else
  mkdir -p checkpoints
  for e in seg sketch text joint; do
    OMP_NUM_THREADS=1 $PY -m unite_demo.train --expert "$e" "${FT[@]}" "$@" > "checkpoints/$e.log" 2>&1 &
  done
  wait
fi
for e in seg sketch text joint; do $PY -m unite_demo.train --expert "$e" --export; done
