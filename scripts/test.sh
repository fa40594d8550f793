#!/usr/bin/env bash
# The project's checks: install (idempotent), lint, type-check, tests; then the ONNX side alone, in a
# virtualenv without torch (.venv-onnx: the project without its train extra), where the torch tests skip.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
# test-only extras: the libraries whose tiny models tests/test_realworld.py exports (never runtime deps)
.venv/bin/python -m pip install -q -e ".[ci]"
.venv/bin/ruff check onnxprune tests models benchmarks
.venv/bin/ruff format --check onnxprune tests models benchmarks
.venv/bin/mypy onnxprune
.venv/bin/python -m pytest -q "$@"

PYTHON=${PYTHON:-python3}
if [ ! -x .venv-onnx/bin/python ]; then
  "$PYTHON" -m venv .venv-onnx
  .venv-onnx/bin/python -m pip install -q --upgrade pip
fi
.venv-onnx/bin/python -m pip install -q -e ".[cpu,dev,plot]"
if .venv-onnx/bin/python -c "import torch" 2>/dev/null; then
  echo "error: .venv-onnx has torch: the torch-free check would check nothing" >&2
  exit 1
fi
.venv-onnx/bin/python -m pytest -q -p no:cacheprovider "$@"
