"""Elementwise ops: the channels pass through, and so does the value a removed channel takes.

* Unary ``f``: a removed channel that was the constant ``v`` becomes ``f(v)`` (``Relu(0) = 0``,
  ``Sigmoid(0) = 0.5``). Consumers decide whether a non-zero constant can be folded (Conv, Gemm) or keeps
  the channel. An op whose ``f`` is not known here passes only exact zeros of zero-preserving ops.
* Binary ``x ∘ k`` with a constant ``k``: ``x + k_c`` / ``x - k_c`` with a per-channel ``k`` make ``k`` a
  SOURCE member (zeroed with the channel); a shared ``k`` shifts the removed value. ``x * k``, ``x / k``,
  ``PRelu(x, slope)`` slice a per-channel ``k`` (DEPENDENT) and scale the removed value.
* Binary ``x ∘ y`` of two computed tensors: where both carry channels they are *tied* — a residual
  ``Add`` (filter ``c`` of both branches goes together) or an SE gate ``x * g`` (the gate's channel ``c``
  goes with ``x``'s, ``0 * g = 0``). Where only one side carries a channel, the other must broadcast
  along the channel axes (size 1: an attention mask ``(N, 1, 1, T)`` added to every head's scores, a
  per-sample scale), else it would have to lose the index too and the channel stays. The removed value
  is then 0 for ``0 * y`` and ``0 / y``, unknown (NaN) for ``v + y``: consumers that need it keep it.
* ``Where(cond, x, y)`` follows the same rules over three operands (a ``masked_fill``, the NaN guard
  ``Where(IsNaN(p), 0, p)`` after an attention softmax); ``Pow`` with a constant exponent maps values.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Callable, Sequence

import numpy as np
import onnx

from ...plan import Role
from ..channels import Channels, broadcast
from ..index import GraphIndex
from ..registry import Effect, Outcome, Stop, register
from .common import AnyInputHandler, DataInputHandler, const_input, finite, shape_of

Attrs = Callable[[str, float], float]
_erf = np.vectorize(math.erf, otypes=[np.float64])


def _softplus(v: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, v)


UNARY: dict[str, Callable[[np.ndarray, Attrs], np.ndarray]] = {
    "Relu": lambda v, a: np.maximum(v, 0.0),
    "LeakyRelu": lambda v, a: np.where(v >= 0, v, a("alpha", 0.01) * v),
    "Elu": lambda v, a: np.where(v >= 0, v, a("alpha", 1.0) * np.expm1(v)),
    "Selu": lambda v, a: (
        a("gamma", 1.0507009873554805) * np.where(v > 0, v, a("alpha", 1.6732632423543772) * np.expm1(v))
    ),
    "Celu": lambda v, a: np.maximum(v, 0) + np.minimum(0, a("alpha", 1.0) * np.expm1(v / a("alpha", 1.0))),
    "ThresholdedRelu": lambda v, a: np.where(v > a("alpha", 1.0), v, 0.0),
    "Tanh": lambda v, a: np.tanh(v),
    "Sigmoid": lambda v, a: 1.0 / (1.0 + np.exp(-v)),
    "HardSigmoid": lambda v, a: np.clip(a("alpha", 0.2) * v + a("beta", 0.5), 0.0, 1.0),
    "HardSwish": lambda v, a: v * np.clip(v / 6.0 + 0.5, 0.0, 1.0),
    "Softplus": lambda v, a: _softplus(v),
    "Softsign": lambda v, a: v / (1.0 + np.abs(v)),
    "Mish": lambda v, a: v * np.tanh(_softplus(v)),
    "Gelu": lambda v, a: 0.5 * v * (1.0 + _erf(v / math.sqrt(2.0))),
    "Erf": lambda v, a: _erf(v),
    "Abs": lambda v, a: np.abs(v),
    "Neg": lambda v, a: -v,
    "Exp": lambda v, a: np.exp(v),
    "Log": lambda v, a: np.log(v),
    "Sqrt": lambda v, a: np.sqrt(v),
    "Reciprocal": lambda v, a: 1.0 / v,
    "Sin": lambda v, a: np.sin(v),
    "Cos": lambda v, a: np.cos(v),
    "Floor": lambda v, a: np.floor(v),
    "Ceil": lambda v, a: np.ceil(v),
    "Round": lambda v, a: np.round(v),
    "Sign": lambda v, a: np.sign(v),
    "Identity": lambda v, a: v,
    "IsNaN": lambda v, a: np.where(np.isnan(v), np.nan, 0.0),  # a known removed value is finite
    "IsInf": lambda v, a: np.where(np.isnan(v), np.nan, 0.0),
    "Dropout": lambda v, a: v,  # inference: identity
}


def _gelu_tanh(v: np.ndarray, a: Attrs) -> np.ndarray:
    return 0.5 * v * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (v + 0.044715 * v**3)))


class _ValueMap(DataInputHandler):
    """The labels pass unchanged; a removed channel's value ``v`` becomes ``f(v)``."""

    def apply(self, ctx: GraphIndex, node: onnx.NodeProto, x: Channels) -> Outcome:
        values = self.map(ctx, node, x.values)
        if isinstance(values, Stop):
            return values
        return Effect().output(node.output[0], Channels(x.axes, x.ids, values))

    @abstractmethod
    def map(self, ctx: GraphIndex, node: onnx.NodeProto, values: np.ndarray) -> np.ndarray | Stop:
        """``f`` applied to the removed values (NaN: not one constant)."""


