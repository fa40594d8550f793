"""``onnxprune latency``: the latency table of a model on a target, its prediction and the measurement.

Dense: the prediction at full width equals the measurement by construction (the remainder is their
difference), so the table also predicts the model at every group's narrowest candidate. With a pruned
model of the same graph (``compress``'s output: node names kept), each layer's widths are read from the
pruned weights, the prediction is made from the dense model's table, and the pruned model is measured
with the same timer: predicted next to measured is the check of the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from ...graph.analysis import analyze
from ...graph.inputs import ModelInputs
from ...graph.load import load_model, normalize
from ...graph.macs import node_keys
from ..tables import format_table
from .model import LatencyModel, at_batch, build_latency_model, group_widths, measure_full
from .table import LatencyCache
from .target import Target


@dataclass
class LatencyReport:
    """The table (:class:`LatencyModel`), the smallest-width prediction and, for a pruned model, its
    per-layer widths, prediction and measurement."""

    model: str
    step: int
    latency: LatencyModel
    smallest_ms: float
    pruned: str | None = None
    pruned_lengths: dict[str, tuple[int, int]] = field(default_factory=dict)
    pruned_predicted_ms: float | None = None
    pruned_measured_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {
            "model": self.model,
            "align": self.step,
            **self.latency.to_dict(),
            "smallest_ms": self.smallest_ms,
        }
        if self.pruned is not None:
            d["pruned"] = {
                "model": self.pruned,
                "widths": {k: list(v) for k, v in self.pruned_lengths.items()},
                "predicted_ms": self.pruned_predicted_ms,
                "measured_ms": self.pruned_measured_ms,
            }
        return d

    def format(self) -> str:
        lm = self.latency
        header = ["layer", "op", "in x out", "full ms"]
        header += ["pruned widths", "pruned ms"] if self.pruned else ["min widths", "min ms"]
        rows = []
        smallest = {g: w[0] for g, w in lm.widths.items()}
        for layer in lm.layers:
            widths = (
                self.pruned_lengths.get(layer.key) if self.pruned else layer.lengths(smallest, lm.channels)
            )
            widths = widths or layer.full
            rows.append(
                [
                    layer.key,
                    layer.op_type,
                    f"{layer.full[0]}x{layer.full[1]}",
                    f"{lm.layer_ms(layer, *layer.full):.3f}",
                    f"{widths[0]}x{widths[1]}",
                    f"{lm.layer_ms(layer, *widths):.3f}",
                ]
            )
        lines = [
            f"{self.model} on {lm.target} (threads {lm.target.threads or 'default'}"
            f"{f', opt {lm.target.opt_level}' if lm.target.backend.runtime == 'ort' else ''}), "
            f"align {self.step}; {len(lm.layers)} layers, table {lm.seconds:.1f}s "
            f"({lm.measured} timings taken, the rest cached)",
            format_table(header, rows, left=2),
            f"whole model: measured {lm.measured_ms:.3f} ms = "
            f"layers {lm.measured_ms - lm.remainder_ms:.3f} ms "
            f"+ remainder {lm.remainder_ms:.3f} ms",
        ]
        if self.smallest_ms > 0:
            best = lm.measured_ms / self.smallest_ms
            lines.append(
                f"predicted at the narrowest candidates: {self.smallest_ms:.3f} ms (best {best:.2f}x)"
            )
        if self.pruned and self.pruned_predicted_ms and self.pruned_measured_ms:
            err = self.pruned_predicted_ms / self.pruned_measured_ms - 1
            lines.append(
                f"pruned {self.pruned}: predicted {self.pruned_predicted_ms:.3f} ms, measured "
                f"{self.pruned_measured_ms:.3f} ms ({100 * err:+.1f} %); speedup predicted "
                f"{lm.measured_ms / self.pruned_predicted_ms:.2f}x, measured "
                f"{lm.measured_ms / self.pruned_measured_ms:.2f}x"
            )
        return "\n".join([*lines, *lm.notes])


def _loaded(path: str | Path, input_shape: Sequence[int] | None) -> tuple[onnx.ModelProto, tuple[int, ...]]:
    original, _ = load_model(path)
    base = normalize(original).model
    return base, tuple(ModelInputs.of(base).resolved(base, input_shape).first_shape)


def latency_report(
    model: str | Path,
    target: Target,
    step: int,
    input_shape: Sequence[int] | None = None,
    points: int = 6,
    cache: LatencyCache | None = None,
    repeats: int = 15,
    pruned: str | Path | None = None,
) -> LatencyReport:
    """Build (or read) the table of ``model`` on ``target``, candidate widths aligned to ``step`` (at most
    ``points`` per group); with ``pruned``, predict and measure that model too."""
    base, shape = _loaded(model, input_shape)
    plan = analyze(base, shape)
    widths = {g.name: group_widths(g, step, points) for g in plan.prunable}
    cache = cache or LatencyCache.open(target)
    lm = build_latency_model(base, plan, shape, target, widths, cache, repeats=repeats)
    smallest = lm.predict({g: w[0] for g, w in widths.items()})
    report = LatencyReport(str(model), step, lm, smallest)
    if pruned is not None:
        small, small_shape = _loaded(pruned, input_shape)
        report.pruned = str(pruned)
        report.pruned_lengths = pruned_lengths(lm, small)
        off_grid = lm.measure_exactly(report.pruned_lengths, cache, repeats)
        if off_grid:
            lm.notes.append(f"{off_grid} layer(s) of the pruned model off the grid: timed at their widths")
        report.pruned_predicted_ms = lm.remainder_ms + sum(
            lm.layer_ms(layer, *report.pruned_lengths.get(layer.key, layer.full)) for layer in lm.layers
        )
        report.pruned_measured_ms = measure_full(small, at_batch(small_shape, target.batch), target, 30)
    return report


def pruned_lengths(lm: LatencyModel, pruned: onnx.ModelProto) -> dict[str, tuple[int, int]]:
    """Layer key -> (len_in, len_out) of the same-named node's weight in ``pruned``."""
    inits = {t.name: tuple(int(d) for d in t.dims) for t in pruned.graph.initializer}
    nodes = dict(zip(node_keys(pruned.graph.node), pruned.graph.node, strict=True))
    out = {}
    for layer in lm.layers:
        node = nodes.get(layer.key)
        names = [n for n in (node.input if node is not None else []) if n in inits]
        w = inits[names[0]] if names else None
        if w is not None and len(w) == len(layer.weight_shape):
            out[layer.key] = (w[layer.in_axis], w[layer.out_axis])
    return out


__all__ = ["LatencyReport", "latency_report", "pruned_lengths"]
