"""Stages 9 and 10 of ``compress``: the quality gates, and the outputs, written atomically when every gate
passes (the JSON report, the plot and the HTML page always, so a missed gate can be read)."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import onnx

from ..config.gates import raise_if_missed
from ..extras import installed
from ..graph.edit import masker
from ..io import atomic_path, save_model, write_text
from ..report import Report, plot_report
from ..report.html import render_html
from ..runtime.timing import PhaseClock
from .planning import Planned
from .prune import Exported
from .quantization import gate_inputs
from .resolve import Config
from .writing import Written


def check_gates(config: Config, report: Report, latency: dict[str, Any] | None, clock: PhaseClock) -> Report:
    """The report with the latency, every gate's verdict and the phase times (the clock's own dict: phases
    timed later still land in it)."""
    speedups = list((latency or {}).get("speedups", []))
    # the gates judge the model written: with --quantize int8, the int8 one
    accuracy, fidelity, speedups = gate_inputs(
        report.accuracy, report.fidelity, speedups, report.quantization
    )
    gates = config.gates.evaluate(accuracy, fidelity, speedups)
    return replace(report, latency=latency, gates=gates, phases=clock.phases)


def save(
    config: Config, planned: Planned, exported: Exported, written: Written, report: Report, clock: PhaseClock
) -> None:
    """Write what ``config.outputs`` names (models only when every gate passed, and on rank 0 only), then
    raise :class:`~onnxprune.config.gates.GateError` if a gate missed."""
    out = config.outputs
    with clock.phase("save"):
        if report.passed and config.main_rank:
            report.outputs.update(write_models(config, planned, exported, written.model))
        if out.plot is not None and config.main_rank:
            _save_plot(report, out.plot)
            report.outputs["plot"] = str(out.plot)
        if out.html is not None and config.main_rank:
            report.outputs["html"] = str(out.html)
            write_text(html_page(report), out.html)
        if out.report is not None and config.main_rank:
            write_text(report.to_json(), out.report)
    raise_if_missed(report.gates, report)


def write_models(
    config: Config, planned: Planned, exported: Exported, model: onnx.ModelProto
) -> dict[str, str]:
    """Write the masked model and ``model`` (the pruned one) where ``config.outputs`` names them; returns
    what was written, by kind."""
    out, wrote = config.outputs, {}
    if out.masked is not None:
        if exported.masked is not None:
            save_model(exported.masked, out.masked)
        else:  # too large to hold: streamed from the trained model again
            assert exported.source is not None
            save_model(exported.source, out.masked, transform=masker(planned.plan, exported.masks))
        wrote["masked"] = str(out.masked)
    if out.model is not None:
        save_model(model, out.model)
        wrote["model"] = str(out.model)
    return wrote


def html_page(report: Report) -> str:
    """The report as one self-contained HTML page, its plot embedded when matplotlib is installed."""
    plots = []
    if installed("matplotlib"):
        with tempfile.TemporaryDirectory(prefix="onnxprune-") as work:
            png = Path(work) / "plot.png"
            plot_report(report, png)
            plots.append(png.read_bytes())
    return render_html(report.to_dict(), plots)


def _save_plot(report: Report, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        plot_report(report, tmp)


__all__ = ["check_gates", "html_page", "save", "write_models"]
