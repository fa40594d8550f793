"""The torchvision classification corpus: which models, at which input size, exported how, run how.

Shared by ``tests/test_corpus.py`` (a CI subset) and ``python -m benchmarks.run_corpus`` (every model
that fits).

* Models: ``torchvision.models.list_models(module=torchvision.models)`` (the classification models only:
  detection, segmentation, video, optical flow and quantized models live in submodules), built with
  ``get_model(name, weights=None, num_classes=10)`` (random weights, 10 classes) in eval mode.
* Input size (:func:`input_size`): 64x64 where the model allows it, else the smallest size that exports:
  224 for AlexNet and VGG (their adaptive average pool to 6x6 / 7x7 only exports when the feature map is
  a multiple of it) and MaxViT (7x7 partitions in every stage), 75 for Inception v3 (its minimum). ViTs
  are built for the input size (``image_size``, rounded up to a multiple of the patch size; their position
  embedding is sized by it). All-zero initialized weights (ViT's head and class token) are redrawn from
  N(0, 0.02), else the logits would not depend on the input.
* Export (:func:`export`): TorchScript exporter (``dynamo=False``), opset 17, input ``x``, output ``y``,
  dynamic batch dim ``n`` on both.
* Fits (:func:`fits`): at most :data:`MAX_PARAMS` parameters (with 10 classes). Larger models (ViT-L/H,
  RegNetY-128GF, ConvNeXt-L) do not fit the CI / 2-core budget: a few minutes each for export and
  onnx2torch import alone, and ViT-H's 2.5 GB of weights is over protobuf's 2 GB limit for one file.
* The compress call (:func:`compress_model`): ``filter:0.5``, ``data="random"`` (256 Gaussian samples,
  self-distillation to the dense model), ADMM then masked retraining with :data:`TRAIN` (a handful of
  steps: 4 ADMM rounds of 1 step, 4 retraining steps, batch 64), verification of pruned == masked. The CI
  test uses :data:`CI_TRAIN` (the ADMM epoch only) at 32x32 to stay within its budget.

Requested vs achieved MAC reduction (:func:`requested_reduction`, :func:`row`):

* requested: the reduction an *unconstrained* ``filter:0.5`` would give if every layer could lose half of
  its channels. Each Conv / ConvTranspose / Gemm / MatMul node keeps ``f_in * f_out`` of its MACs, where
  ``f_in = 0.5`` unless the layer's data input comes from the graph input without passing another layer
  (the image's 3 channels are not pruned) and ``f_out = 0.5`` unless the layer's output reaches a graph
  output without passing another layer (the logits are not pruned). A depthwise conv (``Cin / group = 1``)
  has ``f_in = 1``: halving its channels halves its MACs once; any other grouped conv has ``f_in = 0.5``
  (the per-group width halves at a fixed group count; onnxprune prunes whole groups instead, which
  halves the group count and keeps the per-group width: the gap on RegNet / ResNeXt). A MatMul of two
  activations (attention
  scores, attention times values) keeps 0.5 (its contracted or its output dim is a head dim). Requested
  reduction = original MACs / sum of the scaled MACs; for a plain CNN it is a little under 4x.
* achieved: original MACs / pruned MACs, both counted by :func:`onnxprune.graph.macs.count_costs` at the
  same input shape (``report.totals["mac_reduction"]``). The gap to the requested figure is what coupling
  (residual adds, concats, channel-wise LayerNorm, the logits) keeps.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import onnx

from ..config.settings import TrainOptions
from ..graph.load import normalize
from ..graph.macs import count_costs
from ..pipeline import CompressResult, compress

SPARSITY = "filter:0.5"
RATIO = 0.5
NUM_CLASSES = 10
DEFAULT_SIZE = 64
OPSET = 17
MAX_PARAMS = 150_000_000
NOT_FIT = f"does not fit the CI / 2-core budget (over {MAX_PARAMS // 1_000_000}M parameters)"

# the smallest input that exports (see the module docstring); everything else runs at the size asked for
MIN_SIZE = {"alexnet": 224, "vgg": 224, "maxvit": 224, "inception_v3": 75}
# families whose constructor takes the input size (ViT: the position embedding is sized by it)
SIZED_BY_CONSTRUCTOR = ("vit_",)

# the training batch where 64 does not fit 24 GB (MaxViT-T at 224: 20 GB resident at 64, OOM-killed)
MAX_BATCH = {"maxvit": 8}

# a handful of steps: 256 random samples / batch 64 = 4 steps per epoch, a Z-step after each
TRAIN = TrainOptions(admm_epochs=1, finetune_epochs=1, round_iters=1, batch_size=64)
# the CI test: the same ADMM epoch, no retraining (training is most of the time; pruned == masked is
# checked on the ADMM-pruned weights just the same)
CI_TRAIN = TrainOptions(admm_epochs=1, finetune_epochs=0, round_iters=1, batch_size=64)

# Models the library does not prune yet: name -> reason. test_corpus.py xfails them (strict) and
# run_corpus.py reports them as "xfail: reason".
_DIVERGES = (
    "train: self-distillation diverges to NaN weights ('channel norms are not finite' in the first Z-step): "
    "with random weights and frozen BN the logits are ~1e4 (ResNet-101) / ~4e6 (ResNet-152), the MSE to "
    "the teacher is unnormalized, and after the first Adam steps the loss and gradients overflow"
)
XFAIL: dict[str, str] = {
    "resnet101": _DIVERGES,
    "resnet152": _DIVERGES,
}

LAYER_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
_SHAPE_OPS = frozenset({"Shape", "Size"})  # their outputs are shape arithmetic, not activations


def list_models() -> list[str]:
    """Every torchvision classification model, sorted."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def _family_value(name: str, table: dict[str, int], default: int) -> int:
    for prefix, value in table.items():
        if name.startswith(prefix):
            return value
    return default


