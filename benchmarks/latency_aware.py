"""Latency-aware pruning (issue 19): ``--target-speedup`` vs ``--target-macs`` vs uniform ``filter:R``, on
the target, with predicted vs measured latency. Run through ``python -m benchmarks.run_latency --speedup X``
(see there); ``--quick`` checks the pipeline end to end in a minute (tiny data, no training, results in a
temporary directory, nothing spliced into the README: its numbers mean nothing).

Per reference model:

1. ``onnxprune latency MODEL --on T --json``: the table, built twice — the second run must come from the
   cache (its time is recorded) — and its prediction;
2. ``compress --target-speedup X --on T`` (latency-aware), then ``compress --target-macs F`` with F the
   MAC fraction that run reached, and ``compress --sparsity filter:R --align 1`` with the uniform R of the
   same MAC fraction (:func:`benchmarks.run_target_macs.uniform_ratio`);
3. an independent timing: ``onnxprune bench dense aware macs uniform --batch B`` (in the target's runtime:
   ``--runtime openvino`` for ``--on openvino:B``), and per pruned model
   ``onnxprune latency dense --pruned P --on T`` (predicted next to measured).

One JSON per model and target to benchmarks/results/latency_aware/ and a table between the
``latency-aware-results`` markers of benchmarks/README.md. Timings need an idle machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import common
from .run_target_macs import uniform_ratio

RESULTS = common.RESULTS / "latency_aware"
BLOCK = "latency-aware-results"


def onnxprune(*args: str) -> list[str]:
    return [sys.executable, "-m", "onnxprune", *args]


def run(cmd: list[str]) -> None:
    done = common.run_child(cmd, capture_output=True)
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr[-2000:]}")


def table_runs(model: Path, on: str, threads: str, out: Path, cache: Path) -> dict[str, Any]:
    """Build the latency table twice (the second from the cache) and keep the first's JSON."""
    seconds = []
    for i in (1, 2):
        path = out / f"table{i}.json"
        start = time.perf_counter()
        run(
            onnxprune(
                "latency",
                str(model),
                "--on",
                on,
                "--threads",
                threads,
                "--cache",
                str(cache),
                "--json",
                str(path),
            )
        )
        seconds.append(time.perf_counter() - start)
    first, second = (json.loads((out / f"table{i}.json").read_text()) for i in (1, 2))
    return {
        "first_s": seconds[0],
        "second_s": seconds[1],
        "second_measured": second["measured_entries"],
        "table": first,
    }


def compress_runs(model: Path, args: argparse.Namespace, out: Path, cache: Path) -> dict[str, Path]:
    """The three pruned models: latency-aware, the same MACs by --target-macs, uniform filter:R."""
    common_opts = ["--data", "fashion-mnist", "--threads", "1", "-q", "--no-bench", "--seed", "0", "--force"]
    common_opts += ["--admm-epochs", str(args.admm_epochs), "--finetune-epochs", str(args.finetune_epochs)]
    if args.max_samples:
        common_opts += ["--max-samples", str(args.max_samples)]
    if args.quick:
        common_opts += ["--method", "magnitude"]
    paths = {k: out / f"{k}.onnx" for k in ("aware", "macs", "uniform")}
    target = ["--target-speedup", f"{args.speedup:g}", "--on", args.on, "--latency-cache", str(cache)]
    target += ["--latency-threads", args.threads]
    run(
        common.compress_argv(
            model, *target, *common_opts, "-o", str(paths["aware"]), "--report", str(out / "aware.json")
        )
    )
    totals = json.loads((out / "aware.json").read_text())["totals"]
    fraction = totals["macs_after"] / totals["macs_before"]
    run(
        common.compress_argv(
            model,
            "--target-macs",
            f"{fraction:.4f}",
            *common_opts,
            "-o",
            str(paths["macs"]),
            "--report",
            str(out / "macs.json"),
        )
    )
    ratio, _ = uniform_ratio(model, fraction)
    run(
        common.compress_argv(
            model,
            "--sparsity",
            f"filter:{ratio:g}",
            "--align",
            "1",
            *common_opts,
            "-o",
            str(paths["uniform"]),
            "--report",
            str(out / "uniform.json"),
        )
    )
    return paths


