"""Small helpers shared by the converters: constant inputs, attributes, onnx2torch's result types."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["const_value", "is_empty", "mapping", "result"]


def is_empty(name: str | None) -> bool:
    """An omitted optional input: absent or ''."""
    return name is None or name == ""


def const_value(name: str, graph: Any) -> torch.Tensor | None:
    """The value of input ``name`` when it is an initializer or a Constant node's output, else None."""
    if name in graph.initializers:
        return graph.initializers[name].to_torch()
    try:
        node, _ = graph.value_as_node_output(name)
    except KeyError:
        return None
    if node.operation_type != "Constant":
        return None
    attr, value = next(iter(node.attributes.items()))
    if attr == "value":
        return value.to_torch()
    if attr in ("value_float", "value_int"):
        return torch.tensor(value)
    if attr in ("value_floats", "value_ints"):
        return torch.tensor(list(value))
    return None


def mapping(inputs: tuple[str, ...], outputs: tuple[str, ...]) -> Any:
    from onnx2torch.utils.common import OnnxMapping

    return OnnxMapping(inputs=tuple(inputs), outputs=tuple(outputs))


def result(module: torch.nn.Module, inputs: tuple[str, ...], outputs: tuple[str, ...]) -> Any:
    """onnx2torch's ``OperationConverterResult`` of ``module`` reading ``inputs`` (ONNX value names, ''
    for an omitted one: passed as None) and producing ``outputs``."""
    from onnx2torch.utils.common import OperationConverterResult

    return OperationConverterResult(torch_module=module, onnx_mapping=mapping(inputs, outputs))
