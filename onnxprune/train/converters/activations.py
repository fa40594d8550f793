"""Gelu (opset 20), which onnx2torch does not know: ``y = x·Φ(x)`` (``approximate='none'``) or its tanh
approximation (``'tanh'``), exactly torch's ``F.gelu`` of the same name. torch's dynamo exporter and
onnxscript write it for ``nn.GELU``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .common import result
from .registry import converter

__all__ = ["Gelu"]


class Gelu(nn.Module):
    def __init__(self, approximate: str) -> None:
        super().__init__()
        self.approximate = approximate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x, approximate=self.approximate)


@converter("Gelu", 20)
def _gelu(node: Any, graph: Any, base: Any) -> Any:
    approximate = str(node.attributes.get("approximate", "none"))
    if approximate not in ("none", "tanh"):
        raise NotImplementedError(f"Gelu approximate={approximate!r} is not supported")
    return result(Gelu(approximate), node.input_values, node.output_values)
