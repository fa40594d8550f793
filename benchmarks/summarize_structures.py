"""Summaries of the sparsity-structure runs of benchmarks/run_structures.sh (element and channel).

    python -m benchmarks.summarize_structures     # reads benchmarks/out/structures/*.report.json

Writes one compact JSON per run to benchmarks/results/structures/ and the tables between the markers of
benchmarks/README.md ("Sparsity structures" for irregular, N:M and channel-wise, "Shape-wise sparsity" for
shape:R). Rows saved earlier whose report is not in the reports folder (runs made on another day or machine)
stay in the tables with their own date.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import common


def summarize(report: dict[str, Any], name: str) -> dict[str, Any]:
    t, a = report["totals"], report.get("accuracy") or {}
    lat = {f"b{s['batch']}": s for s in (report.get("latency") or {}).get("speedups", [])}
    elements = report.get("elements", [])
    zeros = sum(e["zeros"] for e in elements)
    size = sum(e["size"] for e in elements)
    return {
        "name": name,
        "model": Path(report["model"]).name,
        "sparsity": report["sparsity"],
        "method": report["method"],
        "epochs": f"{report['config']['admm_epochs'] if report['method'] == 'admm' else 0}"
        f"+{report['config']['finetune_epochs']}",
        "dense_top1": a.get("dense_top1"),
        "pruned_top1": a.get("pruned_top1"),
        "drop_pp": a.get("drop_pp"),
        "macs_dense": t["macs_after"],
        "effective_macs": t.get("effective_macs_after", t["macs_after"]),
        "macs_original": t["macs_before"],
        "params": t["params_after"],
        "params_nonzero": t["params_after"] - zeros,
        "zero_fraction_pruned_weights": zeros / size if size else 0.0,
        "kept_channels": {
            g["node"]: [g["kept"], g["channels"]]
            for g in report.get("groups", [])
            if g["kept"] < g["channels"]
        },
        "training_s": report["phases"].get("train", 0.0),
        "layers": [
            {k: e[k] for k in ("node", "rule", "size", "zeros", "zero_fraction", "macs", "effective_macs")}
            for e in elements
        ],
        "bytes_dense": t.get("bytes_dense", t["bytes_after"]),
        "bytes_sparse_stored": t.get("bytes_sparse_stored"),
        "bytes_original": t["bytes_before"],
        "written_sparse": t.get("sparse_initializers", False),
        "verify_max_rel_error": report["verification"]["max_rel_error"],
        "ort_cpu_ms": {b: {"dense": s["dense_ms"], "pruned": s["pruned_ms"]} for b, s in lat.items()},
        "speedup": {b: s["speedup"] for b, s in lat.items()},
        "wall_s": report["phases"].get("train", 0.0)
        + sum(v for k, v in report["phases"].items() if "." not in k and k != "train"),
        "environment": report["environment"],
        **_shape(report),
    }


def _shape(report: dict[str, Any]) -> dict[str, Any]:
    """Shape-wise runs: both exported forms, their timings, the choice and the dead channels."""
    f = report.get("shape_form")
    if not f:
        return {}
    t = report["totals"]
    return {
        "shape": {
            "chosen": f["chosen"],
            "reason": f["reason"],
            "timings_ms": f.get("timings"),
            "macs_written": f["macs_written"],
            "macs_dense_form": f.get("macs_dense", t["macs_after"]),
            "macs_lowered_form": f.get("macs_lowered"),
            "nodes": {"dense": f.get("dense_nodes"), "lowered": f.get("lowered_nodes")},
            "bytes": {"dense": t.get("bytes_dense", t["bytes_after"]), "lowered": f.get("bytes_lowered")},
            "lowered_rel_error": f.get("lowered_rel_error"),
            "dead_channels": sum(d["channels"] for d in f.get("dead_channels", [])),
            "dead_channels_removed": sum(d.get("removed", 0) for d in f.get("dead_channels", [])),
            "dead_removed": f.get("dead_removed", False),
            "layers": f["layers"],
        }
    }


def _latency(r: dict[str, Any], b: str) -> str:
    """ORT CPU median ms at batch ``b``: original → exported (speedup), or – when not measured."""
    s = r["ort_cpu_ms"].get(b)
    return f"{s['dense']:.3f} → {s['pruned']:.3f} ({s['dense'] / s['pruned']:.2f}x)" if s else "–"


def table(rows: list[dict[str, Any]]) -> str:
    envs: dict[str, list[str]] = {}  # environment -> dates measured on it
    for r in rows:
        e = r["environment"]
        text = (
            f"{e.get('cpu', '?')}, Python {e.get('python', '?')}, torch {e.get('torch', '?')}, "
            f"onnx {e.get('onnx', '?')}, onnxruntime {e.get('onnxruntime', '?')}"
        )
        if r["date"] not in envs.setdefault(text, []):
            envs[text].append(r["date"])
    head = (
        "Measured on a 2-core VM shared with other jobs (load average 3-8 during the runs): "
        + "; ".join(f"{', '.join(sorted(dates))} on {text}" for text, dates in envs.items())
        + " (CPU provider, default threads). Latency: ORT CPU median ms, dense original → exported model "
        "(element rows: the same dense kernels; channel rows: a physically smaller model).\n\n"
    )
    header = (
        *("run", "date", "epochs", "top-1 dense", "top-1 pruned", "drop (pp)", "zeros in pruned weights"),
        *("MACs of the exported model", "effective non-zero MACs", "params (non-zero)", "file dense"),
        *("file sparse-stored", "ORT CPU b1 ms", "ORT CPU b32 ms", "verify err", "training", "wall"),
    )

    def zeros(r: dict[str, Any]) -> str:
        return (
            "– (removed)" if "channel" in r["sparsity"] else f"{100 * r['zero_fraction_pruned_weights']:.1f}%"
        )

    def training(r: dict[str, Any]) -> str:
        return f"{r['training_s']:.0f} s" if r.get("training_s") else "–"

    def mb(v: float | None) -> str:
        return f"{v / 1e6:.3f} MB" if v else "–"

    rows = [r for r in rows if "shape" not in r]
    body = [
        [
            *(r["name"], r["date"], r["epochs"], f"{100 * r['dense_top1']:.2f}%"),
            *(f"{100 * r['pruned_top1']:.2f}%", f"{r['drop_pp']:+.2f}", zeros(r)),
            *(f"{r['macs_dense'] / 1e6:.2f} M", f"{r['effective_macs'] / 1e6:.2f} M"),
            f"{r['params_nonzero'] / 1e3:.1f} k of {r['params'] / 1e3:.1f} k",
            *(mb(r["bytes_dense"]), mb(r["bytes_sparse_stored"]), _latency(r, "b1"), _latency(r, "b32")),
            *(f"{r['verify_max_rel_error']:.1e}", training(r), f"{r['wall_s']:.0f} s"),
        ]
        for r in rows
    ]
    return head + common.markdown_table(header, body)


def shape_table(rows: list[dict[str, Any]]) -> str:
    rows = [r for r in rows if "shape" in r]
    if not rows:
        return "(no shape-wise runs yet)"
    env = rows[0]["environment"]
    head = (
        f"Measured {rows[0]['date']} on a 2-core VM ({env.get('cpu', '?')}, shared with other jobs), Python "
        f"{env.get('python', '?')}, torch {env.get('torch', '?')}, onnx {env.get('onnx', '?')}, onnxruntime "
        f"{env.get('onnxruntime', '?')} (CPU provider, default threads). MACs: original → written model "
        "(dead channels removed by surgery); effective = multiply-adds with a non-zero weight (= the lowered "
        "form's MACs). Latency: ORT CPU median ms; 'dense form' / 'lowered form' are the two exported forms "
        "timed against each other by `compress` (the choice), 'original → written' the report's comparison "
        "of the unpruned model with the written one (a separate run of the benchmark).\n\n"
    )
    header = (
        *("run", "top-1 dense → pruned", "MACs original → written", "effective MACs", "params (non-zero)"),
        *("file (written)", "dead channels / removed", "b1 ms: dense form / lowered form"),
        *("b32 ms: dense form / lowered form", "chosen", "b1 ms original → written"),
        *("b32 ms original → written", "verify err (pruned ≡ masked / lowered ≡ dense)"),
    )

    def forms(r: dict[str, Any], b: int) -> str:
        t = r["shape"]["timings_ms"]
        return f"{t['dense'][str(b)]:.3f} / {t['lowered'][str(b)]:.3f}" if t else "–"

    body = []
    for r in rows:
        sh = r["shape"]
        low_err = sh["lowered_rel_error"]
        body.append(
            [
                f"{r['name']} ({r['epochs']})",
                f"{100 * r['dense_top1']:.2f}% → {100 * r['pruned_top1']:.2f}%",
                f"{r['macs_original'] / 1e6:.2f} M → {sh['macs_written'] / 1e6:.2f} M",
                f"{r['effective_macs'] / 1e6:.2f} M",
                f"{r['params_nonzero'] / 1e3:.1f} k of {r['params'] / 1e3:.1f} k",
                f"{sh['bytes'][sh['chosen']] / 1e6:.3f} MB",
                f"{sh['dead_channels']} / {sh['dead_channels_removed']}",
                *(forms(r, 1), forms(r, 32), f"**{sh['chosen']}**", _latency(r, "b1"), _latency(r, "b32")),
                f"{r['verify_max_rel_error']:.1e} / " + (f"{low_err:.1e}" if low_err is not None else "–"),
            ]
        )
    return head + common.markdown_table(header, body)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--reports", type=Path, default=common.OUT / "structures")
    p.add_argument("--results", type=Path, default=common.RESULTS / "structures")
    args = p.parse_args()
    args.results.mkdir(parents=True, exist_ok=True)
    # saved rows first (runs whose full reports are not here any more), then the fresh reports
    by_name: dict[str, dict[str, Any]] = {}
    for path in sorted(args.results.glob("*.json")):
        saved = common.read_json(path)
        if "name" in saved and "ort_cpu_ms" in saved:
            by_name[saved["name"]] = saved
    for path in sorted(args.reports.glob("*.report.json")):
        name = path.name.removesuffix(".report.json")
        row = summarize(common.read_json(path), name)
        row["date"] = datetime.fromtimestamp(path.stat().st_mtime, UTC).strftime("%Y-%m-%d")
        common.write_json(row, args.results / f"{name}.json")
        by_name[name] = row
    rows = [by_name[name] for name in sorted(by_name)]
    common.splice("structures-results", table(rows))
    common.splice("shape-results", shape_table(rows))


if __name__ == "__main__":
    main()
