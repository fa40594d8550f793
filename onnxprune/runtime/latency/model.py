"""The latency model of a network on a target: per-layer tables plus a measured remainder.

For layer ``l`` with widths ``(len_in, len_out)`` (:meth:`~.layers.Layer.lengths` of the kept counts)
the table gives ``T_l(len_in, len_out)``, measured on the grid of the lengths the candidate widths give
(:func:`~.layers.candidate_lengths`); a length between grid points reads the next measured one above
(a conservative step, as latency is a step function of width). That reading is wrong for widths off
the grid that run slower than the grid point above — unaligned counts fall out of the blocked kernels (a
uniform ``filter:R --align 1`` VGG read 33 % fast) — so the lengths of a given structure can be timed
exactly (:meth:`LatencyModel.measure_exactly`), and those times win over the grid. The whole model::

    T(k) = R + Σ_l T_l(len_in_l(k), len_out_l(k)),   R = T_measured(full) − Σ_l T_l(full)

``R`` — pools, adds, reshapes, unpruned layers, the per-run cost — is measured once at full width and
held constant (it shrinks a little with the channels in truth, so predictions of narrow models err high).
When the layers alone sum to more than the whole model (each standalone graph pays its own layout
reorders and output allocation, which the model shares or fuses away — small layers, as in MobileNets),
every layer time is scaled by ``s = T_measured / Σ_l T_l(full)`` and ``R = 0``: the prediction stays the
measurement at full width and positive everywhere (the scale is in the notes and the JSON).
"""

from __future__ import annotations

import bisect
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from ...config.alignment import aligned_keep
from ...graph.inputs import ShapeArg
from ...plan import Group, PruningPlan
from ..sessions import input_specs, make_session, random_feeds
from ..timing import time_interleaved
from .layers import Layer, candidate_lengths, find_layers
from .table import LatencyCache, time_model
from .target import Target

log = logging.getLogger("onnxprune")

MIN_KEEP = 0.1  # the narrowest width offered, as for --target-macs (pipeline.budget.MIN_KEEP)


@dataclass
class LatencyModel:
    """``predict(keep)`` in milliseconds on ``target`` (see the module docstring)."""

    target: Target
    layers: list[Layer]
    times: dict[str, dict[tuple[int, int], float]]  # layer key -> (len_in, len_out) -> ms
    channels: dict[str, int]  # group -> channels
    widths: dict[str, list[int]]  # group -> candidate widths, ascending (the last is full)
    measured_ms: float  # the whole model at full width
    remainder_ms: float
    seconds: float = 0.0  # building the table
    measured: int = 0  # layer timings taken (0: every one from the cache)
    notes: list[str] = field(default_factory=list)
    scale: float = 1.0  # < 1 when the layers alone measured more than the whole model (see above)
    exact: dict[str, dict[tuple[int, int], float]] = field(default_factory=dict)  # off-grid timings

    def layer_ms(self, layer: Layer, len_in: int, len_out: int) -> float:
        """``T_l`` at these lengths: timed exactly if :meth:`measure_exactly` did, else the measured grid
        point at or above each (see the module docstring)."""
        hit = self.exact.get(layer.key, {}).get((len_in, len_out))
        if hit is not None:
            return self.scale * hit
        table = self.times[layer.key]
        ins = sorted({p[0] for p in table})
        outs = sorted({p[1] for p in table})
        i = ins[min(bisect.bisect_left(ins, len_in), len(ins) - 1)]
        o = outs[min(bisect.bisect_left(outs, len_out), len(outs) - 1)]
        return self.scale * table[(i, o)]

    def measure_exactly(
        self, lengths: Mapping[str, tuple[int, int]], cache: LatencyCache, repeats: int = 15
    ) -> int:
        """Time every layer at exactly its ``lengths`` (layer key -> (len_in, len_out)) where the grid has
        no such point, with the timer and cache the table was built with; returns how many were timed."""
        timed = 0
        for layer in self.layers:
            pair = lengths.get(layer.key)
            if pair is None or pair in self.times[layer.key] or pair in self.exact.get(layer.key, {}):
                continue
            self.exact.setdefault(layer.key, {}).update(cache.layer_times(layer, [pair], repeats=repeats))
            timed += 1
        cache.save()
        return timed

    def layer_times(self, keep: Mapping[str, int]) -> dict[str, float]:
        return {x.key: self.layer_ms(x, *x.lengths(keep, self.channels)) for x in self.layers}

    def predict(self, keep: Mapping[str, int]) -> float:
        """Predicted milliseconds when group g keeps ``keep[g]`` channels (the others all)."""
        return self.remainder_ms + sum(self.layer_times(keep).values())

    @property
    def full_ms(self) -> float:
        return self.predict({})

    def to_dict(self, keep: Mapping[str, int] | None = None) -> dict[str, Any]:
        keep = keep or {}
        rows = []
        for layer in self.layers:
            lengths = layer.lengths(keep, self.channels)
            rows.append(
                {
                    "layer": layer.key,
                    "op": layer.op_type,
                    "full": list(layer.full),
                    "widths": list(lengths),
                    "full_ms": self.layer_ms(layer, *layer.full),
                    "ms": self.layer_ms(layer, *lengths),
                    "grid": {f"{a}x{b}": ms for (a, b), ms in sorted(self.times[layer.key].items())},
                }
            )
        return {
            "target": str(self.target),
            "key": self.target.key(),
            "measured_ms": self.measured_ms,
            "remainder_ms": self.remainder_ms,
            "layer_scale": self.scale,
            "predicted_full_ms": self.full_ms,
            "predicted_ms": self.predict(keep),
            "table_seconds": self.seconds,
            "measured_entries": self.measured,
            "layers": rows,
            "notes": self.notes,
        }


