"""ONNX Runtime static int8 quantization (QDQ) of a float model, calibrated on samples already in memory.

The algebra (ONNX Runtime's static quantization, QDQ format):

* an activation tensor x with calibrated range [a, b] (a <= 0 <= b; ``minmax``: the observed extremes,
  ``entropy`` / ``percentile``: a clipped range from its histogram) becomes
  q = clamp(round(x / s) + z, 0, 255) with s = (b - a) / 255, z = round(-a / s) (uint8, asymmetric);
  int8 activations (S8S8) use [-128, 127] and a symmetric range;
* a Conv/Gemm/MatMul weight W, per output channel c, becomes q_c = clamp(round(W_c / s_c), -127, 127)
  with s_c = max|W_c| / 127 (int8, symmetric, per channel); a bias becomes int32 at scale s_x · s_c;
* the model keeps its float ops, each quantized tensor written as QuantizeLinear -> DequantizeLinear
  (x̂ = (q - z) · s); ORT's CPU provider fuses the pairs around a Conv/Gemm/MatMul into integer kernels
  (QLinearConv, QGemm, MatMulInteger) when it loads the model. ORT's CUDA provider runs no such fusion: a
  QDQ model there is float math plus the Q/DQ ops (TensorRT runs it as int8).

Before quantization :func:`quant_pre_process` (ORT's) runs shape inference and graph optimization (BN
folded into the Conv, so the Conv's per-channel weight scales include it). Node names survive it, so
excluded nodes are matched there by the names of the input model.

U8S8 (uint8 activations, int8 weights) is the default: ORT's MLAS fast path on x86 (AVX2/AVX-512 VNNI);
S8S8 was slower on the ResNet-style reference (asymmetric int8 activations are the uint8 grid shifted by
128: the same values, other kernels). The *stem* — the Conv/Gemm/MatMul nodes the model input reaches
before any other compute op — stays float unless asked: with 1 input channel (Fashion-MNIST) int8 there
was found slower. ONNX side: onnx and onnxruntime only.
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import logging
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..config.settings import QuantizeSettings
from ..data.arrays import Inputs, feeds, n_samples, take
from ..errors import DataError, OnnxPruneError, SpecError
from ..graph.protos import model_nbytes
from .sessions import make_session

log = logging.getLogger("onnxprune")

# Ops whose weights are quantized (and which make up the stem).
COMPUTE_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
# Ops of a model that is quantized already (QDQ or QOperator format).
QUANTIZED_OPS = frozenset(
    {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger"}
)
CALIBRATION_BATCH = 32  # samples per calibration run (a fixed-batch model: its batch)
_LARGE = 2**31 - 2**24  # over this, ORT's quantizer must write external data


class QuantizationError(OnnxPruneError):
    """ONNX Runtime cannot quantize the model, or cannot load the int8 model it made."""


@dataclass(frozen=True)
class Quantized:
    """The int8 model and what was done: ``quantized`` nodes (weights through DequantizeLinear),
    ``excluded`` nodes kept float (asked for, or the stem), the settings as the report shows them."""

    model: onnx.ModelProto
    quantized: list[str]
    excluded: list[str]
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**self.settings, "quantized_nodes": self.quantized, "excluded_nodes": self.excluded}


def quantize_int8(model: onnx.ModelProto, calibration: Inputs, settings: QuantizeSettings) -> Quantized:
    """``model`` (float, verified) quantized to int8 QDQ with ``calibration`` samples (the first
    ``settings.calibration_samples`` are used); the result is checked to load in ORT's CPU provider.

    Raises :class:`DataError` without samples, :class:`SpecError` for an exclusion matching no node,
    :class:`QuantizationError` when ORT cannot pre-process, quantize or load the model."""
    settings.validate()
    already = sorted({n.op_type for n in model.graph.node if n.op_type in QUANTIZED_OPS})
    if already:
        raise QuantizationError(
            f"the model is quantized already ({', '.join(already)} nodes): give its float model"
        )
    count = min(n_samples(calibration), settings.calibration_samples)
    if count < 1:
        raise DataError("no calibration data: int8 quantization needs samples of the model's inputs")
    samples = take(calibration, slice(0, count))
    with tempfile.TemporaryDirectory(prefix="onnxprune-quant-") as tmp:
        pre_path = _pre_process(model, Path(tmp))
        pre = onnx.load(str(pre_path), load_external_data=False)  # names and inputs only
        excluded = excluded_nodes(pre, settings.exclude or (), settings.stem, settings.min_reduction)
        out = Path(tmp) / "int8.onnx"
        _quantize(pre_path, _reader(pre, samples), out, settings, excluded, model_nbytes(model) > _LARGE)
        int8 = onnx.load(str(out))  # external data (a large model) is read from tmp here
    _check_loads(int8)
    done = quantized_nodes(int8)
    log.info(
        "int8: %d nodes quantized, %d kept float (%d calibration samples)", len(done), len(excluded), count
    )
    return Quantized(int8, done, excluded, _described(settings, count))


def _described(settings: QuantizeSettings, count: int) -> dict[str, Any]:
    acts = "U8S8" if settings.activations == "uint8" else "S8S8"
    return {
        "mode": settings.mode,
        "format": f"QDQ {acts}, per-channel weights",
        "calibration_method": settings.calibration_method,
        "calibration_samples": count,
        "stem": settings.stem,
        "min_reduction": settings.min_reduction,
        "exclude": list(settings.exclude or ()),
    }


def _first_line(e: BaseException) -> str:
    lines = [line for line in str(e).strip().splitlines() if line.strip()]
    return (lines[0] if lines else type(e).__name__)[:300]


def _pre_process(model: onnx.ModelProto, tmp: Path) -> Path:
    """ORT's ``quant_pre_process``: shape inference (symbolic, then ONNX's) and graph optimization."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, dst = tmp / "float.onnx", tmp / "pre.onnx"
    large = model_nbytes(model) > _LARGE
    onnx.save_model(model, str(src), save_as_external_data=large)
    try:  # in tmp: an incomplete symbolic inference saves sym_shape_infer_temp.onnx to the working dir
        with ort_quiet(), contextlib.chdir(tmp):
            quant_pre_process(str(src), str(dst), save_as_external_data=large)
        return dst
    except Exception as e:  # symbolic shape inference fails on some graphs: ONNX's alone then
        first = _first_line(e)
    log.info("quant_pre_process: %s; retrying without symbolic shape inference", first)
    try:
        with ort_quiet(), contextlib.chdir(tmp):
            quant_pre_process(str(src), str(dst), skip_symbolic_shape=True, save_as_external_data=large)
    except Exception as e:  # onnxruntime's and onnx's own exception types
        raise QuantizationError(
            f"onnxruntime cannot prepare the model for quantization: {_first_line(e)}"
        ) from None
    return dst


