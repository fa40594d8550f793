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
3. the same two at the latency-aware model's *measured latency* (``macs_eq``, ``uniform_eq``): F and R
   found by bisection on magnitude previews of the structure (no training: the widths are the trained
   run's), each candidate timed in the same ``bench`` call as the latency-aware model, then trained;
4. an independent timing: ``onnxprune bench dense aware macs uniform ... --batch B`` (in the target's
   runtime: ``--runtime openvino`` for ``--on openvino:B``), and per pruned model
   ``onnxprune latency dense --pruned P --on T`` (predicted next to measured).

One JSON per model and target to benchmarks/results/latency_aware/ and a table between the
``latency-aware-results`` markers of benchmarks/README.md. Timings need an idle machine.
"""

from __future__ import annotations

import argparse
import json
import re
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


KINDS = ("aware", "macs", "uniform", "macs_eq", "uniform_eq")


def train_opts(args: argparse.Namespace) -> list[str]:
    """The options every trained run of the comparison shares."""
    opts = [
        "--data",
        "fashion-mnist",
        "--threads",
        "1",
        "-q",
        "--no-bench",
        "--seed",
        str(args.seed),
        "--force",
    ]
    opts += ["--admm-epochs", str(args.admm_epochs), "--finetune-epochs", str(args.finetune_epochs)]
    if args.max_samples:
        opts += ["--max-samples", str(args.max_samples)]
    if args.quick:
        opts += ["--method", "magnitude"]
    return opts


def spec_of(kind: str, value: float) -> list[str]:
    """The options that give ``kind`` its structure: a MAC fraction or a uniform filter ratio."""
    if kind.startswith("macs"):
        return ["--target-macs", f"{value:.4f}"]
    return ["--sparsity", f"filter:{value:g}", "--align", "1"]


def compress_one(model: Path, spec: list[str], opts: list[str], out: Path, kind: str) -> Path:
    path = out / f"{kind}.onnx"
    run(common.compress_argv(model, *spec, *opts, "-o", str(path), "--report", str(out / f"{kind}.json")))
    return path


def compress_runs(model: Path, args: argparse.Namespace, out: Path, cache: Path) -> dict[str, Path]:
    """The pruned models: latency-aware; the same MACs by --target-macs and uniform filter:R; the same
    measured latency by both (:func:`equal_latency`)."""
    opts = train_opts(args)
    target = ["--target-speedup", f"{args.speedup:g}", "--on", args.on, "--latency-cache", str(cache)]
    target += ["--latency-threads", args.threads]
    paths = {"aware": compress_one(model, target, opts, out, "aware")}
    totals = json.loads((out / "aware.json").read_text())["totals"]
    fraction = totals["macs_after"] / totals["macs_before"]
    paths["macs"] = compress_one(model, spec_of("macs", fraction), opts, out, "macs")
    ratio, _ = uniform_ratio(model, fraction)
    paths["uniform"] = compress_one(model, spec_of("uniform", ratio), opts, out, "uniform")
    for kind, (lo, hi) in (("macs_eq", (0.02, 1.0)), ("uniform_eq", (0.0, 0.95))):
        value = equal_latency(model, kind, lo, hi, paths["aware"], args, out)
        paths[kind] = compress_one(model, spec_of(kind, value), opts, out, kind)
    return paths


def bench(
    paths: list[Path], args: argparse.Namespace, path: Path, repeats: int | None = None
) -> dict[str, Any]:
    """``onnxprune bench`` of ``paths`` (one call: timed in the same window) on the target, in its runtime
    (openvino:B: ``--runtime openvino`` on the cpu); its JSON, also written to ``path``."""
    from onnxprune.runtime.latency import parse_target

    target = parse_target(args.on, check_installed=False)
    device, runtime = target.backend.device, target.backend.runtime
    options = ["--batch", str(target.batch), "--provider", device, "--runtime", runtime]
    options += ["--threads", args.threads, "--repeats", str(repeats or args.repeats), "--json", str(path)]
    run(onnxprune("bench", *map(str, paths), *options))
    return json.loads(path.read_text())


def bench_ms(
    paths: list[Path], args: argparse.Namespace, out: Path, repeats: int | None = None
) -> list[float]:
    """Median latency (ms) of each of ``paths`` on the target, timed in one ``onnxprune bench`` call."""
    return [r["median_ms"] for r in bench(paths, args, out / "bench_search.json", repeats)["results"]]


def smallest_fraction(model: Path, preview: list[str], out: Path) -> float:
    """The smallest MAC fraction a budget reaches on ``model`` (every group at its minimum width), from
    compress's own one-line refusal of a fraction below it (0 when even 1e-4 is reachable)."""
    cmd = common.compress_argv(model, "--target-macs", "0.0001", *preview, "-o", str(out / "search_min.onnx"))
    done = common.run_child(cmd, capture_output=True)
    found = re.search(r"smallest achievable MAC fraction is ([0-9.]+)", done.stderr)
    if done.returncode != 0 and found is None:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr[-2000:]}")
    return float(found.group(1)) * 1.001 if found else 0.0


