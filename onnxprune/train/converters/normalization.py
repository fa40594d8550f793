"""LayerNormalization and BatchNormalization whatever the inferred shape of their input says.

onnx2torch sizes ``nn.LayerNorm(normalized_shape)`` from the *inferred* shape of the input, and that shape
is unknown (every dim 0) after a Reshape or Pad whose shape is computed (Swin's PatchMerging pad, MaxViT's
window partition): it builds ``LayerNorm([0])`` and fails at run time. It picks ``BatchNorm{1,2,3}d`` from
the inferred rank and refuses an unknown one. Here both read what they need from the tensor at run time:

    LayerNormalization:  y = (x − E[x]) / √(Var[x] + ε) · scale + bias   over axes [axis, rank(x))
    BatchNormalization:  y = (x − mean) / √(var + ε) · scale + bias      per channel (axis 1), any rank ≥ 2

The BatchNormalization module is a ``torch.nn.modules.batchnorm._BatchNorm`` (scale, bias, mean and var as
its ``weight``, ``bias``, ``running_mean``, ``running_var``, as onnx2torch's), so the importer binds and
trains it like any BatchNorm; only the rank check differs. ``training_mode=1`` (opset 14+: normalize by
the batch's own statistics) is :class:`BatchStatNorm`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .common import const_value, result
from .registry import converter

__all__ = ["AnyRankBatchNorm", "LayerNorm"]


class LayerNorm(nn.Module):
    """ONNX LayerNormalization; the normalized shape is ``x.shape[axis:]`` of each call."""

    def __init__(self, axis: int, epsilon: float) -> None:
        super().__init__()
        self.axis = axis
        self.epsilon = epsilon

    def forward(self, x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        axis = self.axis % x.dim()
        if tuple(scale.shape) == tuple(x.shape[axis:]) and (bias is None or bias.shape == scale.shape):
            return F.layer_norm(x, tuple(scale.shape), scale, bias, self.epsilon)  # the usual case
        # scale/bias broadcast to the normalized shape (ONNX allows it); ints: a traced re-export bakes them
        shape = tuple(int(d) for d in x.shape[axis:])
        y = F.layer_norm(x, shape, None, None, self.epsilon) * scale
        return y if bias is None else y + bias


@converter("LayerNormalization", 17)
def _layer_norm(node: Any, graph: Any, base: Any) -> Any:
    attrs = node.attributes
    module = LayerNorm(int(attrs.get("axis", -1)), float(attrs.get("epsilon", 1e-5)))
    if len(node.output_values) > 1 and any(node.output_values[1:]):
        raise NotImplementedError("LayerNormalization with Mean / InvStdDev outputs is not supported")
    return result(module, node.input_values, node.output_values[:1])


class AnyRankBatchNorm(nn.modules.batchnorm._BatchNorm):
    """``nn.BatchNorm`` for inputs of any rank ≥ 2 (N, C, ...): ``F.batch_norm`` works on all of them."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"BatchNormalization expects an (N, C, ...) input, got {input.dim()}-D")


class BatchStatNorm(nn.Module):
    """ONNX BatchNormalization with ``training_mode=1``: normalized by the statistics of the batch
    itself (timm's weight-standardized convs standardize their weights this way), and the updated running
    statistics ``m·running + (1 − m)·batch`` (population variance) when the node lists them."""

    def __init__(self, epsilon: float, momentum: float) -> None:
        super().__init__()
        self.epsilon = epsilon
        self.momentum = momentum
        self.outputs = 1

    def forward(
        self, x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor, mean: torch.Tensor, var: torch.Tensor
    ) -> Any:
        y = F.batch_norm(x, None, None, scale, bias, True, 0.0, self.epsilon)
        if self.outputs == 1:
            return y
        dims = [d for d in range(x.dim()) if d != 1]
        batch_mean = x.mean(dim=dims)
        batch_var = x.var(dim=dims, unbiased=False)
        m = self.momentum
        return y, mean * m + batch_mean * (1 - m), var * m + batch_var * (1 - m)


@converter("BatchNormalization", 1, 6, 7, 9, 14, 15)
def _batch_norm(node: Any, graph: Any, base: Any) -> Any:
    """onnx2torch's converter where it works (it knows the rank); else :class:`AnyRankBatchNorm`;
    :class:`BatchStatNorm` in training mode."""
    attrs = node.attributes
    if int(attrs.get("training_mode", 0)) != 0:
        stat = BatchStatNorm(float(attrs.get("epsilon", 1e-5)), float(attrs.get("momentum", 0.9)))
        stat.outputs = len(node.output_values)
        return result(stat, node.input_values, node.output_values)
    if base is not None:
        try:
            return base(node, graph)
        except (NotImplementedError, KeyError):  # unknown / unsupported rank: handled below
            pass
    if len(node.output_values) > 1:
        raise NotImplementedError(
            "BatchNormalization with mean/var outputs in inference mode is not supported"
        )
    params = [const_value(name, graph) for name in node.input_values[1:5]]
    if any(p is None for p in params):
        raise NotImplementedError("BatchNormalization with computed scale/bias/mean/var is not supported")
    scale, bias, mean, var = (p for p in params if p is not None)
    module = AnyRankBatchNorm(
        num_features=int(scale.numel()),
        eps=float(attrs.get("epsilon", 1e-5)),
        momentum=1.0 - float(attrs.get("momentum", 0.9)),  # torch's momentum weighs the new statistic
    )
    assert module.running_mean is not None and module.running_var is not None  # tracked by construction
    with torch.no_grad():
        module.weight.data = scale
        module.bias.data = bias
        module.running_mean.data = mean
        module.running_var.data = var
    return result(module, node.input_values[:1], node.output_values)
