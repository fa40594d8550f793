"""Flatten and flattening Reshape: channel ``c`` of an (N, C, *S) tensor becomes the features
``[c*prod(S), (c+1)*prod(S))`` of the (N, C*prod(S)) output. The index map composes:
``IndexMap(o, i, u, p)`` on the channel axis becomes ``IndexMap(o*s, i*s, u, p*s)`` with ``s = prod(S)``.
A Reshape whose target shape spells out ``C*prod(S)`` gets that entry rewritten (ShapeEdit).
"""

from __future__ import annotations

import math

import onnx

from ...plan import IndexMap, ShapeEdit
from ..index import GraphIndex
from ..registry import Flow, Forward, Handler, Outcome, Stop, register
from .common import const_input


def _flattened(flow: Flow, out: str, block: int) -> Flow:
    m = flow.index_map
    return Flow(out, 1, IndexMap(m.offset * block, m.inner * block, m.outer, m.period * block))


@register("Flatten")
class FlattenHandler(Handler):
    def propagate(self, ctx: GraphIndex, node: onnx.NodeProto, port: int, flow: Flow) -> Outcome:
        shape = ctx.shape(flow.tensor)
        axis = ctx.int_attr(node, "axis", 1)
        if shape is None:
            return Stop(f"Flatten {node.name!r}: input shape unknown")
        axis = axis % len(shape) if axis else 0
        if axis != 1 or flow.axis != 1:
            return Stop(f"Flatten {node.name!r} (axis={axis}) does not keep channels outermost")
        return Forward([_flattened(flow, node.output[0], math.prod(shape[2:]))])


@register("Reshape")
class ReshapeHandler(Handler):
    def propagate(self, ctx: GraphIndex, node: onnx.NodeProto, port: int, flow: Flow) -> Outcome:
        if port != 0:
            return Stop(f"Reshape {node.name!r} takes the channels as its shape")
        target = const_input(ctx, node, 1)
        if target is None:
            return Stop(f"Reshape {node.name!r} has a computed target shape")
        shape, out = ctx.shape(flow.tensor), ctx.shape(node.output[0])
        if shape is None or out is None:
            return Stop(f"Reshape {node.name!r}: shapes unknown")
        if flow.axis != 1 or len(out) != 2 or out != (shape[0], math.prod(shape[1:])):
            return Stop(f"Reshape {node.name!r} {shape} -> {out} is not a flatten after the channel axis")
        block = math.prod(shape[2:])
        value = ctx.array(target)
        edits = []
        if value[1] > 0:
            edits.append(ShapeEdit(target, 1, block * flow.index_map.per_channel, node.name))
        return Forward([_flattened(flow, node.output[0], block)], shape_edits=edits)
