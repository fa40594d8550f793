"""One shape-pruned Conv, dense with zeros vs its lowered im2col form, on ORT CPU.

    python -m benchmarks.run_shape_layers            # ~2 min, 1 ORT thread

The VGG-style reference's conv shapes (3x3, pad 1: 24 ch at 28x28, 48 ch at 14x14, 96 ch at 7x7) with
random weights, the columns of smallest norm zeroed to keep 50 %, 30 % or 10 % of them, timed at batch 1
and 32 (interleaved blocks, median; :func:`onnxprune.runtime.benchmark.bench`). Writes
benchmarks/results/structures/shape_layers.json and the table between the shape-layers markers of
benchmarks/README.md. Where the lowered form wins, and by how much, is what the per-model choice of
``compress`` (:mod:`onnxprune.runtime.forms`) rests on.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxprune.graph.lowered import lower_model
from onnxprune.graph.verify import compare_models
from onnxprune.runtime.benchmark import bench

from . import common

LAYERS = [(24, 28), (48, 14), (96, 7)]  # channels (in = out), spatial size
KEEPS = (0.5, 0.3, 0.1)


def conv(channels: int, size: int, keep: float, seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((channels, channels, 3, 3)).astype(np.float32)
    norms = np.sqrt((w.astype(np.float64) ** 2).sum(axis=0)).reshape(-1)
    k = max(1, round(keep * norms.size))
    cut = np.zeros(norms.size, dtype=bool)
    cut[np.argsort(-norms, kind="stable")[k:]] = True
    w[:, cut.reshape(channels, 3, 3)] = 0
    b = rng.standard_normal(channels).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv", kernel_shape=[3, 3], pads=[1] * 4)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", channels, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", channels, size, size])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def measure(threads: int, repeats: int) -> list[dict[str, Any]]:
    rows = []
    for channels, size in LAYERS:
        for keep in KEEPS:
            dense = conv(channels, size, keep)
            lowered, layers = lower_model(dense, ["w"])
            x = np.random.default_rng(1).standard_normal((4, channels, size, size)).astype(np.float32)
            err = compare_models(dense, lowered, [x], rtol=1e-5).max_rel_error
            result = bench(
                [dense, lowered],
                batch_sizes=(1, 32),
                providers=["cpu"],
                threads=threads,
                repeats=repeats,
                names=["dense", "lowered"],
            )
            ms = {
                f"b{b}": {f: result.row(f, "cpu", b).median_ms for f in ("dense", "lowered")} for b in (1, 32)
            }
            rows.append(
                {
                    "layer": f"{channels}x{channels} 3x3 @ {size}x{size}",
                    "keep": keep,
                    "columns": layers[0].kept,
                    "of": layers[0].columns,
                    "nodes": layers[0].nodes,
                    "macs_dense": channels * channels * 9 * size * size,
                    "macs_lowered": channels * layers[0].kept * size * size,
                    "rel_error": err,
                    "ms": ms,
                }
            )
            print(rows[-1]["layer"], keep, ms, flush=True)
    return rows


def table(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    head = (
        f"Measured {meta['date']} ({meta['cpu']}, {meta['threads']} ORT thread, machine shared with other "
        f"jobs; onnxruntime {meta['onnxruntime']}). Median ms, dense with zeros → lowered (speedup).\n\n"
    )
    header = ("layer", "columns kept", "nodes (lowered)", "MACs dense → lowered", "b1 ms", "b32 ms")

    def cell(r: dict[str, Any], b: str) -> str:
        d, lo = r["ms"][b]["dense"], r["ms"][b]["lowered"]
        return f"{d:.3f} → {lo:.3f} ({d / lo:.2f}x)"

    body = [
        [
            r["layer"],
            f"{r['columns']}/{r['of']} ({100 * r['keep']:.0f} %)",
            r["nodes"],
            f"{r['macs_dense'] / 1e6:.2f} M → {r['macs_lowered'] / 1e6:.2f} M",
            cell(r, "b1"),
            cell(r, "b32"),
            f"{r['rel_error']:.1e}",
        ]
        for r in rows
    ]
    return head + common.markdown_table((*header, "lowered ≡ dense"), body)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=60)
    p.add_argument("--render-only", action="store_true")
    args = p.parse_args()
    out = common.RESULTS / "structures" / "shape_layers.json"
    if args.render_only:
        saved = common.read_json(out)
        rows, meta = saved["rows"], saved["meta"]
    else:
        import onnxruntime

        from onnxprune.runtime.machine import cpu_model

        rows = measure(args.threads, args.repeats)
        meta = {
            "date": datetime.now(UTC).strftime("%Y-%m-%d"),
            "cpu": cpu_model(),
            "threads": args.threads,
            "onnxruntime": onnxruntime.__version__,
        }
        common.write_json({"meta": meta, "rows": rows}, out)
    common.splice("shape-layers", table(rows, meta))


if __name__ == "__main__":
    main()
