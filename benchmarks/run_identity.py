"""Behaviour fingerprint of ``compress``: the README results-table reference runs, hashed.

    python -m benchmarks.run_identity --out benchmarks/out/identity.json            # every case
    python -m benchmarks.run_identity --cases vgg_filter0.5 --repeat 2 --out x.json # determinism check
    python -m benchmarks.run_identity --compare before.json after.json              # exit 1 if they differ
    python -m benchmarks.run_identity --compare benchmarks/results/identity.json x.json

Each case is one ``onnxprune compress`` child process (the ``onnxprune`` found on the Python path: run it
from the checkout to fingerprint) with seed 0, ``--threads 1``, ``--max-samples 6000 --no-bench`` (a
bounded CPU cost on a shared machine), ``--align 1`` and the README row's epochs. ``--align 1``: the
default became ``auto`` (issue 19: the target's step, read from the machine, so 8 or 16 or 1 by CPU);
the fingerprint measures the old, machine-independent behaviour (exact ratios), which ``--align 1``
reproduces on every checkout that has the option (the start commit's default was 1). For each run it
records the sha256 of the written model's bytes, the sha256 of the masks (every group's ``removed`` list
of the JSON report, in group order) and the pruned top-1. A refactor that changes none of the behaviour
leaves every hash equal. ``benchmarks/results/identity.json`` holds the fingerprint of the tree before
issue 18's refactor (torch/onnxruntime versions and CPU recorded: float results may differ on other
builds). Self-contained on purpose (no other benchmarks module): it must run on old checkouts too.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
COMMON = ["--data", "fashion-mnist", "--seed", "0", "--threads", "1", "--max-samples", "6000"]
COMMON += ["--no-bench", "-q", "--align", "1"]
ONE_PLUS_ONE = ["--admm-epochs", "1", "--finetune-epochs", "1"]

# name -> (model, compress options); epochs as in the README row (2+2 unless it says 1+1)
CASES: dict[str, tuple[str, list[str]]] = {
    "vgg_filter0.5": ("fmnist_vgg", ["--sparsity", "filter:0.5"]),
    "vgg_filter0.7": ("fmnist_vgg", ["--sparsity", "filter:0.7"]),
    "resnet_filter0.5": ("fmnist_resnet", ["--sparsity", "filter:0.5"]),
    "vgg_nm2of4": ("fmnist_vgg", ["--config", "benchmarks/recipes/nm24_vgg.yaml", *ONE_PLUS_ONE]),
    "vgg_shape0.5": ("fmnist_vgg", ["--sparsity", "shape:0.5", *ONE_PLUS_ONE]),
    "vgg_target_macs0.3": ("fmnist_vgg", ["--target-macs", "0.3", *ONE_PLUS_ONE]),
}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def masks_hash(report: dict[str, Any]) -> str:
    """sha256 of the (group, removed indices) list: equal iff every group lost the same channels."""
    removed = [[g["name"], g["removed"]] for g in report["groups"]]
    return sha256(json.dumps(removed, separators=(",", ":")).encode())


# option -> the value that restores the start commit's default, for the checkouts that have the option
OLD_DEFAULTS = {
    "--retrain-on": "masked",  # retraining on the pruned model became the default; it rounds differently
    "--admm-on": "dense",  # ADMM on the shrunk model (2026-12-08): another run altogether
    "--importance": "source",  # group magnitude for --method magnitude and the preview (2026-12-08)
}


def old_behaviour() -> list[str]:
    """Options that restore the start commit's defaults where this checkout has them
    (:data:`OLD_DEFAULTS`)."""
    done = subprocess.run(
        [sys.executable, "-m", "onnxprune", "compress", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    return [part for flag, value in OLD_DEFAULTS.items() if flag in done.stdout for part in (flag, value)]


def run_case(name: str) -> dict[str, Any]:
    model, options = CASES[name]
    with tempfile.TemporaryDirectory(prefix="identity-") as work:
        out, report_path = Path(work) / "pruned.onnx", Path(work) / "report.json"
        cmd = [sys.executable, "-m", "onnxprune", "compress", f"models/{model}.onnx", *options, *COMMON]
        cmd += old_behaviour()
        cmd += ["-o", str(out), "--report", str(report_path)]
        start = time.perf_counter()
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"{name} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        report = json.loads(report_path.read_text())
        accuracy = report.get("accuracy") or {}
        files = sorted(p.name for p in Path(work).iterdir())
        return {
            "case": name,
            "command": " ".join(cmd[2:]),
            "model_sha256": sha256(out.read_bytes()),
            "masks_sha256": masks_hash(report),
            "pruned_top1": accuracy.get("pruned_top1"),
            "dense_top1": accuracy.get("dense_top1"),
            "max_rel_error": report["verification"]["max_rel_error"],
            "files": files,
            "seconds": round(seconds, 1),
        }


def compare(before: Path, after: Path) -> int:
    """Print the two runs' hashes side by side; 0 when every case agrees."""
    a = {r["case"]: r for r in json.loads(before.read_text())["runs"]}
    b = {r["case"]: r for r in json.loads(after.read_text())["runs"]}
    keys = ("model_sha256", "masks_sha256", "pruned_top1")
    bad = 0
    for case in a:
        if case not in b:
            print(f"{case}: missing in {after}")
            bad += 1
            continue
        same = all(a[case][k] == b[case][k] for k in keys)
        bad += not same
        print(f"{case:22s} {'same' if same else 'DIFFERENT'}", *(f"{k}={b[case][k]}" for k in keys))
    return 1 if bad else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="+", choices=sorted(CASES), default=list(CASES))
    ap.add_argument("--repeat", type=int, default=1, help="Run each case this many times.")
    ap.add_argument("--out", type=Path, help="Write the runs as JSON here.")
    ap.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    args = ap.parse_args()
    if args.compare:
        raise SystemExit(compare(*args.compare))
    import onnxprune

    runs = []
    for name in args.cases:
        for _ in range(args.repeat):
            runs.append(run_case(name))
            print(json.dumps(runs[-1]), flush=True)
            if args.out:  # after every run: a long job shows its progress and keeps what it did
                result = {"onnxprune": str(Path(onnxprune.__file__).parent), "runs": runs}
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
