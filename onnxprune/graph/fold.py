"""Fold shape arithmetic on static dims into constants.

Exporters compute reshape targets and slice bounds from ``Shape``: ShuffleNet's channel shuffle reshapes
to ``(N, g, C // g, H, W)`` and its ``chunk`` slices at ``C // 2``, all read at run time. The channel count
``C`` is a constant of the model (it does not depend on the input), but an expression of it hides the
number from the channel analysis and would silently keep the *original* ``C`` meaning after surgery.
Folding every dim that is static into a constant makes such entries plain initializers, which the channel
rules then rewrite like any other shape constant. Dims that are dynamic (batch, free spatial dims) stay
computed: the output keeps its dynamic axes.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from .index import outer_scope_reads
from .protos import weightless

FOLDABLE = frozenset(
    {
        "Gather", "Unsqueeze", "Squeeze", "Concat", "Cast", "Add", "Sub", "Mul", "Div", "Slice", "Floor",
        "Ceil", "Mod", "Reshape",
    }
)  # fmt: skip
MAX_ELEMENTS = 64  # shape arithmetic only: never fold a real tensor


def _static_dims(model: onnx.ModelProto) -> dict[str, list[int | None]]:
    try:
        inferred = onnx.shape_inference.infer_shapes(weightless(model), strict_mode=False, data_prop=True)
    except Exception:  # inference failed: nothing is known statically
        return {}
    out: dict[str, list[int | None]] = {}
    for vi in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        tt = vi.type.tensor_type
        if vi.type.HasField("tensor_type") and tt.HasField("shape"):
            out[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
    missing = [o for n in model.graph.node for o in n.output if o and o not in out]
    if missing:
        out.update(_probe_batch(model, inferred, missing))
    return out


def _probe_batch(
    model: onnx.ModelProto, inferred: onnx.ModelProto, names: list[str]
) -> dict[str, list[int | None]]:
    """Shapes inference left unknown (old-opset reshapes to targets with a dynamic batch), from two ONNX
    Runtime runs at batch 1 and 2 — only for a model whose one dynamic input dim is the batch: dims that
    agree in both runs are static, the others dynamic."""
    from .shapes import run_for_shapes

    inits = {t.name for t in model.graph.initializer}
    real = [vi for vi in model.graph.input if vi.name not in inits]
    if len(real) != 1:
        return {}
    dims = [d.dim_value if d.HasField("dim_value") else None for d in real[0].type.tensor_type.shape.dim]
    if not dims or dims[0] is not None or any(d is None for d in dims[1:]):
        return {}
    runs = [
        run_for_shapes(model, names, (b, *dims[1:]), typed=inferred)  # type: ignore[arg-type]
        for b in (1, 2)
    ]
    return {
        n: [a if a == b else None for a, b in zip(runs[0][n], runs[1][n], strict=True)]
        for n in names
        if n in runs[0] and n in runs[1] and len(runs[0][n]) == len(runs[1][n])
    }


def _shape_value(node: onnx.NodeProto, dims: list[int | None]) -> tuple[np.ndarray, np.ndarray]:
    """(values, known) of a Shape node's output."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    rank = len(dims)
    start, end = attrs.get("start", 0), attrs.get("end", rank)
    start, end = (start + rank if start < 0 else start), (end + rank if end < 0 else end)
    sel = dims[max(start, 0) : min(end, rank)]
    return np.array([d or 0 for d in sel], dtype=np.int64), np.array([d is not None for d in sel])


