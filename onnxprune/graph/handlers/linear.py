"""Gemm and MatMul with constant weights: output units are channels; input features consume them.

``Y = alpha * A @ op(B) + beta * C``, ``op(B) = B.T`` when ``transB``. Output unit ``n`` is column ``n`` of
``op(B)``: row ``n`` of ``B`` when ``transB=1``, column ``n`` otherwise, plus ``C[n]``. Input feature ``k``
(a column of ``A``) meets row ``k`` of ``op(B)``; when it is always zero that row can go.
"""

from __future__ import annotations

import numpy as np
import onnx

from ...plan import Role
from ..index import GraphIndex
from ..registry import Consume, Flow, Handler, Outcome, Source, Stop, register
from .common import const_input, member, optional_input


def _units_axis(ctx: GraphIndex, node: onnx.NodeProto) -> int:
    """Axis of ``B`` that indexes output units."""
    return 0 if ctx.int_attr(node, "transB", 0) else 1


@register("Gemm")
class GemmHandler(Handler):
    def source(self, ctx: GraphIndex, node: onnx.NodeProto) -> Source | Stop | None:
        b = const_input(ctx, node, 1)
        if b is None:
            return None  # an activation-activation product, not a layer
        axis = _units_axis(ctx, node)
        units = int(ctx.initializers[b].dims[axis])
        members = [member(node, b, axis, Role.SOURCE)]
        c_name = optional_input(node, 2)
        if c_name is not None:
            c = const_input(ctx, node, 2)
            if c is None:
                return Stop(f"Gemm {node.name!r} has a computed bias")
            shape = tuple(ctx.initializers[c].dims)
            if shape in ((units,), (1, units)):
                members.append(member(node, c, len(shape) - 1, Role.SOURCE))
            elif np.any(ctx.array(c) != 0):
                return Stop(f"Gemm {node.name!r} has a bias of shape {shape} shared by all units")
        return Source(units, members, Flow(node.output[0], 1))

    def propagate(self, ctx: GraphIndex, node: onnx.NodeProto, port: int, flow: Flow) -> Outcome:
        if port != 0 or ctx.int_attr(node, "transA", 0):
            return Stop(f"Gemm {node.name!r} takes the channels in a transposed or weight operand")
        if flow.axis != 1:
            return Stop(f"Gemm {node.name!r} receives the channels on axis {flow.axis}")
        b = const_input(ctx, node, 1)
        if b is None:
            return Stop(f"Gemm {node.name!r} has a computed weight")
        return Consume([member(node, b, 1 - _units_axis(ctx, node), Role.DEPENDENT, flow.index_map)])


@register("MatMul")
class MatMulHandler(Handler):
    def source(self, ctx: GraphIndex, node: onnx.NodeProto) -> Source | Stop | None:
        b = const_input(ctx, node, 1)
        if b is None or const_input(ctx, node, 0) is not None or len(ctx.initializers[b].dims) != 2:
            return None
        out_shape = ctx.shape(node.output[0])
        if out_shape is None:
            return Stop(f"MatMul {node.name!r} has an output of unknown rank")
        units = int(ctx.initializers[b].dims[1])
        return Source(units, [member(node, b, 1, Role.SOURCE)], Flow(node.output[0], len(out_shape) - 1))

    def propagate(self, ctx: GraphIndex, node: onnx.NodeProto, port: int, flow: Flow) -> Outcome:
        b = const_input(ctx, node, 1)
        shape = ctx.shape(flow.tensor)
        if port != 0 or b is None or len(ctx.initializers[b].dims) != 2:
            return Stop(f"MatMul {node.name!r} multiplies the channels by a computed or batched operand")
        if shape is None or flow.axis != len(shape) - 1:
            return Stop(f"MatMul {node.name!r} receives the channels on a non-contracted axis")
        return Consume([member(node, b, 0, Role.DEPENDENT, flow.index_map)])