@register(*UNARY)
class UnaryHandler(_ValueMap):
    def map(self, ctx: GraphIndex, node: onnx.NodeProto, values: np.ndarray) -> np.ndarray:
        if node.op_type == "Gelu" and ctx.attr(node, "approximate", b"none") not in (b"none", "none"):
            f: Callable[[np.ndarray, Attrs], np.ndarray] = _gelu_tanh
        else:
            f = UNARY[node.op_type]

        def attr(name: str, default: float) -> float:
            return float(ctx.attr(node, name, default))  # type: ignore[arg-type]

        with np.errstate(all="ignore"):
            return finite(f(values, attr))


@register("Cast")
class CastHandler(_ValueMap):
    """A cast to a float type keeps values; to an integer type only exact zeros stay exact."""

    FLOATS = (
        onnx.TensorProto.FLOAT,
        onnx.TensorProto.DOUBLE,
        onnx.TensorProto.FLOAT16,
        onnx.TensorProto.BFLOAT16,
    )

    def map(self, ctx: GraphIndex, node: onnx.NodeProto, values: np.ndarray) -> np.ndarray:
        if ctx.int_attr(node, "to", onnx.TensorProto.FLOAT) in self.FLOATS:
            return values
        return np.where(values == 0, 0.0, np.nan)


@register("Pow")
class PowHandler(_ValueMap):
    """``x ** p`` with a constant scalar exponent (GELU's tanh form cubes ``x``): a removed value ``v``
    becomes ``v ** p``."""

    def map(self, ctx: GraphIndex, node: onnx.NodeProto, values: np.ndarray) -> np.ndarray | Stop:
        p = const_input(ctx, node, 1)
        if p is None or ctx.array(p).size != 1:
            return Stop(f"Pow {node.name!r} has a computed or non-scalar exponent")
        with np.errstate(all="ignore"):
            return finite(np.power(values, float(ctx.array(p).reshape(-1)[0])))


@register("Clip")
class ClipHandler(_ValueMap):
    """``Clip(v) = min(max(v, lo), hi)`` with bounds from attributes (opset < 11) or constant inputs."""

    def map(self, ctx: GraphIndex, node: onnx.NodeProto, values: np.ndarray) -> np.ndarray | Stop:
        bounds: list[float] = []
        for port, name, default in ((1, "min", -np.inf), (2, "max", np.inf)):
            if port < len(node.input) and node.input[port]:
                c = const_input(ctx, node, port)
                if c is None:
                    return Stop(f"Clip {node.name!r} has a computed {name}")
                bounds.append(float(ctx.array(c)))
            else:
                bounds.append(float(ctx.attr(node, name, default)))  # type: ignore[arg-type]
        return np.minimum(np.maximum(values, bounds[0]), bounds[1])


def _const_on_grid(k: np.ndarray, out_shape: tuple[int, ...], axes: tuple[int, ...]) -> np.ndarray:
    """Values of constant ``k`` (broadcast to ``out_shape``) over ``axes``; NaN where it varies elsewhere."""
    full = np.broadcast_to(k.reshape((1,) * (len(out_shape) - k.ndim) + k.shape), out_shape)
    other = tuple(a for a in range(len(out_shape)) if a not in axes)
    first = full[tuple(slice(0, 1) if a in other else slice(None) for a in range(len(out_shape)))]
    same = np.all(full == first, axis=other) if other else np.ones(first.shape, dtype=bool)
    grid = first.reshape(tuple(out_shape[a] for a in axes)).astype(np.float64)
    return np.where(same.reshape(grid.shape), grid, np.nan)


