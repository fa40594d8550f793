"""Every GPU measurement of issues 5 and 7 in one run: compress wall time on CUDA vs CPU, ORT CUDA latency
(default, NHWC, CUDA graphs), torch eager / torch.compile on the same GPU, and where ORT CUDA spends its time.

On the GPU machine (see benchmarks/README.md, "GPU run", for the carry steps), from the repository root:

    python3 benchmarks/run_gpu.py --out "$OUT"

Here, to check the script on the CPU (tiny training, CPU provider only, same code paths otherwise):

    .venv/bin/python benchmarks/run_gpu.py --device cpu --quick --out /tmp/gpu-check

Writes ``gpu.json`` (everything), ``gpu.md`` (the tables) and ``profile_*.json`` summaries to ``--out``.
Models: the VGG-style reference, its ``filter:R`` shapes for R in --ratios (one-shot magnitude, no training:
latency depends on shapes only) and the ``filter:0.7`` model trained in the compress-timing step.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from onnxprune.bench import bench  # noqa: E402
from onnxprune.graph.runtime import make_session  # noqa: E402
from onnxprune.pipeline import TrainOptions, compress  # noqa: E402
from onnxprune.report import environment  # noqa: E402

DENSE = ROOT / "models" / "fmnist_vgg.onnx"
CUDA_CONFIGS: dict[str, dict[str, str]] = {
    "default": {},
    "nhwc": {"prefer_nhwc": "1"},
    "cuda-graph": {"enable_cuda_graph": "1"},
    "nhwc+cuda-graph": {"prefer_nhwc": "1", "enable_cuda_graph": "1"},
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def gpu_name() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def time_compress(device: str, out: Path, quick: bool) -> dict[str, Any]:
    """One ``filter:0.7`` ADMM compress of the VGG-style model on ``device``; wall time and phases."""
    opts = TrainOptions(admm_epochs=1, finetune_epochs=0 if quick else 1, device=device)
    start = time.perf_counter()
    r = compress(
        DENSE,
        "filter:0.7",
        "fashion-mnist",
        out / f"vgg_filter0.7_{device}.onnx",
        train=opts,
        max_samples=2000 if quick else None,
        bench_batches=(),
        quiet=True,
    ).report
    wall = time.perf_counter() - start
    log(f"compress on {device}: {wall:.1f} s, top-1 {r.accuracy['pruned_top1'] if r.accuracy else None}")
    return {
        "device": device,
        "wall_s": round(wall, 1),
        "phases_s": {k: round(v, 2) for k, v in r.phases.items()},
        "top1_dense": r.accuracy["dense_top1"] if r.accuracy else None,
        "top1_pruned": r.accuracy["pruned_top1"] if r.accuracy else None,
        "mac_reduction": r.totals["mac_reduction"],
        "verify_max_rel_error": r.verification["max_rel_error"],
        "torch_threads": os.cpu_count(),
    }


def shape_model(ratio: float, out: Path) -> tuple[Path, float]:
    """The ``filter:ratio`` shape of the VGG-style model (magnitude, no training) and its MAC reduction."""
    path = out / f"vgg_filter{ratio:g}_shape.onnx"
    r = compress(
        DENSE,
        f"filter:{ratio:g}",
        "random",
        path,
        method="magnitude",
        train=TrainOptions(finetune_epochs=0),
        max_samples=64,
        input_shape=(1, 1, 28, 28),
        bench_batches=(),
        quiet=True,
    ).report
    return path, float(r.totals["mac_reduction"])


def latency(
    models: list[Path], names: list[str], provider: str, batches: tuple[int, ...], quick: bool
) -> list[dict[str, Any]]:
    """ORT latency per CUDA configuration (CPU: default only), then torch eager and torch.compile."""
    rows: list[dict[str, Any]] = []
    repeats = 20 if quick else 200
    configs = CUDA_CONFIGS if provider == "cuda" else {"default": {}}
    # (runtime, configuration, CUDA provider options, warm-up runs)
    plans = [("ort", config, options, 10) for config, options in configs.items()]
    plans += [(runtime, "default", {}, 3) for runtime in ("torch", "torch-compile")]
    for runtime, config, options, warmup in plans:
        try:
            rep = bench(
                models,
                batch_sizes=batches,
                providers=[provider],
                repeats=repeats,
                warmup=warmup,
                names=names,
                runtimes=(runtime,),
                cuda_options=options,
            )
        except Exception as e:  # a configuration or runtime that fails is reported, not fatal
            log(f"{runtime} {provider} {config}: failed: {e}")
            rows.append({"runtime": runtime, "config": config, "error": str(e)})
            continue
        rows += [{**asdict(r), "config": config} for r in rep.rows]
        skipped = "; ".join(rep.settings["skipped"]) or "nothing skipped"
        log(f"{runtime} {provider} {config}: done ({skipped})")
    return rows


def profile(model: Path, provider: str, batch: int, out: Path, runs: int = 20) -> dict[str, Any]:
    """ORT's per-node profile: total device time per op type, and the share of all node time."""
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.enable_profiling = True
    opts.profile_file_prefix = str(out / f"ortprof_{model.stem}_{provider}_b{batch}")
    sess = make_session(str(model), provider)  # checks the provider is really used
    sess = ort.InferenceSession(str(model), sess_options=opts, providers=sess.get_providers())
    x = np.random.default_rng(0).random((batch, 1, 28, 28), dtype=np.float32)
    name = sess.get_inputs()[0].name
    for _ in range(runs):
        sess.run(None, {name: x})
    trace = Path(sess.end_profiling())
    events = json.loads(trace.read_text())
    per_op: dict[str, float] = defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            per_op[e.get("args", {}).get("op_name", "?")] += e.get("dur", 0) / runs
    model_run = [e["dur"] for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    trace.unlink()
    total = sum(per_op.values())
    summary = {
        "model": model.stem,
        "provider": provider,
        "batch": batch,
        "model_run_us_median": float(np.median(model_run)) if model_run else None,
        "node_time_us": round(total, 1),
        "per_op_us": {k: round(v, 1) for k, v in sorted(per_op.items(), key=lambda kv: -kv[1])},
    }
    (out / f"profile_{model.stem}_{provider}_b{batch}.json").write_text(json.dumps(summary, indent=2))
    return summary


def markdown(result: dict[str, Any]) -> str:
    lines = [f"GPU: {result['gpu']}; {result['environment']}; {result['date']}", ""]
    lines += ["| compress on | wall | phases (s) | top-1 | verify err |", "|---|---|---|---|---|"]
    for c in result["compress"]:
        phases = ", ".join(f"{k} {v:.1f}" for k, v in c["phases_s"].items() if not k.startswith("train."))
        top1 = f"{100 * c['top1_pruned']:.2f} %" if c["top1_pruned"] is not None else "—"
        lines.append(
            f"| {c['device']} | {c['wall_s']:.1f} s | {phases} | {top1} | {c['verify_max_rel_error']:.1e} |"
        )
    lines += ["", "| runtime | config | model | MAC red. | batch | median ms | p90 ms | speedup |"]
    lines += ["|---|---|---|---|---|---|---|---|"]
    for r in result["latency"]:
        if "error" in r:
            lines.append(f"| {r['runtime']} | {r['config']} | failed: {r['error'][:80]} | | | | | |")
            continue
        red = result["mac_reduction"].get(r["model"], 1.0)
        lines.append(
            f"| {r['runtime']} | {r['config']} | {r['model']} | {red:.2f}x | {r['batch']} "
            f"| {r['median_ms']:.3f} | {r['p90_ms']:.3f} | {r['speedup']:.2f}x |"
        )
    for p in result["profiles"]:
        top = ", ".join(f"{k} {v:.0f} µs" for k, v in list(p["per_op_us"].items())[:6])
        lines.append(
            f"\nprofile {p['model']} {p['provider']} b{p['batch']}: run {p['model_run_us_median']} µs, {top}"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument(
        "--quick", action="store_true", help="tiny training and few repeats (checking the script)"
    )
    ap.add_argument("--ratios", type=float, nargs="+", default=[0.5, 0.7, 0.9])
    ap.add_argument("--skip-compress", action="store_true")
    args = ap.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "gpu": gpu_name(),
        "environment": environment(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "compress": [],
        "latency": [],
        "profiles": [],
    }
    log(f"GPU {result['gpu']}; {result['environment']}")
    if not args.skip_compress:
        for device in dict.fromkeys([args.device, "cpu"]):
            result["compress"].append(time_compress(device, out, args.quick))
    shapes = [shape_model(r, out) for r in args.ratios]
    models = [DENSE, *(p for p, _ in shapes)]
    names = ["dense", *(f"filter{r:g}" for r in args.ratios)]
    result["mac_reduction"] = {
        "dense": 1.0,
        **{n: red for n, (_, red) in zip(names[1:], shapes, strict=True)},
    }
    gpu_batches = (1, 64)
    if args.device == "cuda":
        result["latency"] += latency(models, names, "cuda", gpu_batches, args.quick)
    result["latency"] += latency(models, names, "cpu", (1, 32), args.quick)
    for model in (DENSE, shapes[min(1, len(shapes) - 1)][0]):
        result["profiles"].append(profile(model, args.device, 64 if args.device == "cuda" else 32, out))
    (out / "gpu.json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result)
    (out / "gpu.md").write_text(text + "\n")
    print(text)
    for p in out.glob("*.onnx"):  # only the summaries come back
        p.unlink()


if __name__ == "__main__":
    main()
