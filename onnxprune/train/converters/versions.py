"""Operators whose newer opset versions onnx2torch does not know (opsets 16-22, and a few old ones).

Most newer versions only add element types (bfloat16, float8, int4, strings): the node means what it
meant at the older version, and onnx2torch's older converter is used as is (:data:`SAME_AS`). Opset 18
moved the ``axes`` of every Reduce op from an attribute to an optional input and gave Split a
``num_outputs`` attribute; those are converted here (:class:`Reduce`, :class:`Split`). Pad 18+ and
Resize 18+ are the older converters when their new inputs / attributes are absent or at their defaults,
and refused otherwise (naming what is not supported).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .common import const_value, is_empty, result
from .registry import converter

__all__ = ["SAME_AS", "Reduce", "Split"]

# (op type, newer since_version) -> the older since_version whose converter means the same
SAME_AS: dict[tuple[str, int], int] = {
    **{
        (op, 22): v
        for op, v in (
            ("Acos", 7),
            ("Asin", 7),
            ("Atan", 7),
            ("Cos", 7),
            ("Sin", 7),
            ("Tan", 7),
            ("Conv", 11),
            ("ConvTranspose", 11),
            ("Elu", 6),
            ("EyeLike", 9),
            ("GlobalAveragePool", 1),
            ("HardSigmoid", 6),
            ("HardSwish", 14),
            ("InstanceNormalization", 6),
            ("MaxPool", 12),
            ("RoiAlign", 16),
            ("Round", 11),
            ("Selu", 6),
            ("Softplus", 1),
            ("Softsign", 1),
        )
    },
    ("Cast", 19): 13,
    ("Cast", 21): 13,
    ("Constant", 19): 13,
    ("Constant", 21): 13,
    ("ConstantOfShape", 20): 9,
    ("ConstantOfShape", 21): 9,
    ("Equal", 19): 13,
    ("GreaterOrEqual", 16): 12,
    ("LessOrEqual", 16): 12,
    ("Identity", 19): 16,
    ("Identity", 21): 16,
    ("IsInf", 20): 10,
    ("IsNaN", 9): 13,
    ("IsNaN", 20): 13,
    ("NonZero", 9): 13,
    ("Gemm", 7): 9,
    ("Shape", 19): 15,
    ("Shape", 21): 15,
    ("Transpose", 21): 13,
    ("Unsqueeze", 21): 13,
    ("ReduceSum", 18): 13,  # ReduceSum took axes as an input already at 13
}


def older_converter(op_type: str, version: int) -> Any:
    """The converter in force for ``op_type`` at ``version`` (onnxprune's if it registers one)."""
    from onnx import defs
    from onnx2torch.node_converters import registry as o2t

    key = o2t.OperationDescription(defs.ONNX_DOMAIN, op_type, version)
    return o2t._CONVERTER_REGISTRY[key]


def _same_as(node: Any, graph: Any, base: Any, older: int) -> Any:
    return older_converter(node.operation_type, older)(node, graph)


for (_op, _version), _old in SAME_AS.items():

    def _make(old: int) -> Any:
        return lambda node, graph, base: _same_as(node, graph, base, old)

    converter(_op, _version)(_make(_old))


# -- Reduce ops, opset 18 (and 20): axes as an optional input -------------------------------------------
def _prod(x: torch.Tensor, dims: list[int], keepdim: bool) -> torch.Tensor:
    for d in sorted(dims, reverse=True):  # from the last: earlier axes keep their index
        x = torch.prod(x, dim=d, keepdim=keepdim)
    return x


_REDUCE = {
    "ReduceMean": lambda x, d, k: torch.mean(x, dim=d, keepdim=k),
    "ReduceSum": lambda x, d, k: torch.sum(x, dim=d, keepdim=k),
    "ReduceMax": lambda x, d, k: torch.amax(x, dim=d, keepdim=k),
    "ReduceMin": lambda x, d, k: torch.amin(x, dim=d, keepdim=k),
    "ReduceProd": _prod,
    "ReduceL1": lambda x, d, k: torch.sum(torch.abs(x), dim=d, keepdim=k),
    "ReduceL2": lambda x, d, k: torch.sqrt(torch.sum(x * x, dim=d, keepdim=k)),
    "ReduceLogSum": lambda x, d, k: torch.log(torch.sum(x, dim=d, keepdim=k)),
    "ReduceLogSumExp": lambda x, d, k: torch.logsumexp(x, dim=d, keepdim=k),
    "ReduceSumSquare": lambda x, d, k: torch.sum(x * x, dim=d, keepdim=k),
}


class Reduce(nn.Module):
    """ONNX Reduce* (opset 18+): over ``axes`` (constant) or every axis when there are none, unless
    ``noop_with_empty_axes`` (then the input unchanged)."""

    def __init__(
        self, op_type: str, axes: list[int] | None, keepdims: bool, noop_with_empty_axes: bool
    ) -> None:
        super().__init__()
        self.op_type = op_type
        self.axes = axes
        self.keepdims = keepdims
        self.noop_with_empty_axes = noop_with_empty_axes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.axes:
            if self.noop_with_empty_axes:
                return x
            dims = list(range(x.dim()))
        else:
            dims = [a % x.dim() for a in self.axes]
        return _REDUCE[self.op_type](x, dims, self.keepdims)


def _reduce(node: Any, graph: Any, base: Any) -> Any:
    ins = node.input_values
    axes: list[int] | None = None
    if len(ins) > 1 and not is_empty(ins[1]):
        value = const_value(ins[1], graph)
        if value is None:
            raise NotImplementedError(f"{node.operation_type} with computed axes is not supported")
        axes = [int(a) for a in value.reshape(-1).tolist()]
    attrs = node.attributes
    module = Reduce(
        node.operation_type, axes, bool(attrs.get("keepdims", 1)), bool(attrs.get("noop_with_empty_axes", 0))
    )
    return result(module, ins[:1], node.output_values)


for _op in _REDUCE:
    if _op != "ReduceSum":
        converter(_op, 18)(_reduce)
converter("ReduceMax", 20)(_reduce)
converter("ReduceMin", 20)(_reduce)


# -- Split 18: num_outputs ---------------------------------------------------------------------------
class Split(nn.Module):
    """ONNX Split (opset 18): by the ``split`` sizes (input), else into ``num_outputs`` chunks of
    ceil(n / num_outputs), the last smaller."""

    def __init__(self, axis: int, num_outputs: int) -> None:
        super().__init__()
        self.axis = axis
        self.num_outputs = num_outputs

    def forward(self, x: torch.Tensor, split: torch.Tensor | None = None) -> Any:
        if split is not None:
            return torch.split(x, [int(s) for s in split.tolist()], dim=self.axis)
        n = x.shape[self.axis]
        return torch.split(x, -(-n // self.num_outputs), dim=self.axis)


@converter("Split", 18)
def _split(node: Any, graph: Any, base: Any) -> Any:
    attrs = node.attributes
    num = int(attrs.get("num_outputs", len(node.output_values)))
    return result(Split(int(attrs.get("axis", 0)), num), node.input_values, node.output_values)


# -- Pad 18/19/21, Resize 18/19: the older converter when the new inputs/attributes are unused ----------
@converter("Pad", 18, 19, 21)
def _pad(node: Any, graph: Any, base: Any) -> Any:
    ins = node.input_values
    if len(ins) > 3 and not is_empty(ins[3]):
        raise NotImplementedError("Pad with an 'axes' input is not supported")
    if str(node.attributes.get("mode", "constant")) == "wrap":
        raise NotImplementedError("Pad mode 'wrap' is not supported")
    return older_converter("Pad", 13)(node, graph)


@converter("Resize", 18, 19)
def _resize(node: Any, graph: Any, base: Any) -> Any:
    attrs = node.attributes
    if int(attrs.get("antialias", 0)) != 0:
        raise NotImplementedError("Resize with antialias is not supported")
    if "axes" in attrs:
        raise NotImplementedError("Resize with 'axes' is not supported")
    if str(attrs.get("keep_aspect_ratio_policy", "stretch")) != "stretch":
        raise NotImplementedError(
            "Resize with a keep_aspect_ratio_policy other than 'stretch' is not supported"
        )
    if str(attrs.get("coordinate_transformation_mode", "half_pixel")) == "half_pixel_symmetric":
        raise NotImplementedError(
            "Resize with coordinate_transformation_mode 'half_pixel_symmetric' is not supported"
        )
    return older_converter("Resize", 13)(node, graph)
