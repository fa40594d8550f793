"""AveragePool with any pads (asymmetric, ``auto_pad`` SAME_UPPER / SAME_LOWER), ceil mode and both
``count_include_pad`` conventions.

onnx2torch refuses asymmetric pads (TF's 'SAME' padding of an even input, classic Inception graphs) and
``auto_pad`` SAME. Here the input is padded explicitly and the average is a ratio of two window sums:

    y = Σ_window pad₀(x) / Σ_window pad_c(1)        c = 1 if count_include_pad else 0

``pad_v`` pads with the value ``v`` by the ONNX pads (begin, end per spatial axis). The denominator counts
the window's input elements (and its padding, when counted), never the overhang of a ceil-mode window past
the padded extent — ONNX Runtime's divisor. Sums are ``avg_pool`` with ``divisor_override=1`` (exact);
1-D pools run as 2-D with a unit axis.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .common import result
from .registry import converter

__all__ = ["AveragePool"]


def same_pads(size: int, kernel: int, stride: int, upper: bool) -> tuple[int, int]:
    """ONNX ``auto_pad`` SAME_UPPER / SAME_LOWER: output ceil(size / stride); the odd pad goes to the end
    (UPPER) or the beginning (LOWER)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    small, large = total // 2, total - total // 2
    return (small, large) if upper else (large, small)


class AveragePool(nn.Module):
    """ONNX AveragePool as a ratio of window sums over explicitly padded tensors (module docstring)."""

    def __init__(
        self,
        kernel: list[int],
        strides: list[int],
        pads: list[int],
        auto_pad: str,
        ceil_mode: bool,
        count_include_pad: bool,
    ) -> None:
        super().__init__()
        self.kernel = list(kernel)
        self.strides = list(strides)
        self.pads = list(pads)
        self.auto_pad = auto_pad
        self.ceil_mode = ceil_mode
        self.count_include_pad = count_include_pad

    def _pads(self, x: torch.Tensor) -> list[int]:
        rank = len(self.kernel)
        if self.auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            sizes = x.shape[2:]
            pairs = [
                same_pads(int(sizes[d]), self.kernel[d], self.strides[d], self.auto_pad == "SAME_UPPER")
                for d in range(rank)
            ]
            return [p[0] for p in pairs] + [p[1] for p in pairs]
        if self.auto_pad == "VALID":
            return [0] * (2 * rank)
        return self.pads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rank = len(self.kernel)
        kernel, strides, pads = list(self.kernel), list(self.strides), self._pads(x)
        if rank == 1:  # as 2-D: a unit axis in front of the one spatial axis
            x = x.unsqueeze(2)
            kernel, strides, pads = [1, *kernel], [1, *strides], [0, pads[0], 0, pads[1]]
            rank = 2
        torch_pad: list[int] = []  # F.pad: last axis first, (begin, end) each
        for d in reversed(range(rank)):
            torch_pad += [pads[d], pads[d + rank]]
        pool = F.avg_pool2d if rank == 2 else F.avg_pool3d
        ones = torch.ones((1, 1, *x.shape[2:]), dtype=x.dtype, device=x.device)

        def window_sum(t: torch.Tensor) -> torch.Tensor:
            return pool(t, kernel, strides, 0, self.ceil_mode, True, 1)

        total = window_sum(F.pad(x, torch_pad))
        count = window_sum(F.pad(ones, torch_pad, value=1.0 if self.count_include_pad else 0.0))
        y = total / count
        return y.squeeze(2) if len(self.kernel) == 1 else y


@converter("AveragePool", 1, 7, 10, 11, 19, 22)
def _average_pool(node: Any, graph: Any, base: Any) -> Any:
    attrs = node.attributes
    kernel = list(attrs["kernel_shape"])
    rank = len(kernel)
    if rank not in (1, 2, 3):
        raise NotImplementedError(f"AveragePool over {rank} spatial axes is not supported")
    if any(int(d) != 1 for d in attrs.get("dilations", [1] * rank)):
        raise NotImplementedError("AveragePool with dilations is not supported")
    pads = list(attrs.get("pads", [0] * 2 * rank))
    auto_pad = str(attrs.get("auto_pad", "NOTSET"))
    symmetric = auto_pad in ("NOTSET", "VALID") and pads[:rank] == pads[rank:]
    if base is not None and symmetric and all(2 * p <= k for p, k in zip(pads, kernel * 2, strict=True)):
        try:  # onnx2torch's nn.AvgPoolNd where it is exact (torch's own pad limit: half the kernel)
            return base(node, graph)
        except (NotImplementedError, KeyError):
            pass
    module = AveragePool(
        kernel,
        list(attrs.get("strides", [1] * rank)),
        pads,
        auto_pad,
        bool(attrs.get("ceil_mode", 0)),
        bool(attrs.get("count_include_pad", 0)),
    )
    return result(module, node.input_values[:1], node.output_values)
