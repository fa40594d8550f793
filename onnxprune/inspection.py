"""``inspect``: what can be pruned in a model, and what it costs. ONNX side only (no torch)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import onnx

from .data import resolve_input_shape
from .errors import DataError
from .graph.analysis import analyze
from .graph.inputs import ModelInputs
from .graph.load import load_model, normalize
from .graph.macs import ModelCost, copied_params, count_costs
from .plan import PruningPlan
from .report import LayerRow, format_layers, layer_rows


@dataclass
class Inspection:
    model: str
    input_shape: tuple[int, ...] | dict[str, tuple[int, ...]]
    opset: int
    plan: PruningPlan
    cost: ModelCost
    layers: list[LayerRow]
    notes: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "input_shape": _jsonable(self.input_shape),
            "opset": self.opset,
            "macs": self.cost.total_macs,
            "conv_macs": self.cost.conv_macs,
            "params": self.cost.params,
            "prunable_groups": len(self.plan.prunable),
            "channel_prunable_groups": len(self.plan.channel_prunable),
            "groups": self.plan.to_dict()["groups"],
            "layers": [
                {
                    "node": r.node,
                    "op_type": r.op_type,
                    "in": r.in_before,
                    "out": r.out_before,
                    "params": r.params_before,
                    "macs": r.macs_before,
                    "status": r.status,
                }
                for r in self.layers
            ],
            "notes": self.notes,
        }

    def format(self, show_groups: bool = False) -> str:
        lines = [
            f"{self.model}: opset {self.opset}, input {self.input_shape}, "
            f"{self.cost.total_macs / 1e6:.2f}M MACs ({self.cost.conv_macs / 1e6:.2f}M in convs), "
            f"{self.cost.params / 1e6:.3f}M params",
            f"{len(self.plan.prunable)} of {len(self.plan.groups)} channel groups prunable "
            f"({sum(g.channels for g in self.plan.prunable)} channels), "
            f"{len(self.plan.channel_prunable)} of them channel-wise too",
            "",
            format_layers(self.layers, compare=False),
            "",
            "channel-wise (--sparsity channel:R): input channels of",
            *[f"  {line}" for line in self._channel_lines()],
        ]
        if self.notes:
            lines += ["", "normalized: " + "; ".join(self.notes)]
        if show_groups:
            lines += ["", self.plan.format()]
        return "\n".join(lines)

    def _channel_lines(self) -> list[str]:
        """Per group: the layer whose input channels it is, or why channel-wise pruning is refused."""
        out = []
        for g in self.plan.groups:
            what = (
                f"{g.channel_op} {g.channel_node}: {g.channels} channels (from {g.source_node})"
                if g.channel_prunable
                else f"(from {g.source_node}): refused, {g.channel_reason}"
            )
            out.append(what)
        return out

    def recipe(self, ratio: float = 0.5) -> str:
        """A starting YAML recipe: one rule per prunable group at ``ratio`` (edit them), kept groups noted."""
        macs = {name: c.macs for name, c in self.cost.nodes.items()}
        lines = [
            f"# onnxprune recipe for {self.model} (input {_jsonable(self.input_shape)}), written by",
            "# `onnxprune inspect --emit-recipe`. Edit the ratios; the LAST rule selecting a group sets it.",
            "sparsity:",
            f"  - {{type: filter, ratio: {ratio:g}}}  # every prunable group not listed below",
        ]
        for g in self.plan.prunable:
            nodes = g.source_nodes
            tied = f", tied with {', '.join(nodes[1:])}" if len(nodes) > 1 else ""
            cost = sum(macs.get(n, 0) for n in nodes)
            lines.append(
                f"  - {{type: filter, ratio: {ratio:g}, match: {_yaml_str(_glob_literal(nodes[0]))}}}"
                f"  # {g.op_type}, {g.channels} channels, {cost / 1e6:.3g}M MACs{tied}"
            )
        channel = self.plan.channel_prunable
        if channel:
            lines.append(
                "  # channel-wise instead (the input channels W[:, c] of the layer that reads them; its "
                "producer's filters go too):"
            )
        for g in channel:
            assert g.channel_node is not None
            lines.append(
                f"  # - {{type: channel, ratio: {ratio:g}, match: "
                f"{_yaml_str(_glob_literal(g.channel_node))}}}  # {g.channel_op}, {g.channels} input "
                f"channels from {g.source_node}"
            )
        refused = [g for g in self.plan.prunable if not g.channel_prunable]
        if refused:
            lines.append("# prunable filter-wise only (channel-wise refused):")
            lines += [f"#   {g.source_node}: {g.channel_reason}" for g in refused]
        kept = [g for g in self.plan.groups if not g.prunable]
        if kept:
            lines.append("# kept whole (not prunable):")
            lines += [f"#   {g.source_node}: {g.reason}" for g in kept]
        lines += [
            "exclude: []  # node-name globs whose groups keep every channel",
            "align: 1  # kept filter counts rounded to a multiple of N; 'auto': the runtime's (8 on ORT)",
            "method: admm",
            "train: {admm_epochs: 2, finetune_epochs: 2}",
            "# distill: {weight: 0.0, loss: auto, temperature: 1, teacher: auto}",
            "# data: {source: fashion-mnist, labels: true, val_fraction: 0.1}",
            "# gates: {max_accuracy_drop: 1.0, min_fidelity: 0.97, min_speedup: 1.5, speedup_on: 'cpu:1'}",
        ]
        return "\n".join(lines) + "\n"


def _glob_literal(name: str) -> str:
    """``name`` as an fnmatch pattern matching only itself."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def _jsonable(shape: tuple[int, ...] | dict[str, tuple[int, ...]]) -> list[int] | dict[str, list[int]]:
    return {k: list(v) for k, v in shape.items()} if isinstance(shape, dict) else list(shape)


def _yaml_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def inspect_model(
    model: str | Path | onnx.ModelProto,
    input_shape: Sequence[int] | Mapping[str, Sequence[int]] | None = None,
) -> Inspection:
    """Plan, costs and layer table of ``model`` at ``input_shape`` (the single input's shape, or a
    mapping input name -> shape for every input with dynamic dims; default: the model's, batch 1)."""
    original, _ = load_model(model)
    normalized = normalize(original)
    base = normalized.model
    inputs = ModelInputs.of(base)
    shape: Any
    if isinstance(input_shape, Mapping):
        dims = inputs.dims()
        unknown = sorted(set(input_shape) - set(dims))
        if unknown:
            raise DataError(f"--input-shape names {unknown[0]!r}, which is not a model input")
        shape = {n: resolve_input_shape(d, input_shape.get(n), n) for n, d in dims.items()}
    else:
        shape = inputs.resolved(base, input_shape).first_shape
    plan = analyze(base, shape)
    cost = count_costs(base, shape)
    cost = replace(cost, params=cost.params - copied_params(base, normalized.copies))  # as given
    rows = layer_rows(base, base, cost, cost, plan)
    opset = next((o.version for o in base.opset_import if o.domain in ("", "ai.onnx")), 0)
    name = "<ModelProto>" if isinstance(model, onnx.ModelProto) else str(model)
    return Inspection(name, shape, opset, plan, cost, rows, normalized.notes)
