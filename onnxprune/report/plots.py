"""The report as a PNG: per-layer output channels before/after, and the ADMM primal residual per round."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .summary import Report


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