def group_widths(group: Group, step: int, points: int, width: int = 1) -> list[int]:
    """Candidate kept counts of ``group``, ascending, full width last: the counts ``step`` aligns
    (:func:`~onnxprune.config.alignment.aligned_keep`) from ``ceil(MIN_KEEP·C)`` (one per cover set at
    least) to ``C``, thinned to at most ``points`` evenly spread ones (the smallest and full kept)."""
    floor = min(group.channels, max(1, len(group.cover_sets), math.ceil(MIN_KEEP * group.channels - 1e-9)))
    counts = sorted(
        {aligned_keep(k, group.channels, width, step, floor) for k in range(floor, group.channels + 1)}
    )
    if len(counts) > points > 1:
        idx = sorted({round(i * (len(counts) - 1) / (points - 1)) for i in range(points)})
        counts = [counts[i] for i in idx]
    return counts


def at_batch(shape: ShapeArg, batch: int) -> ShapeArg:
    """``shape`` (or every input's) with dim 0 set to ``batch``."""
    if isinstance(shape, Mapping):
        return {k: (batch, *tuple(v)[1:]) for k, v in shape.items()}
    return (batch, *tuple(shape)[1:])


def build_latency_model(
    model: onnx.ModelProto,
    plan: PruningPlan,
    input_shape: ShapeArg,
    target: Target,
    widths: Mapping[str, Sequence[int]],
    cache: LatencyCache | None = None,
    repeats: int = 15,
    model_repeats: int = 30,
) -> LatencyModel:
    """Measure (or read from ``cache``) every layer at every width pair ``widths`` give (group -> counts;
    groups not named stay whole), and the whole model at full width, on ``target``."""
    start = time.perf_counter()
    cache = cache or LatencyCache.open(target)
    shape = at_batch(input_shape, target.batch)
    layers = find_layers(model, plan, shape)
    channels = {g.name: g.channels for g in plan.groups}
    times = {}
    for layer in layers:
        ins = candidate_lengths(layer.full[0], layer.shrink_in, widths, channels)
        outs = candidate_lengths(layer.full[1], layer.shrink_out, widths, channels)
        times[layer.key] = cache.layer_times(layer, [(a, b) for a in ins for b in outs], repeats=repeats)
        log.info("latency table %s: %d widths", layer.key, len(ins) * len(outs))
    measured_ms = measure_full(model, shape, target, model_repeats)
    cache.save()
    lm = LatencyModel(
        target,
        layers,
        times,
        channels,
        {g: sorted(w) for g, w in widths.items()},
        measured_ms,
        0.0,
        time.perf_counter() - start,
        cache.measured,
    )
    layers_ms = sum(lm.layer_ms(x, *x.full) for x in layers)
    lm.remainder_ms = measured_ms - layers_ms
    if lm.remainder_ms < 0 and layers_ms > 0:
        lm.scale, lm.remainder_ms = measured_ms / layers_ms, 0.0
        lm.notes.append(
            f"the layers alone measure {layers_ms:.3f} ms, more than the whole model ({measured_ms:.3f} ms): "
            f"layer times scaled by {lm.scale:.3f}"
        )
    return lm


def measure_full(model: onnx.ModelProto, shape: ShapeArg, target: Target, repeats: int) -> float:
    """Median milliseconds of the whole model at ``shape`` on ``target`` (the same timer)."""
    sess = make_session(model, "cpu", 1, optimize=False)  # only its inputs: any runtime's feeds
    first = next(iter(shape.values())) if isinstance(shape, Mapping) else shape
    feeds = random_feeds(input_specs(sess), target.batch, list(first), "model")
    del sess
    return time_model(model, feeds, target, warmup=5, repeats=repeats)


def measure_models(
    models: Sequence[onnx.ModelProto], shape: ShapeArg, target: Target, repeats: int, warmup: int = 5
) -> list[float]:
    """Median milliseconds of each whole model at ``shape`` on ``target``, timed interleaved (blocks of
    runs take turns, so a load that comes and goes weighs on every model alike): a speedup of a pruned
    model over its dense one is a ratio of two such medians. The models take the same inputs."""
    first = next(iter(shape.values())) if isinstance(shape, Mapping) else shape
    specs = input_specs(make_session(models[0], "cpu", 1, optimize=False))  # only its inputs
    feeds = random_feeds(specs, target.batch, list(first), "model")
    runners = []
    for model in models:
        runner = target.backend.runner(model, feeds, target)  # ORT or OpenVINO (.backends)
        runner()
        runners.append(runner)
    return [float(np.median(t)) * 1e3 for t in time_interleaved(runners, warmup, repeats)]


__all__ = [
    "LatencyModel",
    "at_batch",
    "build_latency_model",
    "group_widths",
    "measure_full",
    "measure_models",
]
