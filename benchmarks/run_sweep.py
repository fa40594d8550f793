"""Accuracy vs filter sparsity on the VGG-style reference: ADAM-ADMM vs one-shot magnitude, same epoch budget.

    python -m benchmarks.run_sweep --threads 1                   # all levels, both methods (~70 min)
    python -m benchmarks.run_sweep --ratios 0.7 --methods magnitude   # one cell
    python -m benchmarks.run_sweep --seeds 1 2 --threads 1       # the same cells with two more seeds
    python -m benchmarks.run_sweep --render-only                 # table and plots from results/sweep.json

Every cell is one ``onnxprune.compress`` of models/fmnist_vgg.onnx on Fashion-MNIST with the same total
training budget: ADMM runs ``--admm-epochs`` + ``--finetune-epochs`` (default 1 + 1), magnitude pruning runs
0 + (their sum) epochs of masked fine-tuning after a one-shot projection. ``dense`` is the unpruned model
trained for the same budget (``filter:0``, magnitude): the fair baseline for "does light sparsity help".

``--seeds`` repeats every cell per seed (``compress(seed=...)``: initial shuffling, validation split, batch
order); the table gives each cell's mean and sample standard deviation over its seeds, and a second table the
ADMM − magnitude difference paired by seed. Several sweeps may run at once (one per seed): rows are saved
under a lock.

Results go to benchmarks/results/sweep.json after every cell (an interrupted sweep keeps what it measured),
the table between the sweep markers of benchmarks/README.md, and two plots: results/sweep_accuracy.png
(top-1 vs sparsity per method) and results/sweep_speedup.png (ORT CPU speedup vs MAC reduction at batch 1
and 32, with the ideal line speedup = MAC reduction), the latter from results/latency_vgg_cpu.json when
run_latency.py has timed the same ratios on an idle machine, else from the latency compress measured.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from onnxprune.pipeline import TrainOptions, compress
from onnxprune.runtime.machine import environment

from .common import MODELS, OUT, markdown_table, read_json, splice, write_json
from .common import RESULTS as RESULTS_DIR

MODEL = MODELS / "fmnist_vgg.onnx"
RESULTS = RESULTS_DIR / "sweep.json"
DEFAULT_RATIOS = (0.7, 0.9, 0.3, 0.5, 0.8)


def cell_name(ratio: float, method: str, seed: int) -> str:
    """Seed 0 keeps the names of the first sweep's rows."""
    return f"vgg_filter{ratio:g}_{method}" + (f"_seed{seed}" if seed else "")


def run_cell(
    ratio: float, method: str, admm_epochs: int, finetune_epochs: int, threads: int | None, seed: int = 0
) -> dict:
    name = cell_name(ratio, method, seed)
    if method == "admm":
        opts = TrainOptions(admm_epochs=admm_epochs, finetune_epochs=finetune_epochs, threads=threads)
    else:  # same total budget, all of it masked fine-tuning after the one-shot projection
        opts = TrainOptions(admm_epochs=0, finetune_epochs=admm_epochs + finetune_epochs, threads=threads)
    out = OUT / "sweep"
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    r = compress(
        MODEL,
        f"filter:{ratio:g}",
        "fashion-mnist",
        out / f"{name}.onnx",
        method=method,
        train=opts,
        seed=seed,
        report_path=out / f"{name}.json",
        bench_repeats=50,
    ).report
    speed = {f"b{s['batch']}": s["speedup"] for s in (r.latency or {}).get("speedups", [])}
    return {
        "name": name,
        "ratio": ratio,
        "method": method,
        "seed": seed,
        "epochs": f"{r.config['admm_epochs']}+{r.config['finetune_epochs']}",
        "dense_top1": r.accuracy["dense_top1"] if r.accuracy else None,
        "pruned_top1": r.accuracy["pruned_top1"] if r.accuracy else None,
        "mac_reduction": r.totals["mac_reduction"],
        "param_reduction": r.totals["param_reduction"],
        "bytes": r.totals["bytes_after"],
        "bytes_original": r.totals["bytes_before"],
        "verify_max_rel_error": r.verification.max_rel_error,
        "speedup_under_load": speed,
        "wall_s": round(time.perf_counter() - start, 1),
        "date": time.strftime("%Y-%m-%d"),
        "cpu": environment()["cpu"],
    }


def load() -> dict[str, Any]:
    return read_json(RESULTS, {"runs": []})  # type: ignore[no-any-return]


