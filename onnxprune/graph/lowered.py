"""The exact lowered (im2col) form of shape-pruned Conv and Gemm layers (ONNX only, no torch).

A shape-pruned Conv ``W[O, C, *K]`` (group 1) has zero columns ``W[:, c, *o]``. With ``x_pad`` the padded
input, ``s`` the strides and ``d`` the dilations,

    y[:, f, p] = B[f] + Σ_{kept (c, o)} W[f, c, o] · x_pad[:, c, p·s + o·d]

which is one GEMM of the kept im2col rows. The lowered graph builds those rows and nothing else:

    x_pad  = Pad(x)                                                   only with non-zero pads
    piece_o = Slice(Gather(x_pad, C_o, axis=1), o·d, o·d + (out − 1)·s + 1, s)   per kernel offset o with
                                                                      kept channels C_o: (N, |C_o|, *out)
    cols   = Concat(piece_o ..., axis=1)                              (N, k, *out), k kept columns
    y      = Conv(cols, W_k, B)                                       W_k (O, k, 1, ..., 1): a 1x1 conv

Gather is skipped where C_o is every channel, Slice where it is the identity, Concat for a single piece.
Only multiplications by exact zeros are dropped, so the output equals the dense-with-zeros layer up to
float summation order. A Gemm ``A·op(B) + C`` whose columns (input features) are pruned becomes
``Gather(A, kept) · op(B_kept) + C``.

Lowering needs the Conv's input shape static except the batch dim *in the model as declared* (the
slices are fixed): a model with dynamic spatial axes keeps such layers dense, with the reason. Layers
with ``auto_pad`` other than NOTSET, group > 1 or a non-initializer weight are kept dense too.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .layerops import LAYER_OPS, layer_op, node_attrs

__all__ = ["LoweredLayer", "lower_model"]


@dataclass(frozen=True)
class LoweredLayer:
    """What happened to one shape-pruned layer: lowered (``nodes`` ONNX nodes replace it) or kept dense."""

    node: str
    op_type: str
    columns: int  # columns of the weight (C·prod(K), or K features)
    kept: int  # non-zero columns: the GEMM's reduction length once lowered
    lowered: bool
    nodes: int = 1
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Names:
    """Fresh tensor/node/initializer names with a common prefix."""

    def __init__(self, model: onnx.ModelProto) -> None:
        g = model.graph
        self.used = {t.name for t in g.initializer} | {n.name for n in g.node}
        self.used |= {o for n in g.node for o in [*n.input, *n.output]}
        self.used |= {v.name for v in [*g.input, *g.output, *g.value_info]}

    def __call__(self, base: str) -> str:
        name, i = base, 1
        while name in self.used:
            name, i = f"{base}_{i}", i + 1
        self.used.add(name)
        return name


def _declared_shapes(model: onnx.ModelProto) -> dict[str, tuple[int | None, ...]]:
    """Shapes by tensor name as the model declares its inputs (dynamic dims stay None)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:  # onnx raises several types; without shapes nothing is lowered
        return {}
    out: dict[str, tuple[int | None, ...]] = {}
    g = inferred.graph
    for vi in [*g.input, *g.value_info, *g.output]:
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape"):
            out[vi.name] = tuple(
                d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                for d in vi.type.tensor_type.shape.dim
            )
    return out


def _dense_only(attrs: Mapping[str, Any], rank: int, x_shape: tuple[int | None, ...] | None) -> str:
    """Why a Conv stays dense (grouped, auto_pad, input shape not static in the model), or ''."""
    if int(attrs.get("group", 1)) != 1:
        return "grouped Conv"
    auto_pad = attrs.get("auto_pad", b"NOTSET")
    if (auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)) != "NOTSET":
        return f"auto_pad={auto_pad!r}"
    if x_shape is None or len(x_shape) != rank or any(d is None for d in x_shape[1:]):
        return "input shape not static in the model (dynamic spatial axes)"
    return ""


