"""Prune -> int8: top-1 and ORT CPU latency of dense fp32, pruned fp32, pruned int8 and dense int8.

    python -m benchmarks.run_quantize                      # VGG, ResNet, MobileNetV2 at filter:0.7, ADMM 2+2
    python -m benchmarks.run_quantize --method magnitude --finetune-epochs 1     # quicker pruned models
    python -m benchmarks.run_quantize --arch vgg resnet --repeats 300 --threads 1
    python -m benchmarks.run_quantize --align 8            # kept filter counts multiples of 8
    python -m benchmarks.run_quantize --min-reduction 128  # layers of reduction depth < 128 stay float
    python -m benchmarks.run_quantize --quick              # tiny sizes: proves it runs (numbers: noise)
    python -m benchmarks.run_quantize --render-only        # README block from results/quantize.json

Per reference model: ``compress`` prunes it (fp32, verified pruned ≡ masked), ``quantize`` (the same stage as
``compress --quantize int8``: ORT static QDQ, U8S8, per-channel weights, minmax calibration on 256 samples
of the training split, stem kept float) turns the pruned and the dense model into int8. All four are scored
on the Fashion-MNIST test set and timed by ``onnxprune.runtime.benchmark.bench`` (interleaved blocks, ORT
CPU provider, batch 1 and 32, 1 intra-op thread by default). Acceptance (issue 17): pruned int8 >= 1.5x
faster than pruned fp32 at batch 32 with top-1 within 0.5 pp. Time it on an idle machine: under load the
latency numbers are noise. Results: benchmarks/results/quantize.json (``--quick``: benchmarks/out/) and
the block between the quantize markers of benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

from onnxprune.config.settings import QuantizeOptions
from onnxprune.data import load_fashion_mnist
from onnxprune.pipeline import TrainOptions, compress, quantize_model
from onnxprune.runtime.benchmark import bench
from onnxprune.runtime.machine import environment
from onnxprune.runtime.sessions import make_session, top1

from . import common

ARCHS = ("vgg", "resnet", "mobilenetv2")
NAMES = ("dense fp32", "pruned fp32", "pruned int8", "dense int8")
BLOCK = "quantize-results"
TARGET_SPEEDUP, TARGET_DROP_PP = 1.5, 0.5


def build_models(arch: str, args: argparse.Namespace, out: Path) -> list[Path]:
    """The four models of ``arch``: dense, pruned (trained as ``args`` say), and both quantized."""
    dense = common.MODELS / f"fmnist_{arch}.onnx"
    tag = f"{arch}_filter{args.ratio:g}_{args.method}_align{args.align}_k{args.min_reduction}"
    tag += "_quick" if args.quick else ""
    pruned = out / f"{tag}.onnx"
    dense_int8 = out / f"{arch}_dense_k{args.min_reduction}.int8.onnx"
    for path in (pruned, out / f"{tag}.int8.onnx", dense_int8):
        path.unlink(missing_ok=True)  # the runs here are the measurement: no stale models
    train = TrainOptions(
        admm_epochs=args.admm_epochs, finetune_epochs=args.finetune_epochs, threads=args.train_threads
    )
    compress(
        dense,
        f"filter:{args.ratio:g}",
        "fashion-mnist",
        pruned,
        method=args.method,
        train=train,
        align=args.align,
        max_samples=args.max_samples,
        bench_batches=(),
        quiet=True,
    )
    options = QuantizeOptions(
        calibration_samples=args.calibration_samples, quantize_min_reduction=args.min_reduction
    )
    quantized = []
    for fp32, int8 in ((pruned, out / f"{tag}.int8.onnx"), (dense, dense_int8)):
        quantize_model(fp32, "fashion-mnist", int8, options=options, max_samples=args.max_samples)
        quantized.append(int8)
    return [dense, pruned, quantized[0], quantized[1]]


def run_arch(arch: str, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    models = build_models(arch, args, out)
    _, test = load_fashion_mnist()
    test = test.head(args.test_samples) if args.test_samples else test
    assert test.y is not None
    accuracy = {
        name: top1(make_session(m, threads=1), test.x, test.y) for name, m in zip(NAMES, models, strict=True)
    }
    report = bench(
        models,
        batch_sizes=(1, 32),
        providers=["cpu"],
        threads=args.threads,
        warmup=args.warmup,
        repeats=args.repeats,
        names=list(NAMES),
    )
    ms = {f"{r.model}@b{r.batch}": r.median_ms for r in report.rows}
    speedup = ms["pruned fp32@b32"] / ms["pruned int8@b32"]
    drop = 100 * (accuracy["pruned fp32"] - accuracy["pruned int8"])
    admm = args.admm_epochs if args.admm_epochs is not None else 0 if args.method == "magnitude" else 2
    return {
        "arch": arch,
        "sparsity": f"filter:{args.ratio:g}" + (f", align {args.align}" if args.align > 1 else ""),
        "min_reduction": args.min_reduction,
        "method": args.method,
        "epochs": f"{admm}+{args.finetune_epochs if args.finetune_epochs is not None else 2}",
        "quick": args.quick,
        "test_samples": len(test),
        "top1": accuracy,
        "median_ms": ms,
        "int8_speedup_b32": speedup,
        "int8_drop_pp": drop,
        "meets_target": speedup >= TARGET_SPEEDUP and drop <= TARGET_DROP_PP,
        "bench": report.to_dict(),
        "date": time.strftime("%Y-%m-%d"),
        "cpu": environment()["cpu"],
    }


def table(runs: list[dict[str, Any]]) -> str:
    header = ["model", "sparsity, method (epochs)", *(f"{n}: top-1 / b1 / b32 ms" for n in NAMES)]
    header += ["int8 vs fp32 pruned b32", "top-1 int8 − fp32 (pp)", "target"]
    body = []
    for r in runs:
        cells = [
            f"{100 * r['top1'][n]:.2f}% / {r['median_ms'][f'{n}@b1']:.3f} / {r['median_ms'][f'{n}@b32']:.2f}"
            for n in NAMES
        ]
        body.append(
            [
                r["arch"]
                + (f", int8 K >= {r['min_reduction']}" if r.get("min_reduction") else "")
                + (" (quick)" if r["quick"] else ""),
                f"{r['sparsity']}, {r['method']} ({r['epochs']})",
                *cells,
                f"{r['int8_speedup_b32']:.2f}x",
                f"{-r['int8_drop_pp']:+.2f}",
                "met" if r["meets_target"] else "missed",
            ]
        )
    return common.markdown_table(header, body)


def render(saved: dict[str, Any]) -> str:
    runs = saved["runs"]
    measured = "; ".join(sorted({f"{r['date']} on {r['cpu']}" for r in runs}))
    env = saved["environment"]
    threads = saved.get("threads")
    return (
        f"Measured {measured}, onnxruntime {env['onnxruntime']}, ORT CPU provider, "
        f"{threads or 'default'} intra-op thread(s), median of {saved.get('repeats')} interleaved runs; "
        f"top-1 on {runs[0]['test_samples']} Fashion-MNIST test samples. Target (issue 17): pruned int8 >= "
        f"{TARGET_SPEEDUP}x faster than pruned fp32 at batch 32, top-1 within {TARGET_DROP_PP} pp.\n\n"
        + table(runs)
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", nargs="+", default=list(ARCHS), choices=ARCHS)
    ap.add_argument("--ratio", type=float, default=0.7)
    ap.add_argument("--method", default="admm", choices=("admm", "magnitude"))
    ap.add_argument(
        "--align",
        type=int,
        default=1,
        help="kept filters rounded to a multiple (8: MLAS's blocks; default 1)",
    )
    ap.add_argument("--admm-epochs", type=int)
    ap.add_argument("--finetune-epochs", type=int)
    ap.add_argument("--train-threads", type=int, help="torch training threads (default: torch's)")
    ap.add_argument("--threads", type=int, default=1, help="ORT intra-op threads when timing (default 1)")
    ap.add_argument("--repeats", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--calibration-samples", type=int, default=256)
    ap.add_argument(
        "--min-reduction", type=int, default=0, help="--quantize-min-reduction: narrower layers stay float"
    )
    ap.add_argument("--max-samples", type=int, help="cap every data split (training and calibration)")
    ap.add_argument("--test-samples", type=int, help="score on the first N test samples (default: all)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, results to benchmarks/out/")
    ap.add_argument("--render-only", action="store_true", help="rewrite the README block from the JSON")
    args = ap.parse_args()
    results = common.RESULTS / "quantize.json"
    if args.render_only:
        common.splice(BLOCK, render(common.read_json(results)), "Pruning then int8 quantization")
        return
    if args.quick:  # magnitude, no retraining, few samples and runs: the pipeline, not the numbers
        args.method, args.admm_epochs, args.finetune_epochs = "magnitude", 0, 0
        args.max_samples, args.test_samples = args.max_samples or 512, args.test_samples or 500
        args.repeats, args.warmup, args.calibration_samples = 5, 1, min(args.calibration_samples, 64)
        results = common.OUT / "quantize_quick.json"
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    common.OUT.mkdir(exist_ok=True)
    runs = [run_arch(arch, args, common.OUT) for arch in args.arch]
    if not args.quick and results.exists():  # other settings' rows stay: a run replaces only its own
        runs = [r for r in common.read_json(results)["runs"] if _key(r) not in {_key(n) for n in runs}] + runs
    saved = {"environment": environment(), "threads": args.threads, "repeats": args.repeats, "runs": runs}
    common.write_json(saved, results)
    text = render(saved)
    print(text)
    if not args.quick:
        common.splice(BLOCK, text, "Pruning then int8 quantization")


def _key(run: dict[str, Any]) -> tuple[Any, ...]:
    """The settings a row stands for: a rerun with them replaces it."""
    return run["arch"], run["sparsity"], run["min_reduction"], run["method"], run["epochs"]


if __name__ == "__main__":
    main()