@contextmanager
def locked() -> Iterator[None]:
    """Serializes the read-modify-write of sweep.json and the README between sweeps running at once."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with open(RESULTS.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def save(row: dict[str, Any]) -> None:
    saved = load()
    rows = {r["name"]: r for r in saved["runs"]} | {row["name"]: row}
    ordered = sorted(rows.values(), key=lambda r: (r["ratio"], r["method"], r.get("seed", 0)))
    write_json({"environment": environment(), "runs": ordered}, RESULTS)


def idle_speedups() -> dict[float, dict[str, float]]:
    """Speedups by filter ratio from run_latency.py's idle-machine timing (model names ``filterR_shape``)."""
    path = RESULTS_DIR / "latency_vgg_cpu.json"
    if not path.exists():
        return {}
    out: dict[float, dict[str, float]] = {}
    for row in json.loads(path.read_text()).get("results", []):
        label = str(row.get("model", ""))
        if label.startswith("filter") and label.endswith("_shape"):
            ratio = float(label[len("filter") : -len("_shape")])
            out.setdefault(ratio, {})[f"b{row['batch']}"] = row["speedup"]
    return out


def cells(rows: list[dict[str, Any]]) -> dict[tuple[float, str], list[dict[str, Any]]]:
    """Rows grouped by (ratio, method), each group ordered by seed."""
    out: dict[tuple[float, str], list[dict[str, Any]]] = {}
    for r in sorted(rows, key=lambda r: (r["ratio"], r["method"], r.get("seed", 0))):
        out.setdefault((r["ratio"], r["method"]), []).append(r)
    return out


def top1s(group: list[dict[str, Any]]) -> list[float]:
    return [100 * r["pruned_top1"] for r in group]


def mean_sd(values: list[float]) -> str:
    """'92.74 %' for one value, '92.81 % ± 0.12' (sample standard deviation) for several."""
    mean = statistics.fmean(values)
    return f"{mean:.2f} %" if len(values) < 2 else f"{mean:.2f} % ± {statistics.stdev(values):.2f}"


def table(rows: list[dict[str, Any]], idle: dict[float, dict[str, float]]) -> str:
    header = (
        "filter ratio",
        "method",
        "epochs",
        "top-1 (mean ± sd)",
        "seeds: top-1",
        "vs dense original",
        "vs dense, same epochs",
        "MACs",
        "params",
        "file",
        "verify err (max)",
        "ORT CPU b1 / b32",
        "b1 / b32 speedup ÷ MAC red.",
    )
    body = []
    groups = cells(rows)
    dense = groups.get((0.0, "magnitude"))
    dense_same = statistics.fmean(top1s(dense)) if dense else None
    for (ratio, method), group in groups.items():
        first, acc = group[0], top1s(group)
        sp = idle.get(ratio, {})
        b1, b32 = sp.get("b1"), sp.get("b32")
        lat = f"{b1:.2f}x / {b32:.2f}x" if b1 and b32 else "—"
        red = first["mac_reduction"]
        eff = f"{b1 / red:.2f} / {b32 / red:.2f}" if b1 and b32 and ratio else "—"
        mean = statistics.fmean(acc)
        same = f"{mean - dense_same:+.2f} pp" if dense_same is not None else "—"
        seeds = ", ".join(f"{r.get('seed', 0)}: {a:.2f}" for r, a in zip(group, acc, strict=True))
        body.append(
            [
                f"{ratio:g}",
                method if ratio > 0 else "dense",
                first["epochs"],
                mean_sd(acc),
                seeds,
                f"{mean - 100 * first['dense_top1']:+.2f} pp",
                same,
                f"{red:.2f}x fewer",
                f"{first['param_reduction']:.2f}x fewer",
                f"{first['bytes'] / 1e6:.3f} MB",
                f"{max(r['verify_max_rel_error'] for r in group):.1e}",
                lat,
                eff,
            ]
        )
    return markdown_table(header, body)


def paired_table(rows: list[dict[str, Any]]) -> str:
    """ADMM − magnitude top-1 per ratio, paired by seed (same seed = same split and batch order)."""
    groups = cells(rows)
    header = (
        "filter ratio",
        "MAC red.",
        "ADMM − magnitude, mean ± sd (pp)",
        "per seed (pp)",
        "ADMM ahead in",
    )
    body = []
    for ratio in sorted({r for r, _ in groups if r > 0}):
        admm = {r.get("seed", 0): 100 * r["pruned_top1"] for r in groups.get((ratio, "admm"), [])}
        mag = {r.get("seed", 0): 100 * r["pruned_top1"] for r in groups.get((ratio, "magnitude"), [])}
        seeds = sorted(admm.keys() & mag.keys())
        if not seeds:
            continue
        diffs = [admm[s] - mag[s] for s in seeds]
        spread = f" ± {statistics.stdev(diffs):.2f}" if len(diffs) > 1 else ""
        red = groups[(ratio, "admm")][0]["mac_reduction"]
        per_seed = ", ".join(f"{s}: {d:+.2f}" for s, d in zip(seeds, diffs, strict=True))
        ahead = sum(d > 0 for d in diffs)
        body.append(
            [
                f"{ratio:g}",
                f"{red:.1f}x",
                f"{statistics.fmean(diffs):+.2f}{spread}",
                per_seed,
                f"{ahead} of {len(diffs)} seeds",
            ]
        )
    return markdown_table(header, body)


