"""Large models: peak RSS and wall time of surgery on a synthetic model of >= 1 GB (or > 2 GB) of weights.

Builds a VGG-like stack (3 Convs, then wide Gemms; dynamic batch; random He-scaled weights) into a temporary
folder, stored with external data (as exporters store large models), one tensor at a time; nothing is
downloaded. Then, each in a fresh child process whose peak RSS (``ru_maxrss``) is read by the parent:

* ``surgery``: the ONNX-side compress path, phase by phase: load (+ normalize), analyze, masks (magnitude,
  ONNX side), masked (the masked model streamed to a temporary file), prune (surgery), verify (checker +
  ORT, masked vs pruned), save. The child logs each phase's wall time and its RSS after the phase;
* ``roundtrip`` (with ``--over-2gb``): load the > 2 GB model and save it again (external data, atomic);
* ``cli`` (unless ``--no-cli``): ``onnxprune compress ... --method magnitude --finetune-epochs 0 --data
  random``: since issue 17 the torch-free stage (no onnx2torch import, which held its own copy of the
  weights: the 7.55 GB peak of benchmarks/README.md was measured with it).

Writes ``benchmarks/results/large.json`` (``large_over2gb.json`` with ``--over-2gb``) and prints a table.

    .venv/bin/python -m benchmarks.run_large [--over-2gb] [--no-cli] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from onnxprune.runtime.machine import cpu_model, environment

from .common import RESULTS, ROOT

INPUT = (1, 3, 32, 32)
WIDTH = 8192  # Gemm width: one hidden Gemm is 256 MiB of float32


def build(path: Path, hidden: int, seed: int = 0) -> int:
    """Write the model to ``path`` (+ ``<name>.data``) tensor by tensor; returns the weights' bytes."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    data_name = path.name + ".data"
    total = 0

    with open(path.parent / data_name, "wb") as data:

        def add(name: str, shape: tuple[int, ...], fan_in: int, bias: bool = False) -> None:
            nonlocal total
            if bias:
                w = (0.01 * rng.standard_normal(shape)).astype(np.float32)
            else:
                w = rng.standard_normal(shape, dtype=np.float32)
                w *= np.float32(np.sqrt(2.0 / fan_in))
            offset = data.tell()
            pad = -offset % 4096
            data.write(b"\0" * pad)
            offset += pad
            data.write(w.data)
            total += w.nbytes
            t = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=list(shape))
            t.data_location = TensorProto.EXTERNAL
            for k, v in (("location", data_name), ("offset", str(offset)), ("length", str(w.nbytes))):
                e = t.external_data.add()
                e.key, e.value = k, v
            inits.append(t)

        x, c = "input", INPUT[1]
        for i, (cout, pool) in enumerate([(128, False), (256, True), (512, True)]):
            add(f"conv{i}.weight", (cout, c, 3, 3), c * 9)
            add(f"conv{i}.bias", (cout,), 1, bias=True)
            nodes.append(
                helper.make_node(
                    "Conv", [x, f"conv{i}.weight", f"conv{i}.bias"], [f"c{i}"], name=f"/conv{i}", pads=[1] * 4
                )
            )
            nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"/relu{i}"))
            x, c = f"r{i}", cout
            if pool:
                nodes.append(
                    helper.make_node(
                        "MaxPool", [x], [f"p{i}"], name=f"/pool{i}", kernel_shape=[2, 2], strides=[2, 2]
                    )
                )
                x = f"p{i}"
        nodes.append(
            helper.make_node(
                "MaxPool", [x], ["p_last"], name="/pool_last", kernel_shape=[2, 2], strides=[2, 2]
            )
        )
        nodes.append(helper.make_node("Flatten", ["p_last"], ["flat"], name="/flatten", axis=1))
        x, f = "flat", c * 4 * 4
        assert f == WIDTH
        for i in range(hidden):
            add(f"fc{i}.weight", (WIDTH, f), f)
            add(f"fc{i}.bias", (WIDTH,), 1, bias=True)
            nodes.append(
                helper.make_node(
                    "Gemm", [x, f"fc{i}.weight", f"fc{i}.bias"], [f"g{i}"], name=f"/fc{i}", transB=1
                )
            )
            nodes.append(helper.make_node("Relu", [f"g{i}"], [f"h{i}"], name=f"/fc_relu{i}"))
            x, f = f"h{i}", WIDTH
        add("head.weight", (1000, f), f)
        add("head.bias", (1000,), 1, bias=True)
        nodes.append(
            helper.make_node("Gemm", [x, "head.weight", "head.bias"], ["logits"], name="/head", transB=1)
        )
    graph = helper.make_graph(
        nodes,
        "large_vgg",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", *INPUT[1:]])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 1000])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="run_large")
    model.ir_version = 8
    with open(path, "wb") as f:
        f.write(model.SerializeToString())
    return total


# -- children ------------------------------------------------------------------------------------------------
def _rss() -> tuple[float, float]:
    """(current, peak) resident set of this process in bytes (/proc/self/status VmRSS, VmHWM)."""
    values = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS", "VmHWM")):
                values[line.split(":")[0]] = int(line.split()[1]) * 1024
    return values["VmRSS"], values["VmHWM"]


class _Phases:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def run(self, name: str, fn: Any) -> Any:
        start = time.perf_counter()
        out = fn()
        rss, hwm = _rss()
        self.rows.append(
            {"phase": name, "seconds": time.perf_counter() - start, "rss_after": rss, "peak_so_far": hwm}
        )
        print(
            f"  {name:<8} {self.rows[-1]['seconds']:7.2f} s  rss {rss / 1e9:5.2f} GB  "
            f"peak {hwm / 1e9:5.2f} GB",
            flush=True,
        )
        return out


def child_surgery(model_path: Path, out: Path, sparsity: str, report: Path) -> None:
    from onnxprune.config.sparsity import keep_counts, parse_sparsity
    from onnxprune.graph.analysis import analyze
    from onnxprune.graph.edit import prune_model, write_masked
    from onnxprune.graph.load import load_model, normalize, reshare
    from onnxprune.graph.verify import verification_inputs, verify_pruned
    from onnxprune.io import save_model
    from onnxprune.pipeline.prune import magnitude_masks

    assert "torch" not in sys.modules
    p = _Phases()
    state: dict[str, Any] = {}

    def load() -> None:
        model, _ = load_model(model_path)
        state["norm"] = normalize(model, inplace=True)

    p.run("load", load)
    plan = p.run("analyze", lambda: analyze(state["norm"].model, INPUT))

    m = p.run(
        "masks",
        lambda: magnitude_masks(state["norm"].model, plan, keep_counts(plan, parse_sparsity(sparsity))),
    )
    work = Path(tempfile.mkdtemp(prefix="large-masked-", dir=out.parent))
    try:
        masked = work / "masked.onnx"
        p.run("masked", lambda: write_masked(state["norm"].model, plan, m, masked))

        def prune() -> onnx.ModelProto:
            norm = state.pop("norm")
            pruned = reshare(prune_model(norm.model, plan, m), norm.copies, inplace=True)
            del norm  # the dense model goes: only the pruned one (and the masked file) remain
            return pruned

        pruned = p.run("prune", prune)
        inputs = verification_inputs(INPUT, 1)
        result = p.run("verify", lambda: verify_pruned(masked, pruned, inputs))
        p.run("save", lambda: save_model(pruned, out))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report.write_text(
        json.dumps(
            {
                "phases": p.rows,
                "max_rel_error": result.max_rel_error,
                "torch_imported": "torch" in sys.modules,
                "output_external_data": (out.parent / (out.name + ".data")).exists(),
            }
        )
    )


def child_roundtrip(model_path: Path, out: Path, report: Path) -> None:
    from onnxprune.graph.load import load_model
    from onnxprune.io import save_model

    p = _Phases()
    state = {"model": p.run("load", lambda: load_model(model_path)[0])}
    p.run("save", lambda: save_model(state["model"], out))
    del state["model"]
    again = p.run("reload", lambda: load_model(out))
    report.write_text(
        json.dumps(
            {
                "phases": p.rows,
                "reloaded_external": again[1],
                "output_external_data": (out.parent / (out.name + ".data")).exists(),
            }
        )
    )


# -- parent --------------------------------------------------------------------------------------------------
def run_own_child(kind: str, model: Path, out: Path, report: Path, *extra: str) -> dict[str, Any]:
    """This script as a ``--child kind`` in a fresh process: its wall time, peak RSS and JSON report."""
    argv = [
        sys.executable,
        "-m",
        "benchmarks.run_large",
        "--child",
        kind,
        "--model",
        str(model),
        "--out",
        str(out),
    ]
    wall, peak, rc = run_child([*argv, *extra, "--report", str(report)])
    assert rc == 0, f"{kind} child failed ({rc})"
    return {"wall_s": wall, "peak_rss": peak, **json.loads(report.read_text())}


def run_child(argv: list[str]) -> tuple[float, float, int]:
    """Run ``argv``; (wall seconds, peak RSS bytes of the child, exit status)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - start, usage.ru_maxrss * 1024.0, proc.returncode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--over-2gb", action="store_true", help="a model of > 2 GB of weights (9 wide Gemms)")
    ap.add_argument("--no-cli", action="store_true", help="skip the full CLI run")
    ap.add_argument("--sparsity", default="filter:0.5")
    ap.add_argument("--keep", type=Path, help="build in this folder and keep it (default: a temporary one)")
    ap.add_argument(
        "--json", type=Path, help="results file (default benchmarks/results/large[_over2gb].json)"
    )
    ap.add_argument("--child", choices=["surgery", "roundtrip"], help=argparse.SUPPRESS)
    ap.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--report", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child == "surgery":
        child_surgery(args.model, args.out, args.sparsity, args.report)
        return
    if args.child == "roundtrip":
        child_roundtrip(args.model, args.out, args.report)
        return

    hidden = 9 if args.over_2gb else 4
    folder = args.keep or Path(tempfile.mkdtemp(prefix="onnxprune-large-"))
    folder.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    try:
        model = folder / "big.onnx"
        t0 = time.perf_counter()
        weights = build(model, hidden)
        print(
            f"built {model}: {weights / 1e9:.2f} GB of weights in {time.perf_counter() - t0:.1f} s",
            flush=True,
        )
        runs: dict[str, Any] = {}

        print("surgery (ONNX side, fresh process):", flush=True)
        runs["surgery"] = run_own_child(
            "surgery", model, folder / "pruned.onnx", folder / "surgery.json", "--sparsity", args.sparsity
        )
        runs["surgery"]["pruned_bytes"] = sum(
            f.stat().st_size for f in folder.iterdir() if f.name.startswith("pruned.onnx")
        )
        if args.over_2gb:
            print("roundtrip (load and save the > 2 GB model):", flush=True)
            runs["roundtrip"] = run_own_child(
                "roundtrip", model, folder / "copy.onnx", folder / "roundtrip.json"
            )
            for f in folder.glob("copy.onnx*"):
                f.unlink()
        if not args.no_cli:
            print("cli (onnxprune compress: the torch-free magnitude preview since issue 17):", flush=True)
            cli = [
                str(Path(py).with_name("onnxprune")),
                "compress",
                str(model),
                "--sparsity",
                args.sparsity,
                "--method",
                "magnitude",
                "--finetune-epochs",
                "0",
                "--data",
                "random",
                "--input-shape",
                ",".join(map(str, INPUT)),
                "--max-samples",
                "64",
                "--no-bench",
                "--quiet",
                "-o",
                str(folder / "cli.onnx"),
                "--report",
                str(folder / "cli_report.json"),
            ]
            wall, peak, rc = run_child(cli)
            runs["cli"] = {"wall_s": wall, "peak_rss": peak, "exit": rc, "command": " ".join(cli[1:])}
            if rc == 0:
                report = json.loads((folder / "cli_report.json").read_text())
                runs["cli"]["phases"] = report.get("phases")
                runs["cli"]["max_rel_error"] = report.get("verification", {}).get("max_rel_error")
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)

    result = {
        "date": date.today().isoformat(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "versions": environment(),
        "command": " ".join(["python -m benchmarks.run_large", *sys.argv[1:]]),
        "model": {
            "hidden_gemms": hidden,
            "width": WIDTH,
            "weights_bytes": weights,
            "storage": "external data",
        },
        "sparsity": args.sparsity,
        "runs": runs,
    }
    for run in runs.values():
        run["ratio_to_weights"] = run["peak_rss"] / weights
    out = args.json or RESULTS / ("large_over2gb.json" if args.over_2gb else "large.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nweights {weights / 1e9:.2f} GB ({result['cpu']}, {result['date']})")
    print(f"{'run':<10} {'wall s':>8} {'peak RSS GB':>12} {'x weights':>10}")
    for name, run in runs.items():
        print(
            f"{name:<10} {run['wall_s']:8.1f} {run['peak_rss'] / 1e9:12.2f} {run['ratio_to_weights']:10.2f}"
        )
    if "phases" in runs.get("surgery", {}):
        print(
            "surgery phases: "
            + ", ".join(f"{r['phase']} {r['seconds']:.1f} s" for r in runs["surgery"]["phases"])
        )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
