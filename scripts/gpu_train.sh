#!/usr/bin/env bash
# Continue the built-in world's four networks (seg, sketch, text, joint) on any one CUDA GPU: about ten minutes.
#
#   python -m unite_demo.recipe prepare .recipe   # first, where the studio's .venv is: caption read-outs and the diffusers wheel (15 MB)
#   bash scripts/gpu_train.sh OUT [MINUTES]       # on the CUDA machine, in a copy of the repository with .recipe/
#   python -m unite_demo.evaluate --faces-dir OUT --n 200 --drawn-n 200 --out reports/candidate
#   python -m unite_demo.recipe adopt OUT         # when the evaluation says the new weights are better
#
# The CUDA machine needs Python with torch, numpy, pillow, opencv and safetensors; it needs neither the
# internet nor MiniLM. diffusers is installed from .recipe/ into .recipe/site when it is missing. OUT gets
# four fp16 files (about 10 MB each) and record.json; resumable checkpoints go to $WORK (/tmp/recipe-work).
# MINUTES: minutes of training (default 8); flags after it go to `python -m unite_demo.recipe train`.
# PYTHON picks the interpreter (default python3), RECIPE the prepared folder (default .recipe), and
# DEVICE=cpu runs the same command on a CPU (the tests run it so, at tiny size).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: bash scripts/gpu_train.sh OUT [MINUTES] [more recipe train flags]}
MINUTES=${2:-8}
shift $(( $# < 2 ? $# : 2 ))
PY=${PYTHON:-python3}
CARRY=$(cd "${RECIPE:-.recipe}" && pwd)    # what `recipe prepare` wrote
DEVICE=${DEVICE:-cuda}      # cpu: the same call at tiny size, as the tests run it
export PYTHONPATH="$CARRY/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ! $PY -c "import diffusers" 2>/dev/null; then
  $PY -m pip install --quiet --disable-pip-version-check --no-deps --no-index --target "$CARRY/site" "$CARRY"/*.whl
fi
$PY -c "import cv2, diffusers, PIL, safetensors, torch; assert '$DEVICE' != 'cuda' or torch.cuda.is_available(), \
'no CUDA device'; print('torch', torch.__version__, 'diffusers', diffusers.__version__)"
$PY -m unite_demo.recipe train --captions "$CARRY/captions.safetensors" --out "$OUT" --work "${WORK:-/tmp/recipe-work}" \
  --minutes "$MINUTES" --device "$DEVICE" "$@"
