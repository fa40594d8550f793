"""MAC budget: ``--target-macs F`` vs a uniform ``filter:R`` with the same MACs, on the two references.

    python -m benchmarks.run_target_macs --target 0.3 --jobs 2      # 4 compress runs, 1 + 1 epochs each
    python -m benchmarks.run_target_macs --render-only

For each of models/fmnist_vgg.onnx and models/fmnist_resnet.onnx: one ``onnxprune compress
--target-macs F`` run, and one ``--sparsity filter:R`` run where R is the uniform ratio whose MAC fraction
(analysis only: the closed-form MAC model of :mod:`onnxprune.graph.macmodel` at the uniform keep counts)
is nearest F. Both with ``--threads 1 --admm-epochs 1 --finetune-epochs 1 -q --no-bench``, seed 0, on
Fashion-MNIST. One JSON per run goes to benchmarks/results/target_macs/, the table to the markers in
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from onnxprune.config.sparsity import keep_counts, parse_sparsity
from onnxprune.graph.analysis import analyze
from onnxprune.graph.load import load_model, normalize
from onnxprune.graph.macmodel import mac_model
from onnxprune.graph.macs import count_costs

from . import common

MODELS = {name: common.MODELS / f"fmnist_{name}.onnx" for name in ("vgg", "resnet")}
RESULTS = common.RESULTS / "target_macs"
OUT = common.OUT / "target_macs"
SHAPE = (1, 1, 28, 28)


def uniform_ratio(model: Path, target: float) -> tuple[float, float]:
    """The uniform filter ratio (0.001 grid) whose MAC fraction is nearest ``target``, and that fraction."""
    base = normalize(load_model(model)[0]).model
    plan = analyze(base, SHAPE)
    mm = mac_model(base, plan, count_costs(base, SHAPE))
    ratios = [r / 1000 for r in range(1000)]
    fractions = [mm.fraction(keep_counts(plan, parse_sparsity(f"filter:{r}"))) for r in ratios]
    return min(zip(ratios, fractions, strict=True), key=lambda rf: abs(rf[1] - target))


def run_one(name: str, kind: str, target: float, ratio: float, args: argparse.Namespace) -> dict[str, Any]:
    OUT.mkdir(parents=True, exist_ok=True)
    stem = f"{name}_{kind}"
    report = OUT / f"{stem}.report.json"
    spec = ["--target-macs", f"{target:g}"] if kind == "budget" else ["--sparsity", f"filter:{ratio:g}"]
    cmd = common.compress_argv(MODELS[name], *spec, "-o", str(OUT / f"{stem}.onnx"), "--threads", "1")
    cmd += ["--admm-epochs", str(args.admm_epochs), "--finetune-epochs", str(args.finetune_epochs)]
    cmd += ["--data", "fashion-mnist", "--force", "-q", "--no-bench", "--report", str(report)]
    if args.max_samples:
        cmd += ["--max-samples", str(args.max_samples)]
    if not args.collect:
        common.run_child(cmd, check=True, stdout=subprocess.DEVNULL)
    return row(name, kind, target, report, args)


def row(name: str, kind: str, target: float, report: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The results line of one run, from its compress report."""
    r = common.read_json(report)
    t, acc, budget = r["totals"], r["accuracy"] or {}, r.get("budget") or {}
    return {
        "model": name,
        "kind": kind,
        "spec": r["sparsity"],
        "target_macs": target,
        "mac_fraction": t["macs_after"] / t["macs_before"],
        "params_fraction": t["params_after"] / t["params_before"],
        "dense_top1": acc.get("dense_top1"),
        "pruned_top1": acc.get("pruned_top1"),
        "agreement": r["fidelity"].get("agreement"),
        "test_samples": acc.get("samples"),
        "kept": {g["name"]: f"{g['kept']}/{g['channels']}" for g in r["groups"] if g["prunable"]},
        "probe_s": budget.get("probe", {}).get("seconds"),
        "budget_s": r["phases"].get("budget"),
        "probe": budget.get("groups"),
        "train_s": r["phases"].get("train"),
        "wall_s": round(sum(v for k, v in r["phases"].items() if "." not in k), 1),
        "epochs": f"{r['config']['admm_epochs']}+{r['config']['finetune_epochs']}",
        "max_samples": r["config"].get("max_samples"),
        "date": time.strftime("%Y-%m-%d"),
        "environment": r["environment"],
    }


