"""The latency model of a network on a target: per-layer tables plus a measured remainder.

For layer ``l`` with widths ``(len_in, len_out)`` (:meth:`~.layers.Layer.lengths` of the kept counts)
the table gives its cost ``c_l(len_in, len_out)`` (:mod:`.table`: the wall time of the layer alone, less
the Run call and, where ORT's profiler says, the layout reorders around it), measured on the grid of the
lengths the candidate widths give (:func:`~.layers.candidate_lengths`); a length between grid points reads
the next measured one above (a conservative step, as latency is a step function of width). That reading
is wrong for widths off the grid that run slower than the grid point above — unaligned counts fall out of
the blocked kernels (a uniform ``filter:R --align 1`` VGG read 33 % fast) — so the lengths of a given
structure can be timed exactly (:meth:`LatencyModel.measure_exactly`), and those times win over the grid.
The whole model::

    T(k) = R₀ + s · Σ_l [ c_l(k) + R_o · a_l(k) / A + ρ · a_l(k) · u_l(k) + R_w · w_l(k) / W ]
    s    = (T_measured(full) − R₀) / (Σ_l c_l(full) + R_o + ρ · Σ_l a_l(full) · u_l(full) + R_w)

``R₀`` is the cost of one Run call (an Identity graph's). ``a_l(k) = len_out_l(k) · o_l`` is the
activation layer ``l`` writes (``o_l``: :attr:`~.layers.Layer.out_size`), ``A`` its sum over the layers
at full width; ``u_l = 1`` marks a conv whose output count is not a multiple of the NCHWc block
(:meth:`LatencyModel.reordered`); ``w_l(k)`` is the weight elements layer ``l`` keeps, ``W`` their sum at
full width. From ORT's profile of the whole model at full width (kernel milliseconds, times
``(T_measured − R₀) / K`` to make them wall time):

* ``ρ · a_l · u_l``: ORT keeps a tensor of aligned channels blocked from one conv through the pools to
  the next and reorders the output of the others. ``ρ`` is the reorder kernels' time per element moved
  around the layers measured alone (:func:`reorder_rate`), so a structure pays for its own unaligned convs
  (a VGG-style model's 24-channel convs; once all its widths were aligned those reorders were gone, and
  the dense model's reorders charged to every layer read it 15 % slow). The dense model's reorders that
  this does not explain (its input, its output) go to ``R_o``;
* ``R_o``, its other kernels that are not layers — pools, adds, muls, unfused activations —, charged by
  the activation each layer writes: they run on the layers' outputs and shrink with them (held constant,
  the remainder made narrow models read 10-25 % fast or slow);
* ``R_w``, its layers' kernels less the same layers measured alone (>= 0), charged by the weight each
  keeps: alone, a layer runs with its weights in cache; in the model they come from memory (MobileNetV3's
  final Gemm at batch 1: 0.07 ms alone, 0.26 ms in the model; all its layers 4.8 ms alone, 5.7 ms in it).

Kernel sums are steady where a wall-time difference is not: the whole model's 30-run median moves by
±4 %, which is ±100 % of a remainder of a few per cent; ``s`` maps the rest onto the measured time.
Where no profiler times the target's kernels (CUDA, OpenVINO), ``R_o = T_measured(full) − R₀ −
Σ_l c_l(full)``, ``ρ = R_w = 0`` and ``s = 1``; when that is negative (the layers alone measure more
than the whole model: each standalone graph pays its own reorders and allocations; small layers, as in
MobileNets) ``R_o = 0`` and ``s < 1`` (in the notes and the JSON). Either way the prediction at full
width is the measurement, and it is positive everywhere.
"""

from __future__ import annotations

import bisect
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import onnx

