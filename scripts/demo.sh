#!/usr/bin/env bash
# Installs everything, then runs the main job on the bundled default: the VGG-style Fashion-MNIST
# reference model pruned at filter:0.5 with ADAM-ADMM, verified, reported and benchmarked.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
mkdir -p out
# --force: a second run of the demo replaces its own outputs (compress refuses existing files without it)
.venv/bin/onnxprune compress models/fmnist_vgg.onnx out/fmnist_vgg.pruned.onnx --sparsity filter:0.5 \
  --data fashion-mnist --force --report out/fmnist_vgg.report.json --plot out/fmnist_vgg.report.png \
  --html out/fmnist_vgg.report.html
.venv/bin/onnxprune bench models/fmnist_vgg.onnx out/fmnist_vgg.pruned.onnx --batch 1 --batch 32
