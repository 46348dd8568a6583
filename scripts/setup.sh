#!/usr/bin/env bash
# Create .venv and install the Python requirements (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# requirements.txt is also what a Hugging Face Space installs: its --extra-index-url line sends a CPU
# Space's pip to PyTorch's CPU-only wheels. Here it is left out, so the set-up asks only pip's own
# indexes (and stays offline where those are local); the pins are the same.
grep -v '^--extra-index-url' requirements.txt > .venv/requirements-local.txt
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r .venv/requirements-local.txt
