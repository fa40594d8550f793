#!/usr/bin/env bash
# The project's checks: install (idempotent), lint, type-check, tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/ruff check onnxprune tests models benchmarks
.venv/bin/ruff format --check onnxprune tests models benchmarks
.venv/bin/mypy onnxprune
.venv/bin/python -m pytest -q "$@"
