"""The one table of layer-op facts: Conv, ConvTranspose, Gemm and MatMul (ONNX side, no torch).

For each op: which input is the weight, along which of the weight's axes the layer reads its input
channels (the reduction axis) and writes its output channels, the channel counts a weight shape gives,
the MACs of a node from its shapes, and how a removed constant input channel folds into the bias. Every
module needing such a fact asks here: MAC counting (:mod:`.macs`), the MAC model (:mod:`.macmodel`), the
report's layer rows, element-sparsity weights (:mod:`.weights`), dead channels (:mod:`.dead`), folding
in surgery (:mod:`.edit`), the lowered form (:mod:`.lowered`), ORT profiles
(:mod:`onnxprune.runtime.profiling`) and the torch import (:mod:`onnxprune.train.importer`).

========== ==================== ============ ============ =========================================
op         weight (ONNX layout)  input axis   output axis  MACs
========== ==================== ============ ============ =========================================
Conv       W[M, C/g, k...]      1            0            prod(Y) · (C/g) · prod(k)
ConvT      W[C, M/g, k...]      0            1            prod(X) · (M/g) · prod(k)
Gemm       B[K, N] / B[N, K]    0 / 1 (transB) 1 / 0      prod(Y) · K  (K from A, transA honoured)
MatMul     B[K, N] (constant)   0            1            prod(Y) · K  (K = last dim of A)
========== ==================== ============ ============ =========================================

Channel counts (in, out) from the weight: Conv ``(W[1]·g, W[0])``, ConvTranspose ``(W[0], W[1]·g)``,
Gemm / MatMul ``(B[input axis], B[output axis])``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

Shape = Sequence[int]
# role ('input', 'weight', 'output') -> the fully known shape of that tensor of a node; the formulas ask
# in the order their tensors' shapes were always checked (a missing one is named first)
ShapeOf = Callable[[str], Shape]


def node_attrs(node: onnx.NodeProto) -> dict[str, Any]:
    """The node's attributes, name -> value."""
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


@dataclass(frozen=True)
class LayerOp:
    """The facts of one layer op type (see the module docstring)."""

    op_type: str
    conv: bool  # counts as conv MACs
    element: bool  # element sparsity (irregular, nm, shape) applies to its weight
    input_axis: Callable[[Mapping[str, Any]], int]  # attributes -> the weight's reduction axis
    output_of: Callable[[int], int]  # the weight's reduction axis -> its output-channel axis
    channels: Callable[[Shape, int, int], tuple[int, int]]  # (weight shape, input axis, group) -> (in, out)
    count: Callable[[ShapeOf, Mapping[str, Any]], int]  # MACs from the node's shapes and attributes
    fold: Fold | None = None  # how a removed constant input channel enters the bias (None: not folded)
    input_role: str = "input"  # how error messages name input 0
    constant_operand: bool = False  # the weight is whichever operand is an initializer (MatMul)

    def weight(self, node: onnx.NodeProto, initializers: Container[str]) -> str | None:
        """The name of ``node``'s weight when it is one of ``initializers``, else None."""
        if self.constant_operand:
            return next((n for n in node.input[::-1] if n in initializers), None)
        name = node.input[1] if len(node.input) > 1 else ""
        return name if name in initializers else None

    def output_axis(self, attrs: Mapping[str, Any]) -> int:
        return self.output_of(self.input_axis(attrs))

    def io(self, weight: Shape, attrs: Mapping[str, Any]) -> tuple[int, int]:
        """(input, output) channels / features of a node whose weight has shape ``weight``."""
        return self.channels(weight, self.input_axis(attrs), int(attrs.get("group", 1)))


# (weight slice at the removed channels along the input axis (float64), their constants, that axis,
# alpha/beta) -> what they add to the bias once removed
Fold = Callable[[np.ndarray, np.ndarray, int, float], np.ndarray]


