"""The compress report: per-layer channels/params/MACs before and after, totals, accuracy, latency,
verification, training history and phase times. Printed as a table (:meth:`Report.format`), written as
JSON (:meth:`Report.to_json`), plotted as PNG (:func:`plot_report`).

:mod:`.summary` holds the report and its printed summary, :mod:`.layers` the per-layer rows and totals,
:mod:`.plots` the PNG.
"""

from __future__ import annotations

from .layers import LayerRow, format_budget, format_layers, layer_rows, totals
from .plots import plot_report
from .summary import Report, format_summary

__all__ = [
    "LayerRow",
    "Report",
    "format_budget",
    "format_layers",
    "format_summary",
    "layer_rows",
    "plot_report",
    "totals",
]
