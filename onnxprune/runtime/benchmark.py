"""Latency benchmark of ONNX models in ONNX Runtime: dense vs pruned, per provider and batch size.

For every provider and batch size, all models run on random inputs of the same shape:

* each model first runs ``warmup`` untimed times (this includes cuDNN's algorithm search on CUDA);
* then the ``repeats`` timed runs are split into blocks of :data:`BLOCK` runs, and the models take
  turns block by block, the starting model rotating from block to block, so that slow drift of the
  machine (clock boost, thermal throttling, noisy neighbours) is spread over all models alike. With
  several models each block begins with one untimed run, which absorbs the switch between sessions
  (caches, the other session's intra-op threads still spinning);
* every run is timed on its own with :func:`time.perf_counter`, the garbage collector paused.

On CUDA the inputs are copied to the GPU once and bound with IO binding, and the outputs are bound to
the GPU, so host/device copies are not timed (``Run`` synchronizes the device before returning).

Beside ONNX Runtime (runtime ``ort``), the same models can be timed in PyTorch on the same device
(``torch``: imported with onnx2torch, eager; ``torch-compile``: through ``torch.compile``), so a user sees
which runtime serves a pruned model best (:mod:`onnxprune.train.runtime`; torch is imported only then),
and in OpenVINO on the CPU (``openvino``: :mod:`onnxprune.runtime.openvino`, the optional extra; each
model compiled at each batch's static input shapes). Each runtime's bench is one entry of
:data:`BENCHES`.
A runtime that fails on a model (``torch.compile`` does not handle every graph) is skipped with the
reason in ``settings["skipped"]``, and the others still run.
"""

from __future__ import annotations

