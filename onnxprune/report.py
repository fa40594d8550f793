"""The compress report: per-layer channels/params/MACs before and after, totals, accuracy, latency,
verification, training history and phase times. Printed as a table, written as JSON, plotted as PNG."""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import math
import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from .graph.macs import ModelCost
from .graph.protos import model_nbytes
from .plan import PruningPlan

LAYER_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


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


@dataclass
class Report:
    model: str
    sparsity: str
    method: str
    data: str
    config: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    groups: list[dict[str, Any]] = field(default_factory=list)
    layers: list[LayerRow] = field(default_factory=list)
    elements: list[dict[str, Any]] = field(default_factory=list)  # element-pruned weights (irregular, nm)
    totals: dict[str, Any] = field(default_factory=dict)
    accuracy: dict[str, Any] | None = None
    fidelity: dict[str, Any] = field(default_factory=dict)
    gates: list[dict[str, Any]] = field(default_factory=list)
    latency: dict[str, Any] | None = None
    shape_form: dict[str, Any] | None = None  # shape sparsity: forms, timings, choice (onnxprune.forms)
    budget: dict[str, Any] | None = None  # --target-macs: see onnxprune.budget.BudgetResult.to_dict
    verification: dict[str, Any] = field(default_factory=dict)
    history: dict[str, Any] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def format(self) -> str:
        parts = [format_layers(self.layers), ""]
        if self.budget:
            parts += [format_budget(self.budget), ""]
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


def _weight_io(model: onnx.ModelProto) -> dict[str, tuple[int, int]]:
    """(in, out) channels/features of each layer node, read from its weight's shape."""
    inits = {t.name: tuple(t.dims) for t in model.graph.initializer}
    attrs = {
        n.name: {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute} for n in model.graph.node
    }
    io: dict[str, tuple[int, int]] = {}
    for n in model.graph.node:
        if n.op_type not in LAYER_OPS or len(n.input) < 2 or n.input[1] not in inits:
            continue
        w = inits[n.input[1]]
        if n.op_type == "Conv":
            io[n.name] = (w[1] * int(attrs[n.name].get("group", 1)), w[0])
        elif n.op_type == "ConvTranspose":
            io[n.name] = (w[0], w[1] * int(attrs[n.name].get("group", 1)))
        elif n.op_type == "Gemm" and attrs[n.name].get("transB", 0):
            io[n.name] = (w[1], w[0])
        elif len(w) == 2:
            io[n.name] = (w[0], w[1])
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


def _human(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:.0f}"


def format_layers(rows: list[LayerRow], compare: bool = True) -> str:
    """One line per layer; ``compare`` shows ``before->after`` (a compress), else the values (inspect)."""

    def pair(a: int, b: int, human: bool = False) -> str:
        fa, fb = (_human(a), _human(b)) if human else (str(a), str(b))
        return f"{fa}->{fb}" if compare else fa

    header = ("layer", "op", "in", "out", "params", "MACs", "status")
    body = [
        (
            r.node,
            r.op_type,
            pair(r.in_before, r.in_after),
            pair(r.out_before, r.out_after),
            pair(r.params_before, r.params_after, human=True),
            pair(r.macs_before, r.macs_after, human=True),
            r.status if len(r.status) < 70 else r.status[:67] + "...",
        )
        for r in rows
    ]
    return format_table(header, body)


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [line.format(*header), line.format(*("-" * w for w in widths))]
    out += [line.format(*r) for r in rows]
    return "\n".join(s.rstrip() for s in out)


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
        format_table(header, rows),
        f"MAC budget: target {budget['target_macs']:.3f} of the MACs, "
        + (f"achieved {achieved:.4f} " if achieved is not None else "")
        + f"(MAC model {budget['predicted_macs']:.4f}; smallest possible {budget['smallest_macs']:.4f}); "
        f"probe: Δloss@f = {probe['loss']} increase when that group alone keeps the fraction f, "
        f"{probe['samples']} samples, "
        f"{probe['seconds']:.1f}s",
    ]
    return "\n".join(lines)


