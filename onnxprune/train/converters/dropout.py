"""Dropout of every opset, with its optional mask output.

Inference (eval mode): ``y = x``, and the mask as ONNX Runtime gives it (the reference for every check
here): zeros below opset 12 (float before opset 10, bool from 10), ones (bool) from opset 12. Training
mode: dropout at ``ratio``, as onnx2torch's opset-10 ``nn.Dropout`` (the model's own regularization in
fine-tuning). onnx2torch has no converter for opsets 1-7 (``is_test`` / ``ratio`` attributes, as the
classic model-zoo graphs have) nor 22, hands opset 12-13's ``ratio`` *input* to ``F.dropout`` as a tensor,
and returns no mask output: a node listing one would be mis-indexed (``output[0]`` of the tensor).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .common import const_value, is_empty, result
from .registry import converter

__all__ = ["Dropout"]


class Dropout(nn.Module):
    """ONNX Dropout: ``x`` in eval mode (and a mask of ones when ``with_mask``), ``F.dropout`` in training."""

    def __init__(
        self, ratio: float, with_mask: bool, mask_value: bool = True, bool_mask: bool = True
    ) -> None:
        super().__init__()
        self.ratio = ratio
        self.with_mask = with_mask
        self.mask_value = mask_value  # the eval-mode mask: ones (opset >= 12) or zeros (ONNX Runtime, < 12)
        self.bool_mask = bool_mask  # bool from opset 10, the input's type before

    def forward(self, x: torch.Tensor) -> Any:
        if not self.training or self.ratio == 0.0:
            y = x
            dtype = torch.bool if self.bool_mask else x.dtype
            fill = torch.ones_like if self.mask_value else torch.zeros_like
            mask = fill(x, dtype=dtype) if self.with_mask else None
        else:
            keep = (torch.rand_like(x) >= self.ratio) if self.with_mask else None
            if keep is None:
                y = F.dropout(x, self.ratio, True)
                mask = None
            else:
                y = x * keep / (1.0 - self.ratio)
                mask = keep if self.bool_mask else keep.to(x.dtype)
        return (y, mask) if self.with_mask else y


def _dropout(node: Any, graph: Any, base: Any, version: int) -> Any:
    attrs = node.attributes
    ratio = float(attrs.get("ratio", 0.5))
    ins = node.input_values
    if len(ins) > 1 and not is_empty(ins[1]):  # opset >= 12: ratio is an input
        value = const_value(ins[1], graph)
        if value is None:
            raise NotImplementedError("Dropout with a computed ratio is not supported")
        ratio = float(value)
    if len(ins) > 2 and not is_empty(ins[2]):
        mode = const_value(ins[2], graph)
        if mode is None or bool(mode):
            raise NotImplementedError("Dropout with training_mode true or computed is not supported")
    outs = tuple(node.output_values)
    # onnx2torch indexes the module's output whenever the node lists two outputs, even an unused or ''
    # mask: then the module must return the pair
    with_mask = len(outs) > 1
    module = Dropout(ratio, with_mask, mask_value=version >= 12, bool_mask=version >= 10)
    return result(module, ins[:1], outs)


for _version in (1, 6, 7, 10, 12, 13, 22):
    converter("Dropout", _version)(partial(_dropout, version=_version))