def input_size(name: str, size: int = DEFAULT_SIZE) -> int:
    """``size``, or the model's smallest exportable size if larger (ViT: rounded up to the patch size)."""
    size = max(size, _family_value(name, MIN_SIZE, 0))
    if name.startswith(SIZED_BY_CONSTRUCTOR):
        patch = int(name.rsplit("_", 1)[1])
        size = -(-size // patch) * patch
    return size


def input_shape(name: str, size: int = DEFAULT_SIZE) -> tuple[int, int, int, int]:
    s = input_size(name, size)
    return (1, 3, s, s)


def build(name: str, size: int = DEFAULT_SIZE, device: str | None = None) -> Any:
    """The model with random weights and 10 classes, in eval mode (``device='meta'``: no memory)."""
    import torch
    import torchvision

    kwargs = {"image_size": input_size(name, size)} if name.startswith(SIZED_BY_CONSTRUCTOR) else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GoogLeNet / Inception: init_weights FutureWarning
        if device is not None:
            with torch.device(device):
                return torchvision.models.get_model(name, weights=None, num_classes=NUM_CLASSES, **kwargs)
        model = torchvision.models.get_model(name, weights=None, num_classes=NUM_CLASSES, **kwargs).eval()
    # ViT zero-initializes its head (and class token): the logits would be 0 whatever the input
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2 and not p.any():
                p.normal_(0.0, 0.02)
    return model


def param_count(name: str) -> int:
    """Parameters of the model with 10 classes, counted on the meta device (no memory) where it builds."""
    try:
        model = build(name, device="meta")
    except NotImplementedError:  # RegNet computes its widths with tensors and reads them back
        model = build(name)
    return sum(p.numel() for p in model.parameters())


def fits(name: str) -> str | None:
    """None when the model fits the budget, else the reason it does not."""
    return NOT_FIT if param_count(name) > MAX_PARAMS else None


def export(name: str, directory: str | Path, size: int = DEFAULT_SIZE, seed: int = 0) -> Path:
    """Export the model to ``directory/<name>.onnx`` (dynamic batch dim) and return the path."""
    import torch

    torch.manual_seed(seed)
    model = build(name, size)
    path = Path(directory) / f"{name}.onnx"
    x = torch.randn(*input_shape(name, size))
    # not under no_grad: nn.MultiheadAttention would take its fused fast path, which does not export
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (x,),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "n"}, "y": {0: "n"}},
        )
    return path


def compress_model(
    path: str | Path,
    shape: Sequence[int],
    *,
    bench_batches: Sequence[int] = (),
    bench_repeats: int = 50,
    threads: int | None = None,
    train: TrainOptions = TRAIN,
) -> CompressResult:
    """The corpus compress call: ``filter:0.5`` on random data with a handful of steps."""
    opts = train.merged(TrainOptions(threads=threads))
    cap = _family_value(Path(path).stem, MAX_BATCH, 0)
    if cap:
        opts = opts.merged(TrainOptions(batch_size=cap))
    return compress(
        path,
        SPARSITY,
        data="random",
        input_shape=tuple(shape),
        train=opts,
        seed=0,
        bench_batches=tuple(bench_batches),
        bench_repeats=bench_repeats,
        quiet=True,
    )


