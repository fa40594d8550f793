"""onnxprune: ONNX in, physically smaller verified ONNX out, by ADAM-ADMM structured pruning.

Public API::

    from onnxprune import compress, inspect, bench, profile
    result = compress("model.onnx", "filter:0.5", data="fashion-mnist", output="model.pruned.onnx",
                      labels=False, gates=Gates(min_fidelity=0.97))
    result.model            # pruned onnx.ModelProto
    result.report.format()  # the table; result.report.to_dict() for JSON

Progress is logged to the ``onnxprune`` logger; the library prints nothing. A missed gate raises
:class:`GateError`, bad input another :class:`OnnxPruneError`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config.gates import GateError, Gates
from .config.settings import TrainOptions
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

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .inspection import Inspection
    from .pipeline import CompressResult
    from .runtime.benchmark import BenchReport
    from .runtime.profiling import ProfileReport


def compress(*args: Any, **kwargs: Any) -> CompressResult:
    """See :func:`onnxprune.pipeline.compress`."""
    from .pipeline import compress as _compress

    return _compress(*args, **kwargs)


def inspect(*args: Any, **kwargs: Any) -> Inspection:
    """See :func:`onnxprune.inspection.inspect_model`."""
    from .inspection import inspect_model

    return inspect_model(*args, **kwargs)


def bench(*args: Any, **kwargs: Any) -> BenchReport:
    """See :func:`onnxprune.runtime.benchmark.bench`."""
    from .runtime.benchmark import bench as _bench

    return _bench(*args, **kwargs)


def profile(*args: Any, **kwargs: Any) -> ProfileReport:
    """See :func:`onnxprune.runtime.profiling.profile`."""
    from .runtime.profiling import profile as _profile

    return _profile(*args, **kwargs)


__all__ = [
    "DataError",
    "DependencyError",
    "GateError",
    "Gates",
    "InvalidModelError",
    "OnnxPruneError",
    "OutputError",
    "SpecError",
    "TrainOptions",
    "UnsupportedModelError",
    "VerificationError",
    "__version__",
    "bench",
    "compress",
    "inspect",
    "profile",
]
