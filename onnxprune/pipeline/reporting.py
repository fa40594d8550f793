"""Stage 8 of ``compress``: the report — layers, totals, element zeros, fidelity and accuracy on held-out
data, the MAC budget's choice, the ORT latency of dense vs pruned, the gates. ONNX side, no torch."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import onnx

from ..config.gates import Gates
from ..config.sparsity import GROUP_KINDS, SparsitySpec
from ..graph.elements import element_rows
from ..graph.macs import ModelCost, copied_params, count_costs
from ..plan import PruningPlan
from ..report import LayerRow, Report, layer_rows, totals
from ..runtime.benchmark import bench_apart
from ..runtime.fidelity import evaluate
from ..runtime.machine import environment
from ..runtime.timing import PhaseClock
from .loading import Loaded, Samples
from .planning import Planned
from .prune import Exported
from .resolve import Config
from .training import Trained
from .writing import Written

log = logging.getLogger("onnxprune")


def build_report(
    config: Config,
    loaded: Loaded,
    samples: Samples,
    planned: Planned,
    trained: Trained,
    exported: Exported,
    written: Written,
    clock: PhaseClock,
) -> Report:
    """Everything the run measured, but latency and gates (:func:`measure_latency`, the gates stage)."""
    splits, plan, masks = samples.splits, planned.plan, exported.masks
    with clock.phase("evaluate"):
        shape = samples.inputs.shape
        cost_b, cost_a = count_costs(loaded.base, shape), count_costs(exported.pruned, shape)
        # the normalizer gave each reader of a shared initializer its own copy (merged back on export):
        # the model as given holds one
        cost_b = replace(cost_b, params=cost_b.params - copied_params(loaded.base, loaded.normalized.copies))
        layers = layer_rows(
            loaded.base, exported.pruned, cost_b, cost_a, plan, {n: int(k.sum()) for n, k in masks.items()}
        )
        elements = element_rows(exported.pruned, planned.elements, cost_a) if planned.elements else []
        fidelity = evaluate(loaded.base, written.model, splits.test, samples.test_split)
    return Report(
        model=str(config.source) if config.source else "<ModelProto>",
        sparsity=config.sparsity_text,
        method=config.run.method,
        data=splits.name + ("" if config.data.labels else " (labels withheld from training)"),
        config=_settings(config, samples, trained) | {"alignment": _alignment(config, planned)},
        notes=loaded.normalized.notes,
        groups=[group_summary(g.name, plan, masks, config.spec) for g in plan.groups],
        layers=_with_element_status(layers, elements, written.lowered),
        elements=elements,
        totals=totals(loaded.base, exported.pruned, cost_b, cost_a)
        | _element_totals(elements, cost_a, written),
        accuracy=fidelity if "dense_top1" in fidelity else None,
        fidelity=fidelity,
        shape_form=_shape_form(written, exported, shape),
        budget=_budget(planned, cost_b, cost_a),
        latency_budget=planned.latency.to_dict() if planned.latency is not None else None,
        verification=exported.verification,
        history=trained.history_by_phase(),
        environment=environment(),
    )


def _settings(config: Config, samples: Samples, trained: Trained) -> dict[str, Any]:
    """The report's ``config``: the training configuration and the data settings of the run."""
    return {
        **trained.settings,
        "input_shape": samples.inputs.to_json(),
        "val_fraction": config.data.val_fraction,
        "labels": config.data.labels and samples.splits.labeled,
        "preprocess": str(config.preprocess) if config.preprocess is not None else None,
        "max_samples": config.data.max_samples,
    }


def _alignment(config: Config, planned: Planned) -> dict[str, Any]:
    """The channel multiple used, why, and the pruned groups too small to align."""
    return {**config.alignment.to_dict(), "step": config.spec.align, "unaligned": list(planned.unaligned)}


def _with_element_status(
    layers: list[LayerRow], elements: list[dict[str, Any]], lowered: set[str]
) -> list[LayerRow]:
    """The layer rows, an element-pruned layer's status saying its zeros and how it is written."""
    zeros = {e["node"]: e for e in elements}
    out = []
    for row in layers:
        e = zeros.get(row.node)
        if e is not None:
            how = "lowered: im2col GEMM of the kept columns" if row.node in lowered else "dense storage"
            row = replace(row, status=f"{e['rule']}: {100 * e['zero_fraction']:.1f}% zeros ({how})")
        out.append(row)
    return out


def _element_totals(rows: list[dict[str, Any]], cost: ModelCost, written: Written) -> dict[str, Any]:
    """Effective (non-zero-weight) MACs next to the dense ones, and the storage sizes."""
    if not rows:
        return {}
    skipped = sum(r["macs"] - r["effective_macs"] for r in rows)
    return {
        **written.storage,
        "effective_macs_after": cost.total_macs - skipped,
        "element_zeros": sum(r["zeros"] for r in rows),
        "element_size": sum(r["size"] for r in rows),
        "element_note": "element zeros are stored, not skipped: ORT CPU and CUDA run these layers dense, "
        "with no speedup; effective MACs count only multiply-adds with a non-zero weight",
    }


def _shape_form(written: Written, exported: Exported, shape: Any) -> dict[str, Any] | None:
    if written.forms is None:
        return None
    return written.forms | {"macs_written": count_costs(written.model, shape).total_macs, **exported.dead}


