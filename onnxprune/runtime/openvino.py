"""OpenVINO on the CPU, beside ONNX Runtime: compile an ONNX model, run it on numpy feeds, time it with the
one timer (:mod:`.timing`), read its per-layer performance counters.

OpenVINO reads ONNX directly (``Core.read_model`` takes the serialized bytes or a path; a large
ModelProto goes through a temporary file with external data, as for ORT). The model is compiled for the
``CPU`` device with

* ``PERFORMANCE_HINT = LATENCY`` — one stream, the latency of one request (what ``bench`` and the latency
  table measure; THROUGHPUT would run several requests in parallel streams);
* ``INFERENCE_NUM_THREADS = threads`` when given (None: OpenVINO's default, all usable cores);
* ``INFERENCE_PRECISION_HINT = f32`` — on CPUs with AVX-512 BF16 or AMX OpenVINO otherwise runs float
  models in bf16 (outputs off by ~1e-2); f32 keeps the numbers ORT's, so a speedup compares like with like;
* ``PERF_COUNT`` only when profiling (the counters cost a little per node).

A runner is one synchronous ``InferRequest.infer`` on feeds set once (the tensors are shared with the
numpy arrays, not copied per run). OpenVINO is imported here only, lazily: a missing install is the
one-line :data:`~onnxprune.extras.NO_OPENVINO` error.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..errors import InvalidModelError
from ..extras import require_openvino
from ..graph.protos import model_file

DEVICE = "CPU"


def openvino() -> Any:
    """The ``openvino`` module; a :class:`~onnxprune.errors.DependencyError` naming the extra if missing."""
    require_openvino()
    return importlib.import_module("openvino")


def openvino_version() -> str:
    """OpenVINO's version (``2026.4.1-...``), as the latency cache key names it."""
    return str(openvino().__version__)


def compile_config(threads: int | None, profile: bool = False) -> dict[str, Any]:
    """The CPU plugin's properties for a latency run (see the module docstring)."""
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    if profile:
        config["PERF_COUNT"] = True
    return config


def compile_model(
    model: onnx.ModelProto | str | Path,
    threads: int | None = None,
    profile: bool = False,
    name: str = "model",
    shapes: Mapping[str, tuple[int, ...]] | None = None,
) -> Any:
    """``model`` compiled for OpenVINO's CPU device, its inputs fixed to ``shapes`` (input name -> shape;
    OpenVINO's CPU plugin runs static shapes faster than dynamic ones, and a timed model runs one shape);
    OpenVINO refusing it is a one-line :class:`~onnxprune.errors.InvalidModelError` naming ``name``."""
    ov = openvino()
    core = ov.Core()
    try:
        with model_file(model) as source:  # bytes, or a path (a large model: a temporary file)
            read = core.read_model(source)
            if shapes:
                read.reshape({k: ov.PartialShape(list(v)) for k, v in shapes.items()})
            return core.compile_model(read, DEVICE, compile_config(threads, profile))
    except Exception as e:  # OpenVINO raises RuntimeError / its own types, with long multi-line messages
        lines = str(e).strip().splitlines()
        reason = (lines[0] if lines else type(e).__name__)[:300]
        raise InvalidModelError(f"OpenVINO cannot load model '{name}': {reason}") from None


class OpenVinoRunner:
    """One synchronous inference of a compiled model on fixed feeds (input name -> array)."""

    def __init__(self, compiled: Any, feeds: Mapping[str, np.ndarray]) -> None:
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        # kept as an attribute: OpenVINO's tensors share these arrays' memory
        self.feeds = {name: np.ascontiguousarray(x) for name, x in feeds.items()}
        for name, x in self.feeds.items():
            self.request.set_tensor(name, openvino().Tensor(x, shared_memory=True))

    def __call__(self) -> None:
        self.request.infer()

    def outputs(self) -> dict[str, np.ndarray]:
        """The outputs of the last run by name (copies)."""
        return {
            out.get_any_name(): np.array(self.request.get_tensor(out).data) for out in self.compiled.outputs
        }


def openvino_runner(
    model: onnx.ModelProto | str | Path,
    feeds: Mapping[str, np.ndarray],
    threads: int | None = None,
    name: str = "model",
    profile: bool = False,
) -> OpenVinoRunner:
    """:func:`compile_model` of ``model`` at the shapes of ``feeds``, and a runner on them (one call = one
    inference)."""
    shapes = {k: tuple(np.shape(v)) for k, v in feeds.items()}
    return OpenVinoRunner(compile_model(model, threads, profile, name, shapes), feeds)


def run_openvino(
    model: onnx.ModelProto | str | Path, feeds: Mapping[str, np.ndarray], threads: int | None = None
) -> dict[str, np.ndarray]:
    """The outputs of ``model`` on ``feeds`` in OpenVINO, by output name."""
    runner = openvino_runner(model, feeds, threads)
    runner()
    return runner.outputs()


def perf_counts(runner: OpenVinoRunner) -> list[tuple[str, str, str, float]]:
    """(node, OpenVINO op type, kernel, µs) of every node the last run executed (``PERF_COUNT`` on):
    the nodes of OpenVINO's runtime graph, after its fusions (Conv+BatchNorm+Relu is one Convolution)."""
    executed = openvino().ProfilingInfo.Status.EXECUTED
    return [
        (p.node_name, p.node_type, p.exec_type, p.real_time.total_seconds() * 1e6)
        for p in runner.request.get_profiling_info()
        if p.status == executed
    ]


def original_names(runner: OpenVinoRunner) -> dict[str, list[str]]:
    """Runtime node -> the names of the nodes of the read model it stands for (its ``originalLayersNames``:
    ONNX node names, or for nodes named after their output, ONNX tensor names; first the node's own)."""
    out = {}
    for op in runner.compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        names = info["originalLayersNames"].astype(str) if "originalLayersNames" in info else ""
        out[op.get_friendly_name()] = [n for n in names.split(",") if n]
    return out


__all__ = [
    "DEVICE",
    "OpenVinoRunner",
    "compile_config",
    "compile_model",
    "openvino",
    "openvino_runner",
    "openvino_version",
    "original_names",
    "perf_counts",
    "run_openvino",
]
