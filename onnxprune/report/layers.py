"""The per-layer part of a report: channels, params and MACs of every layer before and after, totals,
and the ``--target-macs`` table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import onnx

from ..graph.layerops import LAYER_OPS, node_attrs
from ..graph.macs import ModelCost
from ..graph.protos import model_nbytes
from ..plan import PruningPlan
from ..runtime.tables import format_table


@dataclass
class LayerRow:
    node: str
    op_type: str
    in_before: int
    in_after: int
    out_before: int
    out_after: int
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    status: str


def _weight_io(model: onnx.ModelProto) -> dict[str, tuple[int, int]]:
    """(in, out) channels/features of each layer node, read from its weight's shape."""
    inits = {t.name: tuple(t.dims) for t in model.graph.initializer}
    io: dict[str, tuple[int, int]] = {}
    for n in model.graph.node:
        op = LAYER_OPS.get(n.op_type)
        if op is None or len(n.input) < 2 or n.input[1] not in inits:
            continue
        w, attrs = inits[n.input[1]], node_attrs(n)
        if op.conv or len(w) == 2:
            io[n.name] = op.io(w, attrs)
    return io


def layer_rows(
    before: onnx.ModelProto,
    after: onnx.ModelProto,
    cost_before: ModelCost,
    cost_after: ModelCost,
    plan: PruningPlan,
    kept: dict[str, int] | None = None,
) -> list[LayerRow]:
    """One row per layer; ``kept`` (group name -> kept channels) turns 'prunable' into 'pruned k/C'."""
    io_b, io_a = _weight_io(before), _weight_io(after)
    status = {}
    for g in plan.groups:
        tied = f" (tied x{len(g.source_nodes)})" if len(g.source_nodes) > 1 else ""
        if not g.prunable:
            text = f"kept: {g.reason}"
        elif kept is not None and g.kind == "channel":
            text = f"pruned channel-wise, kept {kept.get(g.name, g.channels)}/{g.channels}{tied}"
        elif kept is not None:
            text = f"pruned, kept {kept.get(g.name, g.channels)}/{g.channels}{tied}"
        else:
            text = f"prunable{tied}"
        for node in g.source_nodes:
            status[node] = text
    rows = []
    for name, (cin, cout) in io_b.items():
        cin_a, cout_a = io_a.get(name, (cin, cout))
        cb, ca = cost_before.nodes.get(name), cost_after.nodes.get(name)
        rows.append(
            LayerRow(
                node=name,
                op_type=cb.op_type if cb else "?",
                in_before=cin,
                in_after=cin_a,
                out_before=cout,
                out_after=cout_a,
                params_before=cb.params if cb else 0,
                params_after=ca.params if ca else 0,
                macs_before=cb.macs if cb else 0,
                macs_after=ca.macs if ca else 0,
                status=status.get(name, "inputs only"),
            )
        )
    return rows


def totals(
    before: onnx.ModelProto, after: onnx.ModelProto, cost_before: ModelCost, cost_after: ModelCost
) -> dict[str, Any]:
    def ratio(a: float, b: float) -> float:
        return a / b if b else float("inf")

    return {
        "macs_before": cost_before.total_macs,
        "macs_after": cost_after.total_macs,
        "mac_reduction": ratio(cost_before.total_macs, cost_after.total_macs),
        "conv_macs_before": cost_before.conv_macs,
        "conv_macs_after": cost_after.conv_macs,
        "conv_mac_reduction": ratio(cost_before.conv_macs, cost_after.conv_macs),
        "params_before": cost_before.params,
        "params_after": cost_after.params,
        "param_reduction": ratio(cost_before.params, cost_after.params),
        "bytes_before": model_nbytes(before),
        "bytes_after": model_nbytes(after),
    }


def human(n: float) -> str:
    """``1.23M``, ``4.50k``: a count with a unit prefix."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:.0f}"


def format_layers(rows: list[LayerRow], compare: bool = True) -> str:
    """One line per layer; ``compare`` shows ``before->after`` (a compress), else the values (inspect)."""

    def pair(a: int, b: int, scaled: bool = False) -> str:
        fa, fb = (human(a), human(b)) if scaled else (str(a), str(b))
        return f"{fa}->{fb}" if compare else fa

    header = ("layer", "op", "in", "out", "params", "MACs", "status")
    body = [
        (
            r.node,
            r.op_type,
            pair(r.in_before, r.in_after),
            pair(r.out_before, r.out_after),
            pair(r.params_before, r.params_after, scaled=True),
            pair(r.macs_before, r.macs_after, scaled=True),
            r.status if len(r.status) < 70 else r.status[:67] + "...",
        )
        for r in rows
    ]
    return format_table(header, body, rule=True)


def format_budget(budget: dict[str, Any]) -> str:
    """The ``--target-macs`` table: per group its width, ratio and probed sensitivities, then the totals."""
    probe = budget["probe"]
    fractions = [f"{f:g}" for f in probe["fractions"]]
    header = ("group", "kept", "ratio", *(f"Δloss@{f}" for f in fractions))
    rows = [
        (
            g["name"],
            f"{g['kept']}/{g['channels']}",
            f"{g['ratio']:.3f}",
            *(f"{g['sensitivity'][f]:+.4f}" if f in g["sensitivity"] else "-" for f in fractions),
        )
        for g in budget["groups"]
    ]
    achieved = budget.get("achieved_macs")
    lines = [
        format_table(header, rows, rule=True),
        f"MAC budget: target {budget['target_macs']:.3f} of the MACs, "
        + (f"achieved {achieved:.4f} " if achieved is not None else "")
        + f"(MAC model {budget['predicted_macs']:.4f}; smallest possible {budget['smallest_macs']:.4f}); "
        f"probe: Δloss@f = {probe['loss']} increase when that group alone keeps the fraction f, "
        f"{probe['samples']} samples, "
        f"{probe['seconds']:.1f}s",
    ]
    return "\n".join(lines)
