"""Which exported form of shape-pruned layers to write: dense with zeros, or the lowered im2col form.

Both are exact (:mod:`onnxprune.graph.lowered`); which one runs faster depends on the runtime and the
layer sizes: the lowered form multiplies only the kept columns (fewer MACs) but adds a Pad, a Gather and a
Slice per kernel offset and a Concat per layer (more nodes, more copies), while the dense form runs
ORT's tuned dense kernel on the zeros. So both are built, the lowered one is checked against the dense
one on ORT, both are timed on ORT CPU at the report's batch sizes, and the faster is kept: the one with
the smaller geometric mean over batch sizes of its median latency divided by the other's. The report
records the timings, the choice and why. ``mode`` forces a form (``dense``, ``lowered``); with no batch
sizes to time (``--no-bench``) ``auto`` keeps the dense form and says so.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import onnx

from ..errors import SpecError
from ..graph.inputs import Batch
from ..graph.lowered import lower_model
from ..graph.macs import count_costs
from ..graph.protos import check_model, model_nbytes
from ..graph.verify import compare_models

log = logging.getLogger("onnxprune")

SHAPE_FORMS = ("auto", "dense", "lowered")
LOWERED_RTOL = 1e-5

Timings = dict[str, dict[int, float]]  # form -> batch -> median ms
Timer = Callable[[onnx.ModelProto, onnx.ModelProto, Sequence[int], Sequence[int], int], Timings]


def check_form(mode: str) -> str:
    if mode not in SHAPE_FORMS:
        raise SpecError(f"unknown shape form {mode!r} (known: {', '.join(SHAPE_FORMS)})")
    return mode


def choose(timings: Mapping[str, Mapping[int, float]]) -> tuple[str, str]:
    """``(form, reason)``: the form with the smaller geometric mean of per-batch latency ratios."""
    batches = sorted(set(timings["dense"]) & set(timings["lowered"]))
    if not batches:
        return "dense", "no timings: dense with zeros kept"
    ratios = [timings["lowered"][b] / timings["dense"][b] for b in batches]
    geo = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    per = ", ".join(
        f"b{b}: dense {timings['dense'][b]:.3f} ms, lowered {timings['lowered'][b]:.3f} ms" for b in batches
    )
    form = "lowered" if geo < 1.0 else "dense"
    verdict = f"lowered/dense latency {geo:.2f}x (geometric mean over batches)"
    return form, f"{form} is faster on ORT CPU: {verdict}; {per}"


def ort_timer(
    dense: onnx.ModelProto,
    lowered: onnx.ModelProto,
    batches: Sequence[int],
    input_shape: Sequence[int],
    repeats: int,
) -> Timings:
    """Median ORT CPU latency of both forms, interleaved, in a fresh process
    (:func:`onnxprune.runtime.benchmark.bench_apart`)."""
    from .benchmark import bench_apart

    result = bench_apart([dense, lowered], ["dense", "lowered"], batches, ["cpu"], repeats, input_shape)
    return {form: {b: result.row(form, "cpu", b).median_ms for b in batches} for form in ("dense", "lowered")}


def shape_form(
    pruned: onnx.ModelProto,
    weights: Sequence[str],
    inputs: Sequence[Batch],
    mode: str = "auto",
    batches: Sequence[int] = (1, 32),
    input_shape: Sequence[int] = (),
    repeats: int = 30,
    timer: Timer = ort_timer,
) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """The model to write (``pruned`` = dense with zeros, or its lowered form) and the report entry."""
    check_form(mode)
    lowered, layers = lower_model(pruned, weights)
    info: dict[str, Any] = {"mode": mode, "layers": [layer.to_dict() for layer in layers], "timings": None}
    if not any(layer.lowered for layer in layers):
        info |= {"chosen": "dense", "reason": "no layer could be lowered (see layers)"}
        return pruned, info
    check_model(lowered, full_check=True)
    check = compare_models(pruned, lowered, inputs, rtol=LOWERED_RTOL)
    info["lowered_rel_error"] = check.max_rel_error
    info["lowered_nodes"] = len(lowered.graph.node)
    info["dense_nodes"] = len(pruned.graph.node)
    info["bytes_lowered"] = model_nbytes(lowered)
    if input_shape:
        info["macs_dense"] = count_costs(pruned, input_shape).total_macs
        info["macs_lowered"] = count_costs(lowered, input_shape).total_macs
    if not check.passed:
        info |= {"chosen": "dense", "reason": f"lowered form differs ({check.max_rel_error:.2e}): dense kept"}
        log.warning(info["reason"])
        return pruned, info
    if mode != "auto":
        info |= {"chosen": mode, "reason": f"forced (shape form {mode})"}
    elif not batches:
        info |= {"chosen": "dense", "reason": "not timed (no bench batch sizes): dense with zeros kept"}
    else:
        timings = timer(pruned, lowered, batches, input_shape, repeats)
        chosen, reason = choose(timings)
        info |= {"chosen": chosen, "reason": reason, "timings": timings}
    log.info("shape form: %s (%s)", info["chosen"], info["reason"])
    return (lowered if info["chosen"] == "lowered" else pruned), info
