"""The optional parts of the install (the extras of ``pyproject.toml``), found without importing them: a
missing one is a one-line :class:`~onnxprune.errors.DependencyError` naming the ``pip install`` to run.

``cpu`` / ``gpu``: ONNX Runtime (onnxruntime or its CUDA build onnxruntime-gpu, one or the other: both
install the module ``onnxruntime``); ``train``: torch, torchvision, onnx2torch
(:func:`onnxprune.pipeline.training.require_torch`); ``plot``: matplotlib
(:func:`onnxprune.pipeline.resolve.require_matplotlib`); ``openvino``: OpenVINO, a second CPU runtime
beside ONNX Runtime (``bench --runtime openvino``, ``--on openvino:B``; :func:`require_openvino`).
"""

from __future__ import annotations

import importlib.util

from .errors import DependencyError

NO_ONNXRUNTIME = (
    "onnxprune needs ONNX Runtime: pip install 'onnxprune[cpu]' (or 'onnxprune[gpu]' for the CUDA build)"
)

NO_OPENVINO = "the openvino runtime needs OpenVINO: pip install 'onnxprune[openvino]'"


def installed(module: str) -> bool:
    """Whether ``module`` can be imported (looked up, not imported; a finder refusing it: not installed)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: a module in sys.modules without a spec
        return False


def require_onnxruntime() -> None:
    """A :class:`DependencyError` naming the extras when no ONNX Runtime build is installed."""
    if not installed("onnxruntime"):
        raise DependencyError(NO_ONNXRUNTIME)


def require_openvino() -> None:
    """A :class:`DependencyError` naming the extra when OpenVINO is not installed."""
    if not installed("openvino"):
        raise DependencyError(NO_OPENVINO)


__all__ = ["NO_ONNXRUNTIME", "NO_OPENVINO", "installed", "require_onnxruntime", "require_openvino"]
