"""ONNX Runtime sessions for verification, evaluation and benchmarking: providers, sessions, feeds, runs.

Feeds: a model's inputs as ORT reports them (:class:`ModelInput`: dims are ints, or a name / None when
dynamic) get concrete shapes at a batch size (:func:`feed_shapes`: dim 0 of the first input is the batch,
its other dynamic dims come from ``input_shape``; a further input's dynamic dim named like one of the
first input's takes its size) and seeded random values of their type (:func:`random_feeds`), the same for
every model with the same input shapes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from ..data.arrays import check_names
from ..errors import DataError, InvalidModelError, OnnxPruneError, RuntimeRefusedError, SpecError
from ..graph.inputs import Batch, ModelInput, batch_len, dim_symbols, resolve_dims
from ..graph.protos import model_file

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
SEED = 0  # every model gets the same random inputs when its inputs have the same shapes

ModelLike = str | Path | onnx.ModelProto
Runner = Callable[[], object]

# Options of the CUDA execution provider: device 0, and cuDNN's exhaustive convolution algorithm search
# (done once per input shape, during warm-up) so that timed runs use the fastest kernels.
CUDA_PROVIDER_OPTIONS: dict[str, str] = {"device_id": "0", "cudnn_conv_algo_search": "EXHAUSTIVE"}

_dlls_preloaded = False


class ProviderUnavailableError(OnnxPruneError):
    """The requested execution provider is unknown, not in this build, or failed to load."""


def available_providers() -> list[str]:
    """Short names ('cpu', 'cuda') of the execution providers this onnxruntime build offers."""
    have = set(ort.get_available_providers())
    return [short for short, full in PROVIDERS.items() if full in have]


def preload_cuda_dlls() -> None:
    """Load the CUDA/cuDNN libraries of the nvidia pip packages (``onnxruntime.preload_dlls``), once.

    Older onnxruntime builds have no ``preload_dlls``; there the system library path must do.
    """
    global _dlls_preloaded
    if _dlls_preloaded:
        return
    _dlls_preloaded = True
    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        preload()


def parse_provider_options(items: Sequence[str]) -> dict[str, str]:
    """``["prefer_nhwc=1", "enable_cuda_graph=1"]`` -> ``{"prefer_nhwc": "1", ...}``; one-line errors."""
    options: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise SpecError(f"provider option '{item}' is not KEY=VALUE (e.g. prefer_nhwc=1)")
        options[key.strip()] = value.strip()
    return options


def cuda_graph_enabled(options: Mapping[str, str]) -> bool:
    """Whether CUDA provider ``options`` turn on CUDA graphs (which need fixed input/output buffers)."""
    return options.get("enable_cuda_graph", "0").lower() in ("1", "true")


def provider_chain(
    provider: str, cuda_options: Mapping[str, str] | None = None
) -> list[str | tuple[str, dict[str, str]]]:
    """The ``providers`` argument of an InferenceSession for the short name ``provider``.

    CUDA gets :data:`CUDA_PROVIDER_OPTIONS` updated with ``cuda_options`` (e.g. ``prefer_nhwc``,
    ``enable_cuda_graph``) and the CPU provider as fallback for nodes it lacks.
    """
    if provider not in PROVIDERS:
        known = ", ".join(PROVIDERS)
        raise ProviderUnavailableError(f"unknown execution provider '{provider}' (known: {known})")
    if provider == "cuda":
        return [(PROVIDERS["cuda"], {**CUDA_PROVIDER_OPTIONS, **(cuda_options or {})}), PROVIDERS["cpu"]]
    return [PROVIDERS[provider]]


def make_session(
    model: onnx.ModelProto | str | Path,
    provider: str = "cpu",
    threads: int | None = None,
    optimize: bool = True,
    cuda_options: Mapping[str, str] | None = None,
    profile_prefix: str | None = None,
    level: ort.GraphOptimizationLevel | None = None,
) -> ort.InferenceSession:
    """An InferenceSession of ``model`` on ``provider`` ('cpu' or 'cuda').

    ``model``: a ModelProto (one over :data:`~onnxprune.graph.protos.LARGE_MODEL_BYTES` is handed over
    as a temporary file with external data, never as serialized bytes) or a path. ``threads`` sets the
    intra-op thread count (None: onnxruntime's default); ``cuda_options`` are extra options of the CUDA
    provider (ignored on the CPU); ``profile_prefix`` turns on ORT's profiler, writing its trace to
    ``<prefix>_<date>.json`` (read it with ``end_profiling()``); ``level``: the graph optimization level
    (None: ORT's default, all; ``optimize=False`` disables every optimization). Raises
    :class:`ProviderUnavailableError` instead of silently falling back to the CPU when the requested
    provider cannot be used.
    """
    chain = provider_chain(provider, cuda_options)
    if provider == "cuda":
        preload_cuda_dlls()
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    if level is not None:
        opts.graph_optimization_level = level
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if profile_prefix:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    with model_file(model) as source:  # a large ModelProto goes through a temporary file
        sess = ort.InferenceSession(source, sess_options=opts, providers=chain)
    if sess.get_providers()[0] != PROVIDERS[provider]:
        have = ", ".join(ort.get_available_providers())
        raise ProviderUnavailableError(
            f"onnxruntime could not use {PROVIDERS[provider]} (this build offers {have}; "
            f"the session got {', '.join(sess.get_providers())})"
        )
    return sess


def user_session(model: ModelLike, what: str = "the model", **options: Any) -> ort.InferenceSession:
    """:func:`make_session` of a model the user gave (or its normalized form): ONNX Runtime refusing it is
    a one-line :class:`~onnxprune.errors.RuntimeRefusedError`, not a traceback. Sessions of models
    onnxprune made (pruned, masked) use :func:`make_session`: a failure there is a bug and keeps its
    traceback."""
    try:
        return make_session(model, **options)
    except OnnxPruneError:
        raise
    except Exception as e:  # ORT raises its own Fail / InvalidGraph / InvalidArgument / RuntimeException
        lines = str(e).strip().splitlines()
        reason = (lines[0] if lines else type(e).__name__)[:300]
        raise RuntimeRefusedError(f"ONNX Runtime cannot load {what}: {reason}") from None


def session_feed(sess: ort.InferenceSession, x: Batch) -> dict[str, np.ndarray]:
    """``x`` as a feed of ``sess``: a bare array feeds the first input; a mapping must name every input of
    the session and nothing else, with one sample count. Raises :class:`DataError` otherwise."""
    names = [i.name for i in sess.get_inputs()]
    if isinstance(x, np.ndarray):
        return {names[0]: x}
    check_names(list(x), names, "the data has arrays")
    batch_len(x)  # raises when the sample counts differ
    return {n: x[n] for n in names}


def session_batch(sess: ort.InferenceSession) -> int | None:
    """The fixed batch (dim 0) every input of ``sess`` shares, or None when it is dynamic."""
    sizes = {(i.shape[0] if i.shape else None) for i in sess.get_inputs()}
    size = sizes.pop() if len(sizes) == 1 else None
    return size if isinstance(size, int) and size > 0 else None


def run_batched(sess: ort.InferenceSession, x: Batch, batch_size: int = 256) -> list[np.ndarray]:
    """All outputs of ``sess`` on ``x``, batch by batch along the leading dim, concatenated.

    ``x`` is an array (fed to the first input) or a mapping input name -> array for every input, all with
    the same number of samples; every input is sliced together. A model with a fixed batch ``B`` is fed
    chunks of exactly ``B`` samples: a last, shorter chunk is padded with copies of its last sample and
    the padding's outputs are dropped (samples are independent in inference). Precondition: at least one
    sample.
    """
    feed = session_feed(sess, x)
    n = batch_len(feed)
    fixed = session_batch(sess)
    step = fixed or batch_size
    parts: list[Sequence[np.ndarray]] = []
    for i in range(0, n, step):
        chunk = {k: a[i : i + step] for k, a in feed.items()}
        real = batch_len(chunk)
        if fixed is not None and real < fixed:
            pad = np.minimum(np.arange(fixed), real - 1)
            chunk = {k: np.take(a, pad, axis=0) for k, a in chunk.items()}
        outs = sess.run(None, chunk)
        parts.append([o[:real] for o in outs] if fixed is not None and real < fixed else outs)
    return [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]


def top1(sess: ort.InferenceSession, x: Batch, y: np.ndarray, batch_size: int = 256) -> float:
    """Top-1 accuracy of the first output's argmax (over all non-batch dims) against labels ``y``; ``x`` as
    for :func:`run_batched`."""
    logits = run_batched(sess, x, batch_size)[0]
    return float((logits.reshape(batch_len(x), -1).argmax(axis=1) == y).mean())


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


def input_specs(sess: ort.InferenceSession) -> list[ModelInput]:
    """The session's inputs as onnxruntime reports them (dims: ints, or a name / None when dynamic)."""
    return [ModelInput(i.name, _DTYPES.get(i.type), tuple(i.shape), type=i.type) for i in sess.get_inputs()]


def _template(first: ModelInput, input_shape: Sequence[int] | None, model: str) -> list[int | None]:
    """Sizes for the first input's non-batch dims from ``input_shape`` (given with or without batch)."""
    rank = len(first.dims or ())
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
    first: ModelInput, batch: int, input_shape: Sequence[int] | None, model: str
) -> tuple[int, ...]:
    """The first input's shape: dim 0 is the batch, dynamic dims come from ``input_shape``."""
    dims = first.dims or ()
    if not dims:
        raise DataError(f"input '{first.name}' of model '{model}' is a scalar: it has no batch dim")
    if isinstance(dims[0], int) and dims[0] != batch:
        raise DataError(
            f"model '{model}' has a fixed batch size of {dims[0]} (input '{first.name}'); "
            f"it cannot run batch size {batch}"
        )
    shape = [batch]
    template = _template(first, input_shape, model)
    for i, (dim, want) in enumerate(zip(dims[1:], template, strict=True), 1):
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


def _other_input_shape(spec: ModelInput, batch: int, symbols: dict[str, int], model: str) -> tuple[int, ...]:
    """Shape of a further input: fixed dims, dims named like a resolved dim, dim 0 as batch
    (:func:`onnxprune.graph.inputs.resolve_dims`)."""
    dims = spec.dims or ()
    shape = resolve_dims(dims, symbols, batch)
    for i, (dim, size) in enumerate(zip(dims, shape, strict=True)):
        if size is None:
            raise DataError(
                f"dim {i} ({dim!r}) of input '{spec.name}' of model '{model}' is dynamic and "
                f"not shared with the first input: its size is unknown"
            )
    return tuple(int(d) for d in shape if d is not None)


def feed_shapes(
    specs: Sequence[ModelInput], batch: int, input_shape: Sequence[int] | None, model: str
) -> list[tuple[int, ...]]:
    """Concrete shapes of all inputs of a model at ``batch`` (see the module docstring)."""
    if not specs:
        raise DataError(f"model '{model}' has no inputs")
    first = _first_input_shape(specs[0], batch, input_shape, model)
    symbols = dim_symbols(specs[0].dims or (), first)
    return [first, *(_other_input_shape(s, batch, symbols, model) for s in specs[1:])]


def random_input(
    spec: ModelInput, shape: tuple[int, ...], rng: np.random.Generator, model: str
) -> np.ndarray:
    """Random data of the input's type: standard normal floats, 0/1 integers, random booleans."""
    dtype = spec.dtype
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
    specs: Sequence[ModelInput], batch: int, input_shape: Sequence[int] | None, model: str
) -> dict[str, np.ndarray]:
    """Input name -> random array for one run of a model at ``batch``; seeded, so reproducible."""
    rng = np.random.default_rng(SEED)
    shapes = feed_shapes(specs, batch, input_shape, model)
    return {s.name: random_input(s, shape, rng, model) for s, shape in zip(specs, shapes, strict=True)}


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


def model_labels(models: Sequence[ModelLike], names: Sequence[str] | None) -> list[str]:
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


def choose_providers(providers: Sequence[str] | None) -> list[str]:
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


def model_source(model: ModelLike) -> onnx.ModelProto | str:
    """What make_session takes: the ModelProto, or the path as a string (external data stays found)."""
    if isinstance(model, onnx.ModelProto):
        return model
    if not Path(model).is_file():
        raise InvalidModelError(f"no such model file: {model}")
    return str(model)


def load_session(
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
