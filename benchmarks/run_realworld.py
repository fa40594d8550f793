"""The real-world corpus (onnxprune/testing/realworld.py): YOLO, timm, Hugging Face and other conventions.

    python -m benchmarks.run_realworld                       # every entry: export, preview, training, bench
    python -m benchmarks.run_realworld --only yolov8n resnet18
    python -m benchmarks.run_realworld --family timm-hybrid --missing
    python -m benchmarks.run_realworld --quick               # export + preview only (minutes, no training)
    python -m benchmarks.run_realworld --render-only         # rebuild the README table from the JSON

Each step of an entry runs in its own child process with a timeout, as a user would run it:

1. export: the entry's own library writes the ONNX file (``Entry.export``);
2. preview: ``onnxprune compress M --sparsity filter:0.5 --data random --method magnitude
   --finetune-epochs 0`` (plan, surgery, verification; no training);
3. training: ``compress M --sparsity filter:0.5 --data random --admm-epochs 1 --finetune-epochs 1
   --max-samples 64 --batch-size 16`` (ADMM + masked retraining by self-distillation), verified;
4. bench: ``onnxprune bench M P --batch 1 --threads 1 --provider cpu`` on the trained pruned model.

A step fails when it exits non-zero **or prints a traceback anywhere** (a traceback is a defect even when
the exit status is 0). An entry is ``ok`` when preview and training both pass; a failing entry listed in
``realworld.XFAIL`` is ``xfail: reason``; any other failure is ``FAIL``. Results are merged into
benchmarks/results/realworld.json after every entry and the table between the markers of
benchmarks/README.md is regenerated from it. The ORT speedups are preliminary: one intra-op thread on a
shared 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, ROOT, markdown_table, splice
from onnxprune.testing import realworld

RESULTS_JSON = RESULTS / "realworld.json"
SPARSITY = "filter:0.5"
PREVIEW = ["--method", "magnitude", "--finetune-epochs", "0", "--max-samples", "32", "--no-bench"]
TRAIN = ["--admm-epochs", "1", "--finetune-epochs", "1", "--max-samples", "64", "--batch-size", "16"]
TRAIN += ["--threads", "1", "--no-bench"]
TRACEBACK = "Traceback (most recent call last)"


# -- child processes ---------------------------------------------------------------------------------
def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.setdefault("OMP_NUM_THREADS", "1")
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "YOLO_OFFLINE"):
        env[var] = "1"
    return env


def _last_error(text: str) -> str:
    """The ``error: ...`` line the CLI prints, else the last non-empty line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    return (errors[-1] if errors else (lines[-1] if lines else ""))[:400]


def run_step(cmd: Sequence[str], timeout: int, cwd: Path) -> dict[str, Any]:
    """Run one step; ``ok`` only with exit status 0 and no traceback in its output."""
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            list(cmd), cwd=cwd, env=_child_env(), capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return {"ok": False, "timeout": True, "error": f"timed out after {timeout} s", "wall_s": timeout}
    out = proc.stdout + proc.stderr
    step: dict[str, Any] = {"ok": proc.returncode == 0, "rc": proc.returncode}
    step["wall_s"] = round(time.perf_counter() - start, 1)
    if TRACEBACK in out:
        tail = out[out.rindex(TRACEBACK) :].strip().splitlines()
        step |= {"ok": False, "traceback": True, "error": f"traceback: {tail[-1][:300]}"}
        step["traceback_tail"] = tail[-8:]
    elif proc.returncode != 0:
        step["error"] = _last_error(out)
    return step


def _compress_cmd(
    model: Path, out: Path, report: Path, entry: realworld.Entry, extra: list[str]
) -> list[str]:
    return [
        sys.executable, "-m", "onnxprune", "compress", str(model), "--sparsity", SPARSITY,
        *entry.data_args(), *extra, "-o", str(out), "--report", str(report), "-q",
    ]  # fmt: skip