def table(rows: list[dict[str, Any]]) -> str:
    header = (
        "model",
        "run",
        "MACs kept (target)",
        "params kept",
        "top-1 pruned (dense)",
        "vs uniform",
        "kept channels per group",
        "probe",
        "wall",
    )
    body = []
    uniform = {r["model"]: r for r in rows if r["kind"] == "uniform"}
    for r in rows:
        ref = uniform.get(r["model"])
        delta = f"{100 * (r['pruned_top1'] - ref['pruned_top1']):+.2f} pp" if ref and ref is not r else "-"
        probe = f"{r['probe_s']:.0f} s" if r.get("probe_s") is not None else "-"
        run = "`--target-macs " + f"{r['target_macs']:g}`" if r["kind"] == "budget" else f"`{r['spec']}`"
        if r.get("max_samples"):
            run += f" (`--max-samples {r['max_samples']}`: {r['test_samples']} test images)"
        body.append(
            [
                r["model"],
                run,
                f"{r['mac_fraction']:.3f} ({r['target_macs']:g})",
                f"{r['params_fraction']:.3f}",
                f"{100 * r['pruned_top1']:.2f}% ({100 * r['dense_top1']:.2f}%)",
                delta,
                ", ".join(v.split("/")[0] for v in r["kept"].values()),
                probe,
                f"{r['wall_s'] / 60:.1f} min",
            ]
        )
    return common.markdown_table(header, body)


def render() -> None:
    rows = [common.read_json(p) for p in sorted(RESULTS.glob("*.json"))]
    rows.sort(key=lambda r: (list(MODELS).index(r["model"]), r["kind"] != "budget"))
    env = rows[0]["environment"]
    block = (
        f"Measured {rows[0]['date']} on a 2-core VM shared with other jobs (CPU: {env['cpu']}), "
        f"python {env['python']}, torch {env.get('torch')}, onnxruntime {env['onnxruntime']}, onnx "
        f"{env['onnx']}; `--threads 1 --admm-epochs 1 --finetune-epochs 1 --no-bench`, seed 0, Fashion-MNIST "
        "(top-1 on the 10 000 test images unless the row says otherwise: `--max-samples` caps the test "
        f"split too; epochs {rows[0]['epochs']}). The ResNet-style rows train on 7 200 images "
        "(`--max-samples 8000`, 10 % held out) to fit the time box. The uniform ratio is the one whose "
        "MAC fraction (closed-form MAC model, analysis only) is nearest the target. `probe` = wall time of "
        "the sensitivity probe (512 training images, 4 keep fractions per group, ORT on masked copies); "
        "probe "
        "and wall times were taken with 2-4 other training jobs on the same 2 cores (load average ~8), so "
        "they are upper bounds. One seed per run: differences of a few tenths of a point are within "
        "run-to-run noise.\n\n"
        f"{table(rows)}"
    )
    common.splice("target-macs-results", block, heading="MAC budget (`--target-macs`)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", type=float, default=0.3)
    ap.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    ap.add_argument("--kinds", nargs="+", choices=["budget", "uniform"], default=["budget", "uniform"])
    ap.add_argument("--admm-epochs", type=int, default=1)
    ap.add_argument("--finetune-epochs", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=1, help="compress runs at once")
    ap.add_argument("--max-samples", type=int, help="samples read per split (test: 10k)")
    ap.add_argument("--collect", action="store_true", help="results from the reports of earlier runs")
    ap.add_argument("--render-only", action="store_true", help="rewrite the README table from results")
    args = ap.parse_args()
    if not args.render_only:
        RESULTS.mkdir(parents=True, exist_ok=True)
        ratios = {name: uniform_ratio(MODELS[name], args.target) for name in args.models}
        for name, (ratio, fraction) in ratios.items():
            print(f"{name}: uniform filter:{ratio:g} keeps {fraction:.4f} of the MACs", flush=True)
        runs = [(name, kind) for name in args.models for kind in args.kinds]

        def go(run: tuple[str, str]) -> None:
            name, kind = run
            row = run_one(name, kind, args.target, ratios[name][0], args)
            common.write_json(row, RESULTS / f"{name}_{kind}.json")
            print(f"{name} {kind}: MACs {row['mac_fraction']:.4f}, top-1 {row['pruned_top1']}", flush=True)

        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            list(pool.map(go, runs))
    render()


if __name__ == "__main__":
    main()
