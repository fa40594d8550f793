#!/usr/bin/env bash
# Sparsity structures on the VGG-style Fashion-MNIST reference (benchmarks/README.md, "Sparsity
# structures"). Element runs two at a time, channel runs one at a time, one torch thread each (2-core
# machine); full reports and models to benchmarks/out/structures/; the summarizer writes
# benchmarks/results/structures/ and the table:
#   bash benchmarks/run_structures.sh [all|element|channel]
#   python -m benchmarks.summarize_structures
# Usage: run_structures.sh [all|element|shape]   (shape: shape:0.5, 0.7 and 0.9, one at a time, so the
# dense-vs-lowered timing of each run is not disturbed by the other run's training)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=benchmarks/out/structures
mkdir -p "$OUT"
COMMON=(--data fashion-mnist --force --threads 1 --admm-epochs 1 --finetune-epochs 1 -q)
one() {  # name, then compress options
  local name=$1
  shift
  "$PY" -m onnxprune compress models/fmnist_vgg.onnx "$@" "${COMMON[@]}" -o "$OUT/$name.onnx" \
    --report "$OUT/$name.report.json" >"$OUT/$name.log" 2>&1 || echo "$name failed: see $OUT/$name.log"
}
WHAT=${1:-all}
if [[ $WHAT == all || $WHAT == element ]]; then
  one vgg_irregular0.5_admm -s irregular:0.5 --sparse-initializers &
  one vgg_irregular0.8_admm -s irregular:0.8 --sparse-initializers &
  wait
  one vgg_nm2of4_admm --config benchmarks/recipes/nm24_vgg.yaml &
  one vgg_nm2of4_magnitude --config benchmarks/recipes/nm24_vgg.yaml --method magnitude &
  wait
fi
if [[ $WHAT == all || $WHAT == nm14 ]]; then
  one vgg_nm1of4_admm --config benchmarks/recipes/nm14_vgg.yaml
fi
if [[ $WHAT == all || $WHAT == channel ]]; then  # surgery: latency is measured, so one run at a time
  one vgg_channel0.5_admm -s channel:0.5
  one vgg_channel0.7_admm -s channel:0.7
fi
if [[ $WHAT == all || $WHAT == shape ]]; then
  one vgg_shape0.5_admm -s shape:0.5 --emit-masked "$OUT/vgg_shape0.5_admm.masked.onnx"
  one vgg_shape0.7_admm -s shape:0.7 --emit-masked "$OUT/vgg_shape0.7_admm.masked.onnx"
  one vgg_shape0.9_admm -s shape:0.9 --emit-masked "$OUT/vgg_shape0.9_admm.masked.onnx"
fi
