#!/usr/bin/env bash
# Installs everything onnxprune needs on a fresh machine (Debian/Ubuntu, Python >= 3.11):
# Fashion-MNIST from Debian's package, a virtualenv in .venv with torch and the project (editable).
# Idempotent: a second run only checks. Set PYTHON to choose the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && command -v apt-get >/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && SUDO="sudo"
  echo "installing Fashion-MNIST (dataset-fashion-mnist)..."
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi
if ! .venv/bin/python -c "import torch, torchvision" 2>/dev/null; then
  echo "installing torch (CPU-usable build)..."
  # x86-64 with Python 3.11: these releases are on the machine's disk; elsewhere pip fetches them.
  if [ "$(uname -m)" = "x86_64" ]; then
    .venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
  else
    .venv/bin/python -m pip install -q "torch==2.9.1" "torchvision==0.24.1"
  fi
fi
.venv/bin/python -m pip install -q -e ".[cpu,train,plot,dev]"
echo "installed: $(.venv/bin/onnxprune --version)"
