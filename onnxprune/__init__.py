"""onnxprune: ONNX in, physically smaller verified ONNX out, by ADAM-ADMM structured pruning.

Public API::

    import onnxprune
    result = onnxprune.compress("model.onnx", "filter:0.5", data="images/", output="model.pruned.onnx",
                                gates=onnxprune.Gates(min_fidelity=0.97))
    result.model            # pruned onnx.ModelProto
    result.report.format()  # the table; result.report.to_dict() for JSON
    onnxprune.prune("model.onnx", "filter:0.5")  # no torch, no training: magnitude or your own masks

Every function here has its real signature (the implementations' parameters, typed) and imports its
implementation on call, so ``import onnxprune`` stays light and torch-free; no submodule is named like one
of them, so importing any submodule never replaces a function. The result and report types import lazily
(:func:`__getattr__`). Progress is logged to the ``onnxprune`` logger; the library prints nothing. A missed
gate raises :class:`GateError`, bad input another :class:`OnnxPruneError`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config.gates import GateError, Gates
from .config.settings import LatencyOptions, QuantizeOptions, TrainOptions
from .errors import (
    DataError,
    DependencyError,
    InvalidModelError,
    OnnxPruneError,
    OutputError,
    SpecError,
    UnsupportedModelError,
    VerificationError,
)
from .extras import require_onnxruntime

__version__ = "0.1.0"

if TYPE_CHECKING:
    import numpy as np
    import onnx

    from .config.recipe import Recipe
    from .config.sparsity import SparsitySpec
    from .data.preprocess import Preprocess
    from .graph.verify import VerifyResult
    from .inspection import Inspection
    from .pipeline import CompressResult
    from .pipeline.prune import PruneResult
    from .plan import PruningPlan
    from .report import Report
    from .runtime.benchmark import BenchReport
    from .runtime.profiling import ProfileReport
    from .runtime.sessions import ModelLike

# name -> module of the types importable from here lazily (their modules load onnx, onnxruntime, numpy)
_LAZY = {
    "BenchReport": "runtime.benchmark",
    "CompressResult": "pipeline",
    "Inspection": "inspection",
    "ProfileReport": "runtime.profiling",
    "PruneResult": "pipeline.prune",
    "PruningPlan": "plan",
    "Recipe": "config.recipe",
    "Report": "report",
    "SparsitySpec": "config.sparsity",
    "VerifyResult": "graph.verify",
}


def __getattr__(name: str) -> Any:
    """The types of :data:`_LAZY`, imported on first use (never torch: the test of the layering checks)."""
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def compress(
    model: str | Path | onnx.ModelProto,
    sparsity: str | SparsitySpec | None = None,
    data: Any = None,
    output: str | Path | None = None,
    *,
    target_macs: float | None = None,
    recipe: str | Path | Mapping[str, Any] | Recipe | None = None,
    input_shape: Sequence[int] | Mapping[str, Sequence[int]] | None = None,
    method: str | None = None,
    train: TrainOptions | None = None,
    labels: bool | None = None,
    preprocess: str | Mapping[str, Any] | Preprocess | None = None,
    max_samples: int | None = None,
    gates: Gates | None = None,
    latency: LatencyOptions | None = None,
    align: int | str | None = None,
    seed: int | None = None,
    val_fraction: float | None = None,
    emit_masked: str | Path | None = None,
    sparse_initializers: bool | None = None,
    shape_form: str = "auto",
    report_path: str | Path | None = None,
    plot_path: str | Path | None = None,
    html_path: str | Path | None = None,
    overwrite: bool = True,
    bench_batches: Sequence[int] = (1, 32),
    bench_repeats: int = 30,
    rtol: float = 1e-4,
    quiet: bool = False,
    quantize: str | QuantizeOptions | None = None,
) -> CompressResult:
    """Prune ``model`` to ``sparsity``, train it on ``data`` (required: no default data set), verify it,
    and return it with its report. See :func:`onnxprune.pipeline.compress` for every parameter."""
    require_onnxruntime()
    from .pipeline import compress as run

    return run(
        model,
        sparsity,
        data,
        output,
        target_macs=target_macs,
        recipe=recipe,
        input_shape=input_shape,
        method=method,
        train=train,
        labels=labels,
        preprocess=preprocess,
        max_samples=max_samples,
        gates=gates,
        latency=latency,
        align=align,
        seed=seed,
        val_fraction=val_fraction,
        emit_masked=emit_masked,
        sparse_initializers=sparse_initializers,
        shape_form=shape_form,
        report_path=report_path,
        plot_path=plot_path,
        html_path=html_path,
        overwrite=overwrite,
        bench_batches=bench_batches,
        bench_repeats=bench_repeats,
        rtol=rtol,
        quiet=quiet,
        quantize=quantize,
    )


def prune(
    model: str | Path | onnx.ModelProto,
    sparsity: str | SparsitySpec | None = None,
    masks: Mapping[str, np.ndarray] | None = None,
    *,
    data: Any = None,
    recipe: str | Path | Mapping[str, Any] | Recipe | None = None,
    input_shape: Sequence[int] | Mapping[str, Sequence[int]] | None = None,
    preprocess: str | Mapping[str, Any] | Preprocess | None = None,
    max_samples: int | None = None,
    align: int | str | None = None,
    seed: int | None = None,
    output: str | Path | None = None,
    emit_masked: str | Path | None = None,
    overwrite: bool = True,
    rtol: float = 1e-4,
) -> PruneResult:
    """Plan -> masks (by magnitude, or the caller's ``masks``: group name -> bool keep mask) -> surgery ->
    verify, without torch or training. See :func:`onnxprune.pipeline.prune_without_training`."""
    require_onnxruntime()
    from .pipeline import prune_without_training

    return prune_without_training(
        model,
        sparsity,
        masks,
        data=data,
        recipe=recipe,
        input_shape=input_shape,
        preprocess=preprocess,
        max_samples=max_samples,
        align=align,
        seed=seed,
        output=output,
        emit_masked=emit_masked,
        overwrite=overwrite,
        rtol=rtol,
    )


def inspect(
    model: str | Path | onnx.ModelProto,
    input_shape: Sequence[int] | Mapping[str, Sequence[int]] | None = None,
) -> Inspection:
    """Prunable groups, channels, MACs and params of ``model``. See
    :func:`onnxprune.inspection.inspect_model`."""
    require_onnxruntime()
    from .inspection import inspect_model

    return inspect_model(model, input_shape)


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
    """Latency of each model per runtime, provider and batch size. See
    :func:`onnxprune.runtime.benchmark.bench`."""
    require_onnxruntime()
    from .runtime.benchmark import bench as run

    return run(
        models, batch_sizes, providers, threads, warmup, repeats, input_shape, names, runtimes, cuda_options
    )


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
    """Per-node times of ``models`` side by side in ``runtime`` ('ort' or 'openvino'). See
    :func:`onnxprune.runtime.profiling.profile`."""
    require_onnxruntime()
    from .runtime.profiling import profile as run

    return run(
        models, batch_sizes, providers, threads, warmup, runs, input_shape, names, cuda_options, runtime
    )


__all__ = [
    "BenchReport",
    "CompressResult",
    "DataError",
    "DependencyError",
    "GateError",
    "Gates",
    "Inspection",
    "InvalidModelError",
    "LatencyOptions",
    "OnnxPruneError",
    "OutputError",
    "ProfileReport",
    "PruneResult",
    "PruningPlan",
    "QuantizeOptions",
    "Recipe",
    "Report",
    "SparsitySpec",
    "SpecError",
    "TrainOptions",
    "UnsupportedModelError",
    "VerificationError",
    "VerifyResult",
    "__version__",
    "bench",
    "compress",
    "inspect",
    "profile",
    "prune",
]
