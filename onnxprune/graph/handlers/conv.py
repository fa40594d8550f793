"""Conv and ConvTranspose: produce channels (filters) and consume them (input channels).

Ungrouped Conv: a filter ``f`` with zero weights and bias outputs an all-zero map, and the Conv's output
does not depend on ``W[:, c]`` when input channel ``c`` is all zero: removing both is exact. When a removed
input channel is a non-zero constant ``v`` (a Sigmoid after a zeroed filter), a Conv without padding still
sees ``v`` under every kernel tap, so ``b'[o] = b[o] + v Σ_{kh,kw} W[o, c, kh, kw]`` replaces it exactly
(a :class:`~onnxprune.plan.Fold`); with padding the border sees zeros and the channel is kept.

Grouped Conv (``group = g``, depthwise included): output conv-group ``k`` reads input conv-group ``k`` only.
Removing a whole conv-group — its input channels, its filters, and one from ``group`` — keeps the Conv a
valid grouped Conv with the same per-group widths, so each conv-group is one channel: its input channels
are tied together and with its filters. Zeroing the filters zeroes the outputs whatever the input was.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import onnx

from ...plan import Role
from ..channels import Channels
from ..index import GraphIndex
from ..registry import ChannelSpace, Effect, Handler, Outcome, SlotEdit, SlotFold, Stop, register
from .common import const_input, nonzero_removed, on_axes, optional_input, shape_of

COMPUTED_WEIGHT = (
    "{op} {name!r} has a computed weight (e.g. weight standardization): removing input channels would "
    "change its statistics, and its filters are not sliced where they are computed"
)


def _weights(
    ctx: GraphIndex, node: onnx.NodeProto, inputs: Sequence[Channels | None]
) -> tuple[str, str | None] | Stop:
    if any(ch is not None for ch in inputs[1:]):
        return Stop(f"{node.op_type} {node.name!r} takes the channels as weight or bias")
    w = const_input(ctx, node, 1)
    if w is None:
        return Stop(COMPUTED_WEIGHT.format(op=node.op_type, name=node.name))  # (transfer handles it first)
    b_name = optional_input(node, 2)
    if b_name is not None and const_input(ctx, node, 2) is None:
        return Stop(f"{node.op_type} {node.name!r} has a computed bias")
    return w, b_name


def _unpadded(ctx: GraphIndex, node: onnx.NodeProto) -> bool:
    auto_pad = ctx.attr(node, "auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    pads = ctx.attr(node, "pads", None) or []
    return auto_pad in ("NOTSET", "VALID") and not any(pads)  # type: ignore[arg-type]


def _filters(eff: Effect, node: onnx.NodeProto, w: str, axis: int, b: str | None, out: np.ndarray) -> Effect:
    """New output channels ``out``: their slices of ``w`` (along ``axis``) and of the bias are SOURCE."""
    eff.member(node, w, axis, Role.SOURCE, out)
    if b is not None:
        eff.member(node, b, 0, Role.SOURCE, out)
    return eff.output(node.output[0], Channels.fresh(1, out))


def _kept_filters(
    ctx: GraphIndex,
    node: onnx.NodeProto,
    inputs: Sequence[Channels | None],
    space: ChannelSpace,
    reason: str,
    out_axis: int,
) -> Outcome:
    """A Conv whose weight is computed (timm's weight-standardized convs: a training-mode BatchNorm over
    the reshaped weight): the arriving channels stop, and its filters are a group of their own kept with
    ``reason`` — listed in the report, and tied through residual Adds to the groups they meet (which
    therefore stay too). Slicing the filters exactly would mean slicing every tensor of the weight's
    computation; the width stays."""
    eff = Effect()
    for ch in inputs:
        if ch is not None:
            eff.stop(ch.elements(), reason)
    shape = ctx.shape(node.output[0])
    if shape is None or len(shape) < 2 or out_axis != 0:
        return eff  # width unknown (or ConvTranspose): the outputs stay untracked
    out = space.fresh(node, int(shape[1]))
    eff.stop(out, reason)
    return eff.output(node.output[0], Channels.fresh(1, out))


class _ConvLike(Handler, ABC):
    """Constant weight ``W`` (and bias); input channels index ``W`` along ``in_axis``, filters along
    ``out_axis``. Ungrouped: the arriving channels are DEPENDENT slices, the filters new SOURCE elements."""

    in_axis: ClassVar[int]
    out_axis: ClassVar[int]

    def transfer(
        self, ctx: GraphIndex, node: onnx.NodeProto, inputs: Sequence[Channels | None], space: ChannelSpace
    ) -> Outcome:
        if const_input(ctx, node, 1) is None and all(ch is None for ch in inputs[1:]):
            why = COMPUTED_WEIGHT.format(op=node.op_type, name=node.name)
            return _kept_filters(ctx, node, inputs, space, why, self.out_axis)
        weights = _weights(ctx, node, inputs)
        if isinstance(weights, Stop):
            return weights
        w, b = weights
        group = ctx.int_attr(node, "group", 1)
        if group != 1:
            return self.grouped(ctx, node, inputs[0], group, w, b)
        eff = Effect()
        x = inputs[0]
        if x is not None:
            shape = shape_of(ctx, node.input[0], node)
            if isinstance(shape, Stop):
                return shape
            ids, values = on_axes(eff, node, x, shape, [1])
            nz = nonzero_removed(ids, values)
            if nz.any():
                reason = self.unfoldable(ctx, node, values[nz])
                if reason is None:
                    fold_ids = np.where(nz, ids, -1)
                    eff.folds.append(SlotFold(node.name, node.op_type, w, self.in_axis, b, fold_ids, values))
                else:
                    eff.stop(ids[nz], reason)
            eff.member(node, w, self.in_axis, Role.DEPENDENT, ids)
        out = space.fresh(node, int(ctx.initializers[w].dims[self.out_axis]))
        return _filters(eff, node, w, self.out_axis, b, out)

    @abstractmethod
    def unfoldable(self, ctx: GraphIndex, node: onnx.NodeProto, values: np.ndarray) -> str | None:
        """Why removed input channels holding the non-zero constants ``values`` cannot be folded into the
        bias; None when they can."""

    @abstractmethod
    def grouped(
        self, ctx: GraphIndex, node: onnx.NodeProto, x: Channels | None, group: int, w: str, b: str | None
    ) -> Outcome:
        """The effect of a grouped node (``group > 1``)."""


@register("Conv")
class ConvHandler(_ConvLike):
    in_axis = 1
    out_axis = 0

    def unfoldable(self, ctx: GraphIndex, node: onnx.NodeProto, values: np.ndarray) -> str | None:
        if _unpadded(ctx, node) and not np.isnan(values).any():
            return None
        return f"Conv {node.name!r} is padded and would see a removed channel's constant"

    def grouped(
        self, ctx: GraphIndex, node: onnx.NodeProto, x: Channels | None, group: int, w: str, b: str | None
    ) -> Outcome:
        eff = Effect()
        if x is None:
            return eff  # input channels untracked: no conv-group can go
        shape = shape_of(ctx, node.input[0], node)
        if isinstance(shape, Stop):
            return shape
        ids, _ = on_axes(eff, node, x, shape, [1])
        rows = ids.reshape(group, -1)
        if (rows < 0).any():
            return eff.stop(ids, f"Conv {node.name!r} (group={group}) has conv-groups with kept inputs")
        for j in range(1, rows.shape[1]):
            eff.tie(rows[:, 0], rows[:, j])
        per_group_out = int(ctx.initializers[w].dims[0]) // group
        eff.edits.append(SlotEdit("", 0, node.name, rows[:, 0], attribute="group"))
        return _filters(eff, node, w, 0, b, np.repeat(rows[:, 0], per_group_out))


@register("ConvTranspose")
class ConvTransposeHandler(_ConvLike):
    """``W`` is (C_in, C_out/group, k...): filters on axis 1, input channels on axis 0. Ungrouped only; a
    removed input must be exactly zero (a transposed conv spreads a constant unevenly)."""

    in_axis = 0
    out_axis = 1

    def unfoldable(self, ctx: GraphIndex, node: onnx.NodeProto, values: np.ndarray) -> str | None:
        return f"ConvTranspose {node.name!r} would see a non-zero removed channel"

    def grouped(
        self, ctx: GraphIndex, node: onnx.NodeProto, x: Channels | None, group: int, w: str, b: str | None
    ) -> Outcome:
        return Stop(f"ConvTranspose {node.name!r} is grouped") if x is not None else Effect()
