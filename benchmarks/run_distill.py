"""Label-free compression: the VGG-style reference pruned with labels vs with the images alone.

    python benchmarks/run_distill.py --runs labeled kl mse --threads 1      # default 2 + 2 epochs each
    python benchmarks/run_distill.py --render-only

Every run is a full ``onnxprune.compress`` of models/fmnist_vgg.onnx at ``filter:0.5`` on Fashion-MNIST
with the same seed and splits; the label-free runs withhold the labels from training (``labels=False``)
and distill from the dense model; test labels only score the result. One JSON per run goes to
benchmarks/results/distill/, the table to the markers in benchmarks/README.md.
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
RESULTS = ROOT / "results" / "distill"
BEGIN, END = "<!-- distill-results:begin -->", "<!-- distill-results:end -->"

# run name -> (labels used for training, TrainOptions distillation fields)
RUNS: dict[str, tuple[bool, dict[str, Any]]] = {
    "labeled": (True, {}),
    "kl": (False, {"distill_loss": "kl", "temperature": 4.0}),
    "kl_t1": (False, {"distill_loss": "kl", "temperature": 1.0}),
    "mse": (False, {"distill_loss": "mse"}),
    "mixed": (True, {"distill": 0.5}),
}


def run_one(name: str, args: argparse.Namespace) -> dict[str, Any]:
    labels, distill = RUNS[name]
    tag = name + args.tag
    opts = TrainOptions(
        admm_epochs=args.admm_epochs, finetune_epochs=args.finetune_epochs, threads=args.threads, **distill
    )
    out = ROOT / "out" / "distill"
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    r = compress(
        MODEL,
        "filter:0.5",
        "fashion-mnist",
        out / f"vgg_{tag}.onnx",
        train=opts,
        labels=labels,
        report_path=out / f"vgg_{tag}.json",
        bench_batches=(),
    ).report
    acc = r.accuracy or {}
    return {
        "name": tag,
        "labels": labels,
        "distill": r.config["distill"],
        "epochs": f"{r.config['admm_epochs']}+{r.config['finetune_epochs']}",
        "dense_top1": acc.get("dense_top1"),
        "pruned_top1": acc.get("pruned_top1"),
        "agreement": r.fidelity.get("agreement"),
        "output_rel_error": r.fidelity.get("output_rel_error"),
        "conv_mac_reduction": r.totals["conv_mac_reduction"],
        "verify_max_rel_error": r.verification["max_rel_error"],
        "train_s": round(r.phases.get("train", 0.0), 1),
        "wall_s": round(time.perf_counter() - start, 1),
        "date": time.strftime("%Y-%m-%d"),
        "environment": environment(),
    }


def table(rows: list[dict[str, Any]]) -> str:
    # each run is compared with the labeled run of the same epoch budget
    labeled = {r["epochs"]: r for r in rows if r["labels"] and not r["distill"].get("weight")}
    lines = [
        "| run | training signal | epochs | top-1 pruned | vs labeled, same epochs | agreement with dense "
        "| logits rel. error | conv MACs | train wall |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        d = r["distill"]
        if not r["labels"]:
            signal = f"images only: {d['loss']}" + (f" T={d['temperature']:g}" if d["loss"] != "mse" else "")
        elif d.get("weight"):
            signal = f"labels + images: {1 - d['weight']:g}·CE + {d['weight']:g}·{d['loss']}"
        else:
            signal = "labels (cross-entropy)"
        ref = labeled.get(r["epochs"])
        delta = 100 * (r["pruned_top1"] - ref["pruned_top1"]) if ref else float("nan")
        err = next(iter(r["output_rel_error"].values()))
        lines.append(
            f"| {r['name']} | {signal} | {r['epochs']} | {100 * r['pruned_top1']:.2f}% | {delta:+.2f} pp "
            f"| {100 * r['agreement']:.2f}% | {err:.3f} | {r['conv_mac_reduction']:.2f}x fewer "
            f"| {r['train_s']:.0f} s |"
        )
    return "\n".join(lines)


def render() -> None:
    rows = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))]
    order = list(RUNS)
    rows.sort(key=lambda r: (order.index(r["name"]) if r["name"] in order else len(order), r["name"]))
    env = rows[0]["environment"]
    dense = rows[0]["dense_top1"]
    block = (
        f"{BEGIN}\nMeasured {rows[0]['date']} on {env['cpu']} ({env['machine']}), torch {env.get('torch')}, "
        f"onnxruntime {env['onnxruntime']}; VGG-style reference (dense top-1 {100 * dense:.2f}%) at "
        "`filter:0.5`, seed 0, 10 000 Fashion-MNIST test images.\n\n"
        f"{table(rows)}\n{END}"
    )
    readme = ROOT / "README.md"
    text = readme.read_text()
    if BEGIN not in text:
        text += f"\n## Label-free compression (self-distillation)\n\n{BEGIN}\n{END}\n"
    start, end = text.index(BEGIN), text.index(END) + len(END)
    readme.write_text(text[:start] + block + text[end:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="+", choices=list(RUNS), default=["labeled", "kl"])
    ap.add_argument("--admm-epochs", type=int)
    ap.add_argument("--finetune-epochs", type=int)
    ap.add_argument("--threads", type=int, help="torch training threads (default: torch's)")
    ap.add_argument("--tag", default="", help="suffix of the run names (e.g. for other epoch counts)")
    ap.add_argument("--render-only", action="store_true", help="rewrite the README table from results")
    args = ap.parse_args()
    if not args.render_only:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        RESULTS.mkdir(parents=True, exist_ok=True)
        for name in args.runs:
            row = run_one(name, args)
            (RESULTS / f"{row['name']}.json").write_text(json.dumps(row, indent=2) + "\n")
    render()


if __name__ == "__main__":
    main()
