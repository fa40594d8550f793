"""ONNX Runtime sessions for verification, evaluation and benchmarking."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from ..data.arrays import check_names
from ..errors import OnnxPruneError, SpecError
from .inputs import Batch, batch_len
from .protos import model_file

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}

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
) -> ort.InferenceSession:
    """An InferenceSession of ``model`` on ``provider`` ('cpu' or 'cuda').

    ``model``: a ModelProto (one over :data:`~onnxprune.graph.protos.LARGE_MODEL_BYTES` is handed over
    as a temporary file with external data, never as serialized bytes) or a path. ``threads`` sets the
    intra-op thread count (None: onnxruntime's default); ``cuda_options`` are extra options of the CUDA
    provider (ignored on the CPU); ``profile_prefix`` turns on ORT's profiler, writing its trace to
    ``<prefix>_<date>.json`` (read it with ``end_profiling()``). Raises
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
