"""Attention: products of two computed tensors, Softmax, and which Reshapes split channels into heads.

A head is one pruning element. ``Q = X Wq + bq`` (likewise K, V, or one fused QKV projection) is reshaped
``(N, T, H·D) -> (N, T, H, D)`` and transposed to ``(N, H, T, D)``; the attention of head ``h`` is
``O_h = softmax(s · Q_h K_hᵀ + M) V_h`` and ``O`` goes back to ``(N, T, H·D)`` into the output projection.
When the Reshape splits the channels of a tensor that reaches such a product (:func:`splits_heads`), the
labels are tied along ``D`` (the D columns of head ``h`` are one channel) and along a fused ``3`` axis
(Q, K and V of head ``h`` go together), and the *head* entry of the target shrinks; the channels then sit
on the head axis alone, a batch axis of the products below.

Batched MatMul ``A (…, M, K) @ B (…, K, N)`` of two computed tensors (:func:`batched_matmul`):

* channels on the batch axes: ``(A @ B)[b] = A[b] @ B[b]``. Where both carry one, they are tied (removing
  head ``h`` removes ``Q_h`` and ``K_h``, ``P_h`` and ``V_h`` together); a channel on one side only needs
  the other side to broadcast along that axis (size 1), which pruning leaves valid. The removed value is
  0 when either side's is 0 (``P_h V_h = 0`` when ``V_h = 0``, whatever ``P_h`` is), ``K vA vB`` for two
  constants, else not one constant;
* channels on ``A``'s rows (``M``) or ``B``'s columns (``N``), the other side untracked: they move to the
  output's row or column axis, with value 0 when they were 0;
* channels on the contraction axis ``K`` of both, tied index by index: ``A @ B = Σ_k A[:, k] B[k, :]`` loses
  nothing when every removed ``k`` has a zero side; the output carries no channel.

Masked, a removed head has ``Q_h = K_h = V_h = 0`` (weights and biases are SOURCE members): its scores are
the constant 0 (plus a mask that broadcasts over heads), its softmax is uniform, and ``P_h V_h = 0``: the
output projection's rows of head ``h`` see exact zeros and go with it (DEPENDENT). The scale ``1/√D`` does
not change: ``D`` stays.

Softmax / LogSoftmax over an axis carrying no channel act on each channel separately: a constant slice
becomes ``1/n`` (``-log n``); over a labelled axis they mix channels and stop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import onnx

from ..channels import Channels, Shape, broadcast, normalize_axis
from ..index import GraphIndex
from ..registry import Effect, Outcome, Stop, register
from .common import ShapedInputHandler, finite, on_axes, shape_of

# ops a head-split tensor may pass on its way to the attention product: layout, scaling, unbinding
_ON_THE_WAY = frozenset(
    {"Transpose", "Split", "Squeeze", "Unsqueeze", "Gather", "Mul", "Div", "Cast", "Identity", "Slice"}
)
_MAX_HOPS = 6


def _computed_matmul(ctx: GraphIndex, node: onnx.NodeProto) -> bool:
    """A MatMul of two computed tensors (neither operand an initializer)."""
    return node.op_type == "MatMul" and all(not ctx.is_initializer(i) for i in node.input[:2])


def splits_heads(ctx: GraphIndex, tensor: str) -> bool:
    """Whether ``tensor`` (a Reshape output) reaches a MatMul of two computed tensors within a few layout or
    scaling ops: then the split of its channels is into heads (see the module docstring)."""
    frontier, seen = [tensor], {tensor}
    for _ in range(_MAX_HOPS):
        nxt = []
        for t in frontier:
            for user, _port in ctx.users(t):
                if _computed_matmul(ctx, user):
                    return True
                if user.op_type in _ON_THE_WAY:
                    nxt += [o for o in user.output if o and o not in seen]
        seen.update(nxt)
        frontier = nxt
    return False


def _side(ch: Channels | None, rank: int) -> str | None:
    """Which part of a MatMul operand of ``rank`` carries channels: 'batch', 'row' (axis -2), 'col' (axis
    -1), 'mixed' (several parts), None (nothing)."""
    if ch is None:
        return None
    parts = {"batch" if a < rank - 2 else ("row" if a == rank - 2 else "col") for a in ch.axes}
    return parts.pop() if len(parts) == 1 else "mixed"


def _product_value(va: np.ndarray, vb: np.ndarray, k: int) -> np.ndarray:
    """Removed value of ``A @ B`` from the removed values of the operands' slices (NaN: unknown)."""
    with np.errstate(all="ignore"):
        value = finite(va * vb * k)
    return np.where((va == 0) | (vb == 0), 0.0, value)