import multiprocessing
import textwrap
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from ..errors import DataError, OutputError, SpecError
from .machine import MachineInfo
from .sessions import (
    PROVIDERS,
    ModelLike,
    ProviderUnavailableError,
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
from .timing import BLOCK, Runner, check_settings, time_interleaved

RUNTIMES = ("ort", "torch", "torch-compile", "openvino")


# --------------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class BenchRow:
    """Latency of one model on one provider at one batch size.

    ``throughput`` is samples per second at the median latency; ``speedup`` is the median latency of
    the first model divided by this model's (same runtime, provider and batch size), so > 1 means faster.
    ``provider`` is the device ('cpu', 'cuda'), ``runtime`` what ran the model there.
    """

    model: str
    provider: str
    batch: int
    median_ms: float
    p90_ms: float
    mean_ms: float
    throughput: float
    speedup: float
    runs: int
    runtime: str = "ort"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BenchReport:
    """All rows of one :func:`bench` call, the machine, and the settings used."""

    rows: list[BenchRow]
    machine: MachineInfo
    settings: dict[str, Any] = field(default_factory=dict)

    def row(self, model: str, provider: str, batch: int, runtime: str = "ort") -> BenchRow:
        """The row of ``model`` on ``provider`` at ``batch`` in ``runtime``."""
        for r in self.rows:
            if (r.model, r.provider, r.batch, r.runtime) == (model, provider, batch, runtime):
                return r
        raise KeyError((model, provider, batch, runtime))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable: ``machine``, ``settings`` and one ``results`` entry per row."""
        return self.machine.record(self.settings, results=[r.to_dict() for r in self.rows])

    def format_table(self, machine: bool = False) -> str:
        """A plain-text table, columns aligned; ``machine`` adds the machine summary line on top.

        A ``runtime`` column is shown when other runtimes than ONNX Runtime were timed."""
        runtimes = any(r.runtime != "ort" for r in self.rows)
        header = ["model", *(["runtime"] if runtimes else []), "provider", "batch", "median ms", "p90 ms"]
        header += ["mean ms", "samples/s", "speedup"]
        body = [
            [
                r.model,
                *([r.runtime] if runtimes else []),
                r.provider,
                str(r.batch),
                f"{r.median_ms:.3f}",
                f"{r.p90_ms:.3f}",
                f"{r.mean_ms:.3f}",
                f"{r.throughput:,.1f}",
                f"{r.speedup:.2f}x",
            ]
            for r in self.rows
        ]
        table = format_table(header, body, left=3 if runtimes else 2)
        return self.machine.headed(table, machine)

    def plot(self, path: str | Path) -> Path:
        """Bar chart of the median latency of each model (whisker to p90), one panel per provider/batch.

        Needs matplotlib (``pip install 'onnxprune[plot]'``), imported here only; uses the Agg canvas,
        so no display and no global pyplot state are involved.
        """
        return _plot(self, Path(path))


def _plot(report: BenchReport, path: Path) -> Path:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError("plotting needs matplotlib: pip install 'onnxprune[plot]'") from e
    groups = list(dict.fromkeys((r.runtime, r.provider, r.batch) for r in report.rows))
    models = list(dict.fromkeys(r.model for r in report.rows))
    width = max(4.0, 1.0 + len(groups) * (0.9 + 0.6 * len(models)))
    fig = Figure(figsize=(width, 4.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(groups), squeeze=False)[0]
    color = {m: f"C{i % 10}" for i, m in enumerate(models)}
    for ax, (runtime, provider, batch) in zip(axes, groups, strict=True):
        rows = [r for r in report.rows if (r.runtime, r.provider, r.batch) == (runtime, provider, batch)]
        med = [r.median_ms for r in rows]
        whisker = [[0.0] * len(rows), [r.p90_ms - r.median_ms for r in rows]]
        bars = ax.bar(range(len(rows)), med, color=[color[r.model] for r in rows], yerr=whisker, capsize=3)
        ax.bar_label(bars, labels=[f"{r.speedup:.2f}x" for r in rows], padding=2, fontsize=8)
        ax.set_xticks(range(len(rows)), [r.model for r in rows], rotation=30, ha="right", fontsize=8)
        where = provider if runtime == "ort" else f"{runtime}, {provider}"
        ax.set_title(f"{where}, batch {batch}", fontsize=10)
        ax.set_ylabel("median latency (ms)")
        ax.margins(y=0.15)
    fig.suptitle(textwrap.fill(report.machine.summary(), width=int(width * 15)), fontsize=7)
    try:
        fig.savefig(path, dpi=120)
    except OSError as e:
        raise OutputError(f"cannot write the plot to {path}: {e}") from e
    return path


# --------------------------------------------------------------------------------------------- machine


# --------------------------------------------------------------------------------------------- inputs


# --------------------------------------------------------------------------------------------- running


def _row(model: str, provider: str, batch: int, seconds: np.ndarray, base_ms: float | None) -> BenchRow:
    """Statistics of one model's timed runs; ``base_ms`` is the first model's median (None: this is it)."""
    ms = seconds * 1e3
    median = float(np.median(ms))
    return BenchRow(
        model=model,
        provider=provider,
        batch=batch,
        median_ms=median,
        p90_ms=float(np.percentile(ms, 90)),
        mean_ms=float(np.mean(ms)),
        throughput=batch * 1e3 / median,
        speedup=1.0 if base_ms is None else base_ms / median,
        runs=len(ms),
    )


# --------------------------------------------------------------------------------------------- bench


def _cpu_outputs(sess: ort.InferenceSession) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """Feeds -> the model's outputs by name from a CPU session (their shapes and dtypes are templates)."""
    names = [o.name for o in sess.get_outputs()]
    return lambda feeds: dict(zip(names, sess.run(names, feeds), strict=True))


def _runners(
    sessions: Sequence[ort.InferenceSession],
    names: Sequence[str],
    provider: str,
    batch: int,
    input_shape: Sequence[int] | None,
    output_templates: Sequence[Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]] | None = None,
) -> list[Runner]:
    """One runner per model at ``batch``, each already run once (so a failing model fails clearly).

    ``output_templates[i](feeds)`` gives model i's outputs on ``feeds`` (their shapes and dtypes
    pre-allocate the device outputs, for CUDA graphs); None: outputs allocated by ONNX Runtime.
    """
    runners = []
    for i, (sess, name) in enumerate(zip(sessions, names, strict=True)):
        feeds = random_feeds(input_specs(sess), batch, input_shape, name)
        fixed = output_templates[i](feeds) if output_templates else None
        runner = make_runner(sess, feeds, provider, fixed)
        try:
            runner()
        except Exception as e:  # onnxruntime's own exception types
            shapes = {k: v.shape for k, v in feeds.items()}
            raise DataError(f"model '{name}' fails on {provider} with inputs {shapes}: {e}") from e
        runners.append(runner)
    return runners


