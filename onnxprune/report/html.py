"""One self-contained HTML file of a compress run, for the artifact store of a pipeline run.

Rendered from the report's JSON form (the same dict ``--report`` writes), so a stored report can be
rendered again later; plots come in as PNG bytes and are embedded as ``data:`` URIs. No script, no
external stylesheet, no network: the file opens anywhere. Every string from the report is escaped.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#1b1b1b;max-width:1200px}
h1{font-size:1.4rem;margin-bottom:.2rem} h2{font-size:1.1rem;margin-top:1.8rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
td,th{border:1px solid #ddd;padding:.25rem .5rem}
th{background:#f4f4f4;text-align:left} td.n{text-align:right;font-variant-numeric:tabular-nums}
.pass{color:#fff;background:#2e7d32;padding:.1rem .45rem;border-radius:.3rem}
.fail{color:#fff;background:#c62828;padding:.1rem .45rem;border-radius:.3rem}
.muted{color:#666} img{max-width:100%;border:1px solid #eee}
"""


def render_html(report: Mapping[str, Any], plots: Sequence[bytes] = ()) -> str:
    """The page: summary, gates, verification, latency, per-layer table, groups kept and why, plots,
    training history and wall time per phase, environment. ``report``: :meth:`Report.to_dict`."""
    title = f"onnxprune: {report.get('model', '')}"
    body = [
        f"<h1>{_e(title)}</h1>",
        f"<p class=muted>sparsity {_e(report.get('sparsity'))} · method {_e(report.get('method'))} · "
        f"data {_e(report.get('data'))}</p>",
        _section("Summary", _summary(report)),
        _section("Quality gates", _gates(report.get("gates") or [])),
        _section("Verification: pruned ≡ masked", _verification(report.get("verification") or {})),
        _section("Latency (ONNX Runtime)", _latency(report.get("latency"))),
        _section("Layers", _layers(report.get("layers") or [])),
        _section("Pruning groups", _groups(report.get("groups") or [])),
        _section("Plots", "".join(_img(p) for p in plots) or "<p class=muted>no plots (matplotlib)</p>"),
        _section("Training", _history(report.get("history") or {})),
        _section("Wall time per phase (s)", _kv(report.get("phases") or {}, number=True)),
        _section("Notes", _list(report.get("notes") or [])),
        _section("Environment", _kv(report.get("environment") or {})),
    ]
    return (
        "<!doctype html><html><head><meta charset=utf-8>"
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>{''.join(body)}</body></html>\n"
    )


# -- sections -----------------------------------------------------------------------------------------
def _summary(r: Mapping[str, Any]) -> str:
    t = r.get("totals") or {}
    rows: list[tuple[str, str]] = []
    if "macs_before" in t:
        rows.append(("MACs", f"{_num(t['macs_before'])} → {_num(t['macs_after'])} ({_ratio(t, 'macs')})"))
    if "params_before" in t:
        rows.append(
            ("params", f"{_num(t['params_before'])} → {_num(t['params_after'])} ({_ratio(t, 'params')})")
        )
    if "bytes_before" in t:
        rows.append(("file", f"{_mb(t['bytes_before'])} → {_mb(t['bytes_after'])}"))
    acc = r.get("accuracy") or {}
    if "dense_top1" in acc:
        rows.append(("top-1", f"{100 * acc['dense_top1']:.2f} % → {100 * acc['pruned_top1']:.2f} %"))
    fid = r.get("fidelity") or {}
    if "fidelity" in fid:
        rows.append((f"fidelity to the dense model ({fid.get('measure', '')})", f"{fid['fidelity']:.4f}"))
    return _table(("", ""), rows, show_header=False)


def _gates(gates: Iterable[Mapping[str, Any]]) -> str:
    rows = [
        (
            _badge(bool(g.get("passed"))),
            _e(f"{g.get('gate', '')} (limit {g.get('limit')})"),
            _e(g.get("detail", "")),
        )
        for g in gates
    ]
    return _table(("", "gate", "measured"), rows, escape=False) if rows else "<p class=muted>no gates set</p>"