def measure(
    model: Path, paths: dict[str, Path], args: argparse.Namespace, out: Path, cache: Path
) -> dict[str, Any]:
    """Independent timing of all four models, and predicted vs measured per pruned model."""
    from onnxprune.runtime.latency import parse_target

    target = parse_target(args.on, check_installed=False)  # openvino:B: bench --runtime openvino on the cpu
    batch = str(target.batch)
    bench = out / "bench.json"
    run(
        onnxprune(
            "bench",
            str(model),
            *map(str, paths.values()),
            "--batch",
            batch,
            "--provider",
            target.backend.device,
            "--runtime",
            target.backend.runtime,
            "--threads",
            args.threads,
            "--repeats",
            str(args.repeats),
            "--json",
            str(bench),
        )
    )
    predicted = {}
    for kind, path in paths.items():
        p = out / f"predict_{kind}.json"
        opts = ["--on", args.on, "--threads", args.threads, "--cache", str(cache), "--pruned", str(path)]
        run(onnxprune("latency", str(model), *opts, "--json", str(p)))
        predicted[kind] = json.loads(p.read_text())["pruned"]
    return {"bench": json.loads(bench.read_text()), "predicted": predicted}


def summary(name: str, result: dict[str, Any], out: Path) -> dict[str, Any]:
    rows = result["measured"]["bench"]["results"]
    dense = rows[0]["median_ms"]
    kinds = {}
    for kind, row in zip(("aware", "macs", "uniform"), rows[1:], strict=True):
        report = json.loads((out / f"{kind}.json").read_text())
        t, acc = report["totals"], report.get("accuracy") or {}
        pred = result["measured"]["predicted"][kind]
        kinds[kind] = {
            "spec": report["sparsity"],
            "mac_fraction": t["macs_after"] / t["macs_before"],
            "top1": acc.get("pruned_top1"),
            "measured_speedup": dense / row["median_ms"],
            "predicted_ms": pred["predicted_ms"],
            "measured_ms": pred["measured_ms"],
            "prediction_error": pred["predicted_ms"] / pred["measured_ms"] - 1,
        }
    return {"model": name, "dense_ms": dense, "kinds": kinds}


def render(rows: list[dict[str, Any]], target: str, speedup: float) -> str:
    body = []
    for r in rows:
        for kind, k in r["kinds"].items():
            top1 = "-" if k["top1"] is None else f"{100 * k['top1']:.2f}"
            speed, err = f"{k['measured_speedup']:.2f}x", f"{100 * k['prediction_error']:+.1f} %"
            body.append([r["model"], kind, k["spec"], f"{k['mac_fraction']:.3f}", top1, speed, err])
    header = ["model", "run", "spec", "MACs kept", "top-1 %", "speedup", "predicted - measured"]
    return f"target {target}, --target-speedup {speedup:g}\n\n" + common.markdown_table(header, body)


def main(args: argparse.Namespace) -> None:
    names = ["vgg"] if args.quick else args.archs
    work = Path(tempfile.mkdtemp(prefix="latency-aware-")) if args.quick else common.OUT / "latency_aware"
    cache = work / "cache"
    rows = []
    for name in names:
        model = common.MODELS / f"fmnist_{name}.onnx"
        out = work / f"{name}_{args.on.replace(':', '_')}"
        out.mkdir(parents=True, exist_ok=True)
        result: dict[str, Any] = {"model": name, "on": args.on, "speedup": args.speedup}
        result["table"] = table_runs(model, args.on, args.threads, out, cache)
        paths = compress_runs(model, args, out, cache)
        result["measured"] = measure(model, paths, args, out, cache)
        result["summary"] = summary(name, result, out)
        rows.append(result["summary"])
        dest = (work if args.quick else RESULTS) / f"{name}_{args.on.replace(':', '_')}.json"
        common.write_json(result, dest)
        print(json.dumps(result["summary"], indent=1), flush=True)
    text = render(rows, args.on, args.speedup)
    print(text)
    if args.quick:
        print(f"quick run in {work}: nothing spliced into the README")
    else:
        common.splice(BLOCK, text, heading="Latency-aware pruning (--target-speedup)")


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--speedup", type=float, help="latency-aware mode: --target-speedup X (issue 19)")
    ap.add_argument("--on", default="cpu:32", help="latency-aware mode: the target PROVIDER:BATCH")
    ap.add_argument("--archs", nargs="+", default=["vgg", "resnet", "mobilenetv2"])
    ap.add_argument("--admm-epochs", type=int, default=1)
    ap.add_argument("--finetune-epochs", type=int, default=1)
    ap.add_argument("--max-samples", type=int)
    ap.add_argument("--quick", action="store_true", help="one tiny end-to-end check (numbers meaningless)")


def quick_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """--quick: no training, few samples and repeats, batch 2, one thread."""
    if args.quick:
        args.admm_epochs, args.finetune_epochs, args.max_samples = 0, 0, 600
        args.repeats, args.on = 5, "cpu:2" if args.on == "cpu:32" else args.on
        args.speedup = args.speedup or 1.5
    args.threads = str(args.threads or 1)
    return args


__all__ = ["add_arguments", "main", "quick_defaults"]
