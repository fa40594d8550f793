"""Pooling and padding act on each channel separately, and map an all-zero channel to zeros
(max/average of zeros, zero padding): channels pass through on the same axis."""

from __future__ import annotations

import numpy as np
import onnx

from ..index import GraphIndex
from ..registry import Flow, Handler, Outcome, Stop, register
from .common import channel_axis_only, const_input, forward_first_output

POOLS = ("MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool")


@register(*POOLS)
class PoolHandler(Handler):
    def propagate(self, ctx: GraphIndex, node: onnx.NodeProto, port: int, flow: Flow) -> Outcome:
        return channel_axis_only(node, flow) or forward_first_output(ctx, node, flow)


@register("Pad")
class PadHandler(Handler):
    """Zero-preserving unless the pad value is non-zero; pads must not touch the channel axis."""

    def propagate(self, ctx: GraphIndex, node: onnx.NodeProto, port: int, flow: Flow) -> Outcome:
        if port != 0:
            return Stop(f"Pad {node.name!r} takes the channels as a parameter")
        shape = ctx.shape(flow.tensor)
        if shape is None:
            return Stop(f"Pad {node.name!r}: input rank unknown")
        if len(node.input) > 1 and node.input[1]:
            p = const_input(ctx, node, 1)
            if p is None:
                return Stop(f"Pad {node.name!r} has computed pads")
            pads = ctx.array(p).astype(np.int64).tolist()
        else:
            pads = list(ctx.attr(node, "pads", []))  # type: ignore[call-overload]
        if len(node.input) > 3 and node.input[3]:
            return Stop(f"Pad {node.name!r} pads selected axes only")
        value = 0.0
        if len(node.input) > 2 and node.input[2]:
            v = const_input(ctx, node, 2)
            if v is None:
                return Stop(f"Pad {node.name!r} has a computed pad value")
            value = float(ctx.array(v))
        else:
            value = float(ctx.attr(node, "value", 0.0))  # type: ignore[arg-type]
        mode = ctx.attr(node, "mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        rank = len(shape)
        if len(pads) != 2 * rank or pads[flow.axis] or pads[flow.axis + rank]:
            return Stop(f"Pad {node.name!r} pads the channel axis")
        if mode == "constant" and value != 0.0:
            return Stop(f"Pad {node.name!r} pads with {value}")
        return forward_first_output(ctx, node, flow)
