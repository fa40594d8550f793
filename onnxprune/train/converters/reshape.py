"""Flatten at any axis; Reshape with ``allowzero=1``.

ONNX Flatten makes a 2-D ``(prod(shape[:axis]), prod(shape[axis:]))`` tensor for every axis in
[-r, r]; axis 0 gives ``(1, numel)``. onnx2torch flattens ``[0, axis)`` and then from dim 1, which fails
for axis 0 (the 1-D intermediate has no dim 1: a Hugging Face BERT's graph has one) and is wrong for a
negative axis. Here it is one reshape.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .common import result
from .registry import converter

__all__ = ["Flatten", "ReshapeAllowZero"]


class Flatten(nn.Module):
    """``x.reshape(prod(shape[:axis]), prod(shape[axis:]))``; ``nn.Flatten`` semantics for axis 1."""

    def __init__(self, axis: int) -> None:
        super().__init__()
        self.axis = axis

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        axis = self.axis + x.dim() if self.axis < 0 else self.axis
        if axis == 0:
            return x.reshape(1, -1)
        if axis == x.dim():
            return x.reshape(-1, 1)
        return torch.flatten(torch.flatten(x, 0, axis - 1), 1)


@converter("Flatten", 1, 9, 11, 13, 21)
def _flatten(node: Any, graph: Any, base: Any) -> Any:
    axis = int(node.attributes.get("axis", 1))
    if axis == 1 and base is not None:
        return base(node, graph)  # nn.Flatten(1): what onnx2torch builds, exact
    return result(Flatten(axis), node.input_values, node.output_values)


class ReshapeAllowZero(nn.Module):
    """ONNX Reshape with ``allowzero=1``: a 0 in ``shape`` is a dim of size 0 (not "copy the input's
    dim"), -1 is inferred: exactly ``torch.reshape``."""

    def forward(self, x: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        return torch.reshape(x, [int(d) for d in shape.tolist()])


@converter("Reshape", 14, 19, 21)
def _reshape(node: Any, graph: Any, base: Any) -> Any:
    """onnx2torch's Reshape (opset 14's for 19 and 21: they only add types), ours with ``allowzero=1``
    (torch's dynamo exporter writes it on every Reshape)."""
    if int(node.attributes.get("allowzero", 0)) != 0:
        return result(ReshapeAllowZero(), node.input_values[:2], node.output_values)
    if base is not None:
        return base(node, graph)
    from .versions import older_converter

    return older_converter("Reshape", 14)(node, graph)
