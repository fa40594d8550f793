"""Every GPU measurement of issues 5 and 7 in one run: compress wall time on CUDA vs CPU, ORT CUDA latency
(default, NHWC, CUDA graphs), torch eager / torch.compile on the same GPU, and where ORT CUDA spends its time.

On the GPU machine (see benchmarks/README.md, "GPU run", for the carry steps), from the repository root:

    python3 -m benchmarks.run_gpu --out "$OUT"

Here, to check the script on the CPU (tiny training, CPU provider only, same code paths otherwise):

    .venv/bin/python -m benchmarks.run_gpu --device cpu --quick --out /tmp/gpu-check

Writes ``gpu.json`` (everything) and ``gpu.md`` (the tables) to ``--out``. Models: the VGG-style reference,
its ``filter:R`` shapes for R in --ratios and, aligned to 8 channels, for R in --aligned (one-shot magnitude,
no training: latency depends on shapes only), and the ``filter:0.7`` model trained in the compress-timing
step. The per-node profile (``onnxprune profile``) puts dense, ``filter:0.7`` and its aligned shape side by
side at the large batch, with the default and the NHWC CUDA settings.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from onnxprune.pipeline import TrainOptions, compress
from onnxprune.runtime.benchmark import bench
from onnxprune.runtime.machine import environment
from onnxprune.runtime.profiling import profile

from . import common

DENSE = common.MODELS / "fmnist_vgg.onnx"
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
        "verify_max_rel_error": r.verification.max_rel_error,
        "torch_threads": os.cpu_count(),
    }


def shape_model(ratio: float, out: Path, align: int = 1) -> tuple[Path, float]:
    """The ``filter:ratio`` shape of the VGG-style model (magnitude, no training; kept counts rounded to
    multiples of ``align``) and its MAC reduction."""
    path = out / f"vgg_filter{ratio:g}{f'a{align}' if align > 1 else ''}_shape.onnx"
    r = compress(
        DENSE,
        f"filter:{ratio:g}",
        "random",
        path,
        method="magnitude",
        train=TrainOptions(finetune_epochs=0),
        max_samples=64,
        align=align,
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


def profiles(
    models: list[Path], names: list[str], provider: str, batch: int, quick: bool
) -> list[dict[str, Any]]:
    """``onnxprune profile`` of ``models`` side by side (ORT's per-node times, speedup and executed-MAC
    reduction per node), per CUDA configuration that changes the kernels (default, NHWC)."""
    configs = {k: CUDA_CONFIGS[k] for k in ("default", "nhwc")} if provider == "cuda" else {"default": {}}
    out = []
    for config, options in configs.items():
        try:
            rep = profile(
                models,
                batch_sizes=(batch,),
                providers=[provider],
                runs=10 if quick else 50,
                names=names,
                cuda_options=options,
            )
        except Exception as e:  # reported, not fatal
            log(f"profile {provider} {config}: failed: {e}")
            out.append({"config": config, "error": str(e)})
            continue
        out.append({"config": config, "table": rep.format_table(), **rep.to_dict()})
        log(f"profile {provider} {config} b{batch}: done")
    return out


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
        lines += [
            "",
            f"ORT profile, {p['config']} settings:",
            "```",
            p.get("table", p.get("error", "")),
            "```",
        ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument(
        "--quick", action="store_true", help="tiny training and few repeats (checking the script)"
    )
    ap.add_argument("--ratios", type=float, nargs="+", default=[0.5, 0.7, 0.9])
    ap.add_argument(
        "--aligned", type=float, nargs="*", default=[0.7], help="ratios also timed with --align 8"
    )
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
    shapes = [shape_model(r, out) for r in args.ratios] + [shape_model(r, out, 8) for r in args.aligned]
    models = [DENSE, *(p for p, _ in shapes)]
    names = ["dense", *(f"filter{r:g}" for r in args.ratios), *(f"filter{r:g}a8" for r in args.aligned)]
    result["mac_reduction"] = {
        "dense": 1.0,
        **{n: red for n, (_, red) in zip(names[1:], shapes, strict=True)},
    }
    gpu_batches = (1, 64)
    if args.device == "cuda":
        result["latency"] += latency(models, names, "cuda", gpu_batches, args.quick)
    result["latency"] += latency(models, names, "cpu", (1, 32), args.quick)
    # dense, filter:0.7 and filter:0.7 aligned to 8 (when timed) side by side, at the large batch
    chosen = [i for i, n in enumerate(names) if n in ("dense", "filter0.7", "filter0.7a8")]
    batch = 64 if args.device == "cuda" else 32
    result["profiles"] = profiles(
        [models[i] for i in chosen], [names[i] for i in chosen], args.device, batch, args.quick
    )
    common.write_json(result, out / "gpu.json")
    text = markdown(result)
    (out / "gpu.md").write_text(text + "\n")
    print(text)
    for p in out.glob("*.onnx"):  # only the summaries come back
        p.unlink()


if __name__ == "__main__":
    main()
