"""Conv: produces channels (filters ``W[f]``, bias ``b[f]``) and consumes them (``W[:, c]``).

A filter ``f`` whose weights and bias are zero outputs an all-zero map, and a consumer Conv's output
does not depend on ``W[:, c]`` when input channel ``c`` is all zero: removing both is exact.
Grouped and depthwise convolutions tie input and output channels through ``group``; they are kept.
"""

from __future__ import annotations

import onnx

from ...plan import Role
from ..index import GraphIndex
from ..registry import Consume, Flow, Handler, Outcome, Source, Stop, register
from .common import channel_axis_only, const_input, member, optional_input


def _ungrouped_weight(ctx: GraphIndex, node: onnx.NodeProto) -> str | Stop:
    """The constant weight of an ungrouped Conv, or why the node's channels must stay."""
    w = const_input(ctx, node, 1)
    if w is None:
        return Stop(f"Conv {node.name!r} has a computed weight")
    group = ctx.int_attr(node, "group", 1)
    if group != 1:
        return Stop(f"Conv {node.name!r} is grouped (group={group})")
    return w


@register("Conv")
class ConvHandler(Handler):
    def source(self, ctx: GraphIndex, node: onnx.NodeProto) -> Source | Stop | None:
        w = _ungrouped_weight(ctx, node)
        if isinstance(w, Stop):
            return w
        members = [member(node, w, 0, Role.SOURCE)]
        b_name = optional_input(node, 2)
        if b_name is not None:
            b = const_input(ctx, node, 2)
            if b is None:
                return Stop(f"Conv {node.name!r} has a computed bias")
            members.append(member(node, b, 0, Role.SOURCE))
        channels = int(ctx.initializers[w].dims[0])
        return Source(channels, members, Flow(node.output[0], 1))

    def propagate(self, ctx: GraphIndex, node: onnx.NodeProto, port: int, flow: Flow) -> Outcome:
        if port != 0:
            return Stop(f"Conv {node.name!r} takes the channels as weight or bias")
        wrong_axis = channel_axis_only(node, flow)
        if wrong_axis:
            return wrong_axis
        w = _ungrouped_weight(ctx, node)
        if isinstance(w, Stop):
            return w
        return Consume([member(node, w, 1, Role.DEPENDENT, flow.index_map)])