@contextlib.contextmanager
def ort_quiet() -> Iterator[None]:
    """ORT's quantization tools log through the root logger (tracebacks included) and print progress
    to stdout; during their calls both are muted: a failure reaches the user as one error line."""
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.disable(previous)


def stem_nodes(model: onnx.ModelProto) -> list[str]:
    """The compute nodes (:data:`COMPUTE_OPS`) a graph input reaches through no other compute node."""
    inits = {t.name for t in model.graph.initializer}
    reached = {i.name for i in model.graph.input if i.name not in inits}
    stem = []
    for node in model.graph.node:  # topological order: a node's inputs are produced before it
        if not any(x in reached for x in node.input):
            continue
        if node.op_type in COMPUTE_OPS:
            stem.append(node.name)
        else:
            reached.update(node.output)
    return stem


def reduction_depth(node: onnx.NodeProto, shapes: dict[str, tuple[int, ...]]) -> int | None:
    """K of the GEMM a Conv/Gemm/MatMul node runs with its initializer weight: C_in/group · kh · kw for a
    Conv (weight (C_out, C_in/group, kh, kw)), the inner dim for Gemm (B (K, N), or (N, K) with transB)
    and MatMul (B (K, N)); None when the weight is not an initializer."""
    shape = shapes.get(node.input[1]) if len(node.input) > 1 else None
    if shape is None or len(shape) < 2:
        return None
    if node.op_type in ("Conv", "ConvTranspose"):
        return int(np.prod(shape[1:])) if node.op_type == "Conv" else int(shape[0] * np.prod(shape[2:]))
    trans_b = any(a.name == "transB" and a.i for a in node.attribute)
    return int(shape[-1] if trans_b else shape[-2])


