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
which runtime serves a pruned model best (:mod:`onnxprune.train.runtime`; torch is imported only then).
A runtime that fails on a model (``torch.compile`` does not handle every graph) is skipped with the
reason in ``settings["skipped"]``, and the others still run.
"""

from __future__ import annotations

import gc
import os
import platform
import shutil
import subprocess
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from .errors import DataError, InvalidModelError, OnnxPruneError, OutputError, SpecError
from .graph.runtime import (
    CUDA_PROVIDER_OPTIONS,
    PROVIDERS,
    ProviderUnavailableError,
    available_providers,
    cuda_graph_enabled,
    make_session,
)

ModelLike = str | Path | onnx.ModelProto
Dim = int | str | None
Runner = Callable[[], object]

BLOCK = 5  # timed runs of one model in a row before the next model takes its turn
RUNTIMES = ("ort", "torch", "torch-compile")
SEED = 0  # every model gets the same random inputs when its inputs have the same shapes

# onnxruntime's type strings of the tensor types a random input can be made for
_DTYPES: dict[str, np.dtype[Any]] = {
    f"tensor({name})": np.dtype(dtype)
    for name, dtype in {
        "float": np.float32,
        "float16": np.float16,
        "double": np.float64,
        "int8": np.int8,
        "int16": np.int16,
        "int32": np.int32,
        "int64": np.int64,
        "uint8": np.uint8,
        "uint16": np.uint16,
        "uint32": np.uint32,
        "uint64": np.uint64,
        "bool": np.bool_,
    }.items()
}


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


@dataclass(frozen=True)
class MachineInfo:
    """Where the numbers were taken. ``threads`` None means onnxruntime's default."""

    cpu: str
    cores: int | None
    usable_cores: int | None
    gpu: str | None
    onnxruntime: str
    providers: tuple[str, ...]
    threads: int | None
    python: str
    platform: str
    date: str

    @classmethod
    def collect(cls, providers: Sequence[str], threads: int | None) -> MachineInfo:
        return cls(
            cpu=cpu_model(),
            cores=os.cpu_count(),
            usable_cores=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            gpu=gpu_model() if "cuda" in providers else None,
            onnxruntime=ort.__version__,
            providers=tuple(providers),
            threads=threads,
            python=platform.python_version(),
            platform=platform.platform(),
            date=datetime.now(UTC).isoformat(timespec="seconds"),
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["providers"] = list(self.providers)
        return d

    def summary(self) -> str:
        """One line: CPU (cores), GPU, onnxruntime version, threads, date."""
        parts = [f"CPU {self.cpu} ({self.usable_cores} of {self.cores} cores usable)"]
        if self.gpu:
            parts.append(f"GPU {self.gpu}")
        parts += [
            f"onnxruntime {self.onnxruntime}",
            f"threads {self.threads if self.threads else 'default'}",
            self.date,
        ]
        return " | ".join(parts)


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
        return {
            "machine": self.machine.to_dict(),
            "settings": dict(self.settings),
            "results": [r.to_dict() for r in self.rows],
        }

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
        table = _align([header, *body], left=3 if runtimes else 2)
        return f"{self.machine.summary()}\n{table}" if machine else table

    def plot(self, path: str | Path) -> Path:
        """Bar chart of the median latency of each model (whisker to p90), one panel per provider/batch.

        Needs matplotlib (``pip install 'onnxprune[plot]'``), imported here only; uses the Agg canvas,
        so no display and no global pyplot state are involved.
        """
        return _plot(self, Path(path))


def _align(lines: list[list[str]], left: int) -> str:
    """Columns padded to equal width: the first ``left`` columns left-aligned, the others right-aligned."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    out = []
    for line in lines:
        cells = [
            c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


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


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo, else what :mod:`platform` knows."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        text = ""
    for key in ("model name", "Hardware", "Processor", "cpu model"):
        for line in text.splitlines():
            name, _, value = line.partition(":")
            if name.strip() == key and value.strip():
                return value.strip()
    return platform.processor() or platform.machine() or "unknown"


def gpu_model() -> str | None:
    """Name of the CUDA device the benchmark uses, from nvidia-smi; None where that is not available."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    device = CUDA_PROVIDER_OPTIONS.get("device_id", "0")
    try:
        out = subprocess.run(
            [exe, f"--id={device}", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.strip().splitlines()[0] if out.strip() else None


# --------------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class InputSpec:
    """One model input as onnxruntime reports it: dims are ints, or a name / None when dynamic."""

    name: str
    type: str
    dims: tuple[Dim, ...]


def input_specs(sess: ort.InferenceSession) -> list[InputSpec]:
    return [InputSpec(i.name, i.type, tuple(i.shape)) for i in sess.get_inputs()]


def _template(first: InputSpec, input_shape: Sequence[int] | None, model: str) -> list[int | None]:
    """Sizes for the first input's non-batch dims from ``input_shape`` (given with or without batch)."""
    rank = len(first.dims)
    if input_shape is None:
        return [None] * (rank - 1)
    shape = [int(d) for d in input_shape]
    if len(shape) == rank:
        shape = shape[1:]
    if len(shape) != rank - 1:
        raise DataError(
            f"input_shape {tuple(input_shape)} does not fit input '{first.name}' of model '{model}' "
            f"(rank {rank}; give all {rank} dims or the {rank - 1} after the batch dim)"
        )
    return list(shape)


def _first_input_shape(
    first: InputSpec, batch: int, input_shape: Sequence[int] | None, model: str
) -> tuple[int, ...]:
    """The first input's shape: dim 0 is the batch, dynamic dims come from ``input_shape``."""
    if not first.dims:
        raise DataError(f"input '{first.name}' of model '{model}' is a scalar: it has no batch dim")
    if isinstance(first.dims[0], int) and first.dims[0] != batch:
        raise DataError(
            f"model '{model}' has a fixed batch size of {first.dims[0]} (input '{first.name}'); "
            f"it cannot run batch size {batch}"
        )
    shape = [batch]
    template = _template(first, input_shape, model)
    for i, (dim, want) in enumerate(zip(first.dims[1:], template, strict=True), 1):
        if isinstance(dim, int):
            if want is not None and want != dim:
                raise DataError(
                    f"input_shape gives {want} for dim {i} of input '{first.name}' of model '{model}', "
                    f"which is fixed to {dim}"
                )
            shape.append(dim)
        elif want is None:
            raise DataError(
                f"dim {i} ({dim!r}) of input '{first.name}' of model '{model}' is dynamic: give its size "
                f"with input_shape"
            )
        else:
            shape.append(want)
    return tuple(shape)


def _other_input_shape(spec: InputSpec, batch: int, symbols: dict[str, int], model: str) -> tuple[int, ...]:
    """Shape of a further input: fixed dims, dims named like a resolved dim, dim 0 as batch."""
    shape = []
    for i, dim in enumerate(spec.dims):
        if isinstance(dim, int):
            shape.append(dim)
        elif isinstance(dim, str) and dim in symbols:
            shape.append(symbols[dim])
        elif i == 0:
            shape.append(batch)
        else:
            raise DataError(
                f"dim {i} ({dim!r}) of input '{spec.name}' of model '{model}' is dynamic and "
                f"not shared with the first input: its size is unknown"
            )
    return tuple(shape)


def input_shapes(
    specs: Sequence[InputSpec], batch: int, input_shape: Sequence[int] | None, model: str
) -> list[tuple[int, ...]]:
    """Concrete shapes of all inputs of a model at ``batch`` (see the module docstring)."""
    if not specs:
        raise DataError(f"model '{model}' has no inputs")
    first = _first_input_shape(specs[0], batch, input_shape, model)
    symbols = {d: v for d, v in zip(specs[0].dims, first, strict=True) if isinstance(d, str)}
    return [first, *(_other_input_shape(s, batch, symbols, model) for s in specs[1:])]


def random_input(spec: InputSpec, shape: tuple[int, ...], rng: np.random.Generator, model: str) -> np.ndarray:
    """Random data of the input's type: standard normal floats, 0/1 integers, random booleans."""
    dtype = _DTYPES.get(spec.type)
    if dtype is None:
        raise DataError(
            f"cannot make random data of type {spec.type} for input '{spec.name}' of model '{model}'"
        )
    if dtype.kind == "f":
        return rng.standard_normal(shape, dtype=np.float32).astype(dtype)
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    return rng.integers(0, 2, size=shape).astype(dtype)


def random_feeds(
    specs: Sequence[InputSpec], batch: int, input_shape: Sequence[int] | None, model: str
) -> dict[str, np.ndarray]:
    """Input name -> random array for one run of a model at ``batch``; seeded, so reproducible."""
    rng = np.random.default_rng(SEED)
    shapes = input_shapes(specs, batch, input_shape, model)
    return {s.name: random_input(s, shape, rng, model) for s, shape in zip(specs, shapes, strict=True)}


# --------------------------------------------------------------------------------------------- running


class _IOBindingRunner:
    """One inference with IO binding: device-resident inputs, device-side outputs.

    ``fixed_outputs`` (name -> host array of the output's shape and dtype) pre-allocates the outputs on
    the device, as CUDA graphs require: a captured graph replays into the same addresses every run.
    """

    def __init__(
        self,
        sess: ort.InferenceSession,
        feeds: dict[str, np.ndarray],
        device: int,
        fixed_outputs: dict[str, np.ndarray] | None = None,
    ) -> None:
        self.sess = sess
        self.binding = sess.io_binding()
        # kept as attributes so the device buffers live exactly as long as the runner
        self.inputs = {name: ort.OrtValue.ortvalue_from_numpy(x, "cuda", device) for name, x in feeds.items()}
        for name, value in self.inputs.items():
            self.binding.bind_ortvalue_input(name, value)
        self.outputs = {
            name: ort.OrtValue.ortvalue_from_shape_and_type(list(a.shape), a.dtype, "cuda", device)
            for name, a in (fixed_outputs or {}).items()
        }
        for out in sess.get_outputs():
            if out.name in self.outputs:
                self.binding.bind_ortvalue_output(out.name, self.outputs[out.name])
            else:
                self.binding.bind_output(out.name, "cuda", device)

    def __call__(self) -> None:
        self.sess.run_with_iobinding(self.binding)


def make_runner(
    sess: ort.InferenceSession,
    feeds: dict[str, np.ndarray],
    provider: str,
    fixed_outputs: dict[str, np.ndarray] | None = None,
) -> Runner:
    """A no-argument callable doing one inference.

    On CUDA the inputs are copied to the device now and bound with IO binding together with
    device-side outputs (pre-allocated like ``fixed_outputs`` when given, for CUDA graphs), so one call
    times the model and not the host/device transfers.
    """
    if provider == "cuda":
        device = int(CUDA_PROVIDER_OPTIONS.get("device_id", "0"))
        return _IOBindingRunner(sess, feeds, device, fixed_outputs)
    outputs = [o.name for o in sess.get_outputs()]
    return lambda: sess.run(outputs, feeds)


@contextmanager
def _gc_paused() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def time_interleaved(runners: Sequence[Runner], warmup: int, repeats: int) -> list[np.ndarray]:
    """Seconds of each of ``repeats`` timed runs, per runner; runners take turns in blocks of BLOCK."""
    for runner in runners:
        for _ in range(warmup):
            runner()
    times: list[list[float]] = [[] for _ in runners]
    settle = len(runners) > 1
    with _gc_paused():
        for block, start in enumerate(range(0, repeats, BLOCK)):
            count = min(BLOCK, repeats - start)
            shift = block % len(runners)
            for i in [*range(shift, len(runners)), *range(shift)]:
                times[i] += _time_block(runners[i], count, settle)
    return [np.asarray(t) for t in times]


def _time_block(runner: Runner, count: int, settle: bool) -> list[float]:
    """Seconds of ``count`` runs in a row, after one untimed run when ``settle``."""
    if settle:
        runner()
    out = []
    for _ in range(count):
        t0 = time.perf_counter()
        runner()
        out.append(time.perf_counter() - t0)
    return out


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


def _model_names(models: Sequence[ModelLike], names: Sequence[str] | None) -> list[str]:
    """``names`` if given, else file stems / graph names, made unique with ``#<index>``."""
    if names is not None:
        if len(names) != len(models):
            raise SpecError(f"got {len(names)} names for {len(models)} models")
        if len(set(names)) != len(names):
            raise SpecError(f"model names must be unique, got {list(names)}")
        return [str(n) for n in names]
    out: list[str] = []
    for i, m in enumerate(models):
        name = (m.graph.name or f"model{i}") if isinstance(m, onnx.ModelProto) else Path(m).stem
        out.append(name if name not in out else f"{name}#{i}")
    return out


def _providers(providers: Sequence[str] | None) -> list[str]:
    if providers is None:
        return available_providers()
    wanted = list(dict.fromkeys(p.lower() for p in providers))
    have = available_providers()
    for p in wanted:
        if p not in PROVIDERS:
            raise ProviderUnavailableError(f"unknown provider '{p}' (known: {', '.join(PROVIDERS)})")
        if p not in have:
            raise ProviderUnavailableError(
                f"provider '{p}' is not available in this onnxruntime build (available: {', '.join(have)})"
            )
    if not wanted:
        raise SpecError("no providers given")
    return wanted


def _check_settings(batch_sizes: Sequence[int], threads: int | None, warmup: int, repeats: int) -> list[int]:
    batches = list(dict.fromkeys(int(b) for b in batch_sizes))
    if not batches or any(b < 1 for b in batches):
        raise SpecError(f"batch sizes must be positive integers, got {list(batch_sizes)}")
    if threads is not None and threads < 1:
        raise SpecError(f"threads must be >= 1, got {threads}")
    if warmup < 0 or repeats < 1:
        raise SpecError(f"need warmup >= 0 and repeats >= 1, got warmup={warmup}, repeats={repeats}")
    return batches


def _source(model: ModelLike) -> onnx.ModelProto | str:
    """What make_session takes: the ModelProto, or the path as a string (external data stays found)."""
    if isinstance(model, onnx.ModelProto):
        return model
    if not Path(model).is_file():
        raise InvalidModelError(f"no such model file: {model}")
    return str(model)


def _cpu_outputs(sess: ort.InferenceSession) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """Feeds -> the model's outputs by name from a CPU session (their shapes and dtypes are templates)."""
    names = [o.name for o in sess.get_outputs()]
    return lambda feeds: dict(zip(names, sess.run(names, feeds), strict=True))


def _session(
    model: onnx.ModelProto | str,
    name: str,
    provider: str,
    threads: int | None,
    cuda_options: dict[str, str] | None = None,
    profile_prefix: str | None = None,
) -> ort.InferenceSession:
    try:
        return make_session(
            model, provider, threads, cuda_options=cuda_options, profile_prefix=profile_prefix
        )
    except OnnxPruneError:
        raise
    except Exception as e:  # onnxruntime's own exception types
        raise InvalidModelError(f"onnxruntime cannot load model '{name}': {e}") from e


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
    from .graph.batch import static_batch

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
        runtimes: of :data:`RUNTIMES`: 'ort' (ONNX Runtime), 'torch' (eager), 'torch-compile'.
        cuda_options: extra options of ORT's CUDA provider, e.g. ``{"prefer_nhwc": "1"}`` or
            ``{"enable_cuda_graph": "1"}`` (outputs are then pre-allocated from one CPU run of each model).

    Returns one :class:`BenchRow` per (runtime, model, provider, batch size), runtime-major, then
    provider, batch, and model in the given order.
    """
    if not models:
        raise SpecError("no models to benchmark")
    labels = _model_names(models, names)
    batches = _check_settings(batch_sizes, threads, warmup, repeats)
    chosen_runtimes = _runtimes(runtimes)
    sources = [_source(m) for m in models]
    rows: list[BenchRow] = []
    skipped: list[str] = []
    used: list[str] = []
    for runtime in chosen_runtimes:
        if runtime == "ort":
            chosen = _providers(providers)
            rows += _bench_ort(
                sources, labels, chosen, batches, threads, warmup, repeats, input_shape, cuda_options or {}
            )
        else:
            chosen = _torch_devices(providers)
            rows += _bench_torch(
                runtime, sources, labels, chosen, batches, threads, warmup, repeats, input_shape, skipped
            )
        used += [p for p in chosen if p not in used]
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
        "models": [
            {"name": name, "path": None if isinstance(m, onnx.ModelProto) else str(m)}
            for name, m in zip(labels, models, strict=True)
        ],
    }
    return BenchReport(rows=rows, machine=MachineInfo.collect(used, threads), settings=settings)


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
            _session(src, name, provider, threads, cuda_options)
            for src, name in zip(sources, labels, strict=True)
        ]
        templates = None
        if provider == "cuda" and cuda_graph_enabled(cuda_options):
            templates = [
                _cpu_outputs(_session(src, name, "cpu", threads))
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
    from .train.runtime import torch_devices

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
    from .train.runtime import load_module, torch_runner, torch_threads

    modules = [load_module(src) for src in sources]
    specs = [input_specs(_session(src, name, "cpu", 1)) for src, name in zip(sources, labels, strict=True)]
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
