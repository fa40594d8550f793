"""Channel alignment (``--align N``): does rounding kept channel counts to a multiple make ORT CPU faster?

    python -m benchmarks.run_align                  # waits for an idle machine, then measures (~8 min)
    python -m benchmarks.run_align --quick          # debug: ResNet-50 at 64x64, VGG-16 at 224 batch 1 only,
                                                    # a few runs, nothing written
    python -m benchmarks.run_align --render-only    # rebuild the README table from the JSON
    python -m benchmarks.run_align --layout-only    # recompute the ORT-layout column (no timing)
    python -m benchmarks.run_align --tag avx512     # another machine: results/align_avx512.json and its
                                                    # own README table, the first one kept

torchvision VGG-16 and ResNet-50 with random weights (``weights=None``, eval mode) are exported to ONNX
(opset 17, dynamic batch) and pruned WITHOUT training, on the ONNX side of the library only: normalize,
analyze, magnitude masks (the channels of largest L2 norm over all source tensors of the group), mask,
prune, reshare; each pruned model is checked against its masked model (max relative error <= 1e-4).

Variants, each with kept count ``k = round(0.3 * C)`` per pruned group (at least 1 and one per cover set):

* VGG-16, ``conv``: every prunable Conv group (the issue's "every hidden conv"); the two hidden Gemm
  groups (4096 units) stay whole.
* ResNet-50, ``inner``: the groups that are not residual-tied (``len(g.source_nodes) == 1``: the stem and
  the first two convs of every bottleneck); ``all``: every prunable group, the tied ones too.
* for each: unrounded, and ``k`` rounded with :func:`onnxprune.config.alignment.aligned_keep` to multiples of
  4, 8, 16 and 32 of the kept filters.

Every variant is exported and verified first; then the script waits until the 1-minute load is below
``--idle-below`` (at most ``--max-wait`` s, then it times anyway and says so) and times with
:func:`onnxprune.runtime.benchmark.bench` on ORT CPU, default threads, all variants of one model
interleaved; batch 1 and 32 (VGG-16 at 224x224 only: its AdaptiveAvgPool2d(7) does not export at 112).
The CPU time other processes used while timing is recorded, and so is how ORT laid out the convs (NCHWc
or NCHW) in its optimized graph. Results go to benchmarks/results/align.json and between the
align-results markers of benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from onnxprune.config.alignment import aligned_keep
from onnxprune.graph.analysis import analyze
from onnxprune.graph.edit import initializer_arrays, mask_model, prune_model
from onnxprune.graph.load import normalize, reshare
from onnxprune.graph.macs import count_costs
from onnxprune.graph.verify import compare_models
from onnxprune.plan import Group, PruningPlan
from onnxprune.runtime.benchmark import bench
from onnxprune.runtime.machine import environment

from . import common

RESULTS = common.RESULTS / "align.json"
SECTION_BEGIN, SECTION_END = common.markers("align-section")
HEADING = "## Channel alignment (`--align`)"
WIDTH = 0.3
OPSET = 17
RTOL = 1e-4
SCOPES = {"vgg16": ("conv",), "resnet50": ("inner", "all")}


# --------------------------------------------------------------------------------------------- models


def export(name: str, size: int, seed: int = 0) -> onnx.ModelProto:
    """torchvision ``name`` with random weights, eval mode, exported with a dynamic batch dim."""
    import torch
    import torchvision

    torch.manual_seed(seed)
    model = getattr(torchvision.models, name)(weights=None).eval()
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        path = Path(tmp) / f"{name}.onnx"
        torch.onnx.export(
            model,
            (torch.randn(1, 3, size, size),),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "n"}, "y": {0: "n"}},
        )
        return onnx.load(str(path))


def in_scope(g: Group, scope: str) -> bool:
    if scope == "conv":
        return g.op_type == "Conv"
    if scope == "inner":
        return len(g.source_nodes) == 1
    return scope == "all"


def group_width(g: Group) -> int:
    """Indices of the group's source tensor (the source node's weight) each channel owns."""
    first = next(m for m in g.sources if m.node == g.source_node)
    return max(1, first.index_map.per_channel)


def channel_norms(g: Group, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Squared L2 norm of each channel over all the group's source tensors."""
    out = np.zeros(g.channels)
    for m in g.sources:
        a = arrays[m.initializer].astype(np.float64)
        per_index = (np.moveaxis(a, m.axis, 0).reshape(a.shape[m.axis], -1) ** 2).sum(axis=1)
        owner = m.index_map.positions(a.shape[m.axis], g.channels)
        ok = owner >= 0
        out += np.bincount(owner[ok], weights=per_index[ok], minlength=g.channels)[: g.channels]
    return out


