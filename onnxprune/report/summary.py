"""The compress report: per-layer channels/params/MACs before and after, totals, accuracy, latency,
verification, training history and phase times. Printed as a table, written as JSON, plotted as PNG."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from ..config.gates import GateResult
from ..graph.verify import VerifyResult
from ..runtime.tables import format_table
from .layers import LayerRow, format_budget, format_layers, human


@dataclass
class Report:
    model: str
    sparsity: str
    method: str
    data: str
    verification: VerifyResult  # pruned ≡ masked on ORT
    config: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    groups: list[dict[str, Any]] = field(default_factory=list)
    layers: list[LayerRow] = field(default_factory=list)
    elements: list[dict[str, Any]] = field(default_factory=list)  # element-pruned weights (irregular, nm)
    totals: dict[str, Any] = field(default_factory=dict)
    accuracy: dict[str, Any] | None = None
    fidelity: dict[str, Any] = field(default_factory=dict)
    gates: list[GateResult] = field(default_factory=list)
    latency: dict[str, Any] | None = None
    shape_form: dict[str, Any] | None = None  # shape sparsity: forms, timings, choice (runtime.forms)
    budget: dict[str, Any] | None = None  # --target-macs: see onnxprune.pipeline.budget.BudgetResult.to_dict
    quantization: dict[str, Any] | None = None  # --quantize int8: onnxprune.pipeline.quantization
    history: dict[str, Any] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    latency_budget: dict[str, Any] | None = None  # --target-speedup/-latency: LatencyBudgetResult.to_dict

    @property
    def passed(self) -> bool:
        """Every quality gate passed (no gates: True)."""
        return all(g.passed for g in self.gates)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["verification"] = self.verification.to_dict()
        order = [f.name for f in fields(self) if f.name != "verification"]  # the JSON keeps its key order
        order.insert(order.index("budget") + 1, "verification")
        return _jsonable({k: d[k] for k in order})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def format(self) -> str:
        parts = [format_layers(self.layers), ""]
        if self.budget:
            parts += [format_budget(self.budget), ""]
        if self.latency_budget:
            parts += [format_latency_budget(self.latency_budget, self.latency), ""]
        return "\n".join([*parts, format_summary(self)])


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _times(x: float | None) -> str:
    """``2.42x``, or ``-`` where no speedup is defined (a predicted latency <= 0 on a noisy table)."""
    return "-" if x is None else f"{x:.2f}x"


def format_latency_budget(budget: dict[str, Any], latency: dict[str, Any] | None) -> str:
    """The latency budget's choice: per group its width; per layer its predicted ms; predicted vs
    measured speedup on the target."""
    groups = format_table(
        ("group", "kept", "ratio"),
        [(g["name"], f"{g['kept']}/{g['channels']}", f"{g['ratio']:.3f}") for g in budget["groups"]],
        rule=True,
    )
    layers = format_table(
        ("layer", "widths", "dense ms", "predicted ms"),
        [
            (x["layer"], f"{x['widths'][0]}x{x['widths'][1]}", f"{x['full_ms']:.3f}", f"{x['ms']:.3f}")
            for x in budget["layers"]
        ],
        rule=True,
    )
    line = (
        f"latency budget on {budget['target']}: {budget['budget_ms']:.3f} ms "
        f"(target {budget['target_speedup']:.2f}x of dense {budget['dense_ms']:.3f} ms); predicted "
        f"{budget['predicted_ms']:.3f} ms ({_times(budget['predicted_speedup'])}; best possible "
        f"{_times(budget['best_speedup'])})"
    )
    checks = [
        f"check {c['round']}: aimed {c['aim_ms']:.3f} ms, predicted {c['predicted_ms']:.3f} ms, measured "
        f"{c['measured_ms']:.3f} ms of a {c['budget_ms']:.3f} ms budget ({c['measured_speedup']:.2f}x of "
        f"dense {c['dense_ms']:.3f} ms){' <- kept' if c == budget.get('checked') else ''}"
        for c in budget.get("checks", [])
    ]
    measured = (latency or {}).get("latency_target")
    if measured:
        line += (
            f"; measured dense {measured['dense_ms']:.3f} ms, pruned {measured['pruned_ms']:.3f} ms "
            f"({measured['speedup']:.2f}x)"
        )
    return "\n".join([groups, layers, *checks, line])


def _alignment_lines(alignment: dict[str, Any] | None) -> list[str]:
    """``align N: why`` and the groups too small to align (none for reports without it)."""
    if not alignment:
        return []
    lines = [f"align  {alignment['step']}: {alignment['reason']}"]
    return lines + [f"       {note}" for note in alignment.get("unaligned", [])]


def format_summary(r: Report) -> str:
    t = r.totals
    lines = [
        f"model {r.model}  sparsity {r.sparsity}  method {r.method}  data {r.data}",
        *_alignment_lines(r.config.get("alignment")),
        f"MACs   {human(t['macs_before'])} -> {human(t['macs_after'])} ({t['mac_reduction']:.2f}x fewer)"
        + (f"; conv MACs {t['conv_mac_reduction']:.2f}x fewer" if t["conv_macs_before"] else ""),
        f"params {human(t['params_before'])} -> {human(t['params_after'])} "
        f"({t['param_reduction']:.2f}x fewer); "
        f"file {t['bytes_before'] / 1e6:.2f} MB -> {t['bytes_after'] / 1e6:.2f} MB",
    ]
    if r.elements:
        lines += _element_lines(r)
    if r.shape_form:
        lines += _shape_form_lines(r.shape_form)
    a = r.accuracy
    if a and a.get("dense_top1") is not None:
        lines.append(
            f"top-1  dense {100 * a['dense_top1']:.2f}%  pruned {100 * a['pruned_top1']:.2f}%  "
            f"(drop {a['drop_pp']:+.2f} pp; agreement {100 * a['agreement']:.2f}%; "
            f"{a['samples']} {a['split']} samples)"
        )
    f = r.fidelity
    if f:
        errors = ", ".join(f"{name} {err:.3g}" for name, err in f.get("output_rel_error", {}).items())
        agreement = f" top-1 agreement {100 * f['agreement']:.2f}%;" if f.get("agreement") is not None else ""
        lines.append(
            f"fidelity to the dense model:{agreement} output relative error {errors} "
            f"({f['samples']} {f['split']} samples)"
        )
    for g in r.gates:
        lines.append(f"gate {g.gate}: {g.detail} {'PASS' if g.passed else 'FAIL'}")
    v = r.verification
    if v.samples:
        lines.append(
            f"verify pruned == masked: max relative error {v.max_rel_error:.2e} "
            f"(tolerance {v.rtol:g}, {v.samples} samples) {'PASS' if v.passed else 'FAIL'}"
        )
    if r.quantization:
        lines += quantization_lines(r.quantization)
    if r.latency:
        for row in r.latency.get("speedups", []):
            int8 = ""
            if "int8_ms" in row:
                int8 = (
                    f"; int8 {row['int8_ms']:.3f} ms -> {row['int8_speedup']:.2f}x "
                    f"({row['int8_vs_pruned']:.2f}x over pruned fp32)"
                )
            lines.append(
                f"ORT {row['provider']} batch {row['batch']}: dense {row['dense_ms']:.3f} ms, "
                f"pruned {row['pruned_ms']:.3f} ms (median) -> {row['speedup']:.2f}x{int8}"
            )
    if r.phases:
        lines.append("wall time " + ", ".join(f"{k} {v:.1f}s" for k, v in r.phases.items()))
    return "\n".join(lines)


def quantization_lines(q: dict[str, Any]) -> list[str]:
    """What was quantized, and the int8 model against its fp32 model (and the dense one in compress)."""
    kept = ", ".join(q["excluded_nodes"]) or "none"
    lines = [
        f"int8 ({q['format']}; {q['calibration_method']} calibration on {q['calibration_samples']} samples): "
        f"{len(q['quantized_nodes'])} nodes quantized; kept float: {kept}"
    ]
    if "bytes_int8" in q:
        lines[0] += f"; file {q['bytes_fp32'] / 1e6:.2f} MB -> {q['bytes_int8'] / 1e6:.2f} MB"
    f = q["vs_fp32"]
    top1 = ""
    if q.get("int8_top1") is not None:
        top1 = (
            f"top-1 int8 {100 * q['int8_top1']:.2f}% vs fp32 {100 * q['fp32_top1']:.2f}% "
            f"({-f['drop_pp']:+.2f} pp); "
        )
    agree = f"agreement {100 * f['agreement']:.2f}%; " if f.get("agreement") is not None else ""
    lines.append(
        f"int8 vs fp32: {top1}{agree}max abs diff {f['max_abs_diff']:.3g}, mean {f['mean_abs_diff']:.3g} "
        f"({f['samples']} {f['split']} samples)"
    )
    d = q.get("vs_dense")
    if d and d.get("drop_pp") is not None:
        lines.append(f"int8 vs dense: top-1 drop {d['drop_pp']:+.2f} pp (the gates read this model)")
    return lines


def _element_lines(r: Report) -> list[str]:
    t = r.totals
    lines = [
        f"element sparsity {layer['node']} ({layer['rule']}): {layer['zeros']}/{layer['size']} zeros "
        f"({100 * layer['zero_fraction']:.1f}%)"
        for layer in r.elements
    ]
    sparse = t.get("bytes_sparse_stored")
    stored = f", sparse-stored {sparse / 1e6:.2f} MB" if sparse is not None else ""
    written = "sparse initializers" if t.get("sparse_initializers") else "dense initializers"
    lines.append(f"file dense {t['bytes_dense'] / 1e6:.2f} MB{stored}; written with {written}")
    if t.get("sparse_note"):
        lines.append(t["sparse_note"])
    lines.append(
        f"MACs dense {human(t['macs_after'])}, effective non-zero {human(t['effective_macs_after'])} "
        "(ORT CPU and CUDA gain no speed from element zeros: they run the dense MACs)"
    )
    return lines


def _shape_form_lines(f: dict[str, Any]) -> list[str]:
    """The lowered layers, the chosen form of the shape-pruned layers and why."""
    lines = [
        f"shape-wise {x['node']} ({x['op_type']}): {x['kept']}/{x['columns']} columns kept; "
        + (f"lowered form: {x['nodes']} nodes" if x["lowered"] else f"not lowered: {x['reason']}")
        for x in f["layers"]
    ]
    if "lowered_rel_error" in f:
        lines.append(
            f"lowered form ≡ dense with zeros: max relative error {f['lowered_rel_error']:.2e}; "
            f"{f['lowered_nodes']} nodes against {f['dense_nodes']}; "
            f"MACs dense {human(f.get('macs_dense', 0))}, lowered {human(f.get('macs_lowered', 0))}"
        )
    dead = f.get("dead_channels")
    if dead is not None:
        count = sum(d["channels"] for d in dead)
        where = ", ".join(f"{d['node']} {d['channels']}" for d in dead)
        head = f"channels whose every consumer column is pruned: {count}"
        lines.append(head + (f" (by producer: {where}): " if dead else ": ") + f["dead_note"])
    lines.append(f"shape form written: {f['chosen']} ({f['reason']})")
    return lines