def _conv_fold(taken: np.ndarray, values: np.ndarray, axis: int, scale: float) -> np.ndarray:
    """Conv without padding: every output pixel sees the constant through the whole kernel,
    ``Σ_c v_c Σ_k W[o, c, k]``."""
    return np.tensordot(taken.reshape(taken.shape[0], len(values), -1).sum(axis=2), values, axes=([1], [0]))


def _gemm_fold(taken: np.ndarray, values: np.ndarray, axis: int, scale: float) -> np.ndarray:
    """Gemm: ``(alpha/beta) · Σ_p v_p op(B)[p, n]``, row p of op(B) along ``axis``."""
    return scale * np.tensordot(values, np.moveaxis(taken, axis, 0), axes=([0], [0]))


def _gemm_k(shape: ShapeOf, attrs: Mapping[str, Any]) -> int:
    a = shape("input")
    return a[0] if attrs.get("transA", 0) else a[1]


def _matrix_channels(w: Shape, input_axis: int, group: int) -> tuple[int, int]:
    return w[input_axis], w[1 - input_axis]


LAYER_OPS: dict[str, LayerOp] = {
    op.op_type: op
    for op in (
        LayerOp(
            "Conv",
            conv=True,
            element=True,
            input_axis=lambda attrs: 1,
            output_of=lambda axis: 0,
            channels=lambda w, axis, group: (w[1] * group, w[0]),
            count=lambda shape, attrs: math.prod(shape("weight")[1:]) * math.prod(shape("output")),
            fold=_conv_fold,
        ),
        LayerOp(
            "ConvTranspose",  # each input element is scattered onto (M/g)·prod(k) outputs
            conv=True,
            element=False,
            input_axis=lambda attrs: 0,
            output_of=lambda axis: 1,
            channels=lambda w, axis, group: (w[0], w[1] * group),
            count=lambda shape, attrs: math.prod(shape("input")) * math.prod(shape("weight")[1:]),
        ),
        LayerOp(
            "Gemm",
            conv=False,
            element=True,
            input_axis=lambda attrs: 1 if attrs.get("transB", 0) else 0,
            output_of=lambda axis: 1 - axis,
            channels=_matrix_channels,
            count=lambda shape, attrs: _gemm_k(shape, attrs) * math.prod(shape("output")),
            fold=_gemm_fold,
            input_role="input A",
        ),
        LayerOp(
            "MatMul",
            conv=False,
            element=False,
            input_axis=lambda attrs: 0,
            output_of=lambda axis: 1 - axis,
            channels=_matrix_channels,
            count=lambda shape, attrs: shape("input")[-1] * math.prod(shape("output")),  # also a 1-D A
            input_role="input A",
            constant_operand=True,
        ),
    )
}
"""Op type -> its facts (default ONNX domain)."""

CONV_OPS = frozenset(op for op, facts in LAYER_OPS.items() if facts.conv)
ELEMENT_OPS = tuple(op for op, facts in LAYER_OPS.items() if facts.element)


def weight_readers(model: onnx.ModelProto) -> dict[tuple[str, str], str]:
    """(node name, initializer) -> op type, for the weight input (index 1) of the layer ops."""
    nodes = model.graph.node
    return {(n.name, n.input[1]): n.op_type for n in nodes if n.op_type in LAYER_OPS and len(n.input) > 1}


def layer_op(node: onnx.NodeProto) -> LayerOp | None:
    """The facts of ``node``'s op (default domain only), or None when it is no layer op."""
    return LAYER_OPS.get(node.op_type) if node.domain in ("", "ai.onnx") else None


def output_axis(op_type: str, input_axis: int) -> int:
    """The weight axis of ``op_type``'s filters / output units, given its reduction axis."""
    return LAYER_OPS[op_type].output_of(input_axis)


__all__ = [
    "CONV_OPS",
    "ELEMENT_OPS",
    "LAYER_OPS",
    "LayerOp",
    "ShapeOf",
    "layer_op",
    "node_attrs",
    "output_axis",
]
