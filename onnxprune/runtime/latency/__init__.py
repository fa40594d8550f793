"""A latency model of a network on the runtime and hardware it serves on (issue 19, scope 1).

* :mod:`.target` — ``cpu:B`` / ``cuda:B`` (ONNX Runtime) / ``openvino:B`` (OpenVINO on the CPU) and the
  session settings; :mod:`.backends` — what runs each provider (its runner factory, version, check);
* :mod:`.layers` — the prunable layers as ORT runs them (with their fused bias and activation), and
  each one alone as a small ONNX graph at other widths;
* :mod:`.table` — their timings (the one timer, :mod:`onnxprune.runtime.timing`), cached on disk;
* :mod:`.model` — the whole-model prediction: the layers plus a measured remainder.
"""

from __future__ import annotations

from .layers import Layer, find_layers, layer_graph
from .model import LatencyModel, at_batch, build_latency_model, group_widths
from .table import LatencyCache, default_cache_dir
from .target import OPT_LEVELS, Target, parse_target

__all__ = [
    "OPT_LEVELS",
    "LatencyCache",
    "LatencyModel",
    "Layer",
    "Target",
    "at_batch",
    "build_latency_model",
    "default_cache_dir",
    "find_layers",
    "group_widths",
    "layer_graph",
    "parse_target",
]
