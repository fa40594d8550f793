"""Layer weights for element (non-structured, N:M) sparsity: which initializer, and its input axis.

A :class:`WeightTarget` is the weight initializer (input 1) of a layer op element sparsity applies to
(Conv, Gemm: :data:`~onnxprune.graph.layerops.LAYER_OPS`) together with the ONNX axis the layer reduces
over — the axis N:M blocks run along (Conv ``W[O, C_in/group, kh, kw]``: axis 1; Gemm ``B[K, N]``: axis 0,
with ``transB=1`` ``B[N, K]``: axis 1).

Also: element zero counts of initializers, N:M checks on arrays, and storing initializers as
``graph.sparse_initializer`` (COO ``SparseTensorProto``) to shrink the file.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .layerops import layer_op, node_attrs


@dataclass(frozen=True)
class WeightTarget:
    """The weight of one Conv/Gemm node, selectable by a sparsity rule like a group (node name, op)."""

    node: str
    op_type: str
    initializer: str
    input_axis: int
    shape: tuple[int, ...]
    group: int = 1  # Conv ``group`` attribute

    @property
    def source_nodes(self) -> tuple[str, ...]:
        return (self.node,)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


def weight_targets(model: onnx.ModelProto) -> list[WeightTarget]:
    """Every Conv/Gemm node whose weight (input 1) is a float initializer, in graph order."""
    inits = {t.name: t for t in model.graph.initializer}
    out = []
    for n in model.graph.node:
        op = layer_op(n)
        if op is None or not op.element or len(n.input) < 2 or n.input[1] not in inits:
            continue
        w = inits[n.input[1]]
        if w.data_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE):
            continue
        attrs = node_attrs(n)
        dims = tuple(int(d) for d in w.dims)
        group = int(attrs.get("group", 1))
        out.append(WeightTarget(n.name, n.op_type, w.name, op.input_axis(attrs), dims, group))
    return out


def initializer_values(model: onnx.ModelProto, names: Iterable[str]) -> dict[str, np.ndarray]:
    """Arrays of dense or sparse initializers ``names`` (sparse ones densified)."""
    wanted = set(names)
    out = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer if t.name in wanted}
    for s in model.graph.sparse_initializer:
        if s.values.name in wanted:
            out[s.values.name] = _densify(s)
    return out


def nm_violations(a: np.ndarray, axis: int, n: int, m: int) -> int:
    """Blocks of ``m`` consecutive entries along ``axis`` with more than ``n`` non-zeros."""
    moved = np.moveaxis(a, axis, -1)
    blocks = moved.reshape(*moved.shape[:-1], moved.shape[-1] // m, m)
    return int(((blocks != 0).sum(axis=-1) > n).sum())


def to_sparse_initializers(model: onnx.ModelProto, names: Iterable[str]) -> onnx.ModelProto:
    """A copy with initializers ``names`` stored as COO ``SparseTensorProto`` (values + linear int64
    indices), the rest unchanged. Only worth it below ~1/3 density (an int64 index per value).

    ORT 1.32 loads such models (it densifies sparse initializers when the session is created) and gives
    the dense storage's outputs; ``onnx.checker.check_model`` passes, but its ``full_check`` (shape
    inference) rejects a sparse initializer as a Conv/Gemm input, so only the basic check applies."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    wanted = set(names)
    keep: list[onnx.TensorProto] = []
    moved: list[onnx.TensorProto] = []
    for t in out.graph.initializer:
        (moved if t.name in wanted else keep).append(t)
    for t in moved:
        a = numpy_helper.to_array(t)
        flat = a.reshape(-1)
        idx = np.flatnonzero(flat).astype(np.int64)
        values = numpy_helper.from_array(flat[idx], name=t.name)
        indices = numpy_helper.from_array(idx, name=t.name + "_indices")
        out.graph.sparse_initializer.append(helper.make_sparse_tensor(values, indices, list(a.shape)))
    del out.graph.initializer[:]
    out.graph.initializer.extend(keep)
    return out


def _densify(s: onnx.SparseTensorProto) -> np.ndarray:
    values = numpy_helper.to_array(s.values)
    indices = numpy_helper.to_array(s.indices).astype(np.int64)
    dense = np.zeros(int(np.prod(s.dims)), dtype=values.dtype)
    if indices.ndim == 2:  # [NNZ, rank] coordinates
        indices = np.ravel_multi_index(tuple(indices.T), tuple(s.dims))
    dense[indices] = values
    return dense.reshape(tuple(s.dims))