def default_batch_sizes(models: Sequence[ModelLike]) -> tuple[int, ...]:
    """Batch sizes to time when none are given: (1, 32), or the fixed batch ``B`` when every model has the
    same fixed batch (such a model runs no other; see :mod:`onnxprune.graph.batch`)."""
    from ..graph.batch import static_batch

    fixed = set()
    for m in models:
        try:
            proto = m if isinstance(m, onnx.ModelProto) else onnx.load(str(m), load_external_data=False)
        except Exception:  # unreadable: bench itself reports it with its one-line error
            return (1, 32)
        fixed.add(static_batch(proto))
    size = fixed.pop() if len(fixed) == 1 else None
    return (size,) if size is not None else (1, 32)


def bench(
    models: Sequence[ModelLike],
    batch_sizes: Sequence[int] = (1, 32),
    providers: Sequence[str] | None = None,
    threads: int | None = None,
    warmup: int = 10,
    repeats: int = 50,
    input_shape: Sequence[int] | None = None,
    names: Sequence[str] | None = None,
    runtimes: Sequence[str] = ("ort",),
    cuda_options: dict[str, str] | None = None,
) -> BenchReport:
    """Latency of each model, per runtime, provider (device) and batch size.

    Args:
        models: ONNX files or ModelProtos; the first is the baseline of ``speedup``.
        batch_sizes: sizes of dim 0 of the first input.
        providers: short names ('cpu', 'cuda'); None: every one of them the runtime offers here.
        threads: intra-op threads per session (torch: ``torch.set_num_threads`` while timing); None: the
            runtime's default.
        warmup: untimed runs per model before timing, per provider and batch size (at least 1 for
            ``torch-compile``, whose first run compiles).
        repeats: timed runs per model, per provider and batch size.
        input_shape: sizes of the first input's dynamic non-batch dims, as its full shape (dim 0 is
            ignored) or as the dims after the batch dim. Required when such dims are dynamic.
        names: labels of the models in the report; default: file stems or graph names.
        runtimes: of :data:`RUNTIMES`: 'ort' (ONNX Runtime), 'torch' (eager), 'torch-compile',
            'openvino' (OpenVINO on the CPU: the optional extra; ``threads`` is its INFERENCE_NUM_THREADS).
        cuda_options: extra options of ORT's CUDA provider, e.g. ``{"prefer_nhwc": "1"}`` or
            ``{"enable_cuda_graph": "1"}`` (outputs are then pre-allocated from one CPU run of each model).

    Returns one :class:`BenchRow` per (runtime, model, provider, batch size), runtime-major, then
    provider, batch, and model in the given order.
    """
    if not models:
        raise SpecError("no models to benchmark")
    labels = model_labels(models, names)
    batches = check_settings(batch_sizes, threads, warmup, repeats)
    chosen_runtimes = _runtimes(runtimes)
    sources = [model_source(m) for m in models]
    job = BenchJob(sources, labels, providers, batches, threads, warmup, repeats, input_shape,
                   dict(cuda_options or {}))  # fmt: skip
    rows: list[BenchRow] = []
    used: list[str] = []
    for runtime in chosen_runtimes:
        got, chosen = BENCHES[runtime](runtime, job)
        rows += got
        used += [p for p in chosen if p not in used]
    skipped = job.skipped
    settings = {
        "batch_sizes": batches,
        "providers": used,
        "runtimes": chosen_runtimes,
        "skipped": skipped,
        "threads": threads,
        "warmup": warmup,
        "repeats": repeats,
        "block": BLOCK,
        "input_shape": None if input_shape is None else [int(d) for d in input_shape],
        "cuda_options": dict(cuda_options or {}),
        **({"openvino": _openvino_version()} if "openvino" in chosen_runtimes else {}),
        "models": [
            {"name": name, "path": None if isinstance(m, onnx.ModelProto) else str(m)}
            for name, m in zip(labels, models, strict=True)
        ],
    }
    return BenchReport(rows=rows, machine=MachineInfo.collect(used, threads), settings=settings)


