"""onnxprune's own onnx2torch converters, registered in front of onnx2torch's for one conversion.

A converter here is ``fn(node, graph, base) -> OperationConverterResult`` where ``base`` is onnx2torch's
converter for the same (op type, opset version), or None when onnx2torch has none: a converter may handle
only the cases onnx2torch gets wrong and hand the rest to ``base``. :func:`installed` puts every
registered converter into onnx2torch's table for the duration of a ``with`` block and restores the table
afterwards, so nothing outside onnxprune's import sees them and site-packages is never changed.

Versions are ONNX ``since_version``\\ s of the operator's schema: onnx2torch looks a node up by the
since_version of the schema in force at the model's opset.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

__all__ = ["REGISTRY", "Converter", "converter", "installed"]

# (node: OnnxNode, graph: OnnxGraph, base: onnx2torch's converter or None) -> OperationConverterResult
Converter = Callable[..., Any]

REGISTRY: dict[tuple[str, int], Converter] = {}
_lock = threading.RLock()
_depth = 0


def converter(op_type: str, *versions: int) -> Callable[[Converter], Converter]:
    """Register ``fn`` for ``op_type`` at each schema ``since_version`` in ``versions``."""

    def deco(fn: Converter) -> Converter:
        for version in versions:
            key = (op_type, version)
            if key in REGISTRY:
                raise ValueError(f"a converter for {op_type} version {version} is already registered")
            REGISTRY[key] = fn
        return fn

    return deco


@contextmanager
def installed() -> Iterator[None]:
    """Within the block, onnx2torch converts with onnxprune's converters (re-entrant)."""
    global _depth
    from onnx import defs
    from onnx2torch.node_converters import registry as o2t

    table: dict[Any, Any] = o2t._CONVERTER_REGISTRY
    with _lock:
        saved: dict[Any, Any] = {}
        if _depth == 0:
            for (op_type, version), fn in REGISTRY.items():
                key = o2t.OperationDescription(
                    domain=defs.ONNX_DOMAIN, operation_type=op_type, version=version
                )
                saved[key] = table.get(key)
                table[key] = partial(fn, base=saved[key])
        _depth += 1
        try:
            yield
        finally:
            _depth -= 1
            for key, base in saved.items():
                if base is None:
                    table.pop(key, None)
                else:
                    table[key] = base
