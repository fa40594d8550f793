"""Gemm and MatMul with constant weights: output units are channels; input features consume them.

``Y = alpha * A @ op(B) + beta * C``, ``op(B) = B.T`` when ``transB``. Output unit ``n`` is column ``n`` of
``op(B)``: row ``n`` of ``B`` when ``transB=1``, column ``n`` otherwise, plus ``C[n]``. Input feature ``k``
(a column of ``A``) meets row ``k`` of ``op(B)``; when it is always zero that row can go. When it is a
constant ``v``, ``C'[n] = C[n] + (alpha / beta) v op(B)[k, n]`` keeps the output exact (a Fold).
MatMul has no bias to fold into: a removed input feature must be exactly zero. A MatMul of two computed
tensors (attention's scores and mixing) follows :func:`~onnxprune.graph.handlers.attention.batched_matmul`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx

from ...plan import Role
from ..channels import Channels
from ..index import GraphIndex
from ..registry import ChannelSpace, Effect, Handler, Outcome, SlotFold, Stop, register
from .attention import batched_matmul
from .common import const_input, nonzero_removed, on_axes, optional_input, shape_of


def _units_axis(ctx: GraphIndex, node: onnx.NodeProto) -> int:
    """Axis of ``B`` that indexes output units."""
    return 0 if ctx.int_attr(node, "transB", 0) else 1


@register("Gemm")
class GemmHandler(Handler):
    def transfer(
        self, ctx: GraphIndex, node: onnx.NodeProto, inputs: Sequence[Channels | None], space: ChannelSpace
    ) -> Outcome:
        if any(ch is not None for ch in inputs[1:]):
            return Stop(f"Gemm {node.name!r} takes the channels in its weight or bias")
        b = const_input(ctx, node, 1)
        c_name = optional_input(node, 2)
        c = const_input(ctx, node, 2)
        alpha = float(ctx.attr(node, "alpha", 1.0))  # type: ignore[arg-type]
        beta = float(ctx.attr(node, "beta", 1.0))  # type: ignore[arg-type]
        eff = Effect()
        a = inputs[0]
        if a is not None:
            if b is None or ctx.int_attr(node, "transA", 0):
                return Stop(f"Gemm {node.name!r} takes the channels in a computed or transposed operand")
            shape = shape_of(ctx, node.input[0], node)
            if isinstance(shape, Stop):
                return shape
            ids, values = on_axes(eff, node, a, shape, [1])
            nz = nonzero_removed(ids, values)
            in_axis = 1 - _units_axis(ctx, node)
            if nz.any():
                if beta != 0.0 and (c_name is None or c is not None) and not np.isnan(values[nz]).any():
                    fold_ids = np.where(nz, ids, -1)
                    eff.folds.append(
                        SlotFold(node.name, "Gemm", b, in_axis, c_name, fold_ids, values, alpha / beta)
                    )
                else:
                    eff.stop(ids[nz], f"Gemm {node.name!r} cannot fold a removed feature's constant")
            eff.member(node, b, in_axis, Role.DEPENDENT, ids)
        if b is None:
            return eff  # an activation-activation product, not a layer
        axis = _units_axis(ctx, node)
        units = int(ctx.initializers[b].dims[axis])
        if c_name is not None and c is None:
            return eff  # computed bias: the units stay
        if c is not None:
            shape_c = tuple(ctx.initializers[c].dims)
            if shape_c not in ((units,), (1, units)) and np.any(ctx.array(c) != 0):
                return eff  # a bias shared by all units: a removed unit would not be zero
        out = space.fresh(node, units)
        eff.member(node, b, axis, Role.SOURCE, out)
        if c is not None and tuple(ctx.initializers[c].dims) in ((units,), (1, units)):
            eff.member(node, c, len(ctx.initializers[c].dims) - 1, Role.SOURCE, out)
        return eff.output(node.output[0], Channels.fresh(1, out))


@register("MatMul")
class MatMulHandler(Handler):
    def transfer(
        self, ctx: GraphIndex, node: onnx.NodeProto, inputs: Sequence[Channels | None], space: ChannelSpace
    ) -> Outcome:
        b = const_input(ctx, node, 1)
        if b is None and const_input(ctx, node, 0) is None:
            return batched_matmul(ctx, node, inputs)  # two computed operands: attention's products
        if inputs[1] is not None or (
            inputs[0] is not None and (b is None or len(ctx.initializers[b].dims) != 2)
        ):
            return Stop(f"MatMul {node.name!r} multiplies the channels by a computed or batched operand")
        eff = Effect()
        if inputs[0] is not None and b is not None:
            shape = shape_of(ctx, node.input[0], node)
            if isinstance(shape, Stop):
                return shape
            ids, values = on_axes(eff, node, inputs[0], shape, [len(shape) - 1])
            eff.stop(
                ids[nonzero_removed(ids, values)], f"MatMul {node.name!r} has no bias to fold a constant into"
            )
            eff.member(node, b, 0, Role.DEPENDENT, ids)
        if b is None or const_input(ctx, node, 0) is not None or len(ctx.initializers[b].dims) != 2:
            return eff
        out_shape = shape_of(ctx, node.output[0], node)
        if isinstance(out_shape, Stop):
            return eff
        out = space.fresh(node, int(ctx.initializers[b].dims[1]))
        eff.member(node, b, 1, Role.SOURCE, out)
        return eff.output(node.output[0], Channels.fresh(len(out_shape) - 1, out))
