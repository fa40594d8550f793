"""Measured layer latencies, cached on disk.

Each layer of :mod:`.layers` is timed alone (:func:`~.layers.layer_graph`) at each width pair it may
take, with the one timer (:func:`onnxprune.runtime.timing.time_interleaved`: a layer's width pairs take
turns block by block, so drift spreads over them alike). From every median the fixed cost of a
``Run`` call is subtracted — the median of a one-element Identity graph on the same target — since the
whole model pays it once, not once per layer.

Where the backend profiles kernels (ORT on the CPU, :attr:`~.backends.Backend.profiled`) a few more runs
of each graph go through ORT's profiler (:func:`_kernel_split`), for the share of its kernel time that is
the layer's own: alone, a conv in MLAS's blocked NCHWc layout is wrapped in a ``ReorderInput`` and a
``ReorderOutput``, which in the model its neighbours mostly make unneeded (a VGG-style model's 24-channel
conv at batch 32: 4.58 ms alone, of its kernels 4.00 ms the conv and 0.40 ms the reorders; 4.01 ms in the
model). The layer costs ``(wall − Run) · own / (own + reorders)``, or its wall time less the Run call
where the reorders took under :data:`MIN_REORDERS_MS`. The profile's kernel times are not used as the
cost themselves, and small splits are not trusted: ORT records them in whole microseconds, and with the
profiler on each node costs 1-2 µs more — at batch 1 a VGG-style model's kernels summed 0.39 ms against
its 0.37 ms unprofiled wall time, its pruned versions' 20-50 % more.

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
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from ...errors import OutputError
from ...graph.layerops import LAYER_OPS
from ...io import write_text
from ..timing import time_interleaved
from .layers import Layer, layer_graph
from .target import Target

log = logging.getLogger("onnxprune")

CHUNK = 16  # sessions alive at once while timing one layer's widths
OVERHEAD = "overhead"
OWN, REORDERED = "|own", "|reorders"  # entry suffixes: a graph's own and reorder kernel ms (profiled)
PROFILED_RUNS = 5  # profiled runs per graph, after the timed ones
MIN_REORDERS_MS = 0.01  # reorder kernels below this (a few µs per node at batch 1) are not taken out
REORDERS = frozenset({"ReorderInput", "ReorderOutput"})
"""ORT's NCHWc layout conversions: around a layer alone, not the layer's cost (see the module docstring)."""
LAYER_KERNELS = frozenset({*LAYER_OPS, "FusedConv", "FusedGemm", "FusedMatMul"})
"""Op names of the layers' kernels in ORT's profile (an NCHWc conv is named Conv)."""


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
            self.entries[OVERHEAD] = _time_models([_identity_graph()], [[1]], self.target, 20, 300)[0]
            self.measured += 1
        return self.entries[OVERHEAD]

    @property
    def profiled(self) -> bool:
        """Whether the target's kernels are profiled (see the module docstring)."""
        return self.target.backend.profiled is not None

    def layer_times(
        self, layer: Layer, pairs: Iterable[tuple[int, int]], warmup: int = 3, repeats: int = 15
    ) -> dict[tuple[int, int], float]:
        """Milliseconds ``layer`` costs at each (len_in, len_out) of ``pairs`` (>= 0; see the module
        docstring); the pairs not cached are timed now."""
        pairs = list(dict.fromkeys(pairs))
        key = {p: entry_key(layer, *p) for p in pairs}
        suffixes = [OWN, REORDERED] if self.profiled else []
        missing = [p for p in pairs if any(key[p] + x not in self.entries for x in ["", *suffixes])]
        base = self.overhead_ms
        for start in range(0, len(missing), CHUNK):
            chunk = missing[start : start + CHUNK]
            graphs = [layer_graph(layer, *p) for p in chunk]
            shapes = [_input_shape(g) for g in graphs]
            for p, ms in zip(chunk, _time_models(graphs, shapes, self.target, warmup, repeats), strict=True):
                self.entries[key[p]] = ms
                self.measured += 1
            if self.profiled:
                for p, split in zip(chunk, _kernel_split(graphs, shapes, self.target), strict=True):
                    self.entries[key[p] + OWN], self.entries[key[p] + REORDERED] = split.own, split.reorders
        return {p: self._cost(key[p], base) for p in pairs}

    def _cost(self, key: str, base: float) -> float:
        wall = max(0.0, self.entries[key] - base)
        if not self.profiled:
            return wall
        own, reorders = self.entries[key + OWN], self.entries[key + REORDERED]
        if reorders < MIN_REORDERS_MS:  # whole-µs records and the profiler's own µs per node: noise
            return wall
        return wall * own / (own + reorders)

    def own_ms(self, layer: Layer, len_in: int, len_out: int) -> float:
        """The layer's own kernel time at these widths in its profile (profiled targets, once timed)."""
        return self.entries[entry_key(layer, len_in, len_out) + OWN]

    def reorders_ms(self, layer: Layer, len_in: int, len_out: int) -> float:
        """The reorder kernels around the layer alone at these widths (profiled targets, once timed)."""
        return self.entries[entry_key(layer, len_in, len_out) + REORDERED]


