"""Ops that move channels between axes and positions: Flatten, Reshape (channel shuffle included),
Transpose, Squeeze/Unsqueeze, Concat, Split, Slice, and Shape (which only reads sizes).

Reshape keeps the row-major order of elements, so the labels of a run of axes are reshaped with the data:
channel ``c`` of an (N, C, H, W) tensor owns the features ``[c·H·W, (c+1)·H·W)`` after a flatten. When a run
is split over several axes — ``(N, C, H, W) -> (N, g, C/g, H, W)`` in a channel shuffle — only the last of
them can shrink while the reshape stays valid, so the labels along the others are tied (channel ``j`` of
every shuffle group goes together) and that axis's entry of the target shape is rewritten. A split into
attention heads, ``(N, T, H·D) -> (N, T, H, D)`` on its way to a product of two computed tensors, shrinks
the head axis instead: the D columns of a head are tied (see :mod:`.attention`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import onnx

from ..channels import Channels, Shape, grid, normalize_axis
from ..index import GraphIndex
from ..registry import Effect, Outcome, SlotEdit, Stop, register
from .attention import splits_heads
from .common import (
    AnyInputHandler,
    ShapeChangingHandler,
    ShapedInputHandler,
    const_input,
    ints_from,
    on_axes,
    optional_input,
    shape_of,
)


def _run(shape_in: Shape, shape_out: Shape, lo: int, hi: int) -> tuple[int, int, int, int] | None:
    """Smallest input run ``[a, b] ⊇ [lo, hi]`` whose data is a contiguous run ``[a', b']`` of the output."""
    for a in range(lo, 0, -1):
        for b in range(hi, len(shape_in)):
            left, right = math.prod(shape_in[:a]), math.prod(shape_in[b + 1 :])
            starts = [i for i in range(len(shape_out) + 1) if math.prod(shape_out[:i]) == left]
            ends = [j for j in range(-1, len(shape_out)) if math.prod(shape_out[j + 1 :]) == right]
            if starts and ends and max(starts) <= min(ends):
                return a, b, max(starts), min(ends)
    return None


def _trim(axes: Sequence[int], ids: np.ndarray, values: np.ndarray) -> Channels | None:
    """Labels without the axes along which they do not vary."""
    keep = [i for i in range(ids.ndim) if ids.shape[i] > 1 and not np.all(np.diff(ids, axis=i) == 0)]
    if not keep:
        keep = [0]
    index = tuple(slice(None) if i in keep else 0 for i in range(ids.ndim))
    return Channels.of([axes[i] for i in keep], ids[index], values[index])


def _target_entry(ctx: GraphIndex, target: str, position: int) -> tuple[str, int, int, str] | None:
    """``(initializer, index, value)`` holding entry ``position`` of a Reshape target: the target itself, or
    the constant piece of a ``Concat`` that builds it (the other pieces being dynamic dims); None when
    the entry is computed."""
    if ctx.is_initializer(target):
        return target, position, int(ctx.array(target).reshape(-1)[position]), ""
    producer = ctx.producer.get(target)
    if producer is None or producer.op_type != "Concat":
        return None
    offset = 0
    for piece in producer.input:
        shape = ctx.shape(piece)
        if shape is None or len(shape) != 1:
            return None
        if offset <= position < offset + shape[0]:
            if not ctx.is_initializer(piece):
                return None
            return (
                piece,
                position - offset,
                int(ctx.array(piece).reshape(-1)[position - offset]),
                producer.name,
            )
        offset += shape[0]
    return None


def _regroup(
    ctx: GraphIndex, node: onnx.NodeProto, x: Channels, shape_in: Shape, shape_out: Shape, target: str | None
) -> Outcome:
    run = _run(shape_in, shape_out, min(x.axes), max(x.axes)) if min(x.axes) > 0 else None
    if run is None:
        return Stop(
            f"{node.op_type} {node.name!r} {shape_in} -> {shape_out} mixes the channels with the batch"
        )
    a, b, a2, b2 = run
    ids, values = grid(x, shape_in, range(a, b + 1))
    out_axes = list(range(a2, b2 + 1))
    dims = tuple(shape_out[i] for i in out_axes)
    ids, values = ids.reshape(dims), values.reshape(dims)
    eff = Effect()
    varying = [i for i in range(ids.ndim) if ids.shape[i] > 1 and not np.all(np.diff(ids, axis=i) == 0)]
    if not varying:
        return eff.output(node.output[0], _trim(out_axes, ids, values))
    heads = target is not None and len(varying) > 1 and splits_heads(ctx, node.output[0])
    # the axis that shrinks: the last one (a shuffle's C/g), or for heads the one before D (H)
    last = varying[-2] if heads and varying[-1] == ids.ndim - 1 else varying[-1]
    if len(varying) > 1 or target is not None:
        lab = Channels.of(out_axes, ids, values)
        assert lab is not None
        line, line_values = on_axes(eff, node, lab, shape_out, [out_axes[last]])
        if target is not None:
            found = _target_entry(ctx, target, out_axes[last])
            if found is None:
                return Stop(f"Reshape {node.name!r} computes the channel entry of its target shape")
            init, index, entry, reader = found
            if entry == 0:
                return Stop(f"Reshape {node.name!r} copies the channel count from its input")
            if entry > 0:
                eff.edits.append(SlotEdit(init, index, reader or node.name, line))
            # the other split axes keep their size: an explicit entry, -1 (inferred from the shrunk total
            # and the shrunk entry, it comes out unchanged) or one computed from dims without channels (a
            # Shape reading a channel axis stops them); 0 would copy an input dim that may shrink
            for i in (v for v in varying if v != last):
                other = _target_entry(ctx, target, out_axes[i])
                if other is not None and (other[2] == 0 or other[2] < -1):
                    return Stop(f"Reshape {node.name!r} copies its input's dim into a split axis")
        if len(varying) > 1:
            # the labels along the other split axes are tied to these: one channel per index of the axis
            # that shrinks (a head; a shuffle's C/g), which is all the ops below need to see (a batched
            # product over heads, a Gather of q/k/v along a fused axis that never shrinks)
            return eff.output(node.output[0], Channels.of([out_axes[last]], line, line_values))
    return eff.output(node.output[0], _trim(out_axes, ids, values))


@register("Flatten")
class FlattenHandler(ShapeChangingHandler):
    def apply_shapes(
        self, ctx: GraphIndex, node: onnx.NodeProto, x: Channels, shape: Shape, out: Shape
    ) -> Outcome:
        return _regroup(ctx, node, x, shape, out, None)


@register("Reshape")
class ReshapeHandler(ShapeChangingHandler):
    def apply_shapes(
        self, ctx: GraphIndex, node: onnx.NodeProto, x: Channels, shape: Shape, out: Shape
    ) -> Outcome:
        return _regroup(ctx, node, x, shape, out, node.input[1])


@register("Transpose")
class TransposeHandler(ShapedInputHandler):
    def apply_shaped(self, ctx: GraphIndex, node: onnx.NodeProto, x: Channels, shape: Shape) -> Outcome:
        perm = ctx.attr(node, "perm", None)
        perm = list(perm) if perm is not None else list(reversed(range(len(shape))))  # type: ignore[call-overload]
        new_axes = [perm.index(a) for a in x.axes]
        return Effect().output(node.output[0], Channels.of(new_axes, x.ids, x.values))


@register("Squeeze", "Unsqueeze")
class SqueezeHandler(ShapeChangingHandler):
    def apply_shapes(
        self, ctx: GraphIndex, node: onnx.NodeProto, x: Channels, shape: Shape, out: Shape
    ) -> Outcome:
        axes = ints_from(ctx, node, 1, "axes")
        if isinstance(axes, Stop):
            return axes
        if node.op_type == "Squeeze":
            gone = (
                {normalize_axis(a, len(shape)) for a in axes}
                if axes
                else {i for i, d in enumerate(shape) if d == 1}
            )
            kept_axes = [a for a in x.axes if a not in gone]
            ids, values = x.ids, x.values
            for i in reversed(range(len(x.axes))):
                if x.axes[i] in gone:
                    ids, values = ids.take(0, axis=i), values.take(0, axis=i)
            new_axes = [a - sum(g < a for g in gone) for a in kept_axes]
            return Effect().output(node.output[0], Channels.of(new_axes, ids, values) if new_axes else None)
        added = sorted(normalize_axis(a, len(out)) for a in axes or [])
        new_axes = list(x.axes)
        for ax in added:
            new_axes = [a + 1 if a >= ax else a for a in new_axes]
        return Effect().output(node.output[0], Channels(tuple(new_axes), x.ids, x.values))


@register("Concat")
class ConcatHandler(AnyInputHandler):
    """Labels of the inputs concatenated along ``axis``: channel offsets come for free."""

    def apply(self, ctx: GraphIndex, node: onnx.NodeProto, inputs: Sequence[Channels | None]) -> Outcome:
        shapes = [shape_of(ctx, i, node) for i in node.input]
        for s in shapes:
            if isinstance(s, Stop):
                return s
        rank = len(shapes[0])  # type: ignore[arg-type]
        axis = normalize_axis(ctx.int_attr(node, "axis", 1), rank)
        axes = sorted({a for ch in inputs if ch is not None for a in ch.axes} | {axis})
        grids = [grid(ch, s, axes) for ch, s in zip(inputs, shapes, strict=True)]  # type: ignore[arg-type]
        k = axes.index(axis)
        ids = np.concatenate([g[0] for g in grids], axis=k)
        values = np.concatenate([g[1] for g in grids], axis=k)
        return Effect().output(node.output[0], _trim(axes, ids, values))


@register("Split")
class SplitHandler(ShapedInputHandler):
    """Each output gets its range of the labels; explicit split sizes shrink with the removed indices."""

    single_output = False  # every output gets its part

    def apply_shaped(self, ctx: GraphIndex, node: onnx.NodeProto, x: Channels, shape: Shape) -> Outcome:
        axis = normalize_axis(ctx.int_attr(node, "axis", 0), len(shape))
        outs = [shape_of(ctx, o, node) for o in node.output]
        for o in outs:
            if isinstance(o, Stop):
                return o
        sizes = [o[axis] for o in outs]  # type: ignore[index]
        eff = Effect()
        if axis not in x.axes:
            for o in node.output:
                eff.output(o, x)
            return eff
        split_input = optional_input(node, 1)
        split_const = const_input(ctx, node, 1)
        if split_input is not None and split_const is None:
            return Stop(f"Split {node.name!r} has computed sizes")
        explicit = split_const is not None or ctx.attr(node, "split") is not None
        line, _ = on_axes(eff, node, x, shape, [axis])
        if not explicit:
            # an even split (num_outputs) stays even only if every part loses as many: tie index i of each
            if len(set(sizes)) != 1:
                return Stop(f"Split {node.name!r} splits the channels unevenly without explicit sizes")
            parts = line.reshape(len(sizes), -1)
            if ((parts >= 0).any(axis=0) & ~(parts >= 0).all(axis=0)).any():
                return Stop(f"Split {node.name!r} splits removable and kept channels evenly")
            for j in range(1, len(sizes)):
                eff.tie(parts[0], parts[j])
        start = 0
        for i, (o, size) in enumerate(zip(node.output, sizes, strict=True)):
            part = line[start : start + size]
            if (part >= 0).any() and explicit:
                if split_const is not None:
                    eff.edits.append(SlotEdit(split_const, i, node.name, part))
                else:
                    eff.edits.append(SlotEdit("", i, node.name, part, attribute="split"))
            ids, values = grid(x, shape, x.axes)
            k = x.axes.index(axis)
            sl = tuple(slice(start, start + size) if j == k else slice(None) for j in range(len(x.axes)))
            eff.output(o, Channels.of(x.axes, ids[sl], values[sl]))
            start += size
        return eff


@register("Slice")
class SliceHandler(ShapedInputHandler):
    """Step-1 slices of a labelled axis: ``starts``/``ends`` drop by the removed indices before them."""

    def apply_shaped(self, ctx: GraphIndex, node: onnx.NodeProto, x: Channels, shape: Shape) -> Outcome:
        params = [
            ints_from(ctx, node, p, name)
            for p, name in ((1, "starts"), (2, "ends"), (3, "axes"), (4, "steps"))
        ]
        for p in params:
            if isinstance(p, Stop):
                return p
        starts, ends, axes, steps = (p if not isinstance(p, Stop) else None for p in params)
        assert starts is not None and ends is not None
        axes = axes or list(range(len(starts)))
        steps = steps or [1] * len(starts)
        ids, values = x.ids, x.values
        eff = Effect()
        old = ctx.opset() < 10
        for i, (s, e, a, st) in enumerate(zip(starts, ends, axes, steps, strict=True)):
            a = normalize_axis(a, len(shape))
            if a not in x.axes:
                continue
            dim = shape[a]
            if st != 1 or s < 0 or (e < 0 and e > -dim - 1):
                return Stop(f"Slice {node.name!r} slices the channel axis with a step or from the end")
            s, e = min(s, dim), max(min(e, dim), 0)
            k = x.axes.index(a)
            line, _ = on_axes(eff, node, x, shape, [a])
            target_s = None if old else node.input[1]
            target_e = None if old else node.input[2]
            if s > 0:
                eff.edits.append(
                    SlotEdit(
                        target_s or "",
                        i,
                        node.name,
                        np.where(np.arange(dim) < s, line, -1),
                        None if target_s else "starts",
                    )
                )
            if e < dim:
                eff.edits.append(
                    SlotEdit(
                        target_e or "",
                        i,
                        node.name,
                        np.where(np.arange(dim) < e, line, -1),
                        None if target_e else "ends",
                    )
                )
            sl = tuple(slice(s, e) if j == k else slice(None) for j in range(ids.ndim))
            ids, values = ids[sl], values[sl]
        return eff.output(node.output[0], Channels.of(x.axes, ids, values))


@register("Gather")
class GatherHandler(ShapedInputHandler):
    """Gather along an axis without channels (``qkv[0]`` of a fused projection, a token): the labels move
    with the axes around it (a scalar index drops the axis, an index tensor of rank r puts r in its place)."""

    def apply_shaped(self, ctx: GraphIndex, node: onnx.NodeProto, x: Channels, shape: Shape) -> Outcome:
        axis = normalize_axis(ctx.int_attr(node, "axis", 0), len(shape))
        if axis in x.axes:
            return Stop(f"Gather {node.name!r} gathers along the channels")
        indices = shape_of(ctx, node.input[1], node)
        if isinstance(indices, Stop):
            return indices
        new_axes = [a if a < axis else a + len(indices) - 1 for a in x.axes]
        return Effect().output(node.output[0], Channels(tuple(new_axes), x.ids, x.values))


def _dims_read(ctx: GraphIndex, user: onnx.NodeProto, port: int, dims: list[int]) -> list[int] | None:
    """The input dims a consumer of a Shape output reads (``dims``: the dims that Shape outputs): a Gather
    or a step-1 Slice with constant indices; None for any other reader."""
    if port != 0:
        return None
    if user.op_type == "Gather":
        idx = const_input(ctx, user, 1)
        index = [] if idx is None else [int(i) for i in ctx.array(idx).reshape(-1)]
        if idx is None or any(not -len(dims) <= i < len(dims) for i in index):
            return None
        return [dims[i] for i in index]
    if user.op_type == "Slice" and ctx.opset() >= 10:
        params = [ints_from(ctx, user, p, name) for p, name in ((1, "starts"), (2, "ends"), (3, "axes"))]
        steps = ints_from(ctx, user, 4, "steps")
        if any(isinstance(p, Stop) for p in (*params, steps)) or (steps and steps != [1]):
            return None
        starts, ends, axes = params
        if not starts or not ends or (axes and axes not in ([0], [-1])):
            return None
        return dims[starts[0] : ends[0]]  # type: ignore[index]
    return None


@register("Shape")
class ShapeHandler(ShapedInputHandler):
    """Reading the shape is safe when only dims without channels are used (``Gather`` or ``Slice`` of
    constant indices: the batch, the tokens, a head's width D); the channel count itself changes with
    pruning."""

    def apply_shaped(self, ctx: GraphIndex, node: onnx.NodeProto, x: Channels, shape: Shape) -> Outcome:
        end = ctx.int_attr(node, "end", len(shape))
        dims = list(range(len(shape)))[ctx.int_attr(node, "start", 0) : end]
        for user, port in ctx.users(node.output[0]):
            read = _dims_read(ctx, user, port, dims)
            if read is None:
                return Stop(
                    f"Shape {node.name!r} reads the channel count (used by {user.op_type} {user.name!r})"
                )
            if set(read) & set(x.axes):
                return Stop(f"Shape {node.name!r} reads the channel count")
        return Effect()
