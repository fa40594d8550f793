"""Conv whose weight (or bias) is computed: the weight is an input of the module at run time.

onnx2torch builds ``nn.Conv{1,2,3}d`` from the weight *initializer* and fails (``KeyError``) when the
weight is the output of other nodes — timm's weight-standardized convs (NF-Nets, ``ScaledStdConv2d``)
compute it from a parameter each call:

    W' = BatchNorm_train(W.reshape(1, C_out, -1)) · gain          (per filter: zero mean, unit variance)
    y  = conv(x, W'.reshape(W.shape), b)

Here such a Conv is ``F.conv{1,2,3}d(pad(x), w, b, strides, dilations, group)`` with ``w`` and ``b`` read
from the graph at run time, so gradients flow into whatever computes them. Pads follow ONNX: explicit
``pads`` (begin..., end...; asymmetric ones by an explicit ``F.pad``), or ``auto_pad`` SAME_UPPER /
SAME_LOWER computed from each call's input size (the odd pad at the end / the beginning), or VALID. A Conv
with constant weight and bias stays onnx2torch's (an ``nn.Conv`` the importer binds by name).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .common import const_value, is_empty, result
from .registry import converter

__all__ = ["RuntimeConv", "same_pads"]

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def same_pads(size: int, kernel: int, stride: int, dilation: int, upper: bool) -> tuple[int, int]:
    """ONNX ``auto_pad`` SAME_*: output ``ceil(size / stride)``; total pad
    ``max((out − 1)·stride + (kernel − 1)·dilation + 1 − size, 0)``, the odd one at the end (UPPER) or the
    beginning (LOWER)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    small, large = total // 2, total - total // 2
    return (small, large) if upper else (large, small)


class RuntimeConv(nn.Module):
    """ONNX Conv with the weight (and bias) as call inputs (see the module docstring)."""

    def __init__(
        self, strides: list[int], dilations: list[int], pads: list[int], auto_pad: str, group: int
    ) -> None:
        super().__init__()
        self.strides = list(strides)
        self.dilations = list(dilations)
        self.pads = list(pads)
        self.auto_pad = auto_pad
        self.group = group

    def _pads(self, x: torch.Tensor, kernel: list[int]) -> list[int]:
        """ONNX pads (begin..., end...) for this call."""
        rank = len(kernel)
        if self.auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            upper = self.auto_pad == "SAME_UPPER"
            pairs = [
                same_pads(int(x.shape[2 + d]), kernel[d], self.strides[d], self.dilations[d], upper)
                for d in range(rank)
            ]
            return [p[0] for p in pairs] + [p[1] for p in pairs]
        if self.auto_pad == "VALID" or not self.pads:
            return [0] * (2 * rank)
        return self.pads

    def forward(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
        kernel = [int(k) for k in w.shape[2:]]
        rank = len(kernel)
        conv = _CONV.get(rank)
        if conv is None:
            raise NotImplementedError(f"Conv over {rank} spatial axes is not supported")
        pads = self._pads(x, kernel)
        begin, end = pads[:rank], pads[rank:]
        padding: list[int] | int = begin
        if begin != end:  # asymmetric: pad explicitly (F.pad: last axis first, (begin, end) each)
            torch_pad: list[int] = []
            for d in reversed(range(rank)):
                torch_pad += [begin[d], end[d]]
            x = F.pad(x, torch_pad)
            padding = 0
        return conv(x, w, b, self.strides, padding, self.dilations, self.group)


@converter("Conv", 1, 11)
def _conv(node: Any, graph: Any, base: Any) -> Any:
    """onnx2torch's converter when weight and bias are constants; else :class:`RuntimeConv`."""
    inputs = tuple(node.input_values)
    bias = inputs[2] if len(inputs) > 2 and not is_empty(inputs[2]) else None
    constant = const_value(inputs[1], graph) is not None and (
        bias is None or const_value(bias, graph) is not None
    )
    if constant and base is not None:
        return base(node, graph)
    attrs = node.attributes
    weight_rank = _weight_rank(node, graph)
    rank = len(attrs["kernel_shape"]) if "kernel_shape" in attrs else weight_rank
    if rank is None:
        raise NotImplementedError("Conv with a computed weight of unknown rank and no kernel_shape")
    module = RuntimeConv(
        list(attrs.get("strides", [1] * rank)),
        list(attrs.get("dilations", [1] * rank)),
        list(attrs.get("pads", [0] * 2 * rank)),
        _text(attrs.get("auto_pad", "NOTSET")),
        int(attrs.get("group", 1)),
    )
    return result(module, inputs[:2] + ((bias,) if bias is not None else ()), tuple(node.output_values))


def _weight_rank(node: Any, graph: Any) -> int | None:
    """Spatial rank from the inferred shape of the weight, when inference knows it."""
    try:
        shape = graph.value_info[node.input_values[1]].type.tensor_type.shape
    except (KeyError, AttributeError):
        return None
    return len(shape.dim) - 2 if len(shape.dim) >= 3 else None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
