"""Small helpers shared by the handlers."""

from __future__ import annotations

import onnx

from ...plan import IDENTITY, IndexMap, Member, Role
from ..index import GraphIndex
from ..registry import Flow, Forward, Stop


def const_input(ctx: GraphIndex, node: onnx.NodeProto, port: int) -> str | None:
    """Name of input ``port`` when it is an initializer, else None."""
    if port < len(node.input) and node.input[port] and ctx.is_initializer(node.input[port]):
        return node.input[port]
    return None


def optional_input(node: onnx.NodeProto, port: int) -> str | None:
    return node.input[port] if port < len(node.input) and node.input[port] else None


def member(node: onnx.NodeProto, init: str, axis: int, role: Role, index_map: IndexMap = IDENTITY) -> Member:
    return Member(initializer=init, axis=axis, role=role, node=node.name, index_map=index_map)


def only_first_output_used(ctx: GraphIndex, node: onnx.NodeProto) -> bool:
    return all(not o or (not ctx.users(o) and o not in ctx.outputs) for o in node.output[1:])


def forward_first_output(ctx: GraphIndex, node: onnx.NodeProto, flow: Flow) -> Forward | Stop:
    """Pass the channels to output 0 on the same axis, when the other outputs are unused."""
    if not only_first_output_used(ctx, node):
        return Stop(f"{node.op_type} {node.name!r} has extra outputs in use")
    return Forward([Flow(node.output[0], flow.axis, flow.index_map)])


def channel_axis_only(node: onnx.NodeProto, flow: Flow, axis: int = 1) -> Stop | None:
    if flow.axis != axis:
        return Stop(f"{node.op_type} {node.name!r} receives the channels on axis {flow.axis}, not {axis}")
    return None
