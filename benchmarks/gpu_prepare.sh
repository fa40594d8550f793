#!/usr/bin/env bash
# Prepares what benchmarks.run_gpu needs on a GPU machine that has no package index and no Fashion-MNIST:
# ONNX Runtime's CUDA provider and onnx2torch in .devcarry/p1..p5 (this workplace's ../shared/tools/gpu/prepare.sh)
# and the Fashion-MNIST IDX files in .devcarry/data (all git-ignored). Then six device calls, back to back (the
# machine goes back after 30 s idle; ignored files carried by an earlier call stay on it while it is warm):
#   1:        carry [".devcarry/data"], command: ls .devcarry/data
#   2..6:     carry [".devcarry/pK"] (K = call - 1), command: mkdir -p /tmp/ort && cp .devcarry/pK/part* /tmp/ort/
#   the sixth continues: && source .devcarry/p5/install-on-device.sh &&
#             ONNXPRUNE_FASHION_MNIST=$PWD/.devcarry/data python3 -m benchmarks.run_gpu --out "$OUT"
set -euo pipefail
cd "$(dirname "$0")/.."
bash ../shared/tools/gpu/prepare.sh
mkdir -p .devcarry/data
cp /usr/share/datasets/fashion-mnist/*-ubyte.gz .devcarry/data/
du -sh .devcarry/*
