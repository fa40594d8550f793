"""Accuracy vs filter sparsity on the VGG-style reference: ADAM-ADMM vs one-shot magnitude, same epoch budget.

    python benchmarks/run_sweep.py --threads 1                   # all levels, both methods (~70 min)
    python benchmarks/run_sweep.py --ratios 0.7 --methods magnitude   # one cell
    python benchmarks/run_sweep.py --render-only                 # table and plots from results/sweep.json

Every cell is one ``onnxprune.compress`` of models/fmnist_vgg.onnx on Fashion-MNIST with the same total
training budget: ADMM runs ``--admm-epochs`` + ``--finetune-epochs`` (default 1 + 1), magnitude pruning runs
0 + (their sum) epochs of masked fine-tuning after a one-shot projection. ``dense`` is the unpruned model
trained for the same budget (``filter:0``, magnitude): the fair baseline for "does light sparsity help".

Results go to benchmarks/results/sweep.json after every cell (an interrupted sweep keeps what it measured),
the table between the sweep markers of benchmarks/README.md, and two plots: results/sweep_accuracy.png
(top-1 vs sparsity per method) and results/sweep_speedup.png (ORT CPU speedup vs MAC reduction at batch 1
and 32, with the ideal line speedup = MAC reduction), the latter from results/latency_vgg_cpu.json when
run_latency.py has timed the same ratios on an idle machine, else from the latency compress measured.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

from onnxprune.pipeline import TrainOptions, compress
from onnxprune.report import environment

ROOT = Path(__file__).resolve().parent
MODEL = ROOT.parent / "models" / "fmnist_vgg.onnx"
RESULTS = ROOT / "results" / "sweep.json"
BEGIN, END = "<!-- sweep-results:begin -->", "<!-- sweep-results:end -->"
DEFAULT_RATIOS = (0.7, 0.9, 0.3, 0.5, 0.8)


def run_cell(ratio: float, method: str, admm_epochs: int, finetune_epochs: int, threads: int | None) -> dict:
    name = f"vgg_filter{ratio:g}_{method}"
    if method == "admm":
        opts = TrainOptions(admm_epochs=admm_epochs, finetune_epochs=finetune_epochs, threads=threads)
    else:  # same total budget, all of it masked fine-tuning after the one-shot projection
        opts = TrainOptions(admm_epochs=0, finetune_epochs=admm_epochs + finetune_epochs, threads=threads)
    out = ROOT / "out" / "sweep"
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    r = compress(
        MODEL,
        f"filter:{ratio:g}",
        "fashion-mnist",
        out / f"{name}.onnx",
        method=method,
        train=opts,
        report_path=out / f"{name}.json",
        bench_repeats=50,
    ).report
    speed = {f"b{s['batch']}": s["speedup"] for s in (r.latency or {}).get("speedups", [])}
    return {
        "name": name,
        "ratio": ratio,
        "method": method,
        "epochs": f"{r.config['admm_epochs']}+{r.config['finetune_epochs']}",
        "dense_top1": r.accuracy["dense_top1"] if r.accuracy else None,
        "pruned_top1": r.accuracy["pruned_top1"] if r.accuracy else None,
        "mac_reduction": r.totals["mac_reduction"],
        "param_reduction": r.totals["param_reduction"],
        "bytes": r.totals["bytes_after"],
        "bytes_original": r.totals["bytes_before"],
        "verify_max_rel_error": r.verification["max_rel_error"],
        "speedup_under_load": speed,
        "wall_s": round(time.perf_counter() - start, 1),
        "date": time.strftime("%Y-%m-%d"),
        "cpu": environment()["cpu"],
    }


def load() -> dict[str, Any]:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {"runs": []}


def save(row: dict[str, Any]) -> None:
    saved = load()
    rows = {r["name"]: r for r in saved["runs"]} | {row["name"]: row}
    ordered = sorted(rows.values(), key=lambda r: (r["ratio"], r["method"]))
    RESULTS.write_text(json.dumps({"environment": environment(), "runs": ordered}, indent=2) + "\n")


def idle_speedups() -> dict[float, dict[str, float]]:
    """Speedups by filter ratio from run_latency.py's idle-machine timing (model names ``filterR_shape``)."""
    path = ROOT / "results" / "latency_vgg_cpu.json"
    if not path.exists():
        return {}
    out: dict[float, dict[str, float]] = {}
    for row in json.loads(path.read_text()).get("results", []):
        label = str(row.get("model", ""))
        if label.startswith("filter") and label.endswith("_shape"):
            ratio = float(label[len("filter") : -len("_shape")])
            out.setdefault(ratio, {})[f"b{row['batch']}"] = row["speedup"]
    return out