def plots(rows: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = cells(rows)
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, marker in (("admm", "o"), ("magnitude", "s")):
        mine = sorted((ratio, top1s(g)) for (ratio, m), g in groups.items() if m == method and ratio)
        if not mine:
            continue
        xs = [ratio for ratio, _ in mine]
        means = [statistics.fmean(acc) for _, acc in mine]
        sds = [statistics.stdev(acc) if len(acc) > 1 else 0.0 for _, acc in mine]
        line = ax.errorbar(xs, means, yerr=sds, marker=marker, capsize=3, label=f"{method} (same epochs)")
        for ratio, acc in mine:
            ax.plot(
                [ratio] * len(acc), acc, ls="none", marker=marker, ms=3, alpha=0.35, color=line[0].get_color()
            )
    if rows:
        ax.axhline(100 * rows[0]["dense_top1"], color="gray", ls="--", label="dense original")
    dense_same = groups.get((0.0, "magnitude"))
    if dense_same:
        ax.axhline(statistics.fmean(top1s(dense_same)), color="black", ls=":", label="dense, same epochs")
    n_seeds = max((len(g) for g in groups.values()), default=1)
    ax.set_xlabel("filter sparsity (fraction of filters removed)")
    ax.set_ylabel("top-1 (%) on the 10k test images")
    ax.set_title(f"VGG-style, Fashion-MNIST (mean ± sd over up to {n_seeds} seeds)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS_DIR / "sweep_accuracy.png", dpi=110)
    plt.close(fig)


def speedup_plot(rows: list[dict[str, Any]], idle: dict[float, dict[str, float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    red = {r["ratio"]: r["mac_reduction"] for r in rows if r["ratio"]}
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
    fig.savefig(RESULTS_DIR / "sweep_speedup.png", dpi=110)
    plt.close(fig)


def render() -> None:
    saved = load()
    rows, idle = saved["runs"], idle_speedups()
    env = saved.get("environment", environment())
    measured = "; ".join(sorted({f"{r['date']} on {r['cpu']}" for r in rows}))
    splice(
        "sweep-results",
        f"Measured {measured}, Python {env['python']}, torch {env.get('torch', '-')}, onnx "
        f"{env['onnx']}, onnxruntime {env['onnxruntime']}; training with 1 torch thread, top-1 by ORT on the "
        "10k test images. Speedups: `run_latency.py --ratios` (settings in results/latency_vgg_cpu.json).\n\n"
        f"{table(rows, idle)}\n\n"
        f"ADMM − magnitude at the same budget, paired by seed:\n\n{paired_table(rows)}\n\n"
        "![accuracy](results/sweep_accuracy.png) "
        "![speedup](results/sweep_speedup.png)",
    )
    if rows:
        plots(rows)
        speedup_plot(rows, idle)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ratios", type=float, nargs="+", default=list(DEFAULT_RATIOS))
    ap.add_argument("--methods", nargs="+", default=["admm", "magnitude"], choices=["admm", "magnitude"])
    ap.add_argument("--dense", action=argparse.BooleanOptionalAction, default=True, help="the dense baseline")
    ap.add_argument("--admm-epochs", type=int, default=1)
    ap.add_argument("--finetune-epochs", type=int, default=1)
    ap.add_argument("--threads", type=int, help="torch training threads")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run of every cell per seed")
    ap.add_argument("--render-only", action="store_true")
    args = ap.parse_args()
    if not args.render_only:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        todo = [(r, m) for r in args.ratios for m in args.methods]
        todo += [(0.0, "magnitude")] if args.dense else []
        for seed in args.seeds:
            for ratio, method in todo:
                row = run_cell(ratio, method, args.admm_epochs, args.finetune_epochs, args.threads, seed)
                print(json.dumps(row))
                with locked():
                    save(row)
                    render()
    with locked():
        render()


if __name__ == "__main__":
    main()
