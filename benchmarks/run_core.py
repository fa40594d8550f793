"""Core-pipeline benchmark: ADAM-ADMM filter pruning of the Fashion-MNIST reference models.

    python -m benchmarks.run_core                       # VGG at filter:0.5 and 0.7, ResNet at 0.5
    python -m benchmarks.run_core --runs vgg:0.5 --admm-epochs 1 --finetune-epochs 1   # quicker
    python -m benchmarks.run_core --runs mobilenetv2:0.5 mobilenetv2:0.5:magnitude --admm-epochs 1 \
        --finetune-epochs 1 --threads 1             # the MobileNetV2-style reference (depthwise convs)

Each run is a full ``onnxprune.compress`` (verification included). Pruned models and full JSON reports go
to benchmarks/out/ (not committed); the summary goes to benchmarks/results/core.json and the table between
the markers of benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

from onnxprune.pipeline import TrainOptions, compress
from onnxprune.runtime.machine import environment

from .common import MODELS as MODEL_DIR
from .common import OUT, RESULTS, markdown_table, read_json, splice, write_json

MODELS = {arch: MODEL_DIR / f"fmnist_{arch}.onnx" for arch in ("vgg", "resnet", "mobilenetv2")}


def run_one(
    arch: str, ratio: float, method: str, opts: TrainOptions, out_dir: Path, repeats: int
) -> dict[str, Any]:
    name = f"{arch}_filter{ratio:g}_{method}"
    start = time.perf_counter()
    result = compress(
        MODELS[arch],
        f"filter:{ratio}",
        "fashion-mnist",
        out_dir / f"{name}.onnx",
        method=method,
        train=opts,
        report_path=out_dir / f"{name}.json",
        plot_path=out_dir / f"{name}.png",
        bench_repeats=repeats,
    )
    r = result.report
    admm = r.history.get("admm", [])
    speed = {f"b{s['batch']}": s["speedup"] for s in (r.latency or {}).get("speedups", [])}
    lat = {f"b{s['batch']}": (s["dense_ms"], s["pruned_ms"]) for s in (r.latency or {}).get("speedups", [])}
    return {
        "name": name,
        "model": MODELS[arch].name,
        "sparsity": r.sparsity,
        "method": method,
        "dense_top1": r.accuracy["dense_top1"] if r.accuracy else None,
        "pruned_top1": r.accuracy["pruned_top1"] if r.accuracy else None,
        "drop_pp": r.accuracy["drop_pp"] if r.accuracy else None,
        "conv_mac_reduction": r.totals["conv_mac_reduction"],
        "mac_reduction": r.totals["mac_reduction"],
        "param_reduction": r.totals["param_reduction"],
        "macs_before": r.totals["macs_before"],
        "macs_after": r.totals["macs_after"],
        "verify_max_rel_error": r.verification.max_rel_error,
        "speedup": speed,
        "latency_ms": lat,
        "residual_first": admm[0]["primal_max"] if admm else None,
        "residual_last": admm[-1]["primal_max"] if admm else None,
        "admm_rounds": len(admm),
        "phases_s": {k: round(v, 1) for k, v in r.phases.items()},
        "wall_s": round(time.perf_counter() - start, 1),
        "date": time.strftime("%Y-%m-%d"),
        "cpu": environment()["cpu"],
        "config": {
            k: r.config[k]
            for k in ("admm_epochs", "finetune_epochs", "lr", "rho0", "rho_growth", "batch_size")
        },
    }


HEADER = (
    "run",
    "epochs",
    "top-1 dense",
    "top-1 pruned",
    "drop (pp)",
    "conv MACs",
    "all MACs",
    "params",
    "verify err",
    "ORT CPU b1",
    "ORT CPU b32",
    "‖W−Z‖/‖W‖ first→last",
    "wall",
)


def table(rows: list[dict[str, Any]]) -> str:
    body = []
    for r in rows:
        res = (
            f"{r['residual_first']:.3f} → {r['residual_last']:.2e} ({r['admm_rounds']} rounds)"
            if r["residual_first"] is not None
            else "—"
        )
        body.append(
            [
                r["name"],
                f"{r['config']['admm_epochs']}+{r['config']['finetune_epochs']}",
                f"{100 * r['dense_top1']:.2f}%",
                f"{100 * r['pruned_top1']:.2f}%",
                f"{r['drop_pp']:+.2f}",
                f"{r['conv_mac_reduction']:.2f}x fewer",
                f"{r['mac_reduction']:.2f}x fewer",
                f"{r['param_reduction']:.2f}x fewer",
                f"{r['verify_max_rel_error']:.1e}",
                f"{r['speedup'].get('b1', float('nan')):.2f}x",
                f"{r['speedup'].get('b32', float('nan')):.2f}x",
                res,
                f"{r['wall_s']:.0f} s",
            ]
        )
    return markdown_table(HEADER, body)


def update_readme(rows: list[dict[str, Any]], env: dict[str, str], date: str) -> None:
    # rows keep the date and CPU they were measured on; the header lists each pair once
    measured = "; ".join(sorted({f"{r.get('date', date)} on {r.get('cpu', env['cpu'])}" for r in rows}))
    splice(
        "core-results",
        f"Measured {measured} ({env['machine']}), Python {env['python']}, torch "
        f"{env.get('torch', '-')}, onnx {env['onnx']}, onnxruntime {env['onnxruntime']} "
        "(CPU provider, default threads). Speedup = dense median latency / pruned median latency.\n\n"
        f"{table(rows)}",
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--runs", nargs="+", default=["vgg:0.5", "vgg:0.7", "resnet:0.5"], help="ARCH:RATIO[:METHOD]"
    )
    ap.add_argument("--admm-epochs", type=int)
    ap.add_argument("--finetune-epochs", type=int)
    ap.add_argument("--repeats", type=int, default=50, help="ORT timing repeats")
    ap.add_argument("--threads", type=int, help="torch training threads (default: torch's)")
    ap.add_argument(
        "--render-only", action="store_true", help="rewrite the README table from results/core.json"
    )
    args = ap.parse_args()
    results_path = RESULTS / "core.json"
    if args.render_only:
        saved = read_json(results_path)
        update_readme(saved["runs"], saved["environment"], saved["date"])
        return
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out_dir = OUT
    out_dir.mkdir(exist_ok=True)
    opts = TrainOptions(
        admm_epochs=args.admm_epochs, finetune_epochs=args.finetune_epochs, threads=args.threads
    )
    new_rows = {}
    for spec in args.runs:
        arch, ratio, *method = spec.split(":")
        row = run_one(arch, float(ratio), method[0] if method else "admm", opts, out_dir, args.repeats)
        new_rows[row["name"]] = row
        print(json.dumps(row, indent=1))
    # read the saved rows only now: another invocation may have added some meanwhile
    saved = read_json(results_path, {"runs": []})
    old_meta = {"date": saved.get("date"), "cpu": saved.get("environment", {}).get("cpu")}
    # older rows get the file's date and CPU
    rows = {r["name"]: {**old_meta, **r} for r in saved["runs"]} | new_rows
    env = environment()
    date = time.strftime("%Y-%m-%d")
    ordered = sorted(rows.values(), key=lambda r: r["name"])
    write_json({"date": date, "environment": env, "runs": ordered}, results_path)
    update_readme(ordered, env, date)


if __name__ == "__main__":
    main()