def equal_latency(
    model: Path, kind: str, lo: float, hi: float, aware: Path, args: argparse.Namespace, out: Path
) -> float:
    """The MAC fraction (``macs_eq``, latency rising with it) or uniform ratio (``uniform_eq``, latency
    falling) whose structure measures closest to ``aware``'s latency: bisection over magnitude previews
    (structure only; the same data and seed as the trained run, so a MAC budget's probe chooses the same
    widths), each timed against ``aware`` in the same bench call; the closest of the points tried."""
    preview = [
        "--method",
        "magnitude",
        "--finetune-epochs",
        "0",
        "--data",
        "fashion-mnist",
        "--seed",
        str(args.seed),
    ]
    preview += ["-q", "--no-bench", "--force"] + (
        ["--max-samples", str(args.max_samples)] if args.max_samples else []
    )
    rising = kind.startswith("macs")
    if rising:
        lo = max(lo, smallest_fraction(model, preview, out))
    tried: list[tuple[float, float]] = []
    for _ in range(args.search_steps):
        mid = (lo * hi) ** 0.5 if rising else (lo + hi) / 2  # MAC fractions on a log scale
        candidate = out / f"search_{kind}.onnx"
        run(common.compress_argv(model, *spec_of(kind, mid), *preview, "-o", str(candidate)))
        aware_ms, ms = bench_ms([aware, candidate], args, out, repeats=args.search_repeats)
        tried.append((abs(ms / aware_ms - 1), mid))
        slower = ms > aware_ms
        if slower == rising:
            hi = mid
        else:
            lo = mid
        print(f"equal latency {kind}: {mid:.4f} -> {ms:.3f} ms vs aware {aware_ms:.3f} ms", flush=True)
    return min(tried)[1]


def measure(
    model: Path, paths: dict[str, Path], args: argparse.Namespace, out: Path, cache: Path
) -> dict[str, Any]:
    """Independent timing of the dense and every pruned model, and predicted vs measured per pruned model."""
    measured = bench([model, *paths.values()], args, out / "bench.json")
    predicted = {}
    for kind, path in paths.items():
        p = out / f"predict_{kind}.json"
        opts = ["--on", args.on, "--threads", args.threads, "--cache", str(cache), "--pruned", str(path)]
        run(onnxprune("latency", str(model), *opts, "--json", str(p)))
        predicted[kind] = json.loads(p.read_text())["pruned"]
    return {"bench": measured, "predicted": predicted}


def summary(name: str, result: dict[str, Any], out: Path) -> dict[str, Any]:
    rows = result["measured"]["bench"]["results"]
    dense = rows[0]["median_ms"]
    kinds = {}
    for kind, row in zip(KINDS, rows[1:], strict=True):
        report = json.loads((out / f"{kind}.json").read_text())
        t, acc = report["totals"], report.get("accuracy") or {}
        pred = result["measured"]["predicted"][kind]
        kinds[kind] = {
            "spec": report["sparsity"],
            "mac_fraction": t["macs_after"] / t["macs_before"],
            "top1": acc.get("pruned_top1"),
            "measured_speedup": dense / row["median_ms"],
            "measured_bench_ms": row["median_ms"],
            "predicted_ms": pred["predicted_ms"],
            "measured_ms": pred["measured_ms"],
            "prediction_error": pred["predicted_ms"] / pred["measured_ms"] - 1,
        }
    return {"model": name, "seed": result.get("seed", 0), "dense_ms": dense, "kinds": kinds}


def render(rows: list[dict[str, Any]], target: str, speedup: float) -> str:
    body = []
    for r in rows:
        for kind, k in r["kinds"].items():
            top1 = "-" if k["top1"] is None else f"{100 * k['top1']:.2f}"
            speed, err = f"{k['measured_speedup']:.2f}x", f"{100 * k['prediction_error']:+.1f} %"
            ms = f"{k['measured_bench_ms']:.3f}" if "measured_bench_ms" in k else "-"
            row = [r["model"], r.get("seed", 0), kind, k["spec"], f"{k['mac_fraction']:.3f}", top1, ms, speed]
            body.append([*row, err])
    header = ["model", "seed", "run", "spec", "MACs kept", "top-1 %", "ms", "speedup", "predicted - measured"]
    text = f"target {target}, --target-speedup {speedup:g}\n\n" + common.markdown_table(header, body)
    margins = equal_latency_margins(rows)
    return text + ("\n\n" + "\n".join(margins) if margins else "")


