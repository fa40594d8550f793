"""Small helpers shared by the handlers."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx

from ..channels import Channels, Shape, collapse
from ..index import GraphIndex
from ..registry import Effect, Stop


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
