"""Clip with omitted, constant or computed bounds.

``y = min(max(x, lo), hi)`` (ONNX's definition; ``hi`` wins when ``lo > hi``), an omitted bound being no
bound. onnx2torch looks an *empty* optional input ('' — ``Clip(x, min, '')``, F.normalize's clamp_min in
Swin-v2's cosine attention) up as a constant and fails, and refuses computed bounds (a data-dependent
Clip). Here a constant bound is a Python number baked into the module, in the tensor's own dtype (an
integer Clip of shape arithmetic stays integer), and a computed one is an input of the module.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .common import const_value, is_empty, result
from .registry import converter

__all__ = ["Clip"]


class Clip(nn.Module):
    """``min(max(x, lo), hi)``; ``lo``/``hi`` are the constant bounds, ``min``/``max`` the computed ones."""

    def __init__(self, lo: float | int | None, hi: float | int | None) -> None:
        super().__init__()
        self.lo = lo
        self.hi = hi

    def forward(
        self, x: torch.Tensor, min: torch.Tensor | None = None, max: torch.Tensor | None = None
    ) -> torch.Tensor:
        lo = self.lo if min is None else min
        hi = self.hi if max is None else max
        if lo is not None:
            x = torch.clamp(x, min=lo)
        if hi is not None:
            x = torch.clamp(x, max=hi)
        return x


@converter("Clip", 11, 12, 13)
def _clip(node: Any, graph: Any, base: Any) -> Any:
    ins = list(node.input_values) + [""] * (3 - len(node.input_values))
    bounds: list[float | int | None] = []
    inputs = [ins[0]]
    for name in ins[1:3]:
        value = None if is_empty(name) else const_value(name, graph)
        if is_empty(name) or value is not None:
            bounds.append(None if value is None else value.item())
            inputs.append("")  # constant or omitted: not an input of the module
        else:
            bounds.append(None)
            inputs.append(name)  # computed at run time
    while inputs[-1] == "":
        inputs.pop()
    return result(Clip(bounds[0], bounds[1]), tuple(inputs), node.output_values)
