#!/usr/bin/env bash
# The sd15 step benchmark (python -m unite_demo.bench_sd15) on any CUDA machine, in one command.
#
# The machine needs Python with torch (CUDA) and transformers; diffusers is installed from a wheel
# that `prepare` fetched, so the GPU machine itself needs no internet.
# 1. On a machine with pip access to PyPI, once:
#        bash scripts/gpu_bench_sd15.sh prepare
#    downloads the diffusers wheel (pure Python; the version requirements.txt pins) into tmp/whl/,
#    which .gitignore ignores.
# 2. Copy the repository, tmp/whl/ included, to the CUDA machine, and there:
#        OUT=/path/for/results bash scripts/gpu_bench_sd15.sh run
#    It installs the wheel into /tmp/unite-site (nothing else is touched) and runs the benchmark at
#    512x512 in bf16: our batched step eager and in one CUDA graph, the naive one-expert-at-a-time loop,
#    diffusers' MultiControlNet + CFG step, the sd15-dit step, and last our step compiled + graphed
#    (minutes of compilation; the figures before it are already written if it is stopped early).
#    The log and a JSON of the figures go to $OUT (default reports/tmp/, which git ignores):
#    bench_sd15.log, bench_sd15.json. PYTHON picks the interpreter (default python3).
#    Arguments after `run` replace the benchmark's, e.g. `run --device cuda --size 512 --iters 50`.
# A dry run of the same mechanics on a CPU, with the studio's .venv:
#        PYTHON=.venv/bin/python OUT=/tmp/dry bash scripts/gpu_bench_sd15.sh run --device cpu --arch tiny --iters 1
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
    ls "$WHEELS"/diffusers-*.whl >/dev/null 2>&1 || { echo "no wheel in $WHEELS: run '$0 prepare' first and copy $WHEELS along with the repository"; exit 2; }
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
