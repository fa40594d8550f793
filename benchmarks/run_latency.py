"""ORT latency of the dense reference models and their pruned versions from run_core.py, on an idle machine.

    python -m benchmarks.run_latency --arch vgg   # after run_core.py: results/latency_vgg_cpu.{json,png}
    python -m benchmarks.run_latency --arch resnet

``--ratios 0.5 0.7 0.9`` times one model per ratio with the architecture compress gives at that ratio
(one-shot magnitude pruning, no training; built into benchmarks/out/ when missing): latency depends on the
shapes only, and these have the same keep counts as run_core.py's trained models at those ratios.

The table goes between the latency markers of that architecture in benchmarks/README.md (added at the end
of the file the first time).

Latency-aware pruning (issue 19; :mod:`benchmarks.latency_aware`)::

    python -m benchmarks.run_latency --speedup 3 --on cpu:32 --threads 1   # on an idle machine
    python -m benchmarks.run_latency --speedup 3 --on cpu:1 --threads 1
    python -m benchmarks.run_latency --quick                               # a 1-minute end-to-end check
"""

from __future__ import annotations

import argparse
from pathlib import Path

from onnxprune.pipeline import TrainOptions, compress
from onnxprune.runtime.benchmark import bench

from . import common, latency_aware


def block_name(arch: str) -> str:
    """The VGG block keeps its original markers; other architectures get their own."""
    return "latency-results" if arch == "vgg" else f"latency-results-{arch}"


def shape_model(dense: Path, arch: str, ratio: float) -> Path:
    """The model ``compress`` makes at ``filter:ratio`` with one-shot magnitude pruning and no training."""
    path = common.OUT / f"{arch}_filter{ratio:g}_shape.onnx"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        opts = TrainOptions(finetune_epochs=0)
        compress(
            dense,
            f"filter:{ratio:g}",
            "fashion-mnist",
            path,
            method="magnitude",
            train=opts,
            bench_batches=(),
            quiet=True,
        )
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="vgg")
    ap.add_argument("--repeats", type=int, default=300)
    ap.add_argument("--threads", type=int, help="ORT intra-op threads (default: ORT's)")
    ap.add_argument("--ratios", type=float, nargs="+", help="time untrained models of these filter ratios")
    latency_aware.add_arguments(ap)
    args = ap.parse_args()
    if args.speedup is not None or args.quick:
        latency_aware.main(latency_aware.quick_defaults(args))
        return
    dense = common.MODELS / f"fmnist_{args.arch}.onnx"
    if args.ratios:
        pruned = [shape_model(dense, args.arch, r) for r in args.ratios]
    else:
        pruned = sorted(common.OUT.glob(f"{args.arch}_filter*_admm.onnx"))
    if not pruned:
        raise SystemExit(
            f"no pruned {args.arch} models in benchmarks/out: run python -m benchmarks.run_core first"
        )
    names = ["dense"] + [p.stem.replace(f"{args.arch}_", "") for p in pruned]
    report = bench(
        [dense, *pruned],
        batch_sizes=(1, 32),
        providers=["cpu"],
        repeats=args.repeats,
        threads=args.threads,
        names=names,
    )
    common.write_json(report.to_dict(), common.RESULTS / f"latency_{args.arch}_cpu.json")
    report.plot(common.RESULTS / f"latency_{args.arch}_cpu.png")
    text = report.format_table(machine=True)
    print(text)
    common.splice(block_name(args.arch), f"```\n{text}\n```\n![latency](results/latency_{args.arch}_cpu.png)")


if __name__ == "__main__":
    main()