def format_summary(r: Report) -> str:
    t = r.totals
    lines = [
        f"model {r.model}  sparsity {r.sparsity}  method {r.method}  data {r.data}",
        f"MACs   {_human(t['macs_before'])} -> {_human(t['macs_after'])} ({t['mac_reduction']:.2f}x fewer); "
        f"conv MACs {t['conv_mac_reduction']:.2f}x fewer",
        f"params {_human(t['params_before'])} -> {_human(t['params_after'])} "
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
        lines.append(f"gate {g['gate']}: {g['detail']} {'PASS' if g['passed'] else 'FAIL'}")
    v = r.verification
    if v:
        lines.append(
            f"verify pruned == masked: max relative error {v['max_rel_error']:.2e} "
            f"(tolerance {v['rtol']:g}, {v['samples']} samples) {'PASS' if v['passed'] else 'FAIL'}"
        )
    if r.latency:
        for row in r.latency.get("speedups", []):
            lines.append(
                f"ORT {row['provider']} batch {row['batch']}: dense {row['dense_ms']:.3f} ms, "
                f"pruned {row['pruned_ms']:.3f} ms (median) -> {row['speedup']:.2f}x"
            )
    if r.phases:
        lines.append("wall time " + ", ".join(f"{k} {v:.1f}s" for k, v in r.phases.items()))
    return "\n".join(lines)


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
        f"MACs dense {_human(t['macs_after'])}, effective non-zero {_human(t['effective_macs_after'])} "
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
            f"MACs dense {_human(f.get('macs_dense', 0))}, lowered {_human(f.get('macs_lowered', 0))}"
        )
    dead = f.get("dead_channels")
    if dead is not None:
        count = sum(d["channels"] for d in dead)
        where = ", ".join(f"{d['node']} {d['channels']}" for d in dead)
        head = f"channels whose every consumer column is pruned: {count}"
        lines.append(head + (f" (by producer: {where}): " if dead else ": ") + f["dead_note"])
    lines.append(f"shape form written: {f['chosen']} ({f['reason']})")
    return lines


def environment() -> dict[str, str]:
    import onnxruntime

    env = {
        "python": platform.python_version(),
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
        "machine": platform.machine(),
        "cpu": _cpu_name(),
    }
    # the version without importing torch: the ONNX side stays torch-free
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        env["torch"] = importlib.metadata.version("torch")
    return env


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def plot_report(report: Report, path: str | Path) -> None:
    """Two panels: per-layer output channels before/after, and the ADMM primal residual per round."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    rows = report.layers
    x = np.arange(len(rows))
    axes[0].bar(x - 0.2, [r.out_before for r in rows], 0.4, label="before")
    axes[0].bar(x + 0.2, [r.out_after for r in rows], 0.4, label="after")
    axes[0].set_xticks(x, [r.node for r in rows], rotation=60, ha="right", fontsize=7)
    axes[0].set_ylabel("output channels / units")
    axes[0].set_title(f"{Path(report.model).name}: {report.sparsity}")
    axes[0].legend()
    rounds = report.history.get("admm", [])
    if rounds:
        for name in sorted({k for r in rounds for k in r.get("primal", {})}):
            axes[1].plot([r["primal"].get(name, np.nan) for r in rounds], lw=0.8, alpha=0.6)
        axes[1].plot([r.get("primal_max", np.nan) for r in rounds], "k-", lw=2, label="max over groups")
        axes[1].set_yscale("log")
        axes[1].set_xlabel("ADMM round")
        axes[1].set_ylabel("||W - Z|| / ||W||")
        axes[1].set_title("primal residual per group")
        axes[1].legend()
    else:
        axes[1].set_axis_off()
    fig.savefig(path, dpi=110, format="png")