def equal_latency_margins(rows: list[dict[str, Any]]) -> list[str]:
    """Per model: the latency-aware run's top-1 minus each equal-latency run's, per seed and their mean."""
    lines = []
    for model in sorted({r["model"] for r in rows}):
        for other in ("macs_eq", "uniform_eq"):
            margins = [
                100 * (r["kinds"]["aware"]["top1"] - r["kinds"][other]["top1"])
                for r in rows
                if r["model"] == model and other in r["kinds"] and r["kinds"]["aware"]["top1"] is not None
            ]
            if margins:
                each = ", ".join(f"{m:+.2f}" for m in margins)
                mean = sum(margins) / len(margins)
                lines.append(
                    f"- {model}: aware − {other} at equal measured latency: {each} pp (mean {mean:+.2f})"
                )
    return lines


def main(args: argparse.Namespace) -> None:
    names = ["vgg"] if args.quick else args.archs
    work = Path(tempfile.mkdtemp(prefix="latency-aware-")) if args.quick else common.OUT / "latency_aware"
    cache = work / "cache"
    rows = []
    for name in names:
        model = common.MODELS / f"fmnist_{name}.onnx"
        out = work / f"{name}_{args.on.replace(':', '_')}_s{args.seed}"
        out.mkdir(parents=True, exist_ok=True)
        result: dict[str, Any] = {"model": name, "on": args.on, "speedup": args.speedup, "seed": args.seed}
        result["table"] = table_runs(model, args.on, args.threads, out, cache)
        paths = compress_runs(model, args, out, cache)
        result["measured"] = measure(model, paths, args, out, cache)
        result["summary"] = summary(name, result, out)
        rows.append(result["summary"])
        stem = f"{name}_{args.on.replace(':', '_')}" + (f"_s{args.seed}" if args.seed else "")
        dest = (work if args.quick else RESULTS) / f"{stem}.json"
        common.write_json(result, dest)
        print(json.dumps(result["summary"], indent=1), flush=True)
    text = render(rows, args.on, args.speedup)
    print(text)
    if args.quick:
        print(f"quick run in {work}: nothing spliced into the README")
    else:
        publish()


def render_all() -> str:
    """One table per (target, speedup) of the committed results (``results/latency_aware/*.json``)."""
    by_target: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for path in sorted(RESULTS.glob("*.json")):
        result = json.loads(path.read_text())
        row = result["summary"] | {"seed": result.get("seed", 0)}
        by_target.setdefault((result["on"], result["speedup"]), []).append(row)
    return "\n\n".join(render(rows, on, speedup) for (on, speedup), rows in sorted(by_target.items()))


def publish() -> None:
    """The README block regenerated from every committed result."""
    common.splice(BLOCK, render_all(), heading="Latency-aware pruning (--target-speedup)")


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--speedup", type=float, help="latency-aware mode: --target-speedup X (issue 19)")
    ap.add_argument("--on", default="cpu:32", help="latency-aware mode: the target PROVIDER:BATCH")
    ap.add_argument("--archs", nargs="+", default=["vgg", "resnet", "mobilenetv2"])
    ap.add_argument("--admm-epochs", type=int, default=1)
    ap.add_argument("--finetune-epochs", type=int, default=1)
    ap.add_argument("--max-samples", type=int)
    ap.add_argument("--quick", action="store_true", help="one tiny end-to-end check (numbers meaningless)")
    ap.add_argument("--seed", type=int, default=0, help="seed of every compress run (splits, training)")
    ap.add_argument(
        "--search-steps", type=int, default=7, help="bisection steps of each equal-latency search"
    )
    ap.add_argument("--search-repeats", type=int, default=100, help="bench repeats per search step")


def quick_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """--quick: no training, few samples and repeats, batch 2, one thread."""
    if args.quick:
        args.admm_epochs, args.finetune_epochs, args.max_samples = 0, 0, 600
        args.repeats, args.on = 5, "cpu:2" if args.on == "cpu:32" else args.on
        args.search_steps, args.search_repeats = 2, 5
        args.speedup = args.speedup or 1.5
    args.threads = str(args.threads or 1)
    return args


__all__ = ["add_arguments", "main", "publish", "quick_defaults", "render_all"]
