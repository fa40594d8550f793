"""Label-free compression: the VGG-style reference pruned with labels vs with the images alone.

    python -m benchmarks.run_distill --runs labeled kl mse --threads 1      # default 2 + 2 epochs each
    python -m benchmarks.run_distill --runs labeled kl_t1 --teacher-epochs 2 --tag _conv --threads 1
    python -m benchmarks.run_distill --render-only

Every run is a full ``onnxprune.compress`` of models/fmnist_vgg.onnx at ``filter:0.5`` on Fashion-MNIST
with the same seed and splits; the label-free runs withhold the labels from training (``labels=False``)
and distill from the dense model; test labels only score the result. One JSON per run goes to
benchmarks/results/distill/, the table to the markers in benchmarks/README.md.

``--teacher-epochs N`` first trains the dense reference N more epochs with labels (``filter:0``: nothing
pruned) and compresses that model instead: the bundled reference is not trained to convergence (2 more
epochs take it from 92.26 % to 93.44 %), so a labeled run gains from the extra training itself, which a
student that only imitates the dense model cannot.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

from onnxprune.pipeline import TrainOptions, compress
from onnxprune.runtime.machine import environment

from .common import MODELS, OUT, markdown_table, read_json, splice, write_json
from .common import RESULTS as RESULTS_DIR

MODEL = MODELS / "fmnist_vgg.onnx"
RESULTS = RESULTS_DIR / "distill"
BUNDLED = "fmnist_vgg.onnx"

# run name -> (labels used for training, TrainOptions distillation fields)
RUNS: dict[str, tuple[bool, dict[str, Any]]] = {
    "labeled": (True, {}),
    "kl": (False, {"distill_loss": "kl", "temperature": 4.0}),
    "kl_t1": (False, {"distill_loss": "kl", "temperature": 1.0}),
    "mse": (False, {"distill_loss": "mse"}),
    "mixed": (True, {"distill": 0.5}),
}


def reference(args: argparse.Namespace) -> Path:
    """The model every run compresses: the bundled reference, or it trained ``--teacher-epochs`` more."""
    if not args.teacher_epochs:
        return MODEL
    path = OUT / "distill" / f"vgg_dense_plus{args.teacher_epochs}.onnx"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        opts = TrainOptions(admm_epochs=0, finetune_epochs=args.teacher_epochs, threads=args.threads)
        compress(MODEL, "filter:0", "fashion-mnist", path, train=opts, bench_batches=())
    return path


def run_one(name: str, args: argparse.Namespace) -> dict[str, Any]:
    labels, distill = RUNS[name]
    tag = name + args.tag
    opts = TrainOptions(
        admm_epochs=args.admm_epochs, finetune_epochs=args.finetune_epochs, threads=args.threads, **distill
    )
    out = OUT / "distill"
    out.mkdir(parents=True, exist_ok=True)
    model = reference(args)
    start = time.perf_counter()
    r = compress(
        model,
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
        "reference": BUNDLED + (f" + {args.teacher_epochs} labeled epochs" if args.teacher_epochs else ""),
        "labels": labels,
        "distill": r.config["distill"],
        "epochs": f"{r.config['admm_epochs']}+{r.config['finetune_epochs']}",
        "dense_top1": acc.get("dense_top1"),
        "pruned_top1": acc.get("pruned_top1"),
        "agreement": r.fidelity.get("agreement"),
        "output_rel_error": r.fidelity.get("output_rel_error"),
        "conv_mac_reduction": r.totals["conv_mac_reduction"],
        "verify_max_rel_error": r.verification.max_rel_error,
        "train_s": round(r.phases.get("train", 0.0), 1),
        "wall_s": round(time.perf_counter() - start, 1),
        "date": time.strftime("%Y-%m-%d"),
        "environment": environment(),
    }


def table(rows: list[dict[str, Any]]) -> str:
    # each run is compared with the labeled run of the same dense model and epoch budget
    def key(r: dict[str, Any]) -> tuple[str, str]:
        return r.get("reference", BUNDLED), r["epochs"]

    labeled = {key(r): r for r in rows if r["labels"] and not r["distill"].get("weight")}
    header = (
        "run",
        "dense model (top-1)",
        "training signal",
        "epochs",
        "top-1 pruned",
        "vs labeled, same model and epochs",
        "agreement with dense",
        "logits rel. error",
        "conv MACs",
        "train wall",
    )
    body = []
    for r in rows:
        d = r["distill"]
        if not r["labels"]:
            signal = f"images only: {d['loss']}" + (f" T={d['temperature']:g}" if d["loss"] != "mse" else "")
        elif d.get("weight"):
            signal = f"labels + images: {1 - d['weight']:g}·CE + {d['weight']:g}·{d['loss']}"
        else:
            signal = "labels (cross-entropy)"
        ref = labeled.get(key(r))
        delta = 100 * (r["pruned_top1"] - ref["pruned_top1"]) if ref else float("nan")
        err = next(iter(r["output_rel_error"].values()))
        body.append(
            [
                r["name"],
                f"{key(r)[0]} ({100 * r['dense_top1']:.2f}%)",
                signal,
                r["epochs"],
                f"{100 * r['pruned_top1']:.2f}%",
                f"{delta:+.2f} pp",
                f"{100 * r['agreement']:.2f}%",
                f"{err:.3f}",
                f"{r['conv_mac_reduction']:.2f}x fewer",
                f"{r['train_s']:.0f} s",
            ]
        )
    return markdown_table(header, body)


def render() -> None:
    rows = [read_json(p) for p in sorted(RESULTS.glob("*.json"))]
    order = list(RUNS)
    rows.sort(
        key=lambda r: (
            r.get("reference", BUNDLED),
            r["epochs"],
            order.index(r["name"].split("_")[0]) if r["name"].split("_")[0] in order else len(order),
            r["name"],
        )
    )
    machines = sorted(
        {
            f"{r['date']} on {r['environment']['cpu']} (2 cores, {r['environment']['machine']}), torch "
            f"{r['environment'].get('torch')}, onnxruntime {r['environment']['onnxruntime']}"
            for r in rows
        }
    )
    splice(
        "distill-results",
        f"Measured {'; '.join(machines)}. VGG-style reference at `filter:0.5`, seed 0, torch "
        f"threads 1, 10 000 Fashion-MNIST test images.\n\n{table(rows)}",
        heading="Label-free compression (self-distillation)",
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="+", choices=list(RUNS), default=["labeled", "kl"])
    ap.add_argument("--admm-epochs", type=int)
    ap.add_argument("--finetune-epochs", type=int)
    ap.add_argument("--threads", type=int, help="torch training threads (default: torch's)")
    ap.add_argument(
        "--teacher-epochs", type=int, default=0, help="train the dense reference N more epochs first"
    )
    ap.add_argument("--tag", default="", help="suffix of the run names (e.g. for other epoch counts)")
    ap.add_argument("--render-only", action="store_true", help="rewrite the README table from results")
    args = ap.parse_args()
    if not args.render_only:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        RESULTS.mkdir(parents=True, exist_ok=True)
        for name in args.runs:
            row = run_one(name, args)
            write_json(row, RESULTS / f"{row['name']}.json")
    render()


if __name__ == "__main__":
    main()