def narrow_nodes(model: onnx.ModelProto, min_reduction: int) -> list[str]:
    """The compute nodes whose reduction depth is below ``min_reduction``: too little work per output to
    gain from int8 (MLAS packs K in blocks; a 7-channel 3x3 conv ran slower as QLinearConv)."""
    if min_reduction <= 0:
        return []
    shapes = {t.name: tuple(t.dims) for t in model.graph.initializer}
    out = []
    for node in model.graph.node:
        k = reduction_depth(node, shapes) if node.op_type in COMPUTE_OPS else None
        if k is not None and k < min_reduction:
            out.append(node.name)
    return out


def excluded_nodes(
    model: onnx.ModelProto, patterns: Sequence[str], stem: bool, min_reduction: int = 0
) -> list[str]:
    """Names of the nodes kept float: the stem unless ``stem``, the nodes narrower than
    ``min_reduction`` (:func:`narrow_nodes`), and those matching ``patterns`` (names or globs; each must
    match a node)."""
    names = [n.name for n in model.graph.node]
    out: list[str] = [] if stem else stem_nodes(model)
    out += [n for n in narrow_nodes(model, min_reduction) if n not in out]
    for pattern in patterns:
        hits = [n for n in names if n == pattern or fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            shown = ", ".join(n.name for n in model.graph.node if n.op_type in COMPUTE_OPS)[:200]
            raise SpecError(
                f"--quantize-exclude {pattern!r} matches no node (Conv/Gemm/MatMul nodes: {shown})"
            )
        out += [n for n in hits if n not in out]
    return out


def _reader(model: onnx.ModelProto, samples: Inputs) -> Any:
    """An ORT CalibrationDataReader over ``samples``, in batches of CALIBRATION_BATCH (a model with a
    fixed batch B: chunks of B, the last padded with copies of its last sample)."""
    from onnxruntime.quantization import CalibrationDataReader

    inits = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    names = [i.name for i in inputs]
    dim0 = inputs[0].type.tensor_type.shape.dim[:1] if inputs else []
    fixed = dim0[0].dim_value if dim0 and dim0[0].dim_value > 0 else None
    step, total = fixed or CALIBRATION_BATCH, n_samples(samples)

    def batches() -> Iterator[dict[str, np.ndarray]]:
        for start in range(0, total, step):
            chunk = feeds(take(samples, slice(start, start + step)), names)
            real = len(next(iter(chunk.values())))
            if fixed is not None and real < fixed:
                pad = np.minimum(np.arange(fixed), real - 1)
                chunk = {k: np.take(a, pad, axis=0) for k, a in chunk.items()}
            yield chunk

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = batches()

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    return Reader()


def _quantize(
    pre: Path, reader: Any, out: Path, settings: QuantizeSettings, excluded: list[str], large: bool
) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    acts = QuantType.QUInt8 if settings.activations == "uint8" else QuantType.QInt8
    try:
        with ort_quiet():
            quantize_static(
                str(pre),
                str(out),
                reader,
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=acts,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=excluded,
                calibrate_method=methods[settings.calibration_method],
                calibration_providers=["CPUExecutionProvider"],
                use_external_data_format=large,
            )
    except OnnxPruneError:
        raise
    except Exception as e:  # onnxruntime's and onnx's own exception types
        raise QuantizationError(f"onnxruntime cannot quantize the model: {_first_line(e)}") from None


def _check_loads(model: onnx.ModelProto) -> None:
    try:
        make_session(model, "cpu", threads=1)
    except Exception as e:  # onnxruntime's own exception types
        raise QuantizationError(f"onnxruntime cannot load the int8 model: {_first_line(e)}") from None


def is_quantized(model: onnx.ModelProto | str | Path) -> bool:
    """Whether ``model`` (a proto or a file, read without its external data) holds quantized ops."""
    try:
        proto = (
            model if isinstance(model, onnx.ModelProto) else onnx.load(str(model), load_external_data=False)
        )
    except Exception:  # unreadable: whoever runs it reports that
        return False
    return any(n.op_type in QUANTIZED_OPS for n in proto.graph.node)


def quantized_nodes(model: onnx.ModelProto) -> list[str]:
    """Compute nodes whose weight (an input other than the first) comes out of a DequantizeLinear."""
    dq = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    compute = (n for n in model.graph.node if n.op_type in COMPUTE_OPS)
    return [n.name for n in compute if any(x in dq for x in n.input[1:])]


__all__ = [
    "COMPUTE_OPS",
    "QuantizationError",
    "Quantized",
    "excluded_nodes",
    "is_quantized",
    "narrow_nodes",
    "quantize_int8",
    "quantized_nodes",
    "reduction_depth",
    "stem_nodes",
]
