"""Element sparsity on the ONNX side: the constraints, one small type per kind, and their checks.

:class:`Irregular` (at most k non-zeros), :class:`NM` (at most N of every M along the input axis) and
:class:`Columns` (shape-wise: at most k non-zero im2col columns) each hold only what their kind needs and
say how an array breaks them (:meth:`ElementConstraint.violation`); the torch side projects onto them
(:data:`onnxprune.train.elements.PROJECTIONS`), :mod:`onnxprune.config.sparsity` makes them from rules.

Element-pruned weights are written back dense with exact zeros, so the exported model *is* the masked
model for them; what can go wrong is the write-back (a layout slip, a non-zero where the torch mask is
False) or a constraint the training did not meet. :func:`verify_elements` checks, per weight, in the
exported ONNX:

* zero wherever the (ONNX-layout) training mask is False — when surgery left the tensor's shape alone;
* irregular: at most ``keep`` non-zeros; N:M: no block of M along the input axis with more than N;
  shape: at most ``columns`` columns (slices along the output axis) with a non-zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import onnx

from ..errors import VerificationError
from .layerops import output_axis
from .macs import ModelCost
from .weights import initializer_values, nm_violations


@dataclass(frozen=True)
class ElementConstraint:
    """The element constraint on one weight initializer (ONNX layout); one subclass per kind, holding only
    what that kind needs. ``axis`` is the layer's input (reduction) axis, ``rule`` the rule that set it."""

    KIND: ClassVar[str] = ""
    COLUMNWISE: ClassVar[bool] = False  # prunes whole im2col columns (may leave dead channels, lowers)

    initializer: str
    node: str
    op_type: str
    shape: tuple[int, ...]
    axis: int
    rule: str = ""

    @property
    def kind(self) -> str:
        return self.KIND

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def out_axis(self) -> int:
        """The ONNX axis of the filters / output units (shape: a column runs along it)."""
        return output_axis(self.op_type, self.axis)

    @property
    def keep(self) -> int:
        """The most non-zeros the weight may have."""
        raise NotImplementedError

    @property
    def fingerprint(self) -> str:
        """``kind:keep:n:m``: what a checkpoint records of the constraint."""
        return f"{self.KIND}:{self.keep}:0:0"

    def violation(self, a: np.ndarray) -> str | None:
        """Why ``a`` (the exported weight) breaks the constraint, or None."""
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class Irregular(ElementConstraint):
    """``irregular``: at most ``keep`` non-zeros in the tensor."""

    KIND: ClassVar[str] = "irregular"
    entries: int

    @property
    def keep(self) -> int:
        return self.entries

    def violation(self, a: np.ndarray) -> str | None:
        nnz = int(np.count_nonzero(a))
        return f"{nnz} non-zeros > {self.keep} ({self.rule})" if nnz > self.keep else None


@dataclass(frozen=True, kw_only=True)
class NM(ElementConstraint):
    """``nm``: at most ``n`` non-zeros in every block of ``m`` consecutive entries along ``axis``."""

    KIND: ClassVar[str] = "nm"
    n: int
    m: int

    @property
    def keep(self) -> int:
        return self.size // self.m * self.n

    @property
    def fingerprint(self) -> str:
        return f"{self.KIND}:{self.keep}:{self.n}:{self.m}"

    def violation(self, a: np.ndarray) -> str | None:
        bad = nm_violations(a, self.axis, self.n, self.m) if a.shape == self.shape else 0
        return f"{bad} blocks break {self.rule}" if bad else None


@dataclass(frozen=True, kw_only=True)
class Columns(ElementConstraint):
    """``shape``: at most ``columns`` non-zero columns, a column being the slice along ``out_axis`` (the
    filters / output units) at one index of every other axis (``W[:, c, kh, kw]``)."""

    KIND: ClassVar[str] = "shape"
    COLUMNWISE: ClassVar[bool] = True
    columns: int

    @property
    def n_columns(self) -> int:
        return self.size // self.shape[self.out_axis]

    @property
    def keep(self) -> int:
        return self.columns * self.shape[self.out_axis]

    def violation(self, a: np.ndarray) -> str | None:
        used = int(nonzero_columns(a, self.out_axis).sum())
        return f"{used} non-zero columns > {self.columns} ({self.rule})" if used > self.columns else None


def verify_elements(
    model: onnx.ModelProto, constraints: Mapping[str, ElementConstraint], masks: Mapping[str, np.ndarray]
) -> None:
    """Raise :class:`VerificationError` unless every element constraint holds in ``model`` (see above)."""
    arrays = initializer_values(model, constraints)
    for name, c in constraints.items():
        if name not in arrays:
            raise VerificationError(f"element-pruned weight {name!r} is missing from the exported model")
        a = arrays[name]
        mask = masks.get(name)
        if mask is not None and mask.shape == a.shape and np.any(a[~mask] != 0):
            raise VerificationError(
                f"weight {name!r}: {int(np.count_nonzero(a[~mask]))} entries the training mask prunes are "
                "non-zero in the exported model"
            )
        problem = c.violation(a)
        if problem is not None:
            raise VerificationError(f"weight {name!r}: {problem}")


def nonzero_columns(a: np.ndarray, out_axis: int) -> np.ndarray:
    """Bool array over the non-output axes: whether column ``a[..., :, ...]`` (along ``out_axis``) has a
    non-zero."""
    return np.asarray(np.any(a != 0, axis=out_axis))


def element_rows(
    model: onnx.ModelProto, constraints: Mapping[str, ElementConstraint], cost: ModelCost
) -> list[dict[str, Any]]:
    """Per element-pruned weight: zeros achieved, and the layer's dense and effective (non-zero) MACs.

    Effective MACs = dense MACs · non-zeros / size: the multiply-adds with a non-zero weight. ORT CPU and
    CUDA execute the dense MACs; the effective count is what a sparse kernel could skip to, no more.
    """
    arrays = initializer_values(model, constraints)
    rows = []
    for name, c in constraints.items():
        a = arrays[name]
        nnz = int(np.count_nonzero(a))
        node = cost.nodes.get(c.node)
        macs = node.macs if node else 0
        rows.append(
            {
                "node": c.node,
                "op_type": c.op_type,
                "initializer": name,
                "rule": c.rule,
                "size": int(a.size),
                "nonzeros": nnz,
                "max_nonzeros": c.keep,  # the constraint, on the unsliced tensor
                "zeros": int(a.size) - nnz,
                "zero_fraction": 1.0 - nnz / max(a.size, 1),
                "macs": macs,
                "effective_macs": round(macs * nnz / max(a.size, 1)),
            }
        )
        if isinstance(c, Columns):
            cols = nonzero_columns(a, c.out_axis)
            rows[-1] |= {"columns": int(cols.size), "columns_kept": int(cols.sum()), "max_columns": c.columns}
    return rows