def magnitude_mask(g: Group, keep: int, norms: np.ndarray) -> np.ndarray:
    """The ``keep`` channels of largest norm, swapped so that every cover set keeps one."""
    order = np.argsort(-norms, kind="stable")
    mask = np.zeros(g.channels, dtype=bool)
    mask[order[:keep]] = True
    for cover in g.cover_sets:
        if not mask[list(cover)].any():
            protected = {c for s in g.cover_sets for c in s if mask[list(s)].sum() == 1 and mask[c]}
            drop = next(int(c) for c in order[::-1] if mask[c] and c not in protected)
            mask[drop] = False
            mask[max(cover, key=lambda c: norms[c])] = True
    assert int(mask.sum()) == keep
    return mask


@dataclass
class Variant:
    name: str
    scope: str | None  # None: dense
    multiple: int | None  # None: unrounded
    masks: dict[str, np.ndarray]
    widths: dict[str, int]


def variants(
    plan: PruningPlan, arrays: dict[str, np.ndarray], multiples: list[int], scopes: tuple[str, ...]
) -> list[Variant]:
    out = [Variant("dense", None, None, {g.name: np.ones(g.channels, dtype=bool) for g in plan.groups}, {})]
    norms = {g.name: channel_norms(g, arrays) for g in plan.prunable}
    for scope in scopes:
        chosen = [g for g in plan.prunable if in_scope(g, scope)]
        widths = {g.name: group_width(g) for g in chosen}
        for multiple in [None, *multiples]:
            masks = {g.name: np.ones(g.channels, dtype=bool) for g in plan.groups}
            for g in chosen:
                minimum = max(1, len(g.cover_sets))
                keep = max(minimum, min(g.channels, round(WIDTH * g.channels)))
                if multiple is not None:
                    keep = aligned_keep(keep, g.channels, widths[g.name], multiple, minimum)
                masks[g.name] = magnitude_mask(g, keep, norms[g.name])
            label = f"{scope}30-" + ("unrounded" if multiple is None else f"a{multiple}")
            out.append(Variant(label, scope, multiple, masks, widths))
    return out


def keep_summary(plan: PruningPlan, v: Variant) -> dict[str, Any]:
    """Which widths the pruned groups got: ``"C->k"`` counts, and how many kept counts are multiples of 8."""
    pairs: Counter[str] = Counter()
    kept = total = aligned8 = aligned16 = pruned = 0
    for g in plan.groups:
        k = int(v.masks[g.name].sum())
        if k == g.channels:
            continue
        pruned += 1
        w = v.widths.get(g.name, 1)
        pairs[f"{g.channels}->{k}"] += 1
        kept, total = kept + k * w, total + g.channels * w
        aligned8 += (k * w) % 8 == 0
        aligned16 += (k * w) % 16 == 0
    return {
        "pruned_groups": pruned,
        "kept_filters": kept,
        "filters_of_pruned_groups": total,
        "kept_multiple_of_8": aligned8,
        "kept_multiple_of_16": aligned16,
        "counts": dict(sorted(pairs.items(), key=lambda kv: (int(kv[0].split("->")[0]), kv[0]))),
    }