def batched_matmul(ctx: GraphIndex, node: onnx.NodeProto, inputs: Sequence[Channels | None]) -> Outcome:
    """The effect of ``MatMul(A, B)`` with two computed operands (see the module docstring)."""
    a, b = inputs[0], inputs[1]
    if a is None and b is None:
        return Effect()
    shapes = [shape_of(ctx, i, node) for i in (*node.input[:2], node.output[0])]
    for s in shapes:
        if isinstance(s, Stop):
            return s
    sa, sb, so = (s for s in shapes if not isinstance(s, Stop))
    if len(sa) < 2 or len(sb) < 2:
        return Stop(f"MatMul {node.name!r} multiplies a vector carrying channels")
    side_a, side_b = _side(a, len(sa)), _side(b, len(sb))
    if "mixed" in (side_a, side_b):
        return Stop(f"MatMul {node.name!r} has channels on several parts of one operand")
    if side_a == "col" or side_b == "row":
        return _contraction(node, a, b, sa, sb, side_a, side_b)
    if side_a in (None, "batch") and side_b in (None, "batch"):
        return _batch(node, a, b, sa, sb, so)
    if side_b is None:  # channels on A's rows
        assert a is not None
        return _moved(node, a, len(so) - len(sa))
    if side_a is None:  # channels on B's columns
        assert b is not None
        return _moved(node, b, len(so) - len(sb))
    return Stop(f"MatMul {node.name!r} has channels on different axes of its two operands")


def _moved(node: onnx.NodeProto, x: Channels, shift: int) -> Outcome:
    """Row (column) channels of one operand become the output's row (column) channels (``shift``: the
    output's rank minus the operand's)."""
    values = np.where(x.values == 0, 0.0, np.nan)
    return Effect().output(node.output[0], Channels(tuple(ax + shift for ax in x.axes), x.ids, values))


def _batch(
    node: onnx.NodeProto, a: Channels | None, b: Channels | None, sa: Shape, sb: Shape, so: Shape
) -> Outcome:
    """Channels on the batch axes (heads): tied where both sides carry them."""
    batch_out = so[:-2]
    axes, ids, vals = broadcast([a, b], [sa[:-2], sb[:-2]], batch_out)
    ta, tb = ids[0] >= 0, ids[1] >= 0
    eff = Effect()
    both = ta & tb
    eff.tie(ids[0][both], ids[1][both])
    value = _product_value(vals[0], vals[1], sa[-1])
    out = np.where(ta, ids[0], ids[1])
    for side, mine, other in ((0, ta, tb), (1, tb, ta)):
        alone = mine & ~other
        if not alone.any():
            continue
        other_shape = (sb if side == 0 else sa)[:-2]
        lead = len(batch_out) - len(other_shape)
        spread = all(ax < lead or other_shape[ax - lead] == 1 for ax in axes)
        if not spread:  # the other operand would have to lose the same index: it cannot
            eff.stop(ids[side][alone], f"MatMul {node.name!r} meets a channel with a kept operand")
            out = np.where(alone, -1, out)
        value = np.where(alone, np.where(vals[side] == 0, 0.0, np.nan), value)
    return eff.output(node.output[0], Channels.of(axes, out, value))


def _contraction(
    node: onnx.NodeProto,
    a: Channels | None,
    b: Channels | None,
    sa: Shape,
    sb: Shape,
    side_a: str | None,
    side_b: str | None,
) -> Outcome:
    """Channels on the contraction axis: index ``k`` of A and of B go together; a removed ``k`` must have a
    zero side, and the product carries no channel."""
    if side_a not in (None, "col") or side_b not in (None, "row"):
        return Stop(f"MatMul {node.name!r} has channels on the contraction axis and elsewhere")
    eff = Effect()
    ids_a, vals_a = on_axes(eff, node, a, sa, [len(sa) - 1]) if a is not None else _none(sa[-1])
    ids_b, vals_b = on_axes(eff, node, b, sb, [len(sb) - 2]) if b is not None else _none(sb[-2])
    ta, tb = ids_a >= 0, ids_b >= 0
    eff.stop(np.concatenate([ids_a[ta & ~tb], ids_b[tb & ~ta]]), f"MatMul {node.name!r} contracts a channel "
             "with a kept operand")  # fmt: skip
    both = ta & tb
    eff.tie(ids_a[both], ids_b[both])
    nonzero = both & (vals_a != 0) & (vals_b != 0)
    eff.stop(ids_a[nonzero], f"MatMul {node.name!r} contracts removed channels that are not zero")
    return eff


def _none(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full(n, -1, dtype=np.int64), np.zeros(n)


@register("Softmax", "LogSoftmax")
class SoftmaxHandler(ShapedInputHandler):
    """Softmax over axes carrying no channel: per channel; a constant slice of ``n`` becomes ``1/n``."""

    def apply_shaped(self, ctx: GraphIndex, node: onnx.NodeProto, x: Channels, shape: Shape) -> Outcome:
        rank = len(shape)
        if ctx.opset() >= 13:
            axis = normalize_axis(ctx.int_attr(node, "axis", -1), rank)
            mixed = [axis]
        else:  # opsets < 13 flatten the axes from ``axis`` on into one softmax
            axis = normalize_axis(ctx.int_attr(node, "axis", 1), rank)
            mixed = list(range(axis, rank))
        if set(mixed) & set(x.axes):
            return Stop(f"{node.op_type} {node.name!r} normalizes across the channels")
        n = math.prod(shape[i] for i in mixed)
        const = 1.0 / n if node.op_type == "Softmax" else -math.log(n)
        values = np.where(np.isnan(x.values), np.nan, const)
        return Effect().output(node.output[0], Channels(x.axes, x.ids, values))
