"""The torchvision corpus: every classification model that fits, exported and compressed at filter:0.5.

    python -m benchmarks.run_corpus                          # every model (hours on 2 cores)
    python -m benchmarks.run_corpus --models resnet50 mobilenet_v2
    python -m benchmarks.run_corpus --missing                # the models not in results/corpus.json yet
    python -m benchmarks.run_corpus --render-only            # rebuild the README table from the JSON

Each model runs in a fresh process (``--worker``): export (:mod:`onnxprune.testing.corpus`), ``compress`` with
``filter:0.5`` on random data with a handful of steps, verification of pruned == masked, MAC counts, and
ORT CPU latency of dense vs pruned at batch 1. Results are merged into benchmarks/results/corpus.json after
every model, and the table between the markers of benchmarks/README.md is rewritten.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from onnxprune.testing import corpus

from .common import RESULTS as RESULTS_DIR
from .common import markdown_table, read_json, run_child, splice, write_json

RESULTS = RESULTS_DIR / "corpus.json"


# -- one model, in its own process ---------------------------------------------------------------------
def worker(name: str, size: int, repeats: int, threads: int | None, out: Path) -> None:
    import onnx

    start = time.perf_counter()
    row: dict[str, Any] = {"model": name, "input_size": corpus.input_size(name, size)}
    with tempfile.TemporaryDirectory() as tmp:
        path = None
        try:
            path = corpus.export(name, tmp, size)
            exported = time.perf_counter()
            result = corpus.compress_model(
                path,
                corpus.input_shape(name, size),
                bench_batches=(1,),
                bench_repeats=repeats,
                threads=threads,
            )
            row = corpus.row(name, result, onnx.load(str(path)), time.perf_counter() - start)
            row["export_s"] = round(exported - start, 1)
        except Exception as e:
            row |= {
                "status": "error",
                "error": corpus.one_line(e),
                "traceback": traceback.format_exc().splitlines()[-12:],
                "wall_s": round(time.perf_counter() - start, 1),
            }
            if path is not None:  # the requested figure needs only the export
                try:
                    req = corpus.requested_reduction(onnx.load(str(path)), corpus.input_shape(name, size))
                    row |= {"macs_before": req["macs"], "requested_mac_reduction": req["reduction"]}
                except Exception as e2:
                    row["requested_error"] = corpus.one_line(e2)
    out.write_text(json.dumps(row, indent=1) + "\n")


def run_one(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """The row of one model: skipped (does not fit), or run in a worker process (ok / xfail / error)."""
    params = corpus.param_count(name)
    reason = corpus.fits(name)
    if reason is not None:
        return {
            "model": name,
            "params": params,
            "input_size": corpus.input_size(name, args.size),
            "status": f"skipped: {reason}",
        }
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "row.json"
        cmd = [sys.executable, "-m", "benchmarks.run_corpus", "--worker", name, "--out", str(out)]
        cmd += ["--size", str(args.size), "--repeats", str(args.repeats)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        start = time.perf_counter()
        try:
            proc = run_child(cmd, timeout=args.timeout, capture_output=True)
            if out.exists():
                row = json.loads(out.read_text())
            else:
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
                row = {"model": name, "status": "error", "error": f"worker died: {tail[0][:300]}"}
        except subprocess.TimeoutExpired:
            row = {"model": name, "status": f"timed out after {args.timeout} s (not a failure: budget)"}
        row.setdefault("wall_s", round(time.perf_counter() - start, 1))
    row.setdefault("params", params)
    row.setdefault("input_size", corpus.input_size(name, args.size))
    return row


def status(row: dict[str, Any]) -> str:
    """ok / xfail: reason / FAIL: error / XPASS / skipped: reason, against the current ``corpus.XFAIL``."""
    xfail = corpus.XFAIL.get(row["model"])
    if row["status"] == "error":
        return f"xfail: {xfail}" if xfail else f"FAIL: {row['error']}"
    if row["status"] == "ok" and xfail:
        return f"XPASS (listed xfail: {xfail})"
    return row["status"]


# -- table ---------------------------------------------------------------------------------------------
def _fmt(value: Any, spec: str, suffix: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{suffix}"


def _params(n: int | None) -> str:
    return "—" if n is None else f"{n / 1e6:.1f}M"


HEADER = (
    "model",
    "input",
    "params",
    "groups prunable/total",
    "requested MAC red.",
    "achieved MAC red.",
    "verify err",
    "ORT CPU b1 dense → pruned",
    "b1 speedup",
    "wall",
    "status",
)


def table(rows: list[dict[str, Any]]) -> str:
    body = []
    for r in rows:
        groups = f"{r['groups_prunable']}/{r['groups_total']}" if "groups_total" in r else "—"
        lat = (
            f"{r['ort_cpu_b1_dense_ms']:.2f} → {r['ort_cpu_b1_pruned_ms']:.2f} ms"
            if r.get("ort_cpu_b1_dense_ms") is not None
            else "—"
        )
        state = status(r)
        state = state if len(state) < 200 else state[:197] + "..."
        body.append(
            [
                r["model"],
                r["input_size"],
                _params(r.get("params")),
                groups,
                _fmt(r.get("requested_mac_reduction"), ".2f", "x"),
                _fmt(r.get("achieved_mac_reduction"), ".2f", "x"),
                _fmt(r.get("verify_max_rel_error"), ".1e"),
                lat,
                _fmt(r.get("ort_cpu_b1_speedup"), ".2f", "x"),
                _fmt(r.get("wall_s"), ".0f", " s"),
                state.replace("|", "/"),
            ]
        )
    return markdown_table(HEADER, body)


def summary(rows: list[dict[str, Any]], total: int) -> str:
    states = [status(r) for r in rows]
    ok = sum(1 for s in states if s == "ok")
    skipped = sum(1 for s in states if s.startswith("skipped"))
    xfail = sum(1 for s in states if s.startswith("xfail"))
    failed = sum(1 for s in states if s.startswith(("FAIL", "XPASS")))
    timeouts = sum(1 for s in states if s.startswith("timed out"))
    return (
        f"**{ok} of {total} torchvision classification models fully pruned** (checker, ORT, "
        f"pruned ≡ masked, fewer MACs); {xfail} xfail, {failed} unexpected results, {skipped} do not fit, "
        f"{timeouts} timed out, {total - len(rows)} not run yet."
    )


def update_readme(saved: dict[str, Any]) -> None:
    env = saved["environment"]
    rows = sorted(saved["runs"].values(), key=lambda r: r["model"])
    cfg = saved["config"]
    splice(
        "corpus-results",
        f"Measured {saved['date']} on {env['cpu']} ({env['machine']}), Python {env['python']}, "
        f"torch {env.get('torch', '-')}, onnx {env['onnx']}, onnxruntime {env['onnxruntime']}. "
        f"`{cfg['sparsity']}`, random data, {cfg['train']}; ORT CPU provider, default threads, median of "
        f"{cfg['repeats']} runs at batch 1.\n\n{summary(rows, saved['total_models'])}\n\n{table(rows)}",
    )


# -- main ----------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", help="model names (default: every torchvision classifier)")
    ap.add_argument("--missing", action="store_true", help="only models not in results/corpus.json yet")
    ap.add_argument("--size", type=int, default=corpus.DEFAULT_SIZE, help="input size (where allowed)")
    ap.add_argument("--repeats", type=int, default=50, help="ORT timing repeats")
    ap.add_argument("--threads", type=int, help="torch training threads (default: torch's)")
    ap.add_argument("--timeout", type=int, default=3600, help="seconds per model")
    ap.add_argument("--render-only", action="store_true", help="rewrite the README table from the JSON")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.size, args.repeats, args.threads, args.out)
        return
    saved = read_json(RESULTS, {"runs": {}})
    if args.render_only:
        update_readme(saved)
        return

    from onnxprune.runtime.machine import environment

    all_models = corpus.list_models()
    names = args.models or all_models
    unknown = sorted(set(names) - set(all_models))
    if unknown:
        ap.error(f"not torchvision classification models: {', '.join(unknown)}")
    if args.missing:
        names = [n for n in names if n not in saved["runs"]]
    t = corpus.TRAIN
    saved |= {
        "environment": environment(),
        "total_models": len(all_models),
        "config": {
            "sparsity": corpus.SPARSITY,
            "size": args.size,
            "repeats": args.repeats,
            "train": f"{t.admm_epochs} ADMM epoch(s) of 256 samples at batch {t.batch_size} "
            f"(round every {t.round_iters} step) + {t.finetune_epochs} retraining epoch(s)",
        },
    }
    for i, name in enumerate(names, 1):
        print(f"[{i}/{len(names)}] {name} ...", flush=True)
        row = run_one(name, args)
        # merge into what is on disk now: rows another run wrote meanwhile are kept
        runs = read_json(RESULTS, {"runs": {}})["runs"]
        saved["runs"] = {**runs, name: row}
        saved["date"] = time.strftime("%Y-%m-%d")
        write_json(saved, RESULTS, indent=1, sort_keys=True)
        update_readme(saved)
        req, ach = row.get("requested_mac_reduction"), row.get("achieved_mac_reduction")
        print(
            f"    {status(row)}  requested {_fmt(req, '.2f', 'x')} achieved {_fmt(ach, '.2f', 'x')} "
            f"b1 {_fmt(row.get('ort_cpu_b1_speedup'), '.2f', 'x')}  {row.get('wall_s')} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