# --------------------------------------------------------------------------------------------- measure


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def wait_idle(threshold: float, max_wait_s: float, poll_s: float = 30.0) -> dict[str, Any]:
    """Poll the 1-minute load until it is below ``threshold`` (at most ``max_wait_s``)."""
    start = time.monotonic()
    first = loadavg()
    while True:
        load = loadavg()
        waited = time.monotonic() - start
        if load < threshold:
            return {"idle": True, "load_before_wait": first, "load_at_start": load, "waited_s": round(waited)}
        if waited >= max_wait_s:
            return {
                "idle": False,
                "load_before_wait": first,
                "load_at_start": load,
                "waited_s": round(waited),
            }
        print(f"load {load:.2f} >= {threshold}: waiting ({waited:.0f} s so far)", flush=True)
        time.sleep(poll_s)


def cpu_times() -> tuple[float, float, float]:
    """(wall s, busy CPU s of the whole machine, CPU s of this process): for foreign CPU use."""
    ticks = os.sysconf("SC_CLK_TCK")
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    busy = sum(fields[:8]) - fields[3] - fields[4]  # all but idle and iowait
    mine = os.times()
    return time.monotonic(), busy / ticks, mine.user + mine.system


def foreign_load(before: tuple[float, float, float], after: tuple[float, float, float]) -> float:
    """CPU use of other processes between two :func:`cpu_times`, in cores (2.0 = both cores busy)."""
    wall, busy, mine = (a - b for a, b in zip(after, before, strict=True))
    return max(0.0, (busy - mine) / wall) if wall > 0 else 0.0


