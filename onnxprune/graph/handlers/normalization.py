"""BatchNormalization (inference form): ``y_c = scale_c * (x_c - mean_c) / sqrt(var_c + eps) + bias_c``.

With ``scale_c = bias_c = 0`` the output channel is exactly zero whatever ``x_c``, mean and var are, so
scale and shift are SOURCE members (zeroed and in the group norm) and mean/var are only sliced.
"""

from __future__ import annotations

import onnx

from ...plan import Role
from ..index import GraphIndex
from ..registry import Flow, Forward, Handler, Outcome, Stop, register
from .common import channel_axis_only, const_input, member, only_first_output_used


@register("BatchNormalization")
class BatchNormHandler(Handler):
    def propagate(self, ctx: GraphIndex, node: onnx.NodeProto, port: int, flow: Flow) -> Outcome:
        if port != 0:
            return Stop(f"BatchNormalization {node.name!r} takes the channels as a parameter")
        wrong_axis = channel_axis_only(node, flow)
        if wrong_axis:
            return wrong_axis
        params = [const_input(ctx, node, i) for i in (1, 2, 3, 4)]
        if any(p is None for p in params) or not only_first_output_used(ctx, node):
            return Stop(f"BatchNormalization {node.name!r} is not in inference form with constant parameters")
        scale, bias, mean, var = (p for p in params if p is not None)
        members = [
            member(node, scale, 0, Role.SOURCE, flow.index_map),
            member(node, bias, 0, Role.SOURCE, flow.index_map),
            member(node, mean, 0, Role.DEPENDENT, flow.index_map),
            member(node, var, 0, Role.DEPENDENT, flow.index_map),
        ]
        return Forward([Flow(node.output[0], flow.axis, flow.index_map)], members)
