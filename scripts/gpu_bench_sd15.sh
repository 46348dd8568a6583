#!/usr/bin/env bash
# The sd15 step benchmark (python -m unite_demo.bench_sd15) on a GPU machine of the device tool,
# in one call.
#
# 1. Here, once (needs pip access to PyPI):
#        bash scripts/gpu_bench_sd15.sh prepare
#    The GPU machine has torch and transformers but not diffusers; this downloads the diffusers
#    wheel (pure Python; its other needs are there) into tmp/whl/, which .gitignore ignores.
# 2. With the device tool:
#        run(command="bash scripts/gpu_bench_sd15.sh run", carry=["tmp/whl"], timeout_s=570)
#    It installs the wheel into /tmp/unite-site and runs the benchmark at 512x512 in bf16: our
#    batched step eager and in one CUDA graph, the naive one-expert-at-a-time loop, diffusers'
#    MultiControlNet + CFG step, the sd15-dit step, and last our step compiled + graphed (minutes
#    of compilation; the figures before it are already written if the call runs out of time).
#    The log and a JSON of the figures land in $OUT (bench_sd15.log, bench_sd15.json).
#    Arguments after `run` replace the benchmark's, e.g. `run --device cuda --size 512 --iters 50`.
# Locally, a dry run of the same mechanics: PYTHON=.venv/bin/python OUT=/tmp/dry \
#        bash scripts/gpu_bench_sd15.sh run --device cpu --arch tiny --iters 1
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=tmp/whl
DIFFUSERS=diffusers==0.42.1  # the version requirements.txt pins
PY=${PYTHON:-python3}

case "${1:-run}" in
  prepare)
    mkdir -p "$WHEELS"
    "${PYTHON:-.venv/bin/python}" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp --platform manylinux2014_x86_64 -d "$WHEELS" "$DIFFUSERS"
    ls -l "$WHEELS"
    ;;
  run)
    shift || true
    args=("$@")
    [ ${#args[@]} -gt 0 ] || args=(--device cuda --size 512 --iters 30 --dit --compile)
    ls "$WHEELS"/diffusers-*.whl >/dev/null 2>&1 || { echo "no wheel in $WHEELS: run '$0 prepare' first and carry $WHEELS"; exit 2; }
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/unite-site \
      "$WHEELS"/*.whl
    export PYTHONPATH=/tmp/unite-site${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
    out=${OUT:-reports/tmp}
    mkdir -p "$out"
    { nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader 2>/dev/null || true
      "$PY" -c "import torch, diffusers; print('torch', torch.__version__, 'cuda', torch.version.cuda, '| diffusers', diffusers.__version__)"
    } | tee "$out/bench_sd15.log"
    set -o pipefail
    "$PY" -m unite_demo.bench_sd15 "${args[@]}" --json "$out/bench_sd15.json" 2>&1 | tee -a "$out/bench_sd15.log"
    ;;
  *)
    echo "usage: $0 prepare | run [benchmark arguments]"; exit 2 ;;
esac
