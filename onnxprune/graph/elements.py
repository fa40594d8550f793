"""Element sparsity of an exported model: checked against the constraints and the training masks.

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
from typing import Any

import numpy as np
import onnx

from ..errors import VerificationError
from ..sparsity import ElementSparsity
from .macs import ModelCost
from .weights import initializer_values, nm_violations


def verify_elements(
    model: onnx.ModelProto, constraints: Mapping[str, ElementSparsity], masks: Mapping[str, np.ndarray]
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
        if c.kind == "irregular" and np.count_nonzero(a) > c.keep:
            raise VerificationError(f"weight {name!r}: {np.count_nonzero(a)} non-zeros > {c.keep} ({c.rule})")
        if c.kind == "nm" and a.shape == c.shape and (bad := nm_violations(a, c.axis, c.n, c.m)):
            raise VerificationError(f"weight {name!r}: {bad} blocks break {c.rule}")
        if c.kind == "shape" and (used := int(nonzero_columns(a, c.out_axis).sum())) > c.columns:
            raise VerificationError(f"weight {name!r}: {used} non-zero columns > {c.columns} ({c.rule})")


def nonzero_columns(a: np.ndarray, out_axis: int) -> np.ndarray:
    """Bool array over the non-output axes: whether column ``a[..., :, ...]`` (along ``out_axis``) has a
    non-zero."""
    return np.asarray(np.any(a != 0, axis=out_axis))


def element_rows(
    model: onnx.ModelProto, constraints: Mapping[str, ElementSparsity], cost: ModelCost
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
        if c.kind == "shape":
            cols = nonzero_columns(a, c.out_axis)
            rows[-1] |= {"columns": int(cols.size), "columns_kept": int(cols.sum()), "max_columns": c.columns}
    return rows