def _verification(v: Mapping[str, Any]) -> str:
    if not v:
        return "<p class=muted>not run</p>"
    head = (
        f"<p>{_badge(bool(v.get('passed')))} max relative error {_e(_sci(v.get('max_rel_error')))} "
        f"(tolerance {_e(v.get('rtol'))}, {_e(v.get('samples'))} samples)</p>"
    )
    per = v.get("per_output") or {}
    return head + _table(("output", "relative error"), [(k, _sci(e)) for k, e in per.items()])


def _latency(lat: Mapping[str, Any] | None) -> str:
    if not lat:
        return "<p class=muted>not measured</p>"
    rows = [
        (
            s["provider"],
            str(s["batch"]),
            f"{s['dense_ms']:.3f}",
            f"{s['pruned_ms']:.3f}",
            f"{s['speedup']:.2f}x",
        )
        for s in lat.get("speedups", [])
    ]
    return _table(("provider", "batch", "dense ms", "pruned ms", "speedup"), rows)


def _layers(layers: Iterable[Mapping[str, Any]]) -> str:
    rows = [
        (
            row["node"],
            row["op_type"],
            f"{row['in_before']}→{row['in_after']}",
            f"{row['out_before']}→{row['out_after']}",
            f"{_num(row['params_before'])}→{_num(row['params_after'])}",
            f"{_num(row['macs_before'])}→{_num(row['macs_after'])}",
            row.get("status", ""),
        )
        for row in layers
    ]
    return _table(("layer", "op", "in", "out", "params", "MACs", "status"), rows)


def _groups(groups: Iterable[Mapping[str, Any]]) -> str:
    rows = [
        (
            g.get("name", ""),
            g.get("node", ""),
            f"{g.get('kept', '')}/{g.get('channels', '')}",
            "prunable" if g.get("prunable") else "kept",
            g.get("reason") or g.get("rule") or "",
        )
        for g in groups
    ]
    return _table(("group", "source node", "kept", "", "reason / rule"), rows)


def _history(history: Mapping[str, Any]) -> str:
    parts = []
    for phase, entries in history.items():
        if not isinstance(entries, list) or not entries:
            continue
        keys = [k for k in entries[0] if isinstance(entries[0][k], int | float | str) and k != "phase"][:8]
        rows = [tuple(_cell(e.get(k)) for k in keys) for e in entries]
        parts.append(f"<h3>{_e(phase)}</h3>" + _table(tuple(keys), rows))
    return "".join(parts) or "<p class=muted>no training</p>"


# -- helpers ------------------------------------------------------------------------------------------
def _section(title: str, content: str) -> str:
    return f"<h2>{_e(title)}</h2>{content}"


def _table(
    header: Sequence[str], rows: Iterable[Sequence[Any]], show_header: bool = True, escape: bool = True
) -> str:
    head = "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>" if show_header else ""
    body = "".join(
        "<tr>" + "".join(f"<td{_numeric(c)}>{_e(c) if escape else c}</td>" for c in row) + "</tr>"
        for row in rows
    )
    return f"<table>{head}{body}</table>"


def _kv(mapping: Mapping[str, Any], number: bool = False) -> str:
    rows = [(k, f"{v:.2f}" if number and isinstance(v, int | float) else str(v)) for k, v in mapping.items()]
    return _table(("", ""), rows, show_header=False) if rows else "<p class=muted>none</p>"


def _list(items: Iterable[Any]) -> str:
    lis = "".join(f"<li>{_e(i)}</li>" for i in items)
    return f"<ul>{lis}</ul>" if lis else "<p class=muted>none</p>"


def _img(png: bytes) -> str:
    return f'<p><img alt="plot" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}"></p>'


def _badge(passed: bool) -> str:
    return "<span class=pass>PASS</span>" if passed else "<span class=fail>FAIL</span>"


def _numeric(cell: Any) -> str:
    text = str(cell)
    return " class=n" if text[:1].isdigit() or (text[:1] == "-" and text[1:2].isdigit()) else ""


def _cell(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else "" if v is None else str(v)


def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x))


def _num(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)


def _ratio(t: Mapping[str, Any], key: str) -> str:
    after = t.get(f"{key}_after") or 0
    return f"{t[f'{key}_before'] / after:.2f}x fewer" if after else "—"


def _mb(n: float) -> str:
    return f"{n / 1e6:.2f} MB"


def _sci(x: Any) -> str:
    return f"{x:.2e}" if isinstance(x, int | float) else str(x)
