"""Measured layer latencies, cached on disk.

Each layer of :mod:`.layers` is timed alone (:func:`~.layers.layer_graph`) at each width pair it may
take, with the one timer (:func:`onnxprune.runtime.timing.time_interleaved`: a layer's width pairs take
turns block by block, so drift spreads over them alike). From every median the fixed cost of a
``Run`` call is subtracted — the median of a one-element Identity graph on the same target — since the
whole model pays it once, not once per layer.

The cache is one JSON file per target key (:meth:`~.target.Target.key`: provider, device with CPU model
and ISA, onnxruntime or openvino version, batch, threads, optimization level) under ``cache_dir`` (default
``$XDG_CACHE_HOME/onnxprune/latency``, else ``~/.cache/onnxprune/latency``), its entries keyed by the
layer's signature and widths. A second build of the same table measures nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from ...errors import OutputError
from ...io import write_text
from ..timing import time_interleaved
from .layers import Layer, layer_graph
from .target import Target

log = logging.getLogger("onnxprune")

CHUNK = 16  # sessions alive at once while timing one layer's widths
OVERHEAD = "overhead"


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "onnxprune" / "latency"


def entry_key(layer: Layer, len_in: int, len_out: int) -> str:
    return f"{layer.signature()}|{len_in}x{len_out}"


@dataclass
class LatencyCache:
    """The cached milliseconds of one target (see the module docstring); ``measured``: entries this
    process timed (0 when everything came from the file)."""

    target: Target
    path: Path | None
    entries: dict[str, float] = field(default_factory=dict)
    measured: int = 0

    @classmethod
    def open(cls, target: Target, cache_dir: str | Path | None = None, use: bool = True) -> LatencyCache:
        """The cache of ``target`` in ``cache_dir``; ``use=False``: in memory only (no file used)."""
        if not use:
            return cls(target, None)
        key = json.dumps(target.key(), sort_keys=True)
        name = hashlib.sha256(key.encode()).hexdigest()[:20] + ".json"
        path = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        path = path / name
        entries: dict[str, float] = {}
        if path.is_file():
            try:
                saved = json.loads(path.read_text())
                if saved.get("key") == target.key():
                    entries = {str(k): float(v) for k, v in saved.get("entries", {}).items()}
            except (OSError, ValueError, AttributeError):
                log.warning("latency cache %s is unreadable: measuring again", path)
        return cls(target, path, entries)

    def save(self) -> None:
        if self.path is None or not self.measured:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(
                f"cannot create the latency cache {self.path.parent}: {e.strerror or e}"
            ) from None
        body = {"key": self.target.key(), "entries": dict(sorted(self.entries.items()))}
        write_text(json.dumps(body, indent=1), self.path)

    @property
    def overhead_ms(self) -> float:
        """The fixed cost of one ``Run`` on this target (measured once, then cached)."""
        if OVERHEAD not in self.entries:
            self.entries[OVERHEAD] = _time_models([_identity_graph()], [[1]], self.target, 5, 50)[0]
            self.measured += 1
        return self.entries[OVERHEAD]

    def layer_times(
        self, layer: Layer, pairs: Iterable[tuple[int, int]], warmup: int = 3, repeats: int = 15
    ) -> dict[tuple[int, int], float]:
        """Milliseconds of ``layer`` at each (len_in, len_out) of ``pairs``, less the Run overhead (>= 0);
        the pairs not cached are timed now."""
        pairs = list(dict.fromkeys(pairs))
        missing = [p for p in pairs if entry_key(layer, *p) not in self.entries]
        base = self.overhead_ms
        for start in range(0, len(missing), CHUNK):
            chunk = missing[start : start + CHUNK]
            graphs = [layer_graph(layer, *p) for p in chunk]
            shapes = [_input_shape(g) for g in graphs]
            for p, ms in zip(chunk, _time_models(graphs, shapes, self.target, warmup, repeats), strict=True):
                self.entries[entry_key(layer, *p)] = ms
                self.measured += 1
        return {p: max(0.0, self.entries[entry_key(layer, *p)] - base) for p in pairs}


def _identity_graph() -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "overhead", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _input_shape(model: onnx.ModelProto) -> list[int]:
    return [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]


def _time_models(
    graphs: Sequence[onnx.ModelProto],
    shapes: Sequence[Sequence[int]],
    target: Target,
    warmup: int,
    repeats: int,
) -> list[float]:
    """Median milliseconds of one run of each graph (input ``x`` of the given shape) on ``target``."""
    rng = np.random.default_rng(0)
    runners = []
    for graph, shape in zip(graphs, shapes, strict=True):
        feeds = {"x": rng.standard_normal(list(shape)).astype(np.float32)}
        runner = target.backend.runner(graph, feeds, target)
        runner()
        runners.append(runner)
    times = time_interleaved(runners, warmup, repeats)
    return [float(np.median(t)) * 1e3 for t in times]


def time_model(
    model: onnx.ModelProto, feeds: dict[str, Any], target: Target, warmup: int, repeats: int
) -> float:
    """Median milliseconds of one run of the whole ``model`` on ``target`` with ``feeds`` (same timer)."""
    runner = target.backend.runner(model, feeds, target)
    runner()
    return float(np.median(time_interleaved([runner], warmup, repeats)[0])) * 1e3


__all__ = ["LatencyCache", "default_cache_dir", "entry_key", "time_model"]