class _Builder:
    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        self.names = _Names(model)
        self.inits = {t.name: t for t in model.graph.initializer}
        self.new_inits: list[onnx.TensorProto] = []

    def const(self, base: str, array: np.ndarray) -> str:
        t = numpy_helper.from_array(np.asarray(array, order="C"), self.names(base))  # keeps 0-d
        self.new_inits.append(t)
        return t.name

    def ints(self, base: str, values: Iterable[int]) -> str:
        return self.const(base, np.asarray(list(values), dtype=np.int64))

    def conv(self, node: onnx.NodeProto, shapes: Mapping[str, tuple[int | None, ...]]) -> tuple[list, str]:
        """(nodes replacing ``node``, reason); no nodes and a reason when it stays dense."""
        a = node_attrs(node)
        w = numpy_helper.to_array(self.inits[node.input[1]])
        spatial = w.ndim - 2
        x_shape = shapes.get(node.input[0])
        refused = _dense_only(a, w.ndim, x_shape)
        if refused or x_shape is None:
            return [], refused
        pads = list(a.get("pads", [0] * 2 * spatial))
        strides = list(a.get("strides", [1] * spatial))
        dil = list(a.get("dilations", [1] * spatial))
        kernel = w.shape[2:]
        dims = [int(d or 0) for d in x_shape[2:]]
        padded = [dims[i] + pads[i] + pads[spatial + i] for i in range(spatial)]
        out = [(padded[i] - dil[i] * (kernel[i] - 1) - 1) // strides[i] + 1 for i in range(spatial)]
        cols = np.any(w != 0, axis=0)  # (C, *K)
        if not cols.any():
            return [], "no non-zero column"
        p = node.name or node.output[0]
        nodes: list[onnx.NodeProto] = []
        x = node.input[0]
        if any(pads):
            padded_x = self.names(f"{p}/lowered/padded")
            all_pads = [0, 0, *pads[:spatial], 0, 0, *pads[spatial:]]
            pad_name = self.ints(f"{p}/lowered/pads", all_pads)
            nodes.append(
                helper.make_node("Pad", [x, pad_name], [padded_x], name=self.names(f"{p}/lowered/Pad"))
            )
            x = padded_x
        pieces: list[str] = []
        columns: list[np.ndarray] = []
        for o in itertools.product(*(range(k) for k in kernel)):
            chans = np.flatnonzero(cols[(slice(None), *o)])
            if chans.size == 0:
                continue
            piece = x
            if chans.size < w.shape[1]:
                idx = self.ints(f"{p}/lowered/channels_{'_'.join(map(str, o))}", chans)
                piece = self.names(f"{p}/lowered/gathered_{'_'.join(map(str, o))}")
                nodes.append(
                    helper.make_node(
                        "Gather", [x, idx], [piece], axis=1, name=self.names(f"{p}/lowered/Gather")
                    )
                )
            starts = [o[i] * dil[i] for i in range(spatial)]
            ends = [starts[i] + (out[i] - 1) * strides[i] + 1 for i in range(spatial)]
            if any(starts) or ends != padded or any(s != 1 for s in strides):
                piece = self._window(
                    f"{p}/lowered", "_".join(map(str, o)), piece, starts, ends, strides, nodes
                )
            pieces.append(piece)
            index: tuple[Any, ...] = (slice(None), chans, *o)
            columns.append(w[index])  # (O, |C_o|)
        im2col = pieces[0]
        if len(pieces) > 1:
            im2col = self.names(f"{p}/lowered/im2col")
            nodes.append(
                helper.make_node("Concat", pieces, [im2col], axis=1, name=self.names(f"{p}/lowered/Concat"))
            )
        wk = np.concatenate(columns, axis=1).reshape(w.shape[0], -1, *([1] * spatial)).astype(w.dtype)
        inputs = [im2col, self.const(f"{node.input[1]}_lowered", wk), *node.input[2:3]]
        nodes.append(
            helper.make_node("Conv", inputs, list(node.output), name=node.name, kernel_shape=[1] * spatial)
        )
        return nodes, ""

    def _window(
        self,
        prefix: str,
        tag: str,
        piece: str,
        starts: list[int],
        ends: list[int],
        strides: list[int],
        nodes: list[onnx.NodeProto],
    ) -> str:
        """``piece[:, :, starts:ends:strides]`` over the spatial axes, appended to ``nodes`` as a Slice."""
        sliced = self.names(f"{prefix}/cols_{tag}")
        inputs = [
            piece,
            self.ints(f"{prefix}/starts_{tag}", starts),
            self.ints(f"{prefix}/ends_{tag}", ends),
            self.ints(f"{prefix}/axes_{tag}", range(2, 2 + len(starts))),
            self.ints(f"{prefix}/steps_{tag}", strides),
        ]
        nodes.append(helper.make_node("Slice", inputs, [sliced], name=self.names(f"{prefix}/Slice")))
        return sliced

    def gemm(self, node: onnx.NodeProto, shapes: Mapping[str, tuple[int | None, ...]]) -> tuple[list, str]:
        a = node_attrs(node)
        b = numpy_helper.to_array(self.inits[node.input[1]])
        k_axis = LAYER_OPS["Gemm"].input_axis(a)
        kept = np.flatnonzero(np.any(b != 0, axis=1 - k_axis))
        if kept.size == 0:
            return [], "no non-zero column"
        p = node.name or node.output[0]
        idx = self.ints(f"{p}/lowered/features", kept)
        gathered = self.names(f"{p}/lowered/gathered")
        a_axis = 0 if a.get("transA", 0) else 1
        gather = helper.make_node(
            "Gather", [node.input[0], idx], [gathered], axis=a_axis, name=self.names(f"{p}/lowered/Gather")
        )
        bk = self.const(f"{node.input[1]}_lowered", np.take(b, kept, axis=k_axis))
        new = onnx.NodeProto()
        new.CopyFrom(node)
        new.input[0], new.input[1] = gathered, bk
        return [gather, new], ""


# op type -> how its node is lowered (the layer ops element sparsity applies to)
_LOWER = {"Conv": _Builder.conv, "Gemm": _Builder.gemm}


def lower_model(model: onnx.ModelProto, weights: Iterable[str]) -> tuple[onnx.ModelProto, list[LoweredLayer]]:
    """A copy of ``model`` with every Conv/Gemm whose weight is one of ``weights`` lowered (see the module
    docstring), and what happened to each such layer. Weights no other node reads are dropped."""
    wanted = set(weights)
    builder = _Builder(model)
    shapes = _declared_shapes(model)
    out_nodes: list[onnx.NodeProto] = []
    layers: list[LoweredLayer] = []
    replaced: set[str] = set()
    for node in model.graph.node:
        lower = _LOWER.get(node.op_type) if layer_op(node) is not None else None
        if lower is None or len(node.input) < 2 or node.input[1] not in wanted:
            out_nodes.append(node)
            continue
        w = numpy_helper.to_array(builder.inits[node.input[1]])
        used = np.any(w != 0, axis=LAYER_OPS[node.op_type].output_axis(node_attrs(node)))  # per column
        columns, kept = int(used.size), int(used.sum())
        nodes, reason = lower(builder, node, shapes)
        if not nodes:
            out_nodes.append(node)
            layers.append(LoweredLayer(node.name, node.op_type, columns, kept, False, 1, reason))
            continue
        out_nodes += nodes
        replaced.add(node.input[1])
        layers.append(LoweredLayer(node.name, node.op_type, columns, kept, True, len(nodes)))
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    out.graph.node.extend(out_nodes)
    still_read = {i for n in out_nodes for i in n.input}
    dropped = replaced - still_read
    kept_inits = [t for t in out.graph.initializer if t.name not in dropped]
    del out.graph.initializer[:]
    out.graph.initializer.extend([*kept_inits, *builder.new_inits])
    inputs = [i for i in out.graph.input if i.name not in dropped]  # IR < 4 lists initializers as inputs
    del out.graph.input[:]
    out.graph.input.extend(inputs)
    return out, layers