from ...config.alignment import aligned_keep, auto_alignment
from ...graph.inputs import ShapeArg
from ...plan import Group, PruningPlan
from ..sessions import input_specs, make_session, random_feeds
from ..timing import time_interleaved
from .layers import Layer, candidate_lengths, find_layers
from .table import MIN_REORDERS_MS, LatencyCache, profile_split, time_model
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
    remainder_ms: float  # R₀: the part of the remainder no layer is charged with (see above)
    seconds: float = 0.0  # building the table
    measured: int = 0  # layer timings taken (0: every one from the cache)
    notes: list[str] = field(default_factory=list)
    scale: float = 1.0  # s (see above)
    exact: dict[str, dict[tuple[int, int], float]] = field(default_factory=dict)  # off-grid timings
    shared_ms: float = 0.0  # R_o: charged by the activation the layers write (see above)
    reorder_rate: float = 0.0  # ρ: ms per element a layout reorder moves (see above)
    weight_ms: float = 0.0  # R_w: the layers' kernels in the model less alone, charged by weight size
    _memo: dict[tuple[str, int, int], float] = field(default_factory=dict, repr=False, compare=False)
    block: int = 0  # the NCHWc block those counts are checked against (0: no layout reorders known)
    kernels_ms: float | None = None  # K: the whole model's kernels at full width (profiled targets)

    @cached_property
    def written_full(self) -> int:
        """``A``: the activation the layers write at full width."""
        return sum(x.full[1] * x.out_size for x in self.layers)

    @cached_property
    def weights_full(self) -> int:
        """The weight elements of the layers at full width."""
        return sum(math.prod(x.weight_shape) for x in self.layers)

    def reordered(self, layer: Layer, len_out: int) -> bool:
        """Whether ORT reorders around this conv at this output count (see the module docstring)."""
        return self.block > 1 and layer.op_type == "Conv" and len_out % self.block != 0

    def cost_ms(self, layer: Layer, len_in: int, len_out: int) -> float:
        """``c_l`` at these lengths: timed exactly if :meth:`measure_exactly` did, else the measured grid
        point at or above each (see the module docstring)."""
        hit = self.exact.get(layer.key, {}).get((len_in, len_out))
        if hit is not None:
            return hit
        table = self.times[layer.key]
        ins, outs = self._grid[layer.key]
        i = ins[min(bisect.bisect_left(ins, len_in), len(ins) - 1)]
        o = outs[min(bisect.bisect_left(outs, len_out), len(outs) - 1)]
        return table[(i, o)]

    @cached_property
    def _grid(self) -> dict[str, tuple[list[int], list[int]]]:
        """Layer key -> its table's input and output lengths, ascending (read on every prediction)."""
        return {k: (sorted({p[0] for p in t}), sorted({p[1] for p in t})) for k, t in self.times.items()}

    def layer_ms(self, layer: Layer, len_in: int, len_out: int) -> float:
        """What layer ``l`` is charged at these lengths: ``s·(c_l + its shares of R_o, ρ and R_w)``
        (memoized: the allocation reads the same few widths hundreds of thousands of times)."""
        hit = self._memo.get((layer.key, len_in, len_out))
        if hit is None:
            hit = self._memo[(layer.key, len_in, len_out)] = self._charged(layer, len_in, len_out)
        return hit

    def _charged(self, layer: Layer, len_in: int, len_out: int) -> float:
        written = self.written_full
        out = len_out * layer.out_size
        share = self.shared_ms * out / written if written else 0.0
        if self.reordered(layer, len_out):
            share += self.reorder_rate * out
        if self.weight_ms:
            full_in, full_out = layer.full
            kept = math.prod(layer.weight_shape) * len_in * len_out / (full_in * full_out)
            share += self.weight_ms * kept / self.weights_full
        return self.scale * (self.cost_ms(layer, len_in, len_out) + share)

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
        self._memo.clear()
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
                    "cost_ms": self.cost_ms(layer, *lengths),
                    "grid": {f"{a}x{b}": ms for (a, b), ms in sorted(self.times[layer.key].items())},
                }
            )
        return {
            "target": str(self.target),
            "key": self.target.key(),
            "measured_ms": self.measured_ms,
            "remainder_ms": self.remainder_ms,
            "shared_ms": self.shared_ms,
            "reorder_rate_ms_per_element": self.reorder_rate,
            "weight_ms": self.weight_ms,
            "block": self.block,
            "kernels_ms": self.kernels_ms,
            "layer_costs": "kernel" if self.target.backend.profiled is not None else "wall",
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
    feeds = model_feeds(model, shape, target)
    measured_ms = time_model(model, feeds, target, warmup=5, repeats=model_repeats)
    split = profile_split(model, feeds, target, 10) if cache.profiled else None  # its kernels by kind
    run_ms = min(cache.overhead_ms, measured_ms)  # R₀
    cache.save()
    lm = LatencyModel(
        target,
        layers,
        times,
        channels,
        {g: sorted(w) for g, w in widths.items()},
        measured_ms,
        run_ms,
        time.perf_counter() - start,
        cache.measured,
    )
    layers_ms = sum(lm.cost_ms(x, *x.full) for x in layers)
    kernels_ms = None if split is None else split.total
    lm.kernels_ms = kernels_ms
    explained = 0.0  # ρ · Σ a_l(full) over the convs reordered at full width
    if split is None or not kernels_ms or kernels_ms > measured_ms - run_ms:
        # no profile, or one whose kernels sum to more than the whole run: the profiler's own µs per
        # node outweigh what it measures (small models at batch 1), and the remainder is read off the
        # wall time instead
        rest = measured_ms - run_ms - layers_ms
    else:
        wall = (measured_ms - run_ms) / kernels_ms  # kernel ms -> wall ms of the whole model
        lm.weight_ms = wall * max(0.0, split.layers - sum(cache.own_ms(x, *x.full) for x in layers))
        lm.block = auto_alignment(target.provider).step
        lm.reorder_rate = wall * reorder_rate(layers, cache)
        off_block = [x for x in layers if lm.reordered(x, x.full[1])]
        explained = lm.reorder_rate * sum(x.full[1] * x.out_size for x in off_block)
        reorders = wall * split.reorders
        if explained > reorders:  # the rate overstates this model's own reorders: take its measured ones
            lm.reorder_rate *= reorders / explained
            explained = reorders
        rest = wall * split.other + reorders - explained
    if rest > 0 and lm.written_full <= 0:
        lm.remainder_ms, rest = lm.remainder_ms + rest, 0.0  # nothing to charge it to: constant
    if lm.weight_ms > 0 and lm.weights_full <= 0:
        lm.remainder_ms, lm.weight_ms = lm.remainder_ms + lm.weight_ms, 0.0
    charged = layers_ms + max(0.0, rest) + lm.weight_ms + explained
    if charged > 0:
        lm.shared_ms = max(0.0, rest)
        lm.scale = (measured_ms - lm.remainder_ms) / charged
    if rest < 0:
        lm.notes.append(
            f"the layers alone measure {layers_ms:.3f} ms, more than the whole model ({measured_ms:.3f} ms): "
            f"layer times scaled by {lm.scale:.3f}"
        )
    elif abs(lm.scale - 1) > 0.1:
        lm.notes.append(
            f"the layers alone cost {layers_ms:.3f} ms and the rest {lm.shared_ms:.3f} ms, the whole model "
            f"measures {measured_ms:.3f} ms: layer costs scaled by {lm.scale:.3f}"
        )
    return lm


def reorder_rate(layers: Sequence[Layer], cache: LatencyCache) -> float:
    """ρ in kernel ms per element: the reorder kernels around the layers alone at full width over the
    elements they move (the input and the output of each layer that had reorders worth timing)."""
    moved, spent = 0, 0.0
    for x in layers:
        ms = cache.reorders_ms(x, *x.full)
        if ms >= MIN_REORDERS_MS:
            spent += ms
            moved += math.prod(x.input_shape) + x.full[1] * x.out_size
    return spent / moved if moved else 0.0


def model_feeds(model: onnx.ModelProto, shape: ShapeArg, target: Target) -> dict[str, np.ndarray]:
    """Random inputs of ``model`` at ``shape`` with the target's batch (the same for every model with the
    same inputs), read off an unoptimized CPU session: any runtime's feeds."""
    first = next(iter(shape.values())) if isinstance(shape, Mapping) else shape
    specs = input_specs(make_session(model, "cpu", 1, optimize=False))  # only its inputs
    return random_feeds(specs, target.batch, list(first), "model")


def measure_full(model: onnx.ModelProto, shape: ShapeArg, target: Target, repeats: int) -> float:
    """Median milliseconds of the whole model at ``shape`` on ``target`` (the same timer)."""
    return time_model(model, model_feeds(model, shape, target), target, warmup=5, repeats=repeats)


def measure_models(
    models: Sequence[onnx.ModelProto], shape: ShapeArg, target: Target, repeats: int, warmup: int = 5
) -> list[float]:
    """Median milliseconds of each whole model at ``shape`` on ``target``, timed interleaved (blocks of
    runs take turns, so a load that comes and goes weighs on every model alike): a speedup of a pruned
    model over its dense one is a ratio of two such medians. The models take the same inputs."""
    feeds = model_feeds(models[0], shape, target)
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
    "model_feeds",
]