def _budget(planned: Planned, before: ModelCost, after: ModelCost) -> dict[str, Any] | None:
    if planned.budget is None:
        return None
    achieved = after.total_macs / before.total_macs if before.total_macs else 1.0
    return {**planned.budget.to_dict(), "achieved_macs": achieved}


def group_summary(
    name: str, plan: PruningPlan, masks: Mapping[str, np.ndarray], spec: SparsitySpec
) -> dict[str, Any]:
    """One group of the report: its channels, what was kept and removed, and the rule that set it."""
    g = plan.group(name)
    rule = spec.rule_for(g) if g.prunable else None
    rule = rule if rule is not None and rule.kind in GROUP_KINDS else None  # element rules act on weights
    keep = masks.get(name)
    return {
        "name": g.name,
        "node": g.source_node,
        "op_type": g.op_type,
        "channels": g.channels,
        "kind": g.kind,  # filter: pruned by its filters; channel: by the input channels of channel_node
        "channel_node": g.channel_node,
        "channel_reason": g.channel_reason,
        "kept": int(keep.sum()) if keep is not None else g.channels,
        "prunable": g.prunable,
        "reason": g.reason,
        "rule": str(rule) if rule else None,  # the recipe rule that set its ratio
        "members": [{"initializer": m.initializer, "axis": m.axis, "role": m.role.value} for m in g.members],
        "removed": np.flatnonzero(~keep).tolist() if keep is not None else [],
    }


def measure_latency(
    config: Config,
    loaded: Loaded,
    samples: Samples,
    written: Written,
    clock: PhaseClock,
    int8: onnx.ModelProto | None = None,
) -> dict[str, Any] | None:
    """Dense vs pruned (and its ``int8`` model) ORT latency at the bench batch sizes on CPU (and the speedup
    gate's provider and batch); None when nothing is timed (``--no-bench``, or not rank 0)."""
    batches = samples.runnable_batches(config.bench_batches)
    if tuple(batches) != tuple(config.bench_batches):
        log.info("latency at batch %s only: the model's batch is fixed", batches[0])
    runs = bench_runs(batches, config.gates) if config.main_rank else []
    result: dict[str, Any] | None = None
    if runs:
        with clock.phase("bench"):
            shape = samples.inputs.first_shape
            result = latency(loaded.base, written.model, shape, runs, config.bench_repeats, int8)
    if config.latency.targeted and config.main_rank:  # measured even with --no-bench: the target's check
        with clock.phase("latency target"):
            result = {**(result or {}), "latency_target": target_latency(config, loaded, samples, written)}
    return result


def target_latency(config: Config, loaded: Loaded, samples: Samples, written: Written) -> dict[str, Any]:
    """Dense vs pruned on the latency target (``--on``, its threads), in a fresh process like the bench, in
    the target's runtime (ORT, or OpenVINO for ``openvino:B``)."""
    from ..runtime.latency import parse_target

    shape, threads = samples.inputs.first_shape, config.latency.latency_threads
    target = parse_target(str(config.latency.on), threads)
    runtime, device, batch = target.backend.runtime, target.backend.device, target.batch
    names = ["dense", "pruned"]
    models = [loaded.base, written.model]
    result = bench_apart(models, names, [batch], [device], 50, shape, threads, runtimes=[runtime])
    d, p = result.row("dense", device, batch, runtime), result.row("pruned", device, batch, runtime)
    return {"target": config.latency.on, "runtime": runtime, "dense_ms": d.median_ms,
            "pruned_ms": p.median_ms, "speedup": d.median_ms / p.median_ms}  # fmt: skip


def bench_runs(batches: Sequence[int], gates: Gates) -> list[tuple[str, int]]:
    """(provider, batch) pairs to time: CPU at ``batches``, plus the speedup gate's pair."""
    runs = [("cpu", int(b)) for b in batches]
    if gates.min_speedup is not None and (gates.speedup_provider, gates.speedup_batch) not in runs:
        runs.append((gates.speedup_provider, gates.speedup_batch))
    return runs


def latency(
    dense: onnx.ModelProto,
    pruned: onnx.ModelProto,
    shape: Sequence[int],
    runs: Sequence[tuple[str, int]],
    repeats: int,
    int8: onnx.ModelProto | None = None,
) -> dict[str, Any]:
    """Dense vs pruned ORT latency for each (provider, batch) of ``runs``; with ``int8`` (the pruned model
    quantized) also its time, its speedup over dense (``int8_speedup``) and over pruned fp32."""
    providers = sorted({p for p, _ in runs}, key=[p for p, _ in runs].index)
    batches = sorted({b for _, b in runs})
    models, names = [dense, pruned, *([int8] if int8 is not None else [])], ["dense", "pruned", "int8"]
    result = bench_apart(models, names[: len(models)], batches, providers, repeats, shape)
    speedups = []
    for provider, batch in runs:
        d, p = result.row("dense", provider, batch), result.row("pruned", provider, batch)
        row = {
            "provider": provider,
            "batch": batch,
            "dense_ms": d.median_ms,
            "pruned_ms": p.median_ms,
            "speedup": d.median_ms / p.median_ms,
        }
        if int8 is not None:
            q = result.row("int8", provider, batch).median_ms
            row |= {"int8_ms": q, "int8_speedup": d.median_ms / q, "int8_vs_pruned": p.median_ms / q}
        speedups.append(row)
    return {"speedups": speedups, "bench": result.to_dict()}


__all__ = ["bench_runs", "build_report", "group_summary", "latency", "measure_latency", "target_latency"]