def _evaluate(node: onnx.NodeProto, values: list[np.ndarray], opset: int) -> np.ndarray | None:
    inputs = [
        helper.make_tensor_value_info(f"i{k}", helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
        for k, v in enumerate(values)
    ]
    clone = helper.make_node(node.op_type, [f"i{k}" if n else "" for k, n in enumerate(node.input)], ["o"])
    clone.attribute.extend(node.attribute)
    graph = helper.make_graph([clone], "fold", inputs, [helper.make_tensor_value_info("o", 0, None)])
    try:
        one_node = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        (out,) = ReferenceEvaluator(one_node).run(None, {f"i{k}": v for k, v in enumerate(values)})
    except Exception:  # an op the reference runtime cannot evaluate: leave the node
        return None
    return np.asarray(out)


def _partial_slice(
    node: onnx.NodeProto, partial: dict[str, tuple[np.ndarray, np.ndarray]], consts: dict[str, np.ndarray]
) -> slice | None:
    """The range a step-1 ``Slice`` (opset >= 10) with constant bounds takes of a partly known Shape."""
    if node.op_type != "Slice" or len(node.input) < 3 or node.input[0] not in partial:
        return None
    params = [consts.get(i) if i else None for i in node.input[1:5]]
    if any(i and p is None for i, p in zip(node.input[1:5], params, strict=False)):
        return None
    starts, ends, axes, steps = (*params, None, None)[:4]
    if starts is None or ends is None or starts.size != 1 or ends.size != 1:
        return None
    if (axes is not None and int(axes.reshape(-1)[0]) not in (0, -1)) or (
        steps is not None and int(steps.reshape(-1)[0]) != 1
    ):
        return None
    return slice(int(starts.reshape(-1)[0]), int(ends.reshape(-1)[0]))


def fold_static_shapes(model: onnx.ModelProto, notes: list[str], max_rounds: int = 64) -> None:
    """In place: nodes of shape arithmetic whose result is fully static become initializers.

    Repeated until nothing changes: a folded reshape target makes the next block's shapes static."""
    removed = constants = 0
    for _ in range(max_rounds):
        r, c = _fold_once(model)
        if not r:
            break
        removed, constants = removed + r, constants + c
    if removed:
        notes.append(
            f"folded {removed} node(s) of shape arithmetic on static dims into {constants} constant(s)"
        )


def _fold_once(model: onnx.ModelProto) -> tuple[int, int]:
    g = model.graph
    dims = _static_dims(model)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    consts: dict[str, np.ndarray] = {
        t.name: numpy_helper.to_array(t)
        for t in g.initializer
        if t.data_type in (onnx.TensorProto.INT64, onnx.TensorProto.INT32) and np.prod(t.dims) <= MAX_ELEMENTS
    }
    partial: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # Shape outputs with some dims dynamic
    folded: dict[str, np.ndarray] = {}
    for node in g.node:
        if node.op_type == "Shape" and node.input[0] in dims:
            values, known = _shape_value(node, dims[node.input[0]])
            if known.all():
                consts[node.output[0]] = folded[node.output[0]] = values
            else:
                partial[node.output[0]] = (values, known)
            continue
        if node.op_type == "Gather" and node.input[0] in partial and node.input[1] in consts:
            values, known = partial[node.input[0]]
            idx = consts[node.input[1]]
            if known[idx].all():
                consts[node.output[0]] = folded[node.output[0]] = values[idx]
            continue
        sel = _partial_slice(node, partial, consts)
        if sel is not None:  # nn.MultiheadAttention's shape[:2] / shape[-1:] of a dynamic-batch tensor
            values, known = partial[node.input[0]]
            if known[sel].all():
                consts[node.output[0]] = folded[node.output[0]] = values[sel]
            else:
                partial[node.output[0]] = (values[sel], known[sel])
            continue
        if node.op_type not in FOLDABLE or len(node.output) != 1:
            continue
        if not all(i in consts for i in node.input if i):
            continue
        out = _evaluate(node, [consts[i] for i in node.input if i], opset)
        if out is not None and out.size <= MAX_ELEMENTS and out.dtype.kind in "iu":
            consts[node.output[0]] = folded[node.output[0]] = out
    outputs = {o.name for o in g.output}
    folded = {k: v for k, v in folded.items() if k not in outputs}
    if not folded:
        return 0, 0
    kept = [n for n in g.node if n.output[0] not in folded]
    # drop the shape nodes and arithmetic left without readers
    needed = set(outputs)
    alive: list[onnx.NodeProto] = []
    for n in reversed(kept):
        if not (set(n.output) & needed) and (n.op_type == "Shape" or n.op_type in FOLDABLE):
            continue
        alive.append(n)
        needed |= set(n.input) | outer_scope_reads(n)
    alive.reverse()
    used = {k: v for k, v in folded.items() if k in needed}
    removed = len(g.node) - len(alive)
    del g.node[:]
    g.node.extend(alive)
    for name, value in used.items():
        g.initializer.append(numpy_helper.from_array(value, name))
    names = set(folded)
    vis = [vi for vi in g.value_info if vi.name not in names]
    del g.value_info[:]
    g.value_info.extend(vis)
    return removed, len(used)
