"""Multiply-accumulate (MAC) and parameter counts of an ONNX model at one input shape.

Counted ops (top-level graph only; subgraphs of If/Loop/Scan are not entered):

* ``Conv``: ``out_elems * (Cin / group) * prod(kernel)``, grouped and depthwise included.
* ``ConvTranspose``: ``in_elems * (Cout / group) * prod(kernel)`` (each input element is scattered
  onto ``Cout / group * prod(kernel)`` outputs).
* ``Gemm``: ``M * N * K`` (``transA``/``transB`` honoured; the ``C`` addition is not a MAC).
* ``MatMul``: ``prod(out_shape) * K`` with numpy broadcasting of the batch dims.

Shapes come from ``onnx.shape_inference`` on a copy of the model whose data inputs have their dynamic
dims fixed by ``input_shape`` (the first input's shape, or a mapping input name -> shape; see
:mod:`onnxprune.graph.inputs`); the input model is never modified.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import onnx

from .inputs import resolve_input_dims
from .layerops import CONV_OPS, LayerOp, layer_op, node_attrs
from .shapes import Shape, ShapeArg, ShapeError, infer_shapes

# name -> dims after shape inference; a dim is None where it is unknown or symbolic
ShapeMap = Mapping[str, tuple[int | None, ...]]

_FLOAT_TYPES = frozenset(
    getattr(onnx.TensorProto, name)
    for name in (
        "FLOAT",
        "FLOAT16",
        "DOUBLE",
        "BFLOAT16",
        "FLOAT8E4M3FN",
        "FLOAT8E4M3FNUZ",
        "FLOAT8E5M2",
        "FLOAT8E5M2FNUZ",
    )
    if hasattr(onnx.TensorProto, name)
)


CostShapeError = ShapeError  # a shape needed to count a node's MACs is unknown, or input_shape doesn't fit


@dataclass(frozen=True)
class NodeCost:
    """Cost of one compute node: MACs, float parameters among its initializer inputs, output shape."""

    op_type: str
    macs: int
    params: int
    out_shape: Shape

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["out_shape"] = list(self.out_shape)
        return d


@dataclass(frozen=True)
class ModelCost:
    """Per-node and total costs. ``params`` counts the elements of *all* float initializers.

    ``input_shape`` is the first data input's shape; ``input_shapes`` has every data input's shape that
    was fixed (all of them for a mapping argument), by name."""

    nodes: dict[str, NodeCost]
    params: int
    input_shape: Shape = field(default=())
    input_shapes: dict[str, Shape] = field(default_factory=dict)

    @property
    def total_macs(self) -> int:
        """MACs of every counted node (Conv, ConvTranspose, Gemm, MatMul)."""
        return sum(n.macs for n in self.nodes.values())

    @property
    def conv_macs(self) -> int:
        """MACs of the Conv and ConvTranspose nodes only."""
        return sum(n.macs for n in self.nodes.values() if n.op_type in CONV_OPS)

    def macs_by_op(self) -> dict[str, int]:
        """Total MACs per op type."""
        out: dict[str, int] = {}
        for n in self.nodes.values():
            out[n.op_type] = out.get(n.op_type, 0) + n.macs
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable summary: totals, the per-op split and every node."""
        return {
            "input_shape": list(self.input_shape),
            "input_shapes": {name: list(shape) for name, shape in self.input_shapes.items()},
            "total_macs": self.total_macs,
            "conv_macs": self.conv_macs,
            "params": self.params,
            "macs_by_op": self.macs_by_op(),
            "nodes": {name: n.to_dict() for name, n in self.nodes.items()},
        }


# --------------------------------------------------------------------------------------------- per op


def _known(shapes: ShapeMap, node: onnx.NodeProto, key: str, tensor: str, role: str) -> Shape:
    """The fully known shape of ``tensor``, or a CostShapeError naming the node."""
    dims = shapes.get(tensor)
    if dims is None or any(d is None for d in dims):
        raise CostShapeError(
            f"cannot count the MACs of {node.op_type} node '{key}': the shape of its {role} '{tensor}' is "
            f"{'unknown' if dims is None else dims} after shape inference (does input_shape fit the model?)"
        )
    return tuple(d for d in dims if d is not None)


def node_macs(node: onnx.NodeProto, key: str, shapes: ShapeMap, op: LayerOp) -> tuple[int, Shape]:
    """MACs and output shape of a layer node (the formula of :data:`~onnxprune.graph.layerops.LAYER_OPS`)."""
    tensors = {"input": (node.input[0], op.input_role), "weight": (node.input[1], "weight")}
    tensors["output"] = (node.output[0], "output")

    def shape(role: str) -> Shape:
        tensor, label = tensors[role]
        return _known(shapes, node, key, tensor, label)

    return op.count(shape, node_attrs(node)), shape("output")


# --------------------------------------------------------------------------------------------- model


def node_keys(nodes: Iterable[onnx.NodeProto]) -> list[str]:
    """Unique keys: the node name, ``<op_type>_<index>`` for unnamed nodes, ``#<index>`` on clashes."""
    keys: list[str] = []
    seen: set[str] = set()
    for i, node in enumerate(nodes):
        key = node.name or f"{node.op_type}_{i}"
        if key in seen:
            key = f"{key}#{i}"
        seen.add(key)
        keys.append(key)
    return keys


def float_param_sizes(model: onnx.ModelProto) -> dict[str, int]:
    """Element count of every float initializer, by name."""
    return {t.name: math.prod(t.dims) for t in model.graph.initializer if t.data_type in _FLOAT_TYPES}


def copied_params(model: onnx.ModelProto, copies: Mapping[str, str]) -> int:
    """Float parameters of ``model`` held by the initializers named in ``copies`` (copy -> original):
    what a count of the parameters over-counts when shared initializers were unshared."""
    sizes = float_param_sizes(model)
    return sum(sizes.get(name, 0) for name in copies)


def count_costs(model: onnx.ModelProto, input_shape: ShapeArg) -> ModelCost:
    """MACs and parameters of every Conv/ConvTranspose/Gemm/MatMul node of ``model`` at ``input_shape``.

    ``input_shape`` is the full shape of the first graph input (batch dim included), or a mapping input
    name -> shape for every data input. Raises :class:`CostShapeError` (a ``ValueError``) naming the node
    when a shape it needs stays unknown, or when ``input_shape`` does not fit the model.
    """
    fixed = resolve_input_dims(model, input_shape)
    shapes = infer_shapes(model, input_shape)
    sizes = float_param_sizes(model)
    nodes: dict[str, NodeCost] = {}
    for key, node in zip(node_keys(model.graph.node), model.graph.node, strict=True):
        op = layer_op(node)
        if op is None:
            continue
        macs, out_shape = node_macs(node, key, shapes, op)
        params = sum(sizes.get(name, 0) for name in dict.fromkeys(node.input) if name)
        nodes[key] = NodeCost(node.op_type, int(macs), int(params), out_shape)
    known = {
        name: tuple(d for d in dims if d is not None) for name, dims in fixed.items() if None not in dims
    }
    first = next(iter(fixed.values()))
    return ModelCost(
        nodes=nodes,
        params=int(sum(sizes.values())),
        input_shape=tuple(d for d in first if d is not None),
        input_shapes=known,
    )
