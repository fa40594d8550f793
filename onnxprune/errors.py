"""Errors that reach the user as one line and a non-zero exit code.

Everything the user can cause (bad file, bad spec, missing data) raises a subclass of
:class:`OnnxPruneError`; the CLI prints ``error: <message>`` and exits with ``exit_code``.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class OnnxPruneError(Exception):
    """Base class of user-facing errors."""

    exit_code = 2


class InvalidModelError(OnnxPruneError):
    """The input is not a loadable, valid ONNX model."""


class RuntimeRefusedError(InvalidModelError):
    """ONNX Runtime cannot load (or run) the user's model: the model, not onnxprune, is at fault."""


class SpecError(OnnxPruneError):
    """A sparsity spec or option value is invalid."""


class DataError(OnnxPruneError):
    """Data is missing, unreadable, or does not fit the model."""


class OutputError(OnnxPruneError):
    """An output path cannot be written (or would overwrite the input)."""


class UnsupportedModelError(OnnxPruneError):
    """The model uses something the importer cannot train."""


class DependencyError(OnnxPruneError):
    """An optional dependency is missing: training needs torch (``pip install 'onnxprune[train]'``)."""


class VerificationError(OnnxPruneError):
    """The pruned model does not reproduce the masked dense model. Never emitted silently."""

    exit_code = 3
