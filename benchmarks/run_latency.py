"""ORT latency of the dense reference models and their pruned versions from run_core.py, on an idle machine.

    python benchmarks/run_latency.py            # after run_core.py; writes results/latency_cpu.{json,png}

The table goes between the latency markers of benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from onnxprune.bench import bench

ROOT = Path(__file__).resolve().parent
BEGIN, END = "<!-- latency-results:begin -->", "<!-- latency-results:end -->"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="vgg")
    ap.add_argument("--repeats", type=int, default=300)
    ap.add_argument("--threads", type=int, help="ORT intra-op threads (default: ORT's)")
    args = ap.parse_args()
    dense = ROOT.parent / "models" / f"fmnist_{args.arch}.onnx"
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
    block = f"{BEGIN}\n```\n{text}\n```\n![latency](results/latency_{args.arch}_cpu.png)\n{END}"
    start, end = body.index(BEGIN), body.index(END) + len(END)
    readme.write_text(body[:start] + block + body[end:])


if __name__ == "__main__":
    main()