# -- requested MAC reduction -------------------------------------------------------------------------
def _layer_edges(model: onnx.ModelProto) -> tuple[set[str], set[str]]:
    """Names of the layer nodes fed by the graph input, and of those that feed a graph output,
    without another layer in between (Shape/Size outputs and initializers are not followed)."""
    g = model.graph
    inits = {t.name for t in g.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    producer: dict[str, onnx.NodeProto] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
        for o in n.output:
            producer[o] = n

    first: set[str] = set()
    seen: set[str] = set()
    stack = [vi.name for vi in g.input if vi.name not in inits]
    while stack:
        t = stack.pop()
        for n in consumers.get(t, []):
            if n.op_type in LAYER_OPS:
                first.add(n.name)
            elif n.op_type not in _SHAPE_OPS and n.name not in seen:
                seen.add(n.name)
                stack.extend(n.output)

    last: set[str] = set()
    seen = set()
    stack = [vi.name for vi in g.output]
    while stack:
        t = stack.pop()
        n = producer.get(t)
        if n is None or n.name in seen or n.op_type in _SHAPE_OPS:
            continue
        seen.add(n.name)
        if n.op_type in LAYER_OPS:
            last.add(n.name)
        else:
            stack.extend(i for i in n.input if i and i not in inits)
    return first, last


def requested_reduction(
    model: onnx.ModelProto, shape: Sequence[int] | Mapping[str, Sequence[int]], ratio: float = RATIO
) -> dict[str, float]:
    """MACs of the model and of an ideal ``filter:ratio`` of it (see the module docstring); ``shape``
    is the first input's, or every data input's by name."""
    model = normalize(model).model
    fixed = {k: tuple(v) for k, v in shape.items()} if isinstance(shape, Mapping) else tuple(shape)
    cost = count_costs(model, fixed)
    inits = {t.name: tuple(t.dims) for t in model.graph.initializer}
    first, last = _layer_edges(model)
    kept = 1.0 - ratio
    total, ideal = 0, 0.0
    for n in model.graph.node:
        c = cost.nodes.get(n.name)
        if n.op_type not in LAYER_OPS or c is None:
            continue
        weight = inits.get(n.input[1]) if len(n.input) > 1 else None
        if n.op_type == "MatMul" and weight is None and n.input[0] not in inits:
            factor = kept  # activation x activation: a head dim shrinks
        else:
            f_in = 1.0 if n.name in first else kept
            if n.op_type == "Conv" and weight is not None and weight[1] == 1:
                group = next((a.i for a in n.attribute if a.name == "group"), 1)
                if group > 1:
                    f_in = 1.0  # depthwise: one input channel per group whatever the width
            f_out = 1.0 if n.name in last else kept
            factor = f_in * f_out
        total += c.macs
        ideal += c.macs * factor
    return {
        "macs": total,
        "macs_ideal": ideal,
        "reduction": total / ideal if ideal else math.inf,
    }


# -- one benchmark row --------------------------------------------------------------------------------
def row(name: str, result: CompressResult, model: onnx.ModelProto, wall_s: float) -> dict[str, Any]:
    """The corpus-table row of one compressed model (``model``: the exported original)."""
    r = result.report
    shape = r.config["input_shape"]
    req = requested_reduction(model, shape)
    speed = (r.latency or {}).get("speedups", [])
    b1 = next((s for s in speed if s["batch"] == 1), None)
    return {
        "model": name,
        "status": "ok",
        "input_size": shape[-1],
        "params": r.totals["params_before"],
        "params_after": r.totals["params_after"],
        "groups_prunable": sum(1 for g in r.groups if g["prunable"]),
        "groups_total": len(r.groups),
        "macs_before": r.totals["macs_before"],
        "macs_after": r.totals["macs_after"],
        "macs_ideal": req["macs_ideal"],
        "requested_mac_reduction": req["reduction"],
        "achieved_mac_reduction": r.totals["mac_reduction"],
        "verify_max_rel_error": r.verification.max_rel_error,
        "ort_cpu_b1_dense_ms": b1["dense_ms"] if b1 else None,
        "ort_cpu_b1_pruned_ms": b1["pruned_ms"] if b1 else None,
        "ort_cpu_b1_speedup": b1["speedup"] if b1 else None,
        "phases_s": {k: round(v, 1) for k, v in r.phases.items()},
        "wall_s": round(wall_s, 1),
    }


def run(
    name: str,
    directory: str | Path,
    *,
    size: int = DEFAULT_SIZE,
    bench_batches: Sequence[int] = (1,),
    bench_repeats: int = 50,
    threads: int | None = None,
    train: TrainOptions = TRAIN,
) -> dict[str, Any]:
    """Export, compress and summarize one model (raises whatever the library raises)."""
    start = time.perf_counter()
    path = export(name, directory, size)
    exported = time.perf_counter()
    result = compress_model(
        path,
        input_shape(name, size),
        bench_batches=bench_batches,
        bench_repeats=bench_repeats,
        threads=threads,
        train=train,
    )
    out = row(name, result, onnx.load(str(path)), time.perf_counter() - start)
    out["export_s"] = round(exported - start, 1)
    return out


def one_line(e: BaseException) -> str:
    """``Type: first line of the message`` (at most 300 characters)."""
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300]