def _identity_graph() -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "overhead", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _input_shape(model: onnx.ModelProto) -> list[int]:
    return [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]


def _feeds(shapes: Sequence[Sequence[int]]) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    return [{"x": rng.standard_normal(list(shape)).astype(np.float32)} for shape in shapes]


def _time_models(
    graphs: Sequence[onnx.ModelProto],
    shapes: Sequence[Sequence[int]],
    target: Target,
    warmup: int,
    repeats: int,
) -> list[float]:
    """Median milliseconds of one run of each graph (input ``x`` of the given shape) on ``target``."""
    runners = []
    for graph, feeds in zip(graphs, _feeds(shapes), strict=True):
        runner = target.backend.runner(graph, feeds, target)
        runner()
        runners.append(runner)
    times = time_interleaved(runners, warmup, repeats)
    return [float(np.median(t)) * 1e3 for t in times]


@dataclass(frozen=True)
class KernelSplit:
    """Milliseconds of a profile's kernels: of layer ops (:data:`LAYER_KERNELS`), of the layout reorders
    (:data:`REORDERS`), and of everything else."""

    layers: float
    reorders: float
    other: float

    @property
    def own(self) -> float:
        """All but the reorders: what a graph of one layer costs of itself."""
        return self.layers + self.other

    @property
    def total(self) -> float:
        return self.layers + self.reorders + self.other


def _kernel_split(
    graphs: Sequence[onnx.ModelProto], shapes: Sequence[Sequence[int]], target: Target
) -> list[KernelSplit]:
    """:func:`kernel_split` of each graph over :data:`PROFILED_RUNS` profiled runs."""
    return [profile_split(g, f, target, PROFILED_RUNS) for g, f in zip(graphs, _feeds(shapes), strict=True)]


def kernel_split(events: list[dict[str, Any]], skip: int = 0) -> KernelSplit:
    """The kernels of an ORT profile trace: per node the median kernel time of the runs after the first
    ``skip``, summed by kind (:class:`KernelSplit`)."""
    from ..profiling import parse_trace  # the profile command's own reader of ORT traces

    nodes, _ = parse_trace(events, skip)
    sums = {"layers": 0.0, "reorders": 0.0, "other": 0.0}
    for n in nodes:
        kind = "reorders" if n.op_type in REORDERS else "layers" if n.op_type in LAYER_KERNELS else "other"
        sums[kind] += n.median_us / 1e3
    return KernelSplit(**sums)


def profile_split(model: onnx.ModelProto, feeds: dict[str, Any], target: Target, runs: int) -> KernelSplit:
    """:func:`kernel_split` of ``runs`` profiled runs of ``model`` (after one unrecorded) on ``target``."""
    factory = target.backend.profiled
    assert factory is not None, "only a target whose kernels are profiled"
    with tempfile.TemporaryDirectory(prefix="onnxprune-latency-") as tmp:
        runner, trace = factory(model, feeds, target, str(Path(tmp) / "g"))
        for _ in range(1 + runs):
            runner()
        return kernel_split(trace(), skip=1)


def time_model(
    model: onnx.ModelProto, feeds: dict[str, Any], target: Target, warmup: int, repeats: int
) -> float:
    """Median milliseconds of one run of the whole ``model`` on ``target`` with ``feeds`` (same timer)."""
    runner = target.backend.runner(model, feeds, target)
    runner()
    return float(np.median(time_interleaved([runner], warmup, repeats)[0])) * 1e3


__all__ = [
    "LAYER_KERNELS",
    "REORDERS",
    "KernelSplit",
    "LatencyCache",
    "default_cache_dir",
    "entry_key",
    "kernel_split",
    "profile_split",
    "time_model",
]
