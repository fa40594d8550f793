"""Elementwise ops.

* Unary ops with ``f(0) = 0`` pass the channels on: a removed channel stays all-zero.
* Unary ops with ``f(0) != 0`` (Sigmoid, Softplus, ...) would turn a removed channel into a constant:
  the channels stop there and are kept.
* Binary ops with one constant operand ``k`` broadcast against the channels:
  ``x + k`` / ``x - k``: a per-channel ``k_c`` is a SOURCE member (zeroed with the channel, so the channel
  stays zero); a ``k`` shared by all channels must be zero. ``x * k``, ``x / k``: zero stays zero, a
  per-channel ``k_c`` is sliced (``k`` must not be zero for Div). ``PRelu``'s slope is sliced likewise.
  With two non-constant operands the op couples channels of two tensors: kept.
"""

from __future__ import annotations

import numpy as np
import onnx

from ...plan import Role
from ..index import GraphIndex
from ..registry import Flow, Forward, Handler, Outcome, Stop, register
from .common import const_input, forward_first_output, member

ZERO_PRESERVING = (
    "Relu",
    "LeakyRelu",
    "Elu",
    "Selu",
    "Celu",
    "Tanh",
    "HardSwish",
    "Gelu",
    "Abs",
    "Neg",
    "Identity",
    "Softsign",
    "ThresholdedRelu",
    "Sign",
    "Ceil",
    "Floor",
    "Round",
    "Sqrt",
    "Erf",
    "Sin",
    "Tan",
    "Asin",
    "Atan",
    "Sinh",
    "Asinh",
    "Atanh",
    "Cast",
    "Dropout",
    "Shrink",
    "Mish",
)
NONZERO_AT_ZERO = (
    "Sigmoid",
    "HardSigmoid",
    "Softplus",
    "Exp",
    "Cos",
    "Cosh",
    "Acos",
    "Log",
    "Reciprocal",
    "Not",
)


@register(*ZERO_PRESERVING)
class ZeroPreservingUnary(Handler):
    def propagate(self, ctx: GraphIndex, node: onnx.NodeProto, port: int, flow: Flow) -> Outcome:
        if port != 0:
            return Stop(f"{node.op_type} {node.name!r} takes the channels as a parameter")
        if node.op_type == "Shrink" and float(ctx.attr(node, "bias", 0.0)) != 0.0:  # type: ignore[arg-type]
            return Stop(f"Shrink {node.name!r} has a non-zero bias")
        return forward_first_output(ctx, node, flow)


@register(*NONZERO_AT_ZERO)
class NonZeroAtZero(Handler):
    def propagate(self, ctx: GraphIndex, node: onnx.NodeProto, port: int, flow: Flow) -> Outcome:
        return Stop(f"{node.op_type} {node.name!r} maps a removed channel's zeros to a non-zero value")


@register("Clip")
class ClipHandler(Handler):
    """``Clip(0) = clamp(0, lo, hi)``: zero-preserving iff ``lo <= 0 <= hi``."""

    def propagate(self, ctx: GraphIndex, node: onnx.NodeProto, port: int, flow: Flow) -> Outcome:
        if port != 0:
            return Stop(f"Clip {node.name!r} takes the channels as a bound")
        bounds: list[float] = []
        for i, name in ((1, "min"), (2, "max")):
            if i < len(node.input) and node.input[i]:
                c = const_input(ctx, node, i)
                if c is None:
                    return Stop(f"Clip {node.name!r} has a computed {name}")
                bounds.append(float(ctx.array(c)))
            else:
                a = ctx.attr(node, name)
                bounds.append(float(a) if a is not None else (-np.inf if name == "min" else np.inf))  # type: ignore[arg-type]
        lo, hi = bounds
        if not lo <= 0.0 <= hi:
            return Stop(f"Clip {node.name!r} maps zero to {min(max(0.0, lo), hi)}")
        return forward_first_output(ctx, node, flow)


def _broadcast_axis(ctx: GraphIndex, flow: Flow, const: str) -> int | Stop | None:
    """Axis of the constant that lines up with the channel axis; None when it broadcasts over channels."""
    shape = ctx.shape(flow.tensor)
    cdims = tuple(ctx.initializers[const].dims)
    if shape is None:
        return Stop(f"the rank of {flow.tensor!r} is unknown")
    if len(cdims) > len(shape):
        return Stop(f"constant {const!r} has a higher rank than the channels' tensor")
    axis = flow.axis - (len(shape) - len(cdims))
    if axis < 0 or cdims[axis] == 1:
        return None
    if cdims[axis] != shape[flow.axis]:
        return Stop(f"constant {const!r} of shape {cdims} does not broadcast over {shape}")
    return axis


@register("Add", "Sub", "Mul", "Div", "PRelu")
class BinaryWithConstant(Handler):
    def propagate(self, ctx: GraphIndex, node: onnx.NodeProto, port: int, flow: Flow) -> Outcome:
        op = node.op_type
        other_port = 1 - port
        if port > 1 or len(node.input) != 2:
            return Stop(f"{op} {node.name!r} is not a binary op")
        const = const_input(ctx, node, other_port)
        if const is None:
            return Stop(f"{op} {node.name!r} combines the channels with another tensor (coupled channels)")
        if op in ("PRelu", "Div") and port != 0:
            return Stop(f"{op} {node.name!r} takes the channels as its second operand")
        axis = _broadcast_axis(ctx, flow, const)
        if isinstance(axis, Stop):
            return Stop(f"{op} {node.name!r}: {axis.reason}")
        value = ctx.array(const)
        if op == "Div" and np.any(value == 0):
            return Stop(f"Div {node.name!r} divides by a constant containing zeros")
        out = Flow(node.output[0], flow.axis, flow.index_map)
        if op in ("Add", "Sub"):
            if axis is None:
                if np.any(value != 0):
                    return Stop(f"{op} {node.name!r} adds a constant to every channel")
                return Forward([out])
            return Forward([out], [member(node, const, axis, Role.SOURCE, flow.index_map)])
        if axis is None:
            return Forward([out])
        return Forward([out], [member(node, const, axis, Role.DEPENDENT, flow.index_map)])
