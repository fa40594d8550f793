"""Legacy broadcasting (opsets 1-6) rewritten into numpy broadcasting, before the opset is lifted.

Below opset 7, ``Add``/``Mul``/... broadcast only when asked (``broadcast=1``), and ``axis`` says where
``B``'s dims align in ``A``: ``A (N, C, H, W) * B (C,)`` with ``axis=1`` scales channels. Numpy
broadcasting aligns trailing dims instead, so the same product is ``A * B'`` with
``B' = B.reshape(B.shape + (1,) * (rank(A) - axis - rank(B)))`` — here ``(C, 1, 1)``. Without ``axis``
the legacy rule already aligns ``B`` as a suffix of ``A``: the shape stays.

onnx's version converter does this with an ``Unsqueeze`` (axes ``[1, 2, 3]`` for the example: the wrong
rank for numpy broadcasting, ``(C, 1, 1, 1)``) and an untyped value_info that ONNX Runtime refuses; for a
constant ``B`` the reshaped initializer is exact, leaves no node in between (the channel rules see a plain
per-channel constant) and the converter has nothing left to adapt. A computed ``B`` gets an ``Unsqueeze``
of its trailing axes (the right rank) before the converter sees the node.
"""

from __future__ import annotations

import onnx
from onnx import helper

from .protos import new_tensor, tensor_array, weightless

LEGACY_BROADCAST = frozenset(
    {"Add", "Sub", "Mul", "Div", "Pow", "And", "Or", "Xor", "Equal", "Greater", "Less"}
)
LAST_LEGACY_OPSET = 6  # opset 7 introduced numpy broadcasting for these ops


def rewrite_legacy_broadcasts(model: onnx.ModelProto, notes: list[str]) -> None:
    """In place: every legacy broadcast whose ranks are known becomes numpy broadcasting (see the module
    docstring); its ``broadcast`` and ``axis`` attributes are dropped. Pre: constants are initializers."""
    g = model.graph
    if not any(_is_legacy_broadcast(n) for n in g.node):
        return
    ranks = _ranks(model)
    inits = {t.name: t for t in g.initializer}
    readers: dict[str, int] = {}
    for n in g.node:
        for i in n.input:
            readers[i] = readers.get(i, 0) + 1
    private = {n for n, count in readers.items() if count == 1} - {o.name for o in g.output}
    taken = set(inits) | {o for n in g.node for o in n.output} | {vi.name for vi in g.input}
    inserted: dict[int, onnx.NodeProto] = {}  # node index -> the Unsqueeze to run before it
    reshaped: set[str] = set()
    rewritten = 0
    for index, node in enumerate(g.node):
        if not _is_legacy_broadcast(node):
            continue
        trailing = _trailing_ones(node, ranks)
        if trailing is None:
            continue  # unknown rank, or not a valid legacy broadcast: the converter decides or reports
        b = node.input[1]
        if trailing and b in inits:  # a constant: reshape it (a private copy when others read it)
            values = tensor_array(inits[b]).reshape((*inits[b].dims, *([1] * trailing)))
            target = b if b in private else _fresh(f"{b}__bcast", taken)
            new = new_tensor(target, values, like=inits[b])
            if target == b:
                inits[b].CopyFrom(new)
            else:
                g.initializer.append(new)
            node.input[1] = target
            reshaped.add(target)
        elif trailing:  # computed: unsqueeze its trailing axes (Unsqueeze-1: axes is an attribute)
            out = _fresh(f"{b}__bcast", taken)
            axes = list(range(ranks[b], ranks[b] + trailing))
            name = _fresh(f"{node.name or node.op_type}__bcast", taken)
            inserted[index] = helper.make_node("Unsqueeze", [b], [out], name=name, axes=axes)
            node.input[1] = out
        kept = [a for a in node.attribute if a.name not in ("broadcast", "axis")]
        del node.attribute[:]
        node.attribute.extend(kept)
        ranks[node.output[0]] = ranks[node.input[0]]
        rewritten += 1
    if inserted:
        nodes = [x for i, n in enumerate(g.node) for x in ([inserted[i]] if i in inserted else []) + [n]]
        del g.node[:]
        g.node.extend(nodes)
    if reshaped:
        vis = [vi for vi in g.value_info if vi.name not in reshaped]  # they held B's old shape
        del g.value_info[:]
        g.value_info.extend(vis)
    if rewritten:
        notes.append(f"rewrote {rewritten} legacy broadcast(s) (broadcast=1, axis) into numpy broadcasting")


def _trailing_ones(node: onnx.NodeProto, ranks: dict[str, int]) -> int | None:
    """How many 1-dims ``B`` needs appended to broadcast the numpy way; None when a rank is unknown or
    the legacy broadcast is invalid."""
    rank_a, rank_b = ranks.get(node.input[0]), ranks.get(node.input[1])
    if rank_a is None or rank_b is None:
        return None
    axis = next((int(a.i) for a in node.attribute if a.name == "axis"), None)
    if axis is None:  # legacy without axis: B is a suffix of A, as in numpy
        return 0
    axis += rank_a if axis < 0 else 0
    trailing = rank_a - axis - rank_b
    return trailing if axis >= 0 and trailing >= 0 else None


def _is_legacy_broadcast(node: onnx.NodeProto) -> bool:
    return (
        node.op_type in LEGACY_BROADCAST
        and node.domain in ("", "ai.onnx")
        and len(node.input) == 2
        and any(a.name == "broadcast" and a.i == 1 for a in node.attribute)
    )


def _ranks(model: onnx.ModelProto) -> dict[str, int]:
    """Ranks shape inference knows (inputs, intermediate values, initializers)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(weightless(model), strict_mode=False)
    except Exception:  # inference failed: only the initializers' ranks are known
        inferred = model
    out = {t.name: len(t.dims) for t in model.graph.initializer}
    for vi in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        tt = vi.type.tensor_type
        if vi.type.HasField("tensor_type") and tt.HasField("shape"):
            out[vi.name] = len(tt.shape.dim)
    return out


def _fresh(base: str, taken: set[str]) -> str:
    name, k = base, 0
    while name in taken:
        k += 1
        name = f"{base}{k}"
    taken.add(name)
    return name