def bench_apart(
    models: Sequence[ModelLike],
    names: Sequence[str],
    batch_sizes: Sequence[int],
    providers: Sequence[str],
    repeats: int,
    input_shape: Sequence[int],
    threads: int | None = None,
    runtimes: Sequence[str] = ("ort",),
) -> BenchReport:
    """:func:`bench` of ``models`` (5 warm-up runs) in a fresh, spawned process: after training, torch's
    idle worker threads compete with ORT's, and made an in-process batch-32 figure 1.45x where a clean
    process measured 2.19x on the same two models."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(
            bench,
            list(models),
            batch_sizes=tuple(batch_sizes),
            providers=list(providers),
            repeats=repeats,
            warmup=5,
            input_shape=list(input_shape),
            names=list(names),
            threads=threads,
            runtimes=list(runtimes),
        ).result()


@dataclass
class BenchJob:
    """What every runtime's bench takes: the models, the settings of :func:`bench`, and ``skipped`` (the
    reasons of the runs a runtime skipped, appended to)."""

    sources: Sequence[onnx.ModelProto | str]
    labels: Sequence[str]
    providers: Sequence[str] | None
    batches: Sequence[int]
    threads: int | None
    warmup: int
    repeats: int
    input_shape: Sequence[int] | None
    cuda_options: dict[str, str]
    skipped: list[str] = field(default_factory=list)


# runtime, job -> (rows, the providers / devices it ran on)
RuntimeBench = Callable[[str, BenchJob], tuple[list[BenchRow], list[str]]]


def _ort(runtime: str, job: BenchJob) -> tuple[list[BenchRow], list[str]]:
    chosen = choose_providers(job.providers)
    rows = _bench_ort(job.sources, job.labels, chosen, job.batches, job.threads, job.warmup, job.repeats,
                      job.input_shape, job.cuda_options)  # fmt: skip
    return rows, chosen


def _torch(runtime: str, job: BenchJob) -> tuple[list[BenchRow], list[str]]:
    chosen = _torch_devices(job.providers)
    rows = _bench_torch(runtime, job.sources, job.labels, chosen, job.batches, job.threads, job.warmup,
                        job.repeats, job.input_shape, job.skipped)  # fmt: skip
    return rows, chosen


def _openvino(runtime: str, job: BenchJob) -> tuple[list[BenchRow], list[str]]:
    """OpenVINO on the CPU: the same random feeds as ORT's; each model compiled per batch at its shapes."""
    from .openvino import openvino_runner

    devices = openvino_devices(job.providers)
    specs = [
        input_specs(load_session(src, name, "cpu", 1))
        for src, name in zip(job.sources, job.labels, strict=True)
    ]
    rows: list[BenchRow] = []
    for batch in job.batches:
        runners: list[Runner] = []
        for src, spec, name in zip(job.sources, specs, job.labels, strict=True):
            feeds = random_feeds(spec, batch, job.input_shape, name)
            runner = openvino_runner(src, feeds, job.threads, name)
            try:
                runner()
            except Exception as e:  # OpenVINO's own exception types
                shapes = {k: v.shape for k, v in feeds.items()}
                raise DataError(
                    f"model '{name}' fails in OpenVINO with inputs {shapes}: {_first_line(e)}"
                ) from e
            runners.append(runner)
        times = time_interleaved(runners, max(job.warmup - 1, 0), job.repeats)  # each ran once above
        rows += _rows(job.labels, "cpu", batch, times, runtime)
    return rows, devices


def openvino_devices(providers: Sequence[str] | None) -> list[str]:
    """['cpu']: OpenVINO runs here on the CPU only (an explicit provider list must name it)."""
    from .openvino import openvino

    openvino()  # missing: the one-line error naming the extra, before anything runs
    if providers is not None and "cpu" not in [p.lower() for p in providers]:
        raise ProviderUnavailableError(
            f"the openvino runtime runs on the cpu only, not on {', '.join(providers)}: add --provider cpu"
        )
    return ["cpu"]


def _openvino_version() -> str:
    from .openvino import openvino_version

    return openvino_version()


BENCHES: dict[str, RuntimeBench] = {
    "ort": _ort,
    "torch": _torch,
    "torch-compile": _torch,
    "openvino": _openvino,
}
"""Runtime name (of :data:`RUNTIMES`) -> its bench."""