def _compress_step(
    model: Path, work: Path, name: str, entry: realworld.Entry, options: list[str], timeout: int
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """One ``compress`` child writing ``work/<name>.onnx`` and its report: the step's row (with the
    report's summary when it passed) and the report."""
    step = run_step(
        _compress_cmd(model, work / f"{name}.onnx", work / f"{name}.json", entry, options), timeout, work
    )
    report = _read(work / f"{name}.json")
    if step["ok"] and report:
        step |= _summary(report)
    return step, report


def _read(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    t, v = report["totals"], report["verification"]
    return {
        "groups_prunable": sum(1 for g in report["groups"] if g["prunable"]),
        "groups_total": len(report["groups"]),
        "macs_before": t["macs_before"],
        "macs_after": t["macs_after"],
        "achieved_mac_reduction": t["mac_reduction"],
        "verify_max_rel_error": v["max_rel_error"],
        "input_shape": report["config"].get("input_shape"),
    }


def _requested(model: Path, shape: Any) -> float | None:
    """The unconstrained filter:0.5 reduction (benchmarks/corpus.py's definition)."""
    import onnx

    from onnxprune.testing import corpus

    return float(corpus.requested_reduction(onnx.load(str(model)), shape)["reduction"])


def run_entry(entry: realworld.Entry, args: argparse.Namespace) -> dict[str, Any]:
    """Export, preview, train and bench one entry (each a child process); the row of the table."""
    row: dict[str, Any] = {"model": entry.name, "family": entry.family, "note": entry.note}
    row["input_shapes"] = list(entry.input_shapes)
    missing = realworld.available(entry)
    if missing is not None:
        return row | {"status": f"skipped: needs the '{missing}' package"}
    with tempfile.TemporaryDirectory(prefix=f"rw-{entry.name}-") as tmp:
        work = Path(tmp)
        where = args.cache / entry.name if args.cache else work / "export"
        marker = where / "model.path"
        if marker.exists() and Path(marker.read_text().strip()).exists():
            export = {"ok": True, "cached": True, "wall_s": 0.0}
        else:
            export = run_step(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.run_realworld",
                    "--export",
                    entry.name,
                    "--dir",
                    str(where),
                ],
                args.timeout,
                ROOT,
            )
        row["export"] = export
        if not export["ok"] or not marker.exists():
            return row
        model = Path(marker.read_text().strip())
        row["file_mb"] = round(model.stat().st_size / 2**20, 1)

        preview, report = _compress_step(model, work, "preview", entry, PREVIEW, args.timeout)
        if preview["ok"] and report:
            try:
                row["requested_mac_reduction"] = _requested(model, report["config"]["input_shape"])
            except Exception as e:  # the figure is informative; its failure is recorded, not fatal
                row["requested_error"] = f"{type(e).__name__}: {e}"[:300]
        row["preview"] = preview
        if args.quick:
            return row

        train, _ = _compress_step(model, work, "trained", entry, TRAIN, args.timeout)
        row["train"] = train
        if train["ok"] and not args.no_bench:
            bench = [
                sys.executable, "-m", "onnxprune", "bench", str(model), str(work / "trained.onnx"),
                "--batch", "1", "--threads", "1", "--provider", "cpu", "--repeats", str(args.repeats),
                "--json", str(work / "bench.json"),
            ]  # fmt: skip
            shape = train.get("input_shape") or []
            if shape and isinstance(shape, list):
                bench += ["--input-shape", ",".join(str(d) for d in shape)]
            step = run_step(bench, args.timeout, work)
            timing = _read(work / "bench.json")
            if step["ok"] and timing:
                res = {r["model"]: r for r in timing["results"]}
                dense, pruned = (res[k]["median_ms"] for k in (model.stem, "trained"))
                step |= {"dense_ms": dense, "pruned_ms": pruned, "speedup": dense / pruned}
            row["bench"] = step
    return row


# -- status and table --------------------------------------------------------------------------------
STEPS = ("export", "preview", "train")


def failure(row: dict[str, Any]) -> str | None:
    """The first failing step as 'step: error', None when every step that ran passed."""
    for step in STEPS:
        s = row.get(step)
        if s is not None and not s["ok"]:
            return f"{step}: {s.get('error', 'failed')}"
    return None


def status(row: dict[str, Any]) -> str:
    """ok / xfail: reason / FAIL: step: error / XPASS / skipped: reason, against ``realworld.XFAIL``."""
    if "status" in row:  # skipped
        return str(row["status"])
    xfail = realworld.XFAIL.get(row["model"])
    bad = failure(row)
    if bad is None:
        if "train" not in row:
            return "preview ok (no training run)" if not xfail else f"XPASS preview (listed xfail: {xfail})"
        return f"XPASS (listed xfail: {xfail})" if xfail else "ok"
    if any(row.get(s, {}).get("traceback") for s in STEPS):
        return f"FAIL: {bad}"  # a traceback is never an expected failure
    return f"xfail: {xfail}" if xfail else f"FAIL: {bad}"


def _fmt(value: Any, spec: str, suffix: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{suffix}"


def _red(step: dict[str, Any]) -> str:
    return _fmt(step.get("achieved_mac_reduction"), ".2f", "x")


def table(rows: list[dict[str, Any]]) -> str:
    header = (
        "model",
        "family",
        "groups prunable/total",
        "requested MAC red.",
        "achieved (preview / trained)",
        "verify err (preview / trained)",
        "ORT CPU b1 speedup (prelim.)",
        "wall (preview + train)",
        "status",
    )
    cells = []
    for r in rows:
        p, t, b = r.get("preview") or {}, r.get("train") or {}, r.get("bench") or {}
        groups = f"{p['groups_prunable']}/{p['groups_total']}" if "groups_total" in p else "—"
        err = f"{_fmt(p.get('verify_max_rel_error'), '.1e')} / {_fmt(t.get('verify_max_rel_error'), '.1e')}"
        wall = sum(s.get("wall_s", 0) for s in (p, t))
        state = status(r).replace("|", "/")
        state = state if len(state) < 240 else state[:237] + "..."
        cells.append(
            (
                r["model"],
                r["family"],
                groups,
                _fmt(r.get("requested_mac_reduction"), ".2f", "x"),
                f"{_red(p)} / {_red(t)}",
                err,
                _fmt(b.get("speedup"), ".2f", "x"),
                f"{wall:.0f} s",
                state,
            )
        )
    return markdown_table(header, cells)


def counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        key = status(r).split(":")[0].split(" (")[0]
        out[key] = out.get(key, 0) + 1
    return out


def summary(rows: list[dict[str, Any]]) -> str:
    c = counts(rows)
    total = len(realworld.ENTRIES)
    parts = ", ".join(f"{n} {k}" for k, n in sorted(c.items(), key=lambda kv: -kv[1]))
    families: dict[str, list[int]] = {}
    for r in rows:
        ok = status(r) == "ok"
        fam = families.setdefault(r["family"], [0, 0])
        fam[0] += ok
        fam[1] += 1
    per = "; ".join(f"{f} {a}/{n}" for f, (a, n) in sorted(families.items()))
    return (
        f"**{c.get('ok', 0)} of {total} entries prune and train** ({parts}; {total - len(rows)} not run). "
        f"By family: {per}."
    )


def update_readme(saved: dict[str, Any]) -> None:
    env = saved.get("environment", {})
    rows = sorted(saved["runs"].values(), key=lambda r: (r["family"], r["model"]))
    body = (
        f"Measured {saved.get('date', '?')} on {env.get('cpu', '?')} ({env.get('machine', '?')}), "
        f"Python {env.get('python', '?')}, torch {env.get('torch', '-')}, onnx {env.get('onnx', '?')}, "
        f"onnxruntime {env.get('onnxruntime', '?')}; `{SPARSITY}`, random data. Preview: "
        f"`{' '.join(PREVIEW)}`; training: `{' '.join(TRAIN)}` (self-distillation). Speedups: ORT CPU, "
        "batch 1, 1 intra-op thread, a shared 2-core machine: preliminary (the first run was taken at a load "
        "average of 12-14, its speedups are noise; re-measure on an idle machine).\n\n"
        f"{summary(rows)}\n\n{table(rows)}"
    )
    splice(
        "realworld-results", body, heading="Real-world corpus (YOLO, timm, Hugging Face, other conventions)"
    )


def save(saved: dict[str, Any], name: str, row: dict[str, Any]) -> None:
    """Merge one row into the JSON on disk (rows other runs wrote meanwhile are kept: several runs may
    share the file, under a lock); atomic."""
    import fcntl

    with open(RESULTS_JSON.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        runs = json.loads(RESULTS_JSON.read_text())["runs"] if RESULTS_JSON.exists() else {}
        old = runs.get(name)
        if old is not None and "train" in old and "train" not in row:
            return  # a quick (preview-only) row never replaces a full one
        saved["runs"] = {**runs, name: row}
        saved["date"] = time.strftime("%Y-%m-%d")
        tmp = RESULTS_JSON.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(saved, indent=1, sort_keys=True) + "\n")
        tmp.replace(RESULTS_JSON)


# -- main ----------------------------------------------------------------------------------------------
def _export_only(name: str, directory: Path) -> None:
    path = realworld.ENTRIES[name].export(directory)
    (directory / "model.path").write_text(str(path))
    print(path)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", metavar="NAME", help="entries to run (default: all)")
    ap.add_argument("--family", nargs="+", help="only these families")
    ap.add_argument("--missing", action="store_true", help="only entries not in the results JSON yet")
    ap.add_argument("--quick", action="store_true", help="export and preview only (no training, no bench)")
    ap.add_argument("--no-bench", action="store_true", help="skip the ORT latency step")
    ap.add_argument("--repeats", type=int, default=50, help="ORT timing repeats")
    ap.add_argument("--timeout", type=int, default=1200, help="seconds per step")
    ap.add_argument("--cache", type=Path, help="keep exports in DIR/NAME and reuse them (default: none)")
    ap.add_argument("--render-only", action="store_true", help="rewrite the README table from the JSON")
    ap.add_argument("--list", action="store_true", help="print the entries and exit")
    ap.add_argument("--export", help=argparse.SUPPRESS)
    ap.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.export:
        _export_only(args.export, args.dir)
        return
    if args.list:
        for e in realworld.ENTRIES.values():
            print(f"{e.name:45s} {e.family:12s} {' '.join(e.data_args())}  {e.note}")
        return
    saved = json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.exists() else {"runs": {}}
    if args.render_only:
        update_readme(saved)
        return
    names = args.only or list(realworld.ENTRIES)
    unknown = sorted(set(names) - set(realworld.ENTRIES))
    if unknown:
        ap.error(f"unknown entries: {', '.join(unknown)} (see --list)")
    if args.family:
        names = [n for n in names if realworld.ENTRIES[n].family in args.family]
    if args.missing:
        names = [n for n in names if n not in saved["runs"]]

    from onnxprune.runtime.machine import environment

    RESULTS_JSON.parent.mkdir(exist_ok=True)
    saved["environment"] = environment()
    saved["config"] = {"sparsity": SPARSITY, "preview": PREVIEW, "train": TRAIN, "quick": args.quick}
    for i, name in enumerate(names, 1):
        print(f"[{i}/{len(names)}] {name} ...", flush=True)
        row = run_entry(realworld.ENTRIES[name], args)
        save(saved, name, row)
        update_readme(json.loads(RESULTS_JSON.read_text()))
        p, t = row.get("preview") or {}, row.get("train") or {}
        print(
            f"    {status(row)}  requested {_fmt(row.get('requested_mac_reduction'), '.2f', 'x')} achieved "
            f"{_red(p)} / {_red(t)}"
            f"  b1 {_fmt((row.get('bench') or {}).get('speedup'), '.2f', 'x')}",
            flush=True,
        )


if __name__ == "__main__":
    main()