def _const_member_axis(
    k_shape: tuple[int, ...], out_shape: tuple[int, ...], axes: tuple[int, ...]
) -> int | Stop | None:
    """Axis of the constant that runs along the (single) labelled axis; None when it broadcasts over it."""
    varying = [
        a
        for a in axes
        if a - (len(out_shape) - len(k_shape)) >= 0 and k_shape[a - (len(out_shape) - len(k_shape))] > 1
    ]
    if not varying:
        return None
    if len(axes) != 1:
        return Stop("a per-channel constant meets channels spread over several axes")
    return varying[0] - (len(out_shape) - len(k_shape))


def _spreads(shape: tuple[int, ...], out_shape: tuple[int, ...], axes: tuple[int, ...]) -> bool:
    """An operand of ``shape`` broadcasts along every output axis of ``axes`` (size 1 or absent there)."""
    lead = len(out_shape) - len(shape)
    return all(a < lead or shape[a - lead] == 1 for a in axes)


Combine = Callable[[np.ndarray, np.ndarray], np.ndarray]
_OPS: dict[str, Combine] = {
    "Add": np.add,
    "Sub": np.subtract,
    "Mul": np.multiply,
    "Div": np.divide,
    "PRelu": lambda x, s: np.where(x >= 0, x, x * s),
}


@register("Add", "Sub", "Mul", "Div", "PRelu")
class BinaryHandler(AnyInputHandler):
    def apply(self, ctx: GraphIndex, node: onnx.NodeProto, inputs: Sequence[Channels | None]) -> Outcome:
        op = node.op_type
        if len(node.input) != 2:
            return Stop(f"{op} {node.name!r} is not a binary op")
        shapes = [shape_of(ctx, i, node) for i in node.input]
        out_shape = shape_of(ctx, node.output[0], node)
        for s in (*shapes, out_shape):
            if isinstance(s, Stop):
                return s
        in_shapes = [s for s in shapes if not isinstance(s, Stop)]
        assert not isinstance(out_shape, Stop)
        axes, ids, vals = broadcast(inputs, in_shapes, out_shape)
        consts = [const_input(ctx, node, p) for p in (0, 1)]
        eff = Effect()
        known = list(vals)
        for p, k in enumerate(consts):
            if k is None:
                continue
            karr = ctx.array(k)
            axis = _const_member_axis(karr.shape, out_shape, axes)
            if isinstance(axis, Stop):
                return Stop(f"{op} {node.name!r}: {axis.reason}")
            other_ids = ids[1 - p]
            known[p] = _const_on_grid(karr, out_shape, axes)
            if axis is None:
                continue
            if op in ("Add", "Sub"):
                eff.member(node, k, axis, Role.SOURCE, other_ids)  # zeroed with the channel
                known[p] = np.where(other_ids >= 0, 0.0, known[p])
            else:
                eff.member(node, k, axis, Role.DEPENDENT, other_ids)
        spread = (_spreads(in_shapes[1], out_shape, axes), _spreads(in_shapes[0], out_shape, axes))
        return self._combine(node, op, ids, known, consts, axes, eff, spread)

    def _combine(
        self,
        node: onnx.NodeProto,
        op: str,
        ids: list[np.ndarray],
        vals: list[np.ndarray],
        consts: list[str | None],
        axes: tuple[int, ...],
        eff: Effect,
        spread: tuple[bool, bool],
    ) -> Effect:
        """``spread[p]``: the operand other than ``p`` broadcasts along every labelled axis (size 1)."""
        a, b = ids
        ta, tb = a >= 0, b >= 0
        with np.errstate(all="ignore"):
            value = finite(_OPS[op](vals[0], vals[1]))
        out = np.where(ta, a, b)
        both = ta & tb
        if both.any():
            if op in ("Add", "Sub", "Mul") or (op == "Div" and np.all(vals[1][both] != 0)):
                eff.tie(a[both], b[both])
            else:
                eff.stop(
                    np.concatenate([a[both], b[both]]), f"{op} {node.name!r} combines channels it cannot tie"
                )
                out = np.where(both, -1, out)
            if op == "Mul":  # 0 * anything is 0, even when the other removed value is not a constant
                zero = both & ((vals[0] == 0) | (vals[1] == 0))
                value = np.where(zero, 0.0, value)
        for side, mine, other_tracked in ((0, ta, tb), (1, tb, ta)):
            alone = mine & ~other_tracked
            if not alone.any() or consts[1 - side] is not None:
                continue  # the other operand is a constant: its value is known
            if not spread[side]:  # the kept tensor has the index too and would have to lose it
                reason = f"{op} {node.name!r} combines a removable channel with a kept tensor"
                eff.stop(ids[side][alone], reason)
                out = np.where(alone, -1, out)
                continue
            # the kept tensor broadcasts over the channels (an attention mask over heads): removing
            # one leaves the op valid; its value is 0 where 0 * y, 0 / y, PRelu(0, s) = 0, else unknown
            zero = (vals[side] == 0) & (op == "Mul" or (op in ("Div", "PRelu") and side == 0))
            value = np.where(alone, np.where(zero, 0.0, np.nan), value)
        if op in ("Div", "PRelu"):  # channels arriving as the divisor or slope cannot go
            bad = tb & ~ta if op == "Div" else tb
            if bad.any():
                eff.stop(
                    b[bad],
                    f"{op} {node.name!r} takes channels as its {'divisor' if op == 'Div' else 'slope'}",
                )
                out = np.where(bad & ~ta, -1, out)
        ch = Channels.of(axes, out, value)
        return eff.output(node.output[0], ch)


