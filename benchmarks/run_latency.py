"""ORT latency of the dense reference models and their pruned versions from run_core.py, on an idle machine.

    python benchmarks/run_latency.py --arch vgg   # after run_core.py: results/latency_vgg_cpu.{json,png}
    python benchmarks/run_latency.py --arch resnet

``--ratios 0.5 0.7 0.9`` times one model per ratio with the architecture compress gives at that ratio
(one-shot magnitude pruning, no training; built into benchmarks/out/ when missing): latency depends on the
shapes only, and these have the same keep counts as run_core.py's trained models at those ratios.

The table goes between the latency markers of that architecture in benchmarks/README.md (added at the end
of the file the first time).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from onnxprune.bench import bench
from onnxprune.pipeline import TrainOptions, compress

ROOT = Path(__file__).resolve().parent


def markers(arch: str) -> tuple[str, str]:
    """The VGG block keeps its original markers; other architectures get their own."""
    tag = "latency-results" if arch == "vgg" else f"latency-results-{arch}"
    return f"<!-- {tag}:begin -->", f"<!-- {tag}:end -->"


def shape_model(dense: Path, arch: str, ratio: float) -> Path:
    """The model ``compress`` makes at ``filter:ratio`` with one-shot magnitude pruning and no training."""
    path = ROOT / "out" / f"{arch}_filter{ratio:g}_shape.onnx"
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
    args = ap.parse_args()
    dense = ROOT.parent / "models" / f"fmnist_{args.arch}.onnx"
    if args.ratios:
        pruned = [shape_model(dense, args.arch, r) for r in args.ratios]
    else:
        pruned = sorted((ROOT / "out").glob(f"{args.arch}_filter*_admm.onnx"))
    if not pruned:
        raise SystemExit(f"no pruned {args.arch} models in benchmarks/out: run benchmarks/run_core.py first")
    names = ["dense"] + [p.stem.replace(f"{args.arch}_", "") for p in pruned]
    report = bench(
        [dense, *pruned],
        batch_sizes=(1, 32),
        providers=["cpu"],
        repeats=args.repeats,
        threads=args.threads,
        names=names,
    )
    results = ROOT / "results"
    results.mkdir(exist_ok=True)
    (results / f"latency_{args.arch}_cpu.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    report.plot(results / f"latency_{args.arch}_cpu.png")
    text = report.format_table(machine=True)
    print(text)
    readme = ROOT / "README.md"
    body = readme.read_text()
    begin, end_marker = markers(args.arch)
    block = f"{begin}\n```\n{text}\n```\n![latency](results/latency_{args.arch}_cpu.png)\n{end_marker}"
    if begin not in body:
        body = body.rstrip("\n") + f"\n\n{begin}\n{end_marker}\n"
    start, end = body.index(begin), body.index(end_marker) + len(end_marker)
    readme.write_text(body[:start] + block + body[end:])


if __name__ == "__main__":
    main()
