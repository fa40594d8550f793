"""The prunable layers of a model as ORT runs them, and their standalone ONNX graphs at other widths.

A *layer* is a Conv, Gemm or MatMul whose weight is an initializer and which a pruning group narrows,
together with what ONNX Runtime fuses into it on the CPU: a bias (its own input, a following
BatchNormalization — ConvBNFusion — or an Add of a constant), then one activation of :data:`FUSED`
(FusedConv / FusedGemm). The weight's reduction axis has length ``L_in``, its output axis ``L_out``;
group ``g`` keeping ``k_g`` of its ``C_g`` channels shortens them, as surgery does
(:func:`onnxprune.graph.macmodel.axis_shrink`)::

    len_in(k)  = L_in  − Σ_g n_in(g)  · (C_g − k_g)
    len_out(k) = L_out − Σ_g n_out(g) · (C_g − k_g)

:func:`layer_graph` builds the layer alone at ``(len_in, len_out)`` — input ``x`` of the layer's own
shape with its channel dim replaced, random weights of the new shape — per op family in
:data:`BUILDERS`. Everything else of the model (pools, adds, reshapes, unpruned layers) is the
latency model's measured remainder.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ...graph.inputs import ShapeArg
from ...graph.layerops import LAYER_OPS, node_attrs
from ...graph.macmodel import axis_shrink
from ...graph.macs import node_keys
from ...graph.shapes import infer_shapes
from ...plan import PruningPlan

FUSED = frozenset({"Relu", "Clip", "LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish"})
"""Activations ORT's ConvActivationFusion / GemmActivationFusion fold into the layer (HardSwish: into an
NCHWc conv, MobileNetV3's 20 of them in onnxruntime 1.32; left out, the layers alone cost 20 % less than
in the model and the difference was charged to every layer)."""

BIAS_FOLLOWERS = frozenset({"BatchNormalization", "Add"})
"""Ops after a layer that ORT folds into its bias (an Add only with a constant operand)."""


@dataclass(frozen=True)
class Activation:
    """A fused activation: op type, attributes, and its constant inputs after the first (Clip's bounds)."""

    op_type: str
    attrs: dict[str, Any] = field(default_factory=dict)
    constants: tuple[np.ndarray | None, ...] = ()

    def signature(self) -> list[Any]:
        values = [None if c is None else np.asarray(c).tolist() for c in self.constants]
        return [self.op_type, _jsonable(self.attrs), values]


@dataclass(frozen=True)
class Layer:
    """One prunable layer (see the module docstring). ``in_axis`` / ``out_axis``: the weight's axes;
    ``shrink_in`` / ``shrink_out``: group -> indices removed per removed channel; ``out_size``: elements of
    the layer's output per output index (batch included; 0: unknown), so ``len_out · out_size`` is the
    activation it writes."""

    key: str
    op_type: str
    attrs: dict[str, Any]
    input_shape: tuple[int, ...]
    weight_shape: tuple[int, ...]
    in_axis: int
    out_axis: int
    shrink_in: dict[str, float]
    shrink_out: dict[str, float]
    bias: bool
    activation: Activation | None
    out_size: int = 0

    @property
    def full(self) -> tuple[int, int]:
        """(L_in, L_out): the weight's lengths along its input and output axes."""
        return self.weight_shape[self.in_axis], self.weight_shape[self.out_axis]

    @property
    def groups(self) -> set[str]:
        return set(self.shrink_in) | set(self.shrink_out)

    def lengths(self, keep: Mapping[str, int], channels: Mapping[str, int]) -> tuple[int, int]:
        """(len_in, len_out) when group g keeps ``keep[g]`` of its ``channels[g]`` (default: all)."""

        def length(full: int, shrink: Mapping[str, float]) -> int:
            removed = sum(n * (channels[g] - keep.get(g, channels[g])) for g, n in shrink.items())
            return max(1, round(full - removed))

        return length(self.full[0], self.shrink_in), length(self.full[1], self.shrink_out)

    def signature(self) -> str:
        """What the layer's timing depends on besides its widths (the cache key, with the target)."""
        act = None if self.activation is None else self.activation.signature()
        parts = [self.op_type, _jsonable(self.attrs), self.input_shape, self.weight_shape, self.bias, act]
        return json.dumps(parts, separators=(",", ":"), sort_keys=True)


def _jsonable(attrs: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in sorted(attrs.items()):
        if isinstance(v, bytes):
            v = v.decode()
        elif isinstance(v, list | tuple):
            v = [x.decode() if isinstance(x, bytes) else x for x in v]
        out[k] = v
    return out


# --------------------------------------------------------------------------------------------- finding


def find_layers(model: onnx.ModelProto, plan: PruningPlan, input_shape: ShapeArg) -> list[Layer]:
    """The layers of ``model`` (at ``input_shape``, batch included) that a prunable group of ``plan``
    narrows, in graph order."""
    inits = {t.name: t for t in model.graph.initializer}
    dims = {n: tuple(int(d) for d in t.dims) for n, t in inits.items()}
    shapes = infer_shapes(model, input_shape)
    prunable = {g.name for g in plan.prunable}
    shrink = {
        key: {g: n for g, n in axes.items() if g in prunable}
        for key, axes in axis_shrink(model, plan).items()
    }
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in model.graph.output}
    layers = []
    for key, node in zip(node_keys(model.graph.node), model.graph.node, strict=True):
        op = LAYER_OPS.get(node.op_type)
        if op is None or node.op_type not in BUILDERS or not node.input:
            continue
        w = op.weight(node, inits)
        if w is None or node.input[0] == w or len(dims[w]) < 2:
            continue  # no weight, or a MatMul with the constant first: left to the remainder
        attrs = node_attrs(node)
        in_axis = op.input_axis(attrs)
        out_axis = op.output_of(in_axis)
        s_in, s_out = shrink.get((w, in_axis), {}), shrink.get((w, out_axis), {})
        x_shape = shapes.get(node.input[0])
        if not (s_in or s_out) or x_shape is None or any(d is None for d in x_shape):
            continue
        bias, act = _fused(node, consumers, inits, outputs)
        bias = bias or (node.op_type in ("Conv", "Gemm") and len(node.input) > 2 and bool(node.input[2]))
        y_shape = shapes.get(node.output[0])
        written = (
            0
            if y_shape is None or any(d is None for d in y_shape)
            else math.prod(int(d or 0) for d in y_shape)
        )
        layers.append(
            Layer(key, node.op_type, attrs, tuple(int(d or 0) for d in x_shape), dims[w], in_axis, out_axis,
                  s_in, s_out, bias, act, written // max(1, dims[w][out_axis]))
        )  # fmt: skip
    return layers


def _fused(
    node: onnx.NodeProto,
    consumers: Mapping[str, list[onnx.NodeProto]],
    inits: Mapping[str, TensorProto],
    outputs: set[str],
) -> tuple[bool, Activation | None]:
    """(a folded bias follows, the fused activation) of a layer node: followers along a chain of sole
    consumers of tensors that are no graph output."""

    def sole(tensor: str) -> onnx.NodeProto | None:
        users = consumers.get(tensor, [])
        return users[0] if len(users) == 1 and tensor not in outputs else None

    bias, out = False, node.output[0]
    nxt = sole(out)
    if nxt is not None and nxt.op_type in BIAS_FOLLOWERS:
        others = [i for i in nxt.input if i != out]
        if nxt.op_type == "BatchNormalization" or (others and all(i in inits for i in others)):
            bias, out = True, nxt.output[0]
            nxt = sole(out)
    if nxt is None or nxt.op_type not in FUSED:
        return bias, None
    constants = tuple(numpy_helper.to_array(inits[i]) if i in inits else None for i in nxt.input[1:])
    return bias, Activation(nxt.op_type, _jsonable(node_attrs(nxt)), constants)


# --------------------------------------------------------------------------------------------- building

# (layer, len_in, len_out) -> (input shape, weight shape, attributes) of the standalone node
Builder = Callable[[Layer, int, int], tuple[list[int], list[int], dict[str, Any]]]


def _conv(layer: Layer, len_in: int, len_out: int) -> tuple[list[int], list[int], dict[str, Any]]:
    """Conv ``W[M, C/g, k...]``: a grouped conv loses whole conv-groups of ``M/g`` filters, so
    ``g' = len_out / (M/g)`` and the input has ``len_in · g'`` channels."""
    attrs = dict(layer.attrs)
    group = int(attrs.get("group", 1))
    per_group = max(1, layer.weight_shape[0] // group)
    new_group = max(1, len_out // per_group) if group > 1 else 1
    if group > 1:
        attrs["group"] = new_group
    x = list(layer.input_shape)
    x[1] = len_in * new_group
    return x, [len_out, len_in, *layer.weight_shape[2:]], attrs


def _matrix(layer: Layer, len_in: int, len_out: int) -> tuple[list[int], list[int], dict[str, Any]]:
    """Gemm / MatMul: the weight's reduction axis meets A's K (Gemm: A's axis transA, else the last)."""
    w = list(layer.weight_shape)
    w[layer.in_axis], w[layer.out_axis] = len_in, len_out
    x = list(layer.input_shape)
    k_axis = 0 if layer.op_type == "Gemm" and layer.attrs.get("transA", 0) else len(x) - 1
    x[k_axis] = len_in
    return x, w, dict(layer.attrs)


BUILDERS: dict[str, Builder] = {"Conv": _conv, "Gemm": _matrix, "MatMul": _matrix}


def layer_graph(layer: Layer, len_in: int, len_out: int, opset: int = 17) -> onnx.ModelProto:
    """The layer alone at widths ``(len_in, len_out)``: input ``x``, random weights, its fused bias and
    activation, output ``y`` (see the module docstring)."""
    x_shape, w_shape, attrs = BUILDERS[layer.op_type](layer, len_in, len_out)
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(w_shape).astype(np.float32) * 0.05, "w")]
    inputs, nodes = ["x", "w"], []
    if layer.bias:
        inits.append(numpy_helper.from_array(np.zeros(w_shape[layer.out_axis], np.float32), "b"))
    out = "y" if layer.activation is None else "z"
    if layer.op_type == "MatMul":
        nodes.append(helper.make_node("MatMul", inputs, ["mm" if layer.bias else out]))
        if layer.bias:
            nodes.append(helper.make_node("Add", ["mm", "b"], [out]))
    else:
        nodes.append(
            helper.make_node(layer.op_type, [*inputs, *(["b"] if layer.bias else [])], [out], **attrs)
        )
    if layer.activation is not None:
        act_inputs = [out]
        for i, c in enumerate(layer.activation.constants):
            if c is None:
                act_inputs.append("")
                continue
            inits.append(numpy_helper.from_array(np.asarray(c), f"c{i}"))
            act_inputs.append(f"c{i}")
        nodes.append(helper.make_node(layer.activation.op_type, act_inputs, ["y"], **layer.activation.attrs))
    graph = helper.make_graph(
        nodes,
        "layer",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return onnx.shape_inference.infer_shapes(model)  # the output's shape filled in: a complete model


def candidate_lengths(full: int, shrink: Mapping[str, float], widths: Mapping[str, Sequence[int]],
                      channels: Mapping[str, int]) -> list[int]:  # fmt: skip
    """The lengths an axis takes when each group takes one of its ``widths``: exact for an axis one
    group shrinks (the common case); for several, every group moving alone (the measured grid; other
    combinations are looked up at the next measured length above)."""
    out = {full}
    for g, n in shrink.items():
        for k in widths.get(g, [channels[g]]):
            out.add(max(1, round(full - n * (channels[g] - k))))
    return sorted(out)


__all__ = [
    "BIAS_FOLLOWERS",
    "BUILDERS",
    "FUSED",
    "Activation",
    "Layer",
    "candidate_lengths",
    "find_layers",
    "layer_graph",
]
