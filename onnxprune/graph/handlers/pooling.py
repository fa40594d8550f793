"""Ops that act on each channel separately: pooling, padding, resizing, reductions over other axes.

A removed channel that is the constant ``v`` stays ``v`` under max/average pooling without zero padding,
``Resize`` (interpolation weights sum to one) and edge/reflect padding; zero padding or averaging with
padded zeros makes it non-constant unless ``v = 0``.
"""

from __future__ import annotations

import numpy as np
import onnx

from ..channels import Channels, Shape, normalize_axis
from ..index import GraphIndex
from ..registry import Effect, Outcome, SlotEdit, Stop, register
from .common import ShapeChangingHandler, ShapedInputHandler, const_input, ints_from, on_axes, optional_input

POOLS = ("MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool")


@register(*POOLS)
class PoolHandler(ShapedInputHandler):
    def apply_shaped(self, ctx: GraphIndex, node: onnx.NodeProto, x: Channels, shape: Shape) -> Outcome:
        eff = Effect()
        ids, values = on_axes(eff, node, x, shape, [1])
        pads = ctx.attr(node, "pads", None) or []
        auto_pad = ctx.attr(node, "auto_pad", b"NOTSET")
        padded = any(pads) or auto_pad not in (b"NOTSET", "NOTSET", b"VALID", "VALID")  # type: ignore[arg-type]
        if node.op_type in ("LpPool", "GlobalLpPool") or (
            node.op_type == "AveragePool" and padded and ctx.int_attr(node, "count_include_pad", 0)
        ):
            values = np.where(values == 0, 0.0, np.nan)
        return eff.output(node.output[0], Channels.of([1], ids, values))


@register("Pad")
class PadHandler(ShapedInputHandler):
    def apply_shaped(self, ctx: GraphIndex, node: onnx.NodeProto, x: Channels, shape: Shape) -> Outcome:
        pads = ints_from(ctx, node, 1, "pads")
        if isinstance(pads, Stop):
            return pads
        rank = len(shape)
        axes_in = ints_from(ctx, node, 3, "axes")
        if isinstance(axes_in, Stop):
            return axes_in
        axes = [normalize_axis(a, rank) for a in axes_in] if axes_in else list(range(rank))
        pads = pads or [0] * (2 * len(axes))
        padded = {a for i, a in enumerate(axes) if pads[i] or pads[i + len(axes)]}
        if padded & set(x.axes):
            return Stop(f"Pad {node.name!r} pads the channel axis")
        mode = ctx.attr(node, "mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        value = 0.0
        if optional_input(node, 2) is not None:
            c = const_input(ctx, node, 2)
            if c is None:
                return Stop(f"Pad {node.name!r} has a computed pad value")
            value = float(ctx.array(c))
        else:
            value = float(ctx.attr(node, "value", 0.0))  # type: ignore[arg-type]
        values = x.values
        if mode == "constant" and padded:
            values = np.where(values == value, values, np.nan)
        return Effect().output(node.output[0], Channels(x.axes, x.ids, values))


@register("Resize", "Upsample")
class ResizeHandler(ShapeChangingHandler):
    """Channels pass when the labelled axes keep their size; explicit ``sizes`` entries are rewritten."""

    def apply_shapes(
        self, ctx: GraphIndex, node: onnx.NodeProto, x: Channels, shape: Shape, out: Shape
    ) -> Outcome:
        if any(shape[a] != out[a] for a in x.axes):
            return Stop(f"{node.op_type} {node.name!r} resizes the channel axis")
        eff = Effect()
        sizes = optional_input(node, 3) if node.op_type == "Resize" else None
        if sizes is not None:
            c = const_input(ctx, node, 3)
            if c is None:
                return Stop(f"Resize {node.name!r} has computed sizes")
            if len(x.axes) != 1 or ctx.attr(node, "axes") is not None:
                return Stop(f"Resize {node.name!r}: sizes of selected axes, or channels on several axes")
            ids, _ = on_axes(eff, node, x, shape, list(x.axes))
            eff.edits.append(SlotEdit(c, x.axes[0], node.name, ids))
        mode = ctx.attr(node, "coordinate_transformation_mode", b"half_pixel")
        if mode in (b"tf_crop_and_resize", "tf_crop_and_resize"):  # extrapolated pixels: not the constant
            x = Channels(x.axes, x.ids, np.where(x.values == 0, 0.0, np.nan))
        return eff.output(node.output[0], x)


REDUCE_VALUE = {
    "ReduceMean": lambda v, n: v,
    "ReduceMax": lambda v, n: v,
    "ReduceMin": lambda v, n: v,
    "ReduceSum": lambda v, n: v * n,
    "ReduceL1": lambda v, n: np.abs(v) * n,
    "ReduceL2": lambda v, n: np.abs(v) * np.sqrt(n),
    "ReduceSumSquare": lambda v, n: v * v * n,
}
ZERO_SUM = ("ReduceSum", "ReduceL1", "ReduceL2", "ReduceSumSquare")


@register(*REDUCE_VALUE)
class ReduceHandler(ShapedInputHandler):
    """Reducing other axes keeps the channels. Reducing the channel axis itself is exact for sums of zeros
    (a removed channel adds nothing); means, maxima and minima would change: kept."""

    def apply_shaped(self, ctx: GraphIndex, node: onnx.NodeProto, x: Channels, shape: Shape) -> Outcome:
        axes_list = ints_from(ctx, node, 1, "axes")
        if isinstance(axes_list, Stop):
            return axes_list
        rank = len(shape)
        if not axes_list:
            if ctx.int_attr(node, "noop_with_empty_axes", 0):
                return Effect().output(node.output[0], x)
            axes_list = list(range(rank))
        reduced = {normalize_axis(a, rank) for a in axes_list}
        keepdims = ctx.int_attr(node, "keepdims", 1)
        count = int(np.prod([shape[a] for a in reduced]))
        if reduced & set(x.axes):
            if node.op_type in ZERO_SUM and x.all_zero() and not (set(x.axes) - reduced):
                return Effect()
            return Stop(f"{node.op_type} {node.name!r} reduces over the channels")
        values = REDUCE_VALUE[node.op_type](x.values, count)
        new_axes = [a if keepdims else a - sum(r < a for r in reduced) for a in x.axes]
        return Effect().output(node.output[0], Channels(tuple(new_axes), x.ids, values))
