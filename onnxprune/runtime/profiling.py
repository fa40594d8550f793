"""Where the time goes: ONNX Runtime's per-node profile of models, side by side (``onnxprune profile``).

When a pruned model is less faster than its MAC reduction promises, the latency benchmark cannot say
why; this can. Each model gets its own session with ORT's profiler on, runs ``warmup`` untimed and
``runs`` profiled times on the same random inputs as :mod:`onnxprune.runtime.benchmark`, and every node of
the graph *as ORT executes it* (after its optimizations: Conv+Relu fused, convolutions in MLAS's blocked NCHWc
layout with reorders around them, Gemm+activation fused) gets the median of its kernel times over the
profiled runs.

Executed MACs. For a convolution ORT reports the shapes it ran, weight included: ``[M, C/g, kh, kw]``
with ``M`` and ``C`` as the kernel saw them (NCHWc convolutions pad channel counts to the block size).
So ``executed MACs = prod(output shape) * C/g * kh * kw``: the work the kernel did, which exceeds the
model's MACs by the padding (a 7-filter conv run as 16 filters does 16/7 of its MACs). GMAC/s =
executed MACs / median time says how well a kernel uses the machine; a narrow layer that runs at a
fraction of the dense layer's GMAC/s is where the missing speedup went. Other op types: no MACs.

Side by side. Nodes are matched across models by ORT's node name, which comes from the ONNX node or
output names; pruning keeps those, so a pruned model's layers line up with the dense model's. Nodes ORT
made up (``ReorderOutput_token_16``) match only by chance and are shown per model. For every model
after the first: the speedup of each matched node against the first model and the reduction of its
executed MACs.

The profiler's own bookkeeping adds a little per node; the total of the node medians and the median
of the whole ``model_run`` are both reported, so the share not spent in kernels is visible.

OpenVINO (``runtime='openvino'``, CPU only, the optional extra): the model is compiled with
``PERF_COUNT`` on and each run's per-node counters are read (:func:`~.openvino.perf_counts`), nodes of
OpenVINO's runtime graph after its own fusions. A node is named after the ONNX node it stands for:
the first of its ``originalLayersNames`` that is an ONNX node, or an ONNX tensor (then its producer);
OpenVINO folds a BatchNormalization (or constant Add) into the Conv / Gemm before it and keeps the
follower's name, so such a name goes back to the layer (:data:`~.latency.layers.BIAS_FOLLOWERS`).
Nodes OpenVINO made up (reorders) keep OpenVINO's name. Executed MACs are not known there ('—'); the
``model run`` median is the wall time of ``InferRequest.infer``. Rows are in the table of provider
``openvino``.

CUDA: ORT times a node on the host. Its kernels run asynchronously, so unless the onnxruntime build
traces CUDA kernels, a node's time is mostly its launch, and only ``model_run`` (which waits for the
device) is GPU time; the table says so under its title.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import onnx
import onnxruntime as ort

from ..errors import DataError, SpecError
from ..graph.layerops import LAYER_OPS
from .latency.layers import BIAS_FOLLOWERS
from .machine import MachineInfo
from .sessions import (
    ModelLike,
    choose_providers,
    cuda_graph_enabled,
    input_specs,
    load_session,
    make_runner,
    model_labels,
    model_source,
    random_feeds,
)
from .tables import format_table
from .timing import check_settings

KERNEL_SUFFIX = "_kernel_time"
CUDA_CAVEAT = (
    "cuda: node times are host-side (kernel launches are asynchronous); "
    "'model run' includes the wait for the device"
)
# ORT's fused op types -> the ONNX layer op whose facts they have (graph.layerops)
FUSED_OPS = {"FusedConv": "Conv"}


@dataclass(frozen=True)
class NodeTime:
    """One node as ORT ran it: median kernel time over the profiled runs, and executed MACs if a conv."""

    name: str
    op_type: str
    provider: str
    median_us: float
    executed_macs: int | None

    @property
    def gmacs_per_s(self) -> float | None:
        if not self.executed_macs or self.median_us <= 0:
            return None
        return self.executed_macs / self.median_us / 1e3

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "gmacs_per_s": self.gmacs_per_s}


@dataclass(frozen=True)
class ModelProfile:
    """The per-node profile of one model on one provider at one batch size (nodes in execution order)."""

    model: str
    provider: str
    batch: int
    runs: int
    run_median_us: float
    nodes: tuple[NodeTime, ...]

    @property
    def node_total_us(self) -> float:
        return sum(n.median_us for n in self.nodes)

    def node(self, name: str) -> NodeTime | None:
        return next((n for n in self.nodes if n.name == name), None)

    def by_op_type(self) -> dict[str, float]:
        """Op type -> summed median time (µs), largest first."""
        out: dict[str, float] = {}
        for n in self.nodes:
            out[n.op_type] = out.get(n.op_type, 0.0) + n.median_us
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "provider": self.provider,
            "batch": self.batch,
            "runs": self.runs,
            "run_median_us": self.run_median_us,
            "node_total_us": self.node_total_us,
            "by_op_type_us": self.by_op_type(),
            "nodes": [n.to_dict() for n in self.nodes],
        }


@dataclass
class ProfileReport:
    """Profiles of several models (first = baseline), per provider and batch size, and the machine."""

    profiles: list[ModelProfile]
    machine: MachineInfo
    settings: dict[str, Any]

    def get(self, model: str, provider: str, batch: int) -> ModelProfile:
        for p in self.profiles:
            if (p.model, p.provider, p.batch) == (model, provider, batch):
                return p
        raise KeyError((model, provider, batch))

    def to_dict(self) -> dict[str, Any]:
        return self.machine.record(self.settings, profiles=[p.to_dict() for p in self.profiles])

    def format_table(self, machine: bool = False) -> str:
        """One node table per provider and batch size; ``machine`` adds the machine summary line on top."""
        groups = list(dict.fromkeys((p.provider, p.batch) for p in self.profiles))
        blocks = [
            compare([p for p in self.profiles if (p.provider, p.batch) == g], self.settings["runs"])
            for g in groups
        ]
        return self.machine.headed("\n\n".join(blocks), machine)


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{suffix}"


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def compare(profiles: Sequence[ModelProfile], runs: int) -> str:
    """The node table of profiles of one provider and batch: the first profile is the baseline.

    Columns: node, op type, then per model its median µs, and per model after the first its speedup
    against the baseline and its executed-MAC reduction; then every model's GMAC/s. Rows: the nodes in
    the baseline's execution order, then nodes only the other models have; a model without the node
    shows '—'. Two footer rows: the sum of the node medians and the median of the whole run.
    """
    base, others = profiles[0], list(profiles[1:])
    names = list(dict.fromkeys(n.name for p in profiles for n in p.nodes))
    header = ["node", "op"] + [f"{p.model} µs" for p in profiles]
    header += [f"{p.model} speedup" for p in others] + [f"{p.model} MACs ↓" for p in others]
    header += [f"{p.model} GMAC/s" for p in profiles]
    lines = [header]
    for name in names:
        nodes = [p.node(name) for p in profiles]
        first = next(n for n in nodes if n is not None)
        times = [n.median_us if n else None for n in nodes]
        macs = [n.executed_macs if n else None for n in nodes]
        row = [name, first.op_type] + [_fmt(t, ".1f") for t in times]
        row += [_fmt(_ratio(times[0], t), ".2f", "x") for t in times[1:]]
        row += [_fmt(_ratio(macs[0], m), ".2f", "x") for m in macs[1:]]
        row += [_fmt(n.gmacs_per_s if n else None, ".1f") for n in nodes]
        lines.append(row)
    for label, values in (
        ("total of node medians", [p.node_total_us for p in profiles]),
        ("model run (median)", [p.run_median_us for p in profiles]),
    ):
        row = [label, ""] + [f"{v:.1f}" for v in values]
        row += [_fmt(_ratio(values[0], v), ".2f", "x") for v in values[1:]]
        lines.append(row + [""] * (len(header) - len(row)))
    title = f"provider {base.provider} | batch {base.batch} | median over {runs} profiled runs"
    if base.provider == "cuda":
        title += f"\n{CUDA_CAVEAT}"
    return f"{title}\n{format_table(lines[0], lines[1:], left=2)}"


def executed_macs(op_type: str, args: dict[str, Any]) -> int | None:
    """Executed MACs of a conv from the shapes in its profile event (see the module docstring)."""
    op = LAYER_OPS.get(FUSED_OPS.get(op_type, op_type))
    if op is None or not op.conv:
        return None
    try:
        inputs = [next(iter(t.values())) for t in args["input_type_shape"]]
        output = next(iter(args["output_type_shape"][0].values()))
    except (KeyError, IndexError, StopIteration, AttributeError):
        return None
    if len(inputs) < 2 or len(inputs[1]) < 3:
        return None
    shapes = {"input": inputs[0], "weight": inputs[1], "output": output}
    return int(op.count(shapes.__getitem__, {}))


def parse_trace(events: list[dict[str, Any]], skip: int) -> tuple[list[NodeTime], float]:
    """Nodes (execution order, median kernel time over the runs after the first ``skip``) and the median
    ``model_run`` time (µs) from an ORT profile trace."""
    durations: dict[str, list[float]] = {}
    meta: dict[str, tuple[str, str, int | None]] = {}
    for e in events:
        name = str(e.get("name", ""))
        if e.get("cat") != "Node" or not name.endswith(KERNEL_SUFFIX):
            continue
        node = name[: -len(KERNEL_SUFFIX)]
        args = e.get("args", {})
        op = str(args.get("op_name", "?"))
        durations.setdefault(node, []).append(float(e.get("dur", 0)))
        if node not in meta:
            provider = str(args.get("provider", "?")).removesuffix("ExecutionProvider")
            meta[node] = (op, provider, executed_macs(op, args))
    model_runs = [
        float(e["dur"]) for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"
    ]
    if not model_runs or not durations:
        raise DataError("onnxruntime's profile holds no node timings")
    nodes = [
        NodeTime(node, meta[node][0], meta[node][1], statistics.median(d[skip:] or d), meta[node][2])
        for node, d in durations.items()
    ]
    return nodes, statistics.median(model_runs[skip:] or model_runs)


def _profile_one(
    model: ModelLike,
    name: str,
    provider: str,
    batch: int,
    warmup: int,
    runs: int,
    threads: int | None,
    input_shape: Sequence[int] | None,
    cuda_options: dict[str, str] | None,
) -> ModelProfile:
    with tempfile.TemporaryDirectory(prefix="onnxprune-profile-") as tmp:
        sess = load_session(
            model_source(model), name, provider, threads, cuda_options, profile_prefix=str(Path(tmp) / "ort")
        )
        feeds = random_feeds(input_specs(sess), batch, input_shape, name)
        runner = make_runner(sess, feeds, provider)
        try:
            for _ in range(warmup + runs):
                runner()
        except Exception as e:  # onnxruntime's own exception types
            shapes = {k: v.shape for k, v in feeds.items()}
            raise DataError(f"model '{name}' fails on {provider} with inputs {shapes}: {e}") from e
        trace = Path(sess.end_profiling())
        events = json.loads(trace.read_text())
    nodes, run_us = parse_trace(events, skip=warmup)
    return ModelProfile(name, provider, batch, runs, run_us, tuple(nodes))


def onnx_names(model: onnx.ModelProto) -> dict[str, str]:
    """Name OpenVINO may give a node (an ONNX node's name, or a tensor's) -> the ONNX node to show it as:
    the producer of a tensor, and the layer before a bias follower OpenVINO folded into it."""
    producer = {out: n for n in model.graph.node for out in n.output}
    out: dict[str, str] = {}
    for node in model.graph.node:
        shown = node
        before = producer.get(node.input[0]) if node.input else None
        if node.op_type in BIAS_FOLLOWERS and before is not None and before.op_type in LAYER_OPS:
            shown = before
        for name in (node.name, *node.output):
            if name:
                out.setdefault(name, shown.name or shown.output[0])
    return out


def _profile_openvino(
    model: ModelLike,
    name: str,
    provider: str,
    batch: int,
    warmup: int,
    runs: int,
    threads: int | None,
    input_shape: Sequence[int] | None,
    cuda_options: dict[str, str] | None,
) -> ModelProfile:
    """The OpenVINO profile of one model (see the module docstring; ``provider``: 'cpu')."""
    from .openvino import openvino_runner, original_names, perf_counts

    source = model_source(model)
    feeds = random_feeds(input_specs(load_session(source, name, "cpu", 1)), batch, input_shape, name)
    runner = openvino_runner(source, feeds, threads, name, profile=True)
    proto = source if isinstance(source, onnx.ModelProto) else onnx.load(source, load_external_data=False)
    shown, original = onnx_names(proto), original_names(runner)
    durations: dict[str, list[float]] = {}
    kinds: dict[str, str] = {}
    walls = []
    for i in range(warmup + runs):
        start = time.perf_counter()
        runner()
        walls.append((time.perf_counter() - start) * 1e6)
        if i < warmup:
            continue
        for node, op_type, _kernel, us in perf_counts(runner):
            label = next((shown[n] for n in original.get(node, []) if n in shown), shown.get(node, node))
            kinds.setdefault(label, op_type)
            durations.setdefault(label, [0.0] * runs)[i - warmup] += us  # fused parts of one node add up
    nodes = tuple(
        NodeTime(label, kinds[label], "openvino", statistics.median(d), None)
        for label, d in durations.items()
    )
    return ModelProfile(name, "openvino", batch, runs, statistics.median(walls[warmup:]), nodes)


def _openvino_providers(providers: Sequence[str] | None) -> list[str]:
    from .benchmark import openvino_devices

    return openvino_devices(providers)


# runtime -> (its providers from the requested ones, the profile of one model on one provider and batch)
PROFILERS: dict[str, tuple[Callable[[Sequence[str] | None], list[str]], Callable[..., ModelProfile]]] = {
    "ort": (choose_providers, _profile_one),
    "openvino": (_openvino_providers, _profile_openvino),
}


def profile(
    models: Sequence[ModelLike],
    batch_sizes: Sequence[int] = (1,),
    providers: Sequence[str] | None = None,
    threads: int | None = None,
    warmup: int = 10,
    runs: int = 50,
    input_shape: Sequence[int] | None = None,
    names: Sequence[str] | None = None,
    cuda_options: dict[str, str] | None = None,
    runtime: str = "ort",
) -> ProfileReport:
    """Per-node profiles of ``models`` (the first is the baseline of the comparison) in ``runtime`` (of
    :data:`PROFILERS`: 'ort', or 'openvino' on the CPU) on every provider (default: all available) at
    every batch size. Raises like :func:`onnxprune.runtime.benchmark.bench` on bad settings, missing
    files, unavailable providers and models that cannot run."""
    batches = check_settings(batch_sizes, threads, warmup, runs)
    if cuda_graph_enabled(cuda_options or {}):
        raise SpecError("profiling needs the kernels run one by one: CUDA graphs replay them as one")
    if runtime not in PROFILERS:
        raise SpecError(f"cannot profile in runtime '{runtime}' (known: {', '.join(PROFILERS)})")
    choose, profile_one = PROFILERS[runtime]
    provs = choose(providers)
    labels = model_labels(models, names)
    out = [
        profile_one(m, label, p, b, warmup, runs, threads, input_shape, cuda_options)
        for p in provs
        for b in batches
        for m, label in zip(models, labels, strict=True)
    ]
    settings = {
        "runs": runs,
        "warmup": warmup,
        "threads": threads,
        "batch_sizes": batches,
        "providers": provs,
        "cuda_options": dict(cuda_options or {}),
        "onnxruntime": ort.__version__,
        "runtime": runtime,
    }
    return ProfileReport(out, MachineInfo.collect(provs, threads), settings)
