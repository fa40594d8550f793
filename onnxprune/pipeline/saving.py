"""Stages 9 and 10 of ``compress``: the quality gates, and the outputs, written atomically when every gate
passes (the JSON report and the plot always, so a missed gate can be read)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from ..config.gates import raise_if_missed
from ..graph.edit import masker
from ..io import atomic_path, save_model, write_text
from ..report import Report, plot_report
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
        passed = report.passed and config.main_rank
        if passed and out.masked is not None:
            if exported.masked is not None:
                save_model(exported.masked, out.masked)
            else:  # too large to hold: streamed from the trained model again
                assert exported.source is not None
                save_model(exported.source, out.masked, transform=masker(planned.plan, exported.masks))
            report.outputs["masked"] = str(out.masked)
        if passed and out.model is not None:
            save_model(written.model, out.model)
            report.outputs["model"] = str(out.model)
        if out.plot is not None and config.main_rank:
            _save_plot(report, out.plot)
            report.outputs["plot"] = str(out.plot)
        if out.report is not None and config.main_rank:
            write_text(report.to_json(), out.report)
    raise_if_missed(report.gates, report)


def _save_plot(report: Report, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        plot_report(report, tmp)


__all__ = ["check_gates", "save"]
