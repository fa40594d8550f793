"""Base classes and small helpers shared by the handlers."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import onnx

from ..channels import Channels, Shape, collapse
from ..index import GraphIndex
from ..registry import ChannelSpace, Effect, Handler, Outcome, Stop


def const_input(ctx: GraphIndex, node: onnx.NodeProto, port: int) -> str | None:
    """Name of input ``port`` when it is an initializer, else None."""
    if port < len(node.input) and node.input[port] and ctx.is_initializer(node.input[port]):
        return node.input[port]
    return None


def optional_input(node: onnx.NodeProto, port: int) -> str | None:
    return node.input[port] if port < len(node.input) and node.input[port] else None


def ints_from(ctx: GraphIndex, node: onnx.NodeProto, port: int, attr: str) -> list[int] | Stop | None:
    """An int list given as attribute ``attr`` (old opsets) or constant input ``port`` (new ones);
    None when absent, Stop when computed."""
    if optional_input(node, port) is not None:
        c = const_input(ctx, node, port)
        if c is None:
            return Stop(f"{node.op_type} {node.name!r} has a computed {attr}")
        return [int(v) for v in ctx.array(c).reshape(-1)]
    value = ctx.attr(node, attr)
    return None if value is None else [int(v) for v in value]  # type: ignore[attr-defined]


def shape_of(ctx: GraphIndex, name: str, node: onnx.NodeProto) -> Shape | Stop:
    s = ctx.shape(name)
    return s if s is not None else Stop(f"{node.op_type} {node.name!r}: the shape of {name!r} is unknown")


def only_first_output_used(ctx: GraphIndex, node: onnx.NodeProto) -> bool:
    return all(not o or (not ctx.users(o) and o not in ctx.outputs) for o in node.output[1:])


def on_axes(
    effect: Effect, node: onnx.NodeProto, ch: Channels, shape: Shape, axes: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Labels of ``ch`` reduced to ``axes`` (ties along the other labelled axes recorded in ``effect``)."""
    c = collapse(ch, shape, axes)
    for a, b in c.ties:
        effect.tie(a, b)
    effect.stop(c.mixed, f"{node.op_type} {node.name!r} mixes removable and kept values in one channel")
    return c.ids, c.values


def nonzero_removed(ids: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Mask of tracked indices whose removed value is not exactly zero (NaN included)."""
    return (ids >= 0) & ~(values == 0.0)


def finite(values: np.ndarray) -> np.ndarray:
    """Removed values with every non-finite entry turned into NaN ('not one constant')."""
    with np.errstate(all="ignore"):
        out = np.asarray(values, dtype=np.float64)
        return np.where(np.isfinite(out), out, np.nan)


class DataInputHandler(Handler, ABC):
    """An op whose channels arrive on input 0 only; its other inputs are parameters (bounds, sizes, axes).

    Nothing arriving on input 0: nothing to do. Channels arriving on a parameter stop; so do those on input
    0 while an output other than the first is in use (``single_output``: Dropout's mask, MaxPool's indices
    would carry values this rule does not follow). Otherwise :meth:`apply` maps them.
    """

    single_output: ClassVar[bool] = True

    def transfer(
        self, ctx: GraphIndex, node: onnx.NodeProto, inputs: Sequence[Channels | None], space: ChannelSpace
    ) -> Outcome:
        if any(ch is not None for ch in inputs[1:]):  # even with nothing on input 0: never drop channels
            return Stop(f"{node.op_type} {node.name!r} takes the channels as a parameter")
        x = inputs[0]
        if x is None:
            return Effect()
        if self.single_output and not only_first_output_used(ctx, node):
            return Stop(f"{node.op_type} {node.name!r} has extra outputs in use")
        return self.apply(ctx, node, x)

    @abstractmethod
    def apply(self, ctx: GraphIndex, node: onnx.NodeProto, x: Channels) -> Outcome:
        """The effect of ``node`` when the channels ``x`` arrive on its data input."""


class ShapedInputHandler(DataInputHandler):
    """A :class:`DataInputHandler` that needs the data input's shape: an unknown one stops the channels."""

    def apply(self, ctx: GraphIndex, node: onnx.NodeProto, x: Channels) -> Outcome:
        shape = shape_of(ctx, node.input[0], node)
        if isinstance(shape, Stop):
            return shape
        return self.apply_shaped(ctx, node, x, shape)

    @abstractmethod
    def apply_shaped(self, ctx: GraphIndex, node: onnx.NodeProto, x: Channels, shape: Shape) -> Outcome:
        """The effect of ``node`` when the channels ``x`` arrive on its data input of shape ``shape``."""


class ShapeChangingHandler(ShapedInputHandler):
    """A :class:`ShapedInputHandler` for an op that changes the shape: it needs the (first) output's too."""

    def apply_shaped(self, ctx: GraphIndex, node: onnx.NodeProto, x: Channels, shape: Shape) -> Outcome:
        out = shape_of(ctx, node.output[0], node)
        if isinstance(out, Stop):
            return out
        return self.apply_shapes(ctx, node, x, shape, out)

    @abstractmethod
    def apply_shapes(
        self, ctx: GraphIndex, node: onnx.NodeProto, x: Channels, shape: Shape, out: Shape
    ) -> Outcome:
        """The effect of ``node`` when the channels ``x`` arrive on its data input; ``shape`` -> ``out``."""


class AnyInputHandler(Handler, ABC):
    """An op that may take channels on any of its inputs and creates none: nothing arriving, nothing to do."""

    def transfer(
        self, ctx: GraphIndex, node: onnx.NodeProto, inputs: Sequence[Channels | None], space: ChannelSpace
    ) -> Outcome:
        if all(ch is None for ch in inputs):
            return Effect()
        return self.apply(ctx, node, inputs)

    @abstractmethod
    def apply(self, ctx: GraphIndex, node: onnx.NodeProto, inputs: Sequence[Channels | None]) -> Outcome:
        """The effect of ``node`` when channels arrive on at least one of ``inputs``."""