@register("Where")
class WhereHandler(AnyInputHandler):
    """``Where(cond, x, y)``: a ``masked_fill`` of attention scores, the NaN guard after a softmax
    (``Where(IsNaN(p), 0, p)``). The output at an index depends on the three operands at that index only:
    where several carry channels they are tied; an operand without a channel there must broadcast along
    the channel axes (a mask over keys, a fill constant), else it would have to lose the index too. A
    removed value is the branch the condition picks when its value is known, else known only if both
    branches agree."""

    def apply(self, ctx: GraphIndex, node: onnx.NodeProto, inputs: Sequence[Channels | None]) -> Outcome:
        shapes = [shape_of(ctx, i, node) for i in (*node.input, node.output[0])]
        for sh in shapes:
            if isinstance(sh, Stop):
                return sh
        *in_shapes, out_shape = (sh for sh in shapes if not isinstance(sh, Stop))
        axes, ids, vals = broadcast(inputs, in_shapes, out_shape)
        eff = Effect()
        out = np.full(ids[0].shape, -1, dtype=np.int64)
        for grid_ids in ids:
            both = (out >= 0) & (grid_ids >= 0)
            eff.tie(out[both], grid_ids[both])
            out = np.where(out >= 0, out, grid_ids)
        known = []
        for p, (ch, grid_ids) in enumerate(zip(inputs, ids, strict=True)):
            if (out >= 0).any() and not _spreads(in_shapes[p], out_shape, axes):
                lone = (out >= 0) & (grid_ids < 0)
                eff.stop(out[lone], f"Where {node.name!r} selects between a channel and a kept tensor")
                out = np.where(lone, -1, out)
            k = const_input(ctx, node, p)
            const = _const_on_grid(ctx.array(k), out_shape, axes) if k is not None else np.nan
            known.append(
                np.where(grid_ids >= 0, vals[p], const) if ch is not None else np.full(out.shape, const)
            )
        c, x, y = known
        agree = np.where(x == y, x, np.nan)
        value = np.where(np.isnan(c), agree, np.where(c != 0, x, y))
        return eff.output(node.output[0], Channels.of(axes, out, value))


@register("Sum")
class SumHandler(AnyInputHandler):
    """Variadic Add of computed tensors: every labelled input is tied at each index."""

    def apply(self, ctx: GraphIndex, node: onnx.NodeProto, inputs: Sequence[Channels | None]) -> Outcome:
        shapes = [ctx.shape(i) for i in node.input]
        out_shape = ctx.shape(node.output[0])
        if (
            out_shape is None
            or any(s is None for s in shapes)
            or any(const_input(ctx, node, p) for p in range(len(node.input)))
        ):
            return Stop(f"Sum {node.name!r} has unknown shapes or constant operands")
        axes, ids, vals = broadcast(inputs, [s for s in shapes if s is not None], out_shape)
        stacked = np.stack(ids)
        tracked = stacked >= 0
        eff = Effect()
        full = tracked.all(axis=0)
        mixed = tracked.any(axis=0) & ~full
        eff.stop(stacked[:, mixed], f"Sum {node.name!r} adds a removable channel to a kept tensor")
        for other in ids[1:]:
            eff.tie(ids[0][full], other[full])
        value = finite(np.sum(np.stack(vals), axis=0))
        return eff.output(node.output[0], Channels.of(axes, np.where(full, ids[0], -1), value))
