"""Where a torch import stops reproducing ONNX Runtime: the first diverging node.

Every ONNX node output is computed twice on the same input: by ORT on the model (with each value listed
as an extra output, :func:`onnxprune.graph.values.intermediate_values`) and by the imported module (each
onnx2torch / onnxprune module's outputs, recorded by name through its ``onnx_mapping``). In graph
(topological) order, a node *diverges* when one of its outputs differs by more than ``rtol`` relative to
the largest magnitude of ORT's value, or has another shape; the first one whose compared inputs all
agree is where the import goes wrong (its converter), everything after it inherits the error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import torch
from torch import fx

from ..graph.values import intermediate_values

__all__ = ["Divergence", "first_divergence"]


@dataclass(frozen=True)
class Divergence:
    """The first node whose torch output differs from ORT's while its inputs agree."""

    node: str
    op_type: str
    output: str
    error: float  # relative error, inf for a shape mismatch
    detail: str

    def __str__(self) -> str:
        return f"first diverging node: {self.node!r} ({self.op_type}), output {self.output!r}: {self.detail}"


class _Recorder(fx.Interpreter):
    """Runs the fx module, keeping every module output under its ONNX value name."""

    def __init__(self, module: fx.GraphModule) -> None:
        super().__init__(module)
        self.values: dict[str, Any] = {}

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        if n.op == "call_module":
            mapping = getattr(self.module.get_submodule(str(n.target)), "onnx_mapping", None)
            if mapping is not None:
                outs = out if isinstance(out, tuple | list) else (out,)
                for name, value in zip(mapping.outputs, outs, strict=False):
                    if name and isinstance(value, torch.Tensor):
                        self.values[name] = value.detach().cpu().numpy()
        return out


def _compare(torch_value: np.ndarray, ort_value: np.ndarray, rtol: float) -> tuple[float, str] | None:
    """(relative error, detail) when the two differ, None when they agree."""
    if torch_value.shape != ort_value.shape:
        return float("inf"), f"shape {tuple(torch_value.shape)} in torch, {tuple(ort_value.shape)} in ORT"
    if ort_value.size == 0:
        return None
    a, b = torch_value.astype(np.float64), ort_value.astype(np.float64)
    if not np.issubdtype(ort_value.dtype, np.floating):
        return None if np.array_equal(a, b) else (float("inf"), "integer values differ")
    finite = np.isfinite(b)
    if not np.array_equal(finite, np.isfinite(a)):
        return float("inf"), "non-finite values differ"
    if not finite.any():
        return None
    scale = max(float(np.abs(b[finite]).max()), 1e-12)
    err = float(np.abs(a[finite] - b[finite]).max()) / scale
    return (err, f"relative error {err:.2e}") if err > rtol else None


def first_divergence(
    model: onnx.ModelProto,
    module: fx.GraphModule,
    input_names: Sequence[str],
    feeds: Mapping[str, np.ndarray],
    rtol: float = 1e-4,
) -> Divergence | None:
    """The first node (graph order) whose outputs diverge while its inputs agree; None when none does
    (or when the values cannot be compared: this only sharpens an error message)."""
    try:
        ort_values = intermediate_values(model, feeds)
        recorder = _Recorder(module.eval())
        with torch.no_grad():
            recorder.run(*(torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in input_names))
    except Exception:
        return None
    bad: set[str] = set()
    for node in model.graph.node:
        inputs_bad = any(i in bad for i in node.input)
        for out in node.output:
            if out not in ort_values or out not in recorder.values:
                continue
            diff = _compare(recorder.values[out], ort_values[out], rtol)
            if diff is None:
                continue
            bad.add(out)
            if not inputs_bad:
                return Divergence(node.name, node.op_type, out, diff[0], diff[1])
        if inputs_bad:  # an uncompared output of a node fed a diverging value diverges too
            bad.update(o for o in node.output if o not in recorder.values)
    return None