def ort_layout(model: onnx.ModelProto) -> dict[str, int]:
    """How ORT CPU (all graph optimizations, this machine) runs the convolutions: the optimized graph's
    blocked NCHWc convs (``com.microsoft.nchwc`` Conv, MLAS block size 8 on AVX2, 16 on AVX-512), the
    plain NCHW ones (Conv / FusedConv), and the NCHW <-> NCHWc reorders between them."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        so.log_severity_level = 3
        ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        nodes = onnx.load(so.optimized_model_filepath, load_external_data=False).graph.node
    kinds = Counter((n.domain, n.op_type) for n in nodes)
    return {
        "nchwc_conv": kinds[("com.microsoft.nchwc", "Conv")],
        "nchw_conv": kinds[("", "Conv")] + kinds[("ai.onnx", "Conv")] + kinds[("com.microsoft", "FusedConv")],
        "reorders": kinds[("com.microsoft.nchwc", "ReorderInput")]
        + kinds[("com.microsoft.nchwc", "ReorderOutput")],
    }


@dataclass
class Prepared:
    name: str
    shape: tuple[int, int, int, int]
    plan: PruningPlan
    rows: list[dict[str, Any]]
    models: list[onnx.ModelProto]
    prepare_s: float


def prepare(name: str, size: int, multiples: list[int]) -> Prepared:
    """Export, plan, and every variant pruned and verified against its masked model."""
    t0 = time.perf_counter()
    shape = (1, 3, size, size)
    normalized = normalize(export(name, size))
    base = normalized.model
    plan = analyze(base, shape)
    arrays = initializer_arrays(base, set(plan.source_initializers()))
    rng = np.random.default_rng(1)
    check = [
        rng.standard_normal((2, 3, size, size)).astype(np.float32),
        rng.uniform(0, 1, (2, 3, size, size)).astype(np.float32),
    ]
    dense_cost = count_costs(base, shape)
    rows: list[dict[str, Any]] = []
    models: list[onnx.ModelProto] = []
    for v in variants(plan, arrays, multiples, SCOPES[name]):
        if v.scope is None:
            model, err = base, 0.0
        else:
            masked = mask_model(base, plan, v.masks)
            pruned = prune_model(masked, plan, v.masks)
            pruned, masked = reshare(pruned, normalized.copies), reshare(masked, normalized.copies)
            result = compare_models(masked, pruned, check, rtol=RTOL)
            if not result.passed:
                raise SystemExit(
                    f"{name} {v.name}: pruned != masked (max rel error {result.max_rel_error:.2e})"
                )
            model, err = pruned, result.max_rel_error
            del masked
        cost = count_costs(model, shape)
        rows.append(
            {
                "variant": v.name,
                "scope": v.scope,
                "multiple": v.multiple,
                "keep": keep_summary(plan, v) if v.scope else None,
                "macs": cost.total_macs,
                "conv_macs": cost.conv_macs,
                "params": cost.params,
                "mac_reduction": dense_cost.total_macs / cost.total_macs,
                "max_rel_error": err,
                "ort_layout": ort_layout(model),
                "latency": {},
            }
        )
        models.append(model)
        print(f"  {name} {v.name}: {cost.total_macs / 1e9:.3f} GMACs, rel err {err:.1e}", flush=True)
    return Prepared(name, shape, plan, rows, models, time.perf_counter() - t0)


def measure(
    p: Prepared, batches: list[int], repeats: dict[int, int], warmup: int, threads: int | None
) -> dict[str, Any]:
    """ORT CPU latency of every variant of ``p``, interleaved, one bench call per batch size."""
    foreign: dict[str, float] = {}
    seconds: dict[str, float] = {}
    for batch in batches:
        before = cpu_times()
        report = bench(
            p.models,
            batch_sizes=(batch,),
            providers=["cpu"],
            threads=threads,
            warmup=warmup,
            repeats=repeats[batch],
            names=[r["variant"] for r in p.rows],
        )
        after = cpu_times()
        foreign[str(batch)] = round(foreign_load(before, after), 3)
        seconds[str(batch)] = round(after[0] - before[0], 1)
        print(report.format_table(), flush=True)
        print(f"  other processes used {foreign[str(batch)]:.2f} cores meanwhile", flush=True)
        for r in p.rows:
            b = report.row(r["variant"], "cpu", batch)
            r["latency"][str(batch)] = {
                "median_ms": b.median_ms,
                "p90_ms": b.p90_ms,
                "mean_ms": b.mean_ms,
                "speedup": b.speedup,
                "runs": b.runs,
            }
    return {
        "model": p.name,
        "input_shape": list(p.shape),
        "groups": len(p.plan.groups),
        "prunable_groups": len(p.plan.prunable),
        "tied_prunable_groups": sum(len(g.source_nodes) > 1 for g in p.plan.prunable),
        "batches": batches,
        "repeats": {str(b): repeats[b] for b in batches},
        "warmup": warmup,
        "foreign_cpu_cores": foreign,
        "bench_s": seconds,
        "prepare_s": round(p.prepare_s, 1),
        "variants": p.rows,
    }


# --------------------------------------------------------------------------------------------- render


def _ms(r: dict[str, Any], batch: str) -> str:
    lat = r["latency"].get(batch)
    return "—" if lat is None else f"{lat['median_ms']:.1f} / {lat['p90_ms']:.1f}"


def _speedup(r: dict[str, Any], batch: str) -> str:
    lat = r["latency"].get(batch)
    return "—" if lat is None else f"{lat['speedup']:.2f}x"


def _gmacs_per_s(r: dict[str, Any], batch: str) -> float:
    """Effective throughput: MACs of one sample x batch / median latency, in GMAC/s."""
    return r["macs"] * int(batch) / (r["latency"][batch]["median_ms"] * 1e-3) / 1e9


def _rate(r: dict[str, Any]) -> str:
    return " / ".join(f"{_gmacs_per_s(r, b):.0f}" for b in ("1", "32") if b in r["latency"]) or "—"


def _layout(r: dict[str, Any]) -> str:
    lay = r.get("ort_layout")
    return "—" if lay is None else f"{lay['nchwc_conv']} / {lay['nchw_conv']} / {lay['reorders']}"


def _kept(r: dict[str, Any]) -> str:
    k = r["keep"]
    if k is None:
        return "—"
    return (
        f"{k['pruned_groups']} groups, {k['kept_filters']}/{k['filters_of_pruned_groups']} filters, "
        f"{k['kept_multiple_of_8']}/{k['pruned_groups']} ≡0 mod 8"
    )


def best_lines(data: dict[str, Any]) -> list[str]:
    """Per model, scope and batch: speedup over dense of each variant (and, in brackets, how much more
    GMAC/s each aligned variant gets than the unrounded one: the effect of alignment at equal work)."""
    lines = []
    for m in data["models"]:
        by_scope: dict[str, list[dict[str, Any]]] = {}
        for r in m["variants"]:
            if r["scope"]:
                by_scope.setdefault(r["scope"], []).append(r)
        for scope, rows in by_scope.items():
            for batch in map(str, m["batches"]):
                plain = next(r for r in rows if r["multiple"] is None)
                base_rate = _gmacs_per_s(plain, batch)
                parts = [
                    f"a{r['multiple']} {r['latency'][batch]['speedup']:.2f}x "
                    f"({_gmacs_per_s(r, batch) / base_rate:.2f}x GMAC/s)"
                    for r in rows
                    if r["multiple"] is not None
                ]
                best = max(rows, key=lambda r: r["latency"][batch]["speedup"])
                unrounded = plain["latency"][batch]["speedup"]
                lines.append(
                    f"- {m['model']} `{scope}` b{batch}: unrounded {unrounded:.2f}x, "
                    + ", ".join(parts)
                    + f" (fastest: {best['variant']})"
                )
    return lines


def render(data: dict[str, Any]) -> str:
    env, cond = data["environment"], data["conditions"]
    head = [
        f"Machine: {env['cpu']} ({cond['usable_cores']} cores usable), onnxruntime {env['onnxruntime']}, "
        f"ORT threads {cond['threads'] or 'default'}, {data['date']}. "
        f"1-minute load when timing started: {cond['load_at_start']:.2f} "
        + ("(idle)" if cond["idle"] else f"(NOT idle: waited {cond['waited_s']} s for < {cond['threshold']})")
        + "; CPU used by other processes while timing (cores, of 2): "
        + ", ".join(
            f"{m['model']} " + " / ".join(f"b{b} {c:.2f}" for b, c in m["foreign_cpu_cores"].items())
            for m in data["models"]
        )
        + ".",
        "",
        "| model | input | variant | kept (pruned groups) | GMACs | MACs ↓ | params "
        "| b1 ms median / p90 | b1 speedup | b32 ms median / p90 | b32 speedup | GMAC/s b1 / b32 "
        "| ORT convs NCHWc / NCHW / reorders | pruned ≡ masked |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in data["models"]:
        size = "x".join(map(str, m["input_shape"][2:]))
        reps = ", ".join(f"b{b}: {n} runs" for b, n in m["repeats"].items())
        for r in m["variants"]:
            head.append(
                f"| {m['model']} | {size} | {r['variant']} | {_kept(r)} | {r['macs'] / 1e9:.2f} "
                f"| {r['mac_reduction']:.2f}x | {r['params'] / 1e6:.1f}M "
                f"| {_ms(r, '1')} | {_speedup(r, '1')} "
                f"| {_ms(r, '32')} | {_speedup(r, '32')} | {_rate(r)} | {_layout(r)} "
                f"| {r['max_rel_error']:.1e} |"
            )
        head.append(f"| {m['model']} | | *timing* | {reps}, warmup {m['warmup']} | | | | | | | | | | |")
    head += [
        "",
        "Speedup over dense per variant; in brackets, the aligned variant's GMAC/s relative to the unrounded "
        "one's (the effect of alignment at equal work):",
        "",
        *best_lines(data),
    ]
    return "\n".join(head)


def results_path(tag: str | None) -> Path:
    return RESULTS if not tag else RESULTS.with_name(f"align_{tag}.json")


def write_readme(data: dict[str, Any], tag: str | None = None) -> None:
    """The table between its markers (a tagged table's own: ``align-results-TAG``); a new tagged table goes
    at the end of the alignment section."""
    name = "align-results" + (f"-{tag}" if tag else "")
    body = common.README.read_text()
    if SECTION_BEGIN not in body:
        body = body.rstrip("\n") + f"\n\n{SECTION_BEGIN}\n{HEADING}\n\n{SECTION_END}\n"
    begin, end = common.markers(name)
    if begin not in body:
        at = body.index(SECTION_END)
        body = body[:at] + f"{begin}\n{end}\n" + body[at:]
    common.README.write_text(body)
    common.splice(name, render(data))


# --------------------------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["resnet50", "vgg16"], choices=sorted(SCOPES))
    ap.add_argument("--size", type=int, default=224, help="ResNet-50 input height and width (VGG-16: 224)")
    ap.add_argument("--multiples", type=int, nargs="+", default=[4, 8, 16, 32])
    ap.add_argument("--repeats-b1", type=int, default=40)
    ap.add_argument("--repeats-b32", type=int, default=10)
    ap.add_argument("--vgg16-repeats-b1", type=int, default=20)
    ap.add_argument("--vgg16-repeats-b32", type=int, default=5)
    ap.add_argument("--vgg16-no-b32", action="store_true", help="time VGG-16 at batch 1 only")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, help="ORT intra-op threads (default: ORT's)")
    ap.add_argument("--idle-below", type=float, default=0.6, help="1-minute load to wait for")
    ap.add_argument("--max-wait", type=float, default=1500, help="seconds to wait for it at most")
    ap.add_argument("--quick", action="store_true", help="debug: 64x64, few runs, nothing written")
    ap.add_argument("--tag", help="results/align_TAG.json and a README table of its own (another machine)")
    ap.add_argument("--render-only", action="store_true", help="re-render the README table from the JSON")
    ap.add_argument(
        "--layout-only", action="store_true", help="recompute the ORT layout column into the JSON (no timing)"
    )
    args = ap.parse_args()
    results = results_path(args.tag)
    if args.render_only:
        write_readme(common.read_json(results), args.tag)
        return
    if args.layout_only:
        data = common.read_json(results)
        for m in data["models"]:
            p = prepare(m["model"], m["input_shape"][2], data["multiples"])
            layouts = {r["variant"]: r["ort_layout"] for r in p.rows}
            for r in m["variants"]:
                r["ort_layout"] = layouts[r["variant"]]
        common.write_json(data, results)
        write_readme(data, args.tag)
        return
    if args.quick:
        args.size, args.repeats_b1, args.repeats_b32, args.warmup = 64, 3, 2, 1
        args.vgg16_repeats_b1, args.vgg16_no_b32, args.max_wait = 3, True, 0
    plans = []
    for name in args.models:
        vgg = name == "vgg16"
        size = 224 if vgg else args.size  # VGG-16's AdaptiveAvgPool2d(7) exports only where 7 divides H/32
        batches = [1] if vgg and args.vgg16_no_b32 else [1, 32]
        repeats = {
            1: args.vgg16_repeats_b1 if vgg else args.repeats_b1,
            32: args.vgg16_repeats_b32 if vgg else args.repeats_b32,
        }
        plans.append((prepare(name, size, args.multiples), batches, repeats))
    conditions = wait_idle(args.idle_below, args.max_wait)
    conditions |= {
        "threshold": args.idle_below,
        "threads": args.threads,
        "usable_cores": len(os.sched_getaffinity(0)),
    }
    print(f"conditions: {conditions}", flush=True)
    models = [measure(p, batches, repeats, args.warmup, args.threads) for p, batches, repeats in plans]
    data = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "environment": environment(),
        "conditions": conditions | {"load_at_end": loadavg()},
        "width": WIDTH,
        "multiples": args.multiples,
        "models": models,
    }
    if args.quick:
        print(render(data))
        return
    results.parent.mkdir(exist_ok=True)
    common.write_json(data, results)
    write_readme(data, args.tag)
    print(render(data))


if __name__ == "__main__":
    main()