def _bench_ort(
    sources: Sequence[onnx.ModelProto | str],
    labels: Sequence[str],
    providers: Sequence[str],
    batches: Sequence[int],
    threads: int | None,
    warmup: int,
    repeats: int,
    input_shape: Sequence[int] | None,
    cuda_options: dict[str, str],
) -> list[BenchRow]:
    rows: list[BenchRow] = []
    for provider in providers:
        sessions = [
            load_session(src, name, provider, threads, cuda_options)
            for src, name in zip(sources, labels, strict=True)
        ]
        templates = None
        if provider == "cuda" and cuda_graph_enabled(cuda_options):
            templates = [
                _cpu_outputs(load_session(src, name, "cpu", threads))
                for src, name in zip(sources, labels, strict=True)
            ]
        for batch in batches:
            runners = _runners(sessions, labels, provider, batch, input_shape, templates)
            times = time_interleaved(runners, max(warmup - 1, 0), repeats)  # _runners ran each once
            rows += _rows(labels, provider, batch, times, "ort")
    return rows


def _rows(
    labels: Sequence[str], provider: str, batch: int, times: Sequence[np.ndarray], runtime: str
) -> list[BenchRow]:
    """One row per model; the first model is the speedup baseline."""
    base = float(np.median(times[0])) * 1e3
    return [
        replace(_row(name, provider, batch, t, None if i == 0 else base), runtime=runtime)
        for i, (name, t) in enumerate(zip(labels, times, strict=True))
    ]


def _runtimes(runtimes: Sequence[str]) -> list[str]:
    wanted = list(dict.fromkeys(r.lower() for r in runtimes))
    if not wanted:
        raise SpecError("no runtimes given")
    for r in wanted:
        if r not in RUNTIMES:
            raise SpecError(f"unknown runtime '{r}' (known: {', '.join(RUNTIMES)})")
    return wanted


def _torch_devices(providers: Sequence[str] | None) -> list[str]:
    from ..train.runtime import torch_devices

    have = torch_devices()
    if providers is None:
        return have
    wanted = list(dict.fromkeys(p.lower() for p in providers))
    for p in wanted:
        if p not in PROVIDERS:
            raise ProviderUnavailableError(f"unknown provider '{p}' (known: {', '.join(PROVIDERS)})")
        if p not in have:
            raise ProviderUnavailableError(f"torch cannot run on '{p}' here (available: {', '.join(have)})")
    return wanted


def _bench_torch(
    runtime: str,
    sources: Sequence[onnx.ModelProto | str],
    labels: Sequence[str],
    devices: Sequence[str],
    batches: Sequence[int],
    threads: int | None,
    warmup: int,
    repeats: int,
    input_shape: Sequence[int] | None,
    skipped: list[str],
) -> list[BenchRow]:
    """The models imported to torch and timed like ORT's sessions; the inputs are the same arrays."""
    from ..train.runtime import load_module, torch_runner, torch_threads

    modules = [load_module(src) for src in sources]
    pairs = zip(sources, labels, strict=True)
    specs = [input_specs(load_session(src, name, "cpu", 1)) for src, name in pairs]
    rows: list[BenchRow] = []
    with torch_threads(threads):
        for device in devices:
            for batch in batches:
                runners, kept = [], []
                for (module, inputs), spec, name in zip(modules, specs, labels, strict=True):
                    feeds = random_feeds(spec, batch, input_shape, name)
                    try:
                        runner = torch_runner(module, inputs, feeds, device, runtime)
                        runner()  # compiles for torch-compile: a failure here skips the model, not the run
                    except Exception as e:  # torch/dynamo raise many types
                        skipped.append(f"{name} on {runtime} {device} batch {batch}: {_first_line(e)}")
                        continue
                    runners.append(runner)
                    kept.append(name)
                if runners and kept[0] != labels[0]:  # no baseline: speedups would mean something else
                    skipped.append(f"all models on {runtime} {device} batch {batch}: the baseline failed")
                elif runners:
                    times = time_interleaved(runners, max(warmup - 1, 0), repeats)
                    rows += _rows(kept, device, batch, times, runtime)
    return rows


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300]
