"""The int8 stage of ``compress`` (after the pruned fp32 model is verified), and ``quantize`` alone.

In ``compress --quantize int8`` the pruned ≡ masked check stays on fp32 (exact up to float rounding);
int8 cannot pass it, so the int8 model is checked against the fp32 pruned model instead: top-1 agreement
(argmax match rate), max / mean absolute difference of the first output and, with labels, top-1 on the
held-out split. The gates then read the int8 model against the dense one (:func:`gate_inputs`): it is the
model written. Calibration uses the run's training split, evaluation its test split (validation when the
data has none), so the samples that set the activation ranges are not the ones that score them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import onnx

from ..config.settings import DataOptions, DataSettings, QuantizeOptions, QuantizeSettings
from ..data import SOURCES
from ..data.preprocess import Preprocess, as_preprocess
from ..errors import DataError
from ..graph.protos import model_nbytes
from ..io import check_outputs, save_model, write_text
from ..report import Report
from ..report.summary import quantization_lines
from ..runtime.fidelity import evaluate
from ..runtime.quantization import Quantized, quantize_int8
from ..runtime.timing import PhaseClock
from .loading import Loaded, Samples, load_samples, load_source
from .resolve import Config
from .writing import Written

log = logging.getLogger("onnxprune")


def quantize_stage(config: Config, samples: Samples, written: Written, clock: PhaseClock) -> Quantized | None:
    """The verified fp32 model quantized to int8 (None when ``config.quantize`` is off)."""
    if not config.quantize.enabled:
        return None
    with clock.phase("quantize"):
        return quantize_int8(written.model, samples.splits.train.x, config.quantize)


def with_quantization(
    report: Report,
    quantized: Quantized | None,
    written: Written,
    samples: Samples,
    loaded: Loaded,
    clock: PhaseClock,
) -> Report:
    """The report with its ``quantization`` entry (the int8 model against the fp32 pruned and the dense
    model); unchanged without quantization."""
    if quantized is None:
        return report
    with clock.phase("evaluate"):
        entry = quantization_entry(written.model, quantized, samples, loaded.base)
    return replace(report, quantization=entry)


def quantization_entry(
    reference: onnx.ModelProto,
    quantized: Quantized,
    samples: Samples,
    dense: onnx.ModelProto | None = None,
) -> dict[str, Any]:
    """The report's ``quantization``: what was quantized, the int8 model against ``reference`` (its fp32
    model) on the held-out split, and against ``dense`` (the unpruned model) when given."""
    test, split = samples.splits.test, samples.test_split
    vs_fp32 = evaluate(reference, quantized.model, test, split)
    sizes = {"bytes_fp32": model_nbytes(reference), "bytes_int8": model_nbytes(quantized.model)}
    entry = {**quantized.to_dict(), **sizes, "vs_fp32": vs_fp32}
    if "pruned_top1" in vs_fp32:
        entry |= {"fp32_top1": vs_fp32["dense_top1"], "int8_top1": vs_fp32["pruned_top1"]}
    if dense is not None:
        entry["vs_dense"] = evaluate(dense, quantized.model, test, split)
    return entry


def gate_inputs(
    accuracy: dict[str, Any] | None,
    fidelity: dict[str, Any],
    speedups: Sequence[Mapping[str, Any]],
    quantization: dict[str, Any] | None,
) -> tuple[dict[str, Any] | None, dict[str, Any], list[dict[str, Any]]]:
    """What the gates read: the written model against the dense one, so with int8 its top-1 drop, its
    fidelity and its speedup (``int8_speedup`` of each latency row) instead of the fp32 pruned model's."""
    if not quantization or "vs_dense" not in quantization:
        return accuracy, fidelity, [dict(s) for s in speedups]
    vs_dense = quantization["vs_dense"]
    rows = [{**s, "speedup": s.get("int8_speedup", s["speedup"])} for s in speedups]
    return (vs_dense if "drop_pp" in vs_dense else None), vs_dense, rows


# --------------------------------------------------------------------------------------------- alone


@dataclass
class QuantizeResult:
    """``onnxprune quantize``: the int8 model and its report (:func:`quantization_entry` plus the paths)."""

    model: onnx.ModelProto
    report: dict[str, Any] = field(default_factory=dict)

    def format(self) -> str:
        head = f"model {self.report['model']}  data {self.report['data']}"
        return "\n".join([head, *quantization_lines(self.report)])


def quantize_model(
    model: str | Path | onnx.ModelProto,
    data: Any,
    output: str | Path | None = None,
    *,
    options: QuantizeOptions | None = None,
    input_shape: Sequence[int] | Mapping[str, Sequence[int]] | None = None,
    preprocess: str | Mapping[str, Any] | Preprocess | None = None,
    max_samples: int | None = None,
    val_fraction: float | None = None,
    seed: int = 0,
    force: bool = False,
    report_path: str | Path | None = None,
) -> QuantizeResult:
    """``model`` quantized to int8 with calibration on ``data``'s training split, scored against the float
    model on its held-out split, written to ``output`` (atomically; an existing file only with ``force``,
    never the input). ``options``: :class:`~onnxprune.config.settings.QuantizeOptions` (the mode is int8)."""
    settings = (options or QuantizeOptions()).build(QuantizeSettings, mode="int8")
    settings.validate()
    if data is None:
        raise DataError(f"quantize needs --data: samples to calibrate on ({SOURCES})")
    given = DataOptions(
        data=data,
        input_shape=input_shape,
        preprocess=preprocess,
        max_samples=max_samples,
        val_fraction=val_fraction,
    ).build(DataSettings)
    given.validate()
    source = None if isinstance(model, onnx.ModelProto) else model
    check_outputs([source], [output, report_path], overwrite=force)
    clock = PhaseClock()
    loaded: Loaded = load_source(model, clock)
    prep = None if given.preprocess is None else as_preprocess(given.preprocess)
    samples = load_samples(given, prep, seed, loaded, clock)
    with clock.phase("quantize"):
        quantized = quantize_int8(loaded.base, samples.splits.train.x, settings)
    with clock.phase("evaluate"):
        entry = quantization_entry(loaded.base, quantized, samples)
    report = {"model": str(source or "<ModelProto>"), "data": samples.splits.name, **entry}
    report |= {"phases": clock.phases, "outputs": {}}
    if output is not None:
        save_model(quantized.model, output)
        report["outputs"]["model"] = str(output)
    if report_path is not None:
        import json

        write_text(json.dumps(report, indent=2), report_path)
    return QuantizeResult(quantized.model, report)


__all__ = [
    "QuantizeResult",
    "gate_inputs",
    "quantization_entry",
    "quantize_model",
    "quantize_stage",
    "with_quantization",
]