def table(rows: list[dict[str, Any]], idle: dict[float, dict[str, float]]) -> str:
    lines = [
        "| filter ratio | method | epochs | top-1 | vs dense original | vs dense, same epochs "
        "| MACs | params | file "
        "| verify err | ORT CPU b1 / b32 | b1 / b32 speedup ÷ MAC red. |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    dense_same = next((r["pruned_top1"] for r in rows if r["ratio"] == 0), None)
    for r in rows:
        sp = idle.get(r["ratio"], {})
        b1, b32 = sp.get("b1"), sp.get("b32")
        lat = f"{b1:.2f}x / {b32:.2f}x" if b1 and b32 else "—"
        eff = (
            f"{b1 / r['mac_reduction']:.2f} / {b32 / r['mac_reduction']:.2f}"
            if b1 and b32 and r["ratio"]
            else "—"
        )
        same = f"{100 * (r['pruned_top1'] - dense_same):+.2f} pp" if dense_same is not None else "—"
        lines.append(
            f"| {r['ratio']:g} | {r['method'] if r['ratio'] > 0 else 'dense'} | {r['epochs']} "
            f"| {100 * r['pruned_top1']:.2f}% "
            f"| {100 * (r['pruned_top1'] - r['dense_top1']):+.2f} pp | {same} "
            f"| {r['mac_reduction']:.2f}x fewer | {r['param_reduction']:.2f}x fewer "
            f"| {r['bytes'] / 1e6:.3f} MB "
            f"| {r['verify_max_rel_error']:.1e} | {lat} | {eff} |"
        )
    return "\n".join(lines)


def plots(rows: list[dict[str, Any]], idle: dict[float, dict[str, float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method, marker in (("admm", "o"), ("magnitude", "s")):
        mine = [r for r in rows if r["method"] == method and r["ratio"]]
        pts = sorted((r["ratio"], 100 * r["pruned_top1"]) for r in mine)
        if pts:
            ax.plot(*zip(*pts, strict=True), marker=marker, label=f"{method} (same epochs)")
    if rows:
        ax.axhline(100 * rows[0]["dense_top1"], color="gray", ls="--", label="dense original")
    dense_same = [r for r in rows if r["ratio"] == 0]
    if dense_same:
        ax.axhline(100 * dense_same[0]["pruned_top1"], color="black", ls=":", label="dense, same epochs")
    ax.set_xlabel("filter sparsity (fraction of filters removed)")
    ax.set_ylabel("top-1 (%) on the 10k test images")
    ax.set_title("VGG-style, Fashion-MNIST")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(ROOT / "results" / "sweep_accuracy.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 4))
    red = {r["ratio"]: r["mac_reduction"] for r in rows if r["method"] == "magnitude" and r["ratio"]}
    for batch, marker in (("b1", "o"), ("b32", "s")):
        pts = sorted((red[k], v[batch]) for k, v in idle.items() if k in red and batch in v)
        if pts:
            ax.plot(*zip(*pts, strict=True), marker=marker, label=f"ORT CPU batch {batch[1:]}")
    if red:
        top = max(red.values())
        ax.plot([1, top], [1, top], color="gray", ls="--", label="ideal (speedup = MAC reduction)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("MAC reduction (x)")
    ax.set_ylabel("speedup (x)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(ROOT / "results" / "sweep_speedup.png", dpi=110)
    plt.close(fig)


def render() -> None:
    saved = load()
    rows, idle = saved["runs"], idle_speedups()
    env = saved.get("environment", environment())
    measured = "; ".join(sorted({f"{r['date']} on {r['cpu']}" for r in rows}))
    block = (
        f"{BEGIN}\nMeasured {measured}, Python {env['python']}, torch {env.get('torch', '-')}, onnx "
        f"{env['onnx']}, onnxruntime {env['onnxruntime']}; training with 1 torch thread, top-1 by ORT on the "
        "10k test images. Speedups: `run_latency.py --ratios` (settings in results/latency_vgg_cpu.json).\n\n"
        f"{table(rows, idle)}\n\n![accuracy](results/sweep_accuracy.png) "
        f"![speedup](results/sweep_speedup.png)\n{END}"
    )
    readme = ROOT / "README.md"
    text = readme.read_text()
    if BEGIN not in text:
        text += f"\n{BEGIN}\n{END}\n"
    start, end = text.index(BEGIN), text.index(END) + len(END)
    readme.write_text(text[:start] + block + text[end:])
    if rows:
        plots(rows, idle)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ratios", type=float, nargs="+", default=list(DEFAULT_RATIOS))
    ap.add_argument("--methods", nargs="+", default=["admm", "magnitude"], choices=["admm", "magnitude"])
    ap.add_argument("--dense", action=argparse.BooleanOptionalAction, default=True, help="the dense baseline")
    ap.add_argument("--admm-epochs", type=int, default=1)
    ap.add_argument("--finetune-epochs", type=int, default=1)
    ap.add_argument("--threads", type=int, help="torch training threads")
    ap.add_argument("--render-only", action="store_true")
    args = ap.parse_args()
    if not args.render_only:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        cells = [(r, m) for r in args.ratios for m in args.methods]
        cells += [(0.0, "magnitude")] if args.dense else []
        for ratio, method in cells:
            row = run_cell(ratio, method, args.admm_epochs, args.finetune_epochs, args.threads)
            print(json.dumps(row))
            save(row)
            render()
    render()


if __name__ == "__main__":
    main()
