"""Transformer blocks, pattern by pattern: attention heads and MLP hidden units are pruning elements.

Each test builds a small (N, T, C) graph with onnx.helper, checks the groups the analysis finds (a head is
one channel of a group whose sources are the Q, K and V projections; an MLP unit one channel of fc1's
group), prunes with random masks and checks the pruned model against the masked one on ONNX Runtime,
including the head-count entries of the Reshape targets. No torch here (see test_attention_export.py).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxprune.graph.analysis import analyze
from onnxprune.graph.load import normalize
from onnxprune.graph.macs import count_costs
from onnxprune.plan import Group
from tests.builders import GraphBuilder
from tests.graph.checks import Pruned, prune_check

N, T, C, H = 2, 5, 16, 4
D = C // H
TOL = 1e-5


def _linear(b: GraphBuilder, x: str, units: int) -> str:
    """``x @ W + bias`` as torch exports nn.Linear on a 3-D input."""
    y = b.matmul(x, units)
    bias = b.const(b.rng.standard_normal(units).astype(np.float32) * 0.1, "lb")
    return b.node("Add", [bias, y], b.shapes[y])


def _split_heads(b: GraphBuilder, x: str, key: bool = False, target: tuple[int, int] = (H, D)) -> str:
    """(N, T, C) -> (N, H, T, D), or (N, H, D, T) for the keys; ``target``: the (H, D) entries."""
    r = b.reshape(x, [0, 0, *target], (N, T, H, D))
    return b.transpose(r, [0, 2, 3, 1] if key else [0, 2, 1, 3])


def _attend(b: GraphBuilder, q: str, kt: str, v: str, scale: str, mask: str | None) -> str:
    """softmax(s · q kᵀ [+ mask]) v, merged back to (N, T, C)."""
    s = b.node("MatMul", [q, kt], (N, H, T, T))
    s = b.binary_const(scale, s, np.array(D**-0.5 if scale == "Mul" else D**0.5))
    if mask is not None:
        s = b.node("Add", [s, mask], (N, H, T, T))
    p = b.node("Softmax", [s], (N, H, T, T), axis=-1)
    o = b.node("MatMul", [p, v], (N, H, T, D))
    return b.reshape(b.transpose(o, [0, 2, 1, 3]), [0, 0, C], (N, T, C))


def _with_mask(b: GraphBuilder, output: str, shape: tuple[int, ...]) -> onnx.ModelProto:
    """The builder's graph with a second float input ``mask`` of ``shape`` (batch dim dynamic)."""

    def vi(name: str, dims: tuple[int, ...]) -> onnx.ValueInfoProto:
        batch: int | str = "batch" if dims[0] == N else 1
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, [batch, *dims[1:]])

    inputs = [vi("input", b.input_shape), vi("mask", shape)]
    graph = helper.make_graph(b.nodes, "g", inputs, [vi(output, b.shapes[output])], b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", b.opset)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def attention_block(
    fused: str | None = None,
    scale: str = "Mul",
    mask: tuple[int, ...] | None = None,
    target: tuple[int, int] = (H, D),
) -> onnx.ModelProto:
    """Q/K/V projections (separate, or one fused (C, 3C) projection unbound by ``Split``+``Squeeze`` or by
    ``Gather``), the attention, the output projection; ``mask``: the shape of an added mask input;
    ``target``: the (H, D) entries of the head-split Reshape targets (-1: inferred)."""
    b = GraphBuilder((N, T, C))
    if fused is None:
        q, k, v = (_linear(b, "input", C) for _ in range(3))
        q, v = _split_heads(b, q, target=target), _split_heads(b, v, target=target)
        kt = _split_heads(b, k, key=True, target=target)
    else:
        qkv = b.reshape(_linear(b, "input", 3 * C), [0, 0, 3, *target], (N, T, 3, H, D))
        qkv = b.transpose(qkv, [2, 0, 3, 1, 4])
        if fused == "split":
            parts = [b.squeeze(p, [0]) for p in b.split(qkv, [1, 1, 1], axis=0)]
        else:
            index = [b.const(np.array(i, dtype=np.int64)) for i in range(3)]
            parts = [b.node("Gather", [qkv, i], (N, H, T, D)) for i in index]
        q, k, v = parts
        kt = b.transpose(k, [0, 1, 3, 2])
    o = _linear(b, _attend(b, q, kt, v, scale, "mask" if mask else None), C)
    return _with_mask(b, o, mask) if mask else b.build([o])


def _shapes(mask: tuple[int, ...] | None) -> tuple[int, ...] | dict[str, tuple[int, ...]]:
    return {"input": (N, T, C), "mask": mask} if mask else (N, T, C)


def heads_group(result: Pruned | list[Group]) -> Group:
    groups = result.plan.groups if isinstance(result, Pruned) else result
    return next(g for g in groups if g.channels == H and len(g.source_nodes) in (1, 3))


def _reshape_targets(model: onnx.ModelProto) -> list[list[int]]:
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return [inits[n.input[1]].tolist() for n in model.graph.node if n.op_type == "Reshape"]


def assert_heads_removed(result: Pruned) -> None:
    """pruned == masked; the Q/K/V weights lost D columns per removed head, the output projection D rows,
    and the Reshape targets count the kept heads (H entry) and kept widths (C entry)."""
    assert result.max_rel_error <= TOL, result.plan.format()
    g = heads_group(result)
    kept = int(result.masks[g.name].sum())
    assert 0 < kept < H
    for target in _reshape_targets(result.pruned):
        if len(target) >= 4:  # a head split: (0, 0, [3,] H, D), one of H and D may be -1
            assert target[-2:] in ([kept, D], [kept, -1], [-1, D]), target
        else:  # the merge back: (0, 0, H·D)
            assert target == [0, 0, kept * D], target
    assert result.shrunk()


@pytest.mark.parametrize("scale", ["Mul", "Div"])
@pytest.mark.parametrize("seed", [0, 1])
def test_separate_projections_prune_by_head(scale: str, seed: int) -> None:
    result = prune_check(attention_block(scale=scale), (N, T, C), seed)
    g = heads_group(result)
    assert g.prunable, g.reason
    assert len(g.source_nodes) == 3  # Q, K and V: head h of each is one channel
    assert all(m.index_map.per_channel == D for m in g.sources if m.axis == 1)  # D columns per head
    assert_heads_removed(result)


@pytest.mark.parametrize("unbind", ["split", "gather"])
@pytest.mark.parametrize("seed", [0, 1])
def test_fused_projection_prunes_by_head(unbind: str, seed: int) -> None:
    result = prune_check(attention_block(fused=unbind), (N, T, C), seed)
    g = heads_group(result)
    assert g.prunable, g.reason
    # one weight: each head owns D columns in each of the q, k and v thirds
    w = next(m for m in g.sources if m.axis == 1 and m.initializer.startswith("mm"))
    assert w.index_map.per_channel == 3 * D
    assert_heads_removed(result)


@pytest.mark.parametrize("target", [(H, -1), (-1, D)])
@pytest.mark.parametrize("fused", [None, "split"])
def test_inferred_head_count_or_width(target: tuple[int, int], fused: str | None) -> None:
    """``reshape(n, t, H, -1)`` (timm's Swin) and ``view(n, t, -1, D)`` (Hugging Face): the -1 entry is
    inferred from the shrunk total and comes out right; only an explicit H entry is rewritten."""
    result = prune_check(attention_block(fused=fused, target=target), (N, T, C), seed=0)
    assert heads_group(result).prunable, heads_group(result).reason
    assert_heads_removed(result)


@pytest.mark.parametrize("mask", [(N, 1, 1, T), (N, 1, T, T)])
def test_mask_broadcast_over_heads_does_not_tie_them(mask: tuple[int, ...]) -> None:
    """An input mask added to every head's scores (BERT's (N, 1, 1, T)): the heads stay separate."""
    result = prune_check(attention_block(mask=mask), _shapes(mask), seed=0)
    assert heads_group(result).prunable
    assert_heads_removed(result)


def test_constant_causal_mask() -> None:
    b = GraphBuilder((N, T, C))
    q, kt, v = (_split_heads(b, _linear(b, "input", C), key=i == 1) for i in range(3))
    causal = np.triu(np.full((T, T), -1e4, dtype=np.float32), 1).reshape(1, 1, T, T)
    s = b.binary_const("Add", b.node("MatMul", [q, kt], (N, H, T, T)), causal)
    o = b.node("MatMul", [b.node("Softmax", [s], (N, H, T, T), axis=-1), v], (N, H, T, D))
    o = b.reshape(b.transpose(o, [0, 2, 1, 3]), [0, 0, C], (N, T, C))
    result = prune_check(b.build([_linear(b, o, C)]), (N, T, C), seed=1)
    assert heads_group(result).prunable
    assert_heads_removed(result)


def test_gemm_projections_on_flattened_tokens() -> None:
    """Projections as Gemm on (N·T, C) (exporters that flatten the tokens): the split
    (N·T, C) -> (N, T, H, D) and the merge (N, T, H, D) -> (N·T, C) carry the heads the same way."""
    b = GraphBuilder((N * T, C))
    q, k, v = (b.reshape(b.gemm("input", C), [-1, T, H, D], (N, T, H, D)) for _ in range(3))
    q, kt, v = b.transpose(q, [0, 2, 1, 3]), b.transpose(k, [0, 2, 3, 1]), b.transpose(v, [0, 2, 1, 3])
    o = _attend(b, q, kt, v, "Mul", None)
    o = b.reshape(o, [-1, C], (N * T, C))
    result = prune_check(b.build([b.gemm(o, C)], dynamic_batch=False), (N * T, C), seed=0)
    g = heads_group(result)
    assert g.prunable and len(g.source_nodes) == 3, g.reason
    kept = int(result.masks[g.name].sum())
    targets = _reshape_targets(result.pruned)
    assert [-1, T, kept, D] in targets and [-1, kept * D] in targets, targets
    assert result.max_rel_error <= TOL and result.shrunk()


def test_split_axis_with_a_computed_entry_that_keeps_its_size() -> None:
    """(T, N, C) -> (T, N·H, D) with N·H computed from the dynamic batch (``nn.MultiheadAttention``'s
    layout): the N·H axis keeps its size whatever is removed, so its computed entry is fine; D shrinks."""
    b = GraphBuilder((N, T, C))
    y = b.transpose(_linear(b, "input", C), [1, 0, 2])  # (T, N, C)
    batch = b.node("Gather", [b.node("Shape", [y], (3,)), b.const(np.array([1], dtype=np.int64))], (1,))
    nh = b.node("Mul", [batch, b.const(np.array([H], dtype=np.int64))], (1,))
    t_entry, d_entry = (b.const(np.array([v], dtype=np.int64)) for v in (T, D))
    target = b.node("Concat", [t_entry, nh, d_entry], (3,), axis=0)
    z = b.node("Reshape", [y, target], (T, N * H, D))
    z = b.transpose(b.reshape(z, [T, -1, C], (T, N, C)), [1, 0, 2])
    result = prune_check(b.build([_linear(b, b.unary("Relu", z), C)]), (N, T, C), seed=0)
    g = result.group_of(b.nodes[0].name)
    assert g.prunable and g.channels == D, g.reason  # dim d of every head
    assert result.max_rel_error <= TOL and result.shrunk()


def test_per_head_position_bias_goes_with_its_head() -> None:
    """A constant (1, H, T, T) bias added to the scores (Swin's relative position bias): its slice of head
    h is a member of head h (zeroed with it in the masked model, removed by surgery)."""
    b = GraphBuilder((N, T, C))
    q, kt, v = (_split_heads(b, _linear(b, "input", C), key=i == 1) for i in range(3))
    bias = b.rng.standard_normal((1, H, T, T)).astype(np.float32)
    s = b.binary_const("Add", b.node("MatMul", [q, kt], (N, H, T, T)), bias)
    o = b.node("MatMul", [b.node("Softmax", [s], (N, H, T, T), axis=-1), v], (N, H, T, D))
    o = b.reshape(b.transpose(o, [0, 2, 1, 3]), [0, 0, C], (N, T, C))
    result = prune_check(b.build([_linear(b, o, C)]), (N, T, C), seed=0)
    g = heads_group(result)
    bias_name = next(t.name for t in result.model.graph.initializer if len(t.dims) == 4)
    assert any(m.initializer == bias_name and m.axis == 1 for m in g.sources)
    kept = int(result.masks[g.name].sum())
    pruned_bias = next(t for t in result.pruned.graph.initializer if t.name == bias_name)
    assert list(pruned_bias.dims) == [1, kept, T, T]
    assert_heads_removed(result)


@pytest.mark.parametrize("fill", ["before", "after"])
def test_masked_fill_over_heads(fill: str) -> None:
    """``scores.masked_fill(mask < 0, -1e4)``: ``Where`` with a condition over (N, 1, 1, T) and a constant
    fill, the scores on either branch."""
    b = GraphBuilder((N, T, C))
    q, kt, v = (_split_heads(b, _linear(b, "input", C), key=i == 1) for i in range(3))
    s = b.node("MatMul", [q, kt], (N, H, T, T))
    cond = b.node("Less", ["mask", b.const(np.array(0.0, dtype=np.float32))], (N, 1, 1, T))
    fill_value = b.const(np.array(-1e4, dtype=np.float32))
    branches = [fill_value, s] if fill == "before" else [s, fill_value]
    s = b.node("Where", [cond, *branches], (N, H, T, T))
    o = b.node("MatMul", [b.node("Softmax", [s], (N, H, T, T), axis=-1), v], (N, H, T, D))
    o = _linear(b, b.reshape(b.transpose(o, [0, 2, 1, 3]), [0, 0, C], (N, T, C)), C)
    result = prune_check(_with_mask(b, o, (N, 1, 1, T)), _shapes((N, 1, 1, T)), seed=0)
    assert heads_group(result).prunable, heads_group(result).reason
    assert_heads_removed(result)


def test_nan_guard_after_softmax() -> None:
    """``Where(IsNaN(p), 0, p)`` (torch's scaled_dot_product_attention with a mask): the condition, the
    fill and the probabilities meet per head."""
    b = GraphBuilder((N, T, C))
    q, kt, v = (_split_heads(b, _linear(b, "input", C), key=i == 1) for i in range(3))
    s = b.node("Add", [b.node("MatMul", [q, kt], (N, H, T, T)), "mask"], (N, H, T, T))
    p = b.node("Softmax", [s], (N, H, T, T), axis=-1)
    zero = b.const(np.array([0.0], dtype=np.float32))
    p = b.node("Where", [b.node("IsNaN", [p], (N, H, T, T)), zero, p], (N, H, T, T))
    o = b.node("MatMul", [p, v], (N, H, T, D))
    o = _linear(b, b.reshape(b.transpose(o, [0, 2, 1, 3]), [0, 0, C], (N, T, C)), C)
    result = prune_check(_with_mask(b, o, (N, 1, 1, T)), _shapes((N, 1, 1, T)), seed=1)
    assert heads_group(result).prunable, heads_group(result).reason
    assert_heads_removed(result)


def test_mask_with_a_head_axis_keeps_the_heads() -> None:
    """A computed (N, H, T, T) term would have to lose the removed heads too: the heads stay."""
    mask = (N, H, T, T)
    plan = analyze(normalize(attention_block(mask=mask)).model, _shapes(mask))
    heads = [g for g in plan.groups if g.channels == H]  # Q with K (tied by q kᵀ), and V on its own
    assert len(heads) == 2 and not any(g.prunable for g in heads)
    assert any("kept tensor" in (g.reason or "") for g in heads)


def test_attention_products_lose_macs_with_heads() -> None:
    """q kᵀ and p v are MatMuls of two activations: their MACs count and shrink with the heads."""
    result = prune_check(attention_block(), (N, T, C), seed=0, masks=None, ratio=0.5)
    kept = int(result.masks[heads_group(result).name].sum())
    before, after = (count_costs(m, (N, T, C)).nodes for m in (result.model, result.pruned))
    products = [k for k in before if before[k].params == 0 and before[k].op_type == "MatMul"]
    assert len(products) == 2
    for k in products:
        assert before[k].macs == N * H * T * T * D
        assert after[k].macs == before[k].macs * kept // H


def test_softmax_over_the_channels_keeps_them() -> None:
    b = GraphBuilder((N, T, C))
    q = _split_heads(b, _linear(b, "input", C))
    p = b.node("Softmax", [q], (N, H, T, D), axis=-1)  # no product below: split by D, tied over heads
    model = b.build([_linear(b, b.reshape(b.transpose(p, [0, 2, 1, 3]), [0, 0, C], (N, T, C)), C)])
    plan = analyze(normalize(model).model, (N, T, C))
    assert not plan.groups[0].prunable and "normalizes across" in (plan.groups[0].reason or "")


@pytest.mark.parametrize(
    ("start", "end", "prunable"),
    [(-1, 2**62, True), (0, 1, True), (0, 2, False)],
    ids=["D (folded: static)", "the dynamic batch", "batch and head count"],
)
def test_scale_read_from_the_shape_of_q(start: int, end: int, prunable: bool) -> None:
    """A scale computed from ``Shape(q)[start:end]`` (torch's scaled_dot_product_attention reads
    ``[-1:]``, D, which normalization folds): reading dims that stay (D, the batch) keeps the heads
    prunable; reading the head count keeps the heads."""
    b = GraphBuilder((N, T, C))
    q = _split_heads(b, _linear(b, "input", C))
    k = _split_heads(b, _linear(b, "input", C), key=True)
    v = _split_heads(b, _linear(b, "input", C))
    dims = b.node("Shape", [q], (4,))
    bounds = [b.const(np.array([x], dtype=np.int64)) for x in (start, end)]
    d = b.node("ReduceMax", [b.node("Slice", [dims, *bounds], (min(end, 4) - start % 4,))], (1,), keepdims=1)
    d = b.node("Cast", [d], (1,), to=TensorProto.FLOAT)
    qs = b.node("Div", [q, b.node("Sqrt", [d], (1,))], (N, H, T, D))
    s = b.node("MatMul", [qs, k], (N, H, T, T))
    o = b.node("MatMul", [b.node("Softmax", [s], (N, H, T, T), axis=-1), v], (N, H, T, D))
    o = b.reshape(b.transpose(o, [0, 2, 1, 3]), [0, 0, C], (N, T, C))
    result = prune_check(b.build([_linear(b, o, C)]), (N, T, C), seed=0)
    assert heads_group(result).prunable is prunable, heads_group(result).reason
    if prunable:
        assert_heads_removed(result)
    else:
        assert "reads the channel count" in (heads_group(result).reason or "")


def test_normalization_folds_static_slices_of_a_dynamic_shape() -> None:
    """``Shape(x)[1:3]`` of an (N, T, C) tensor with a dynamic N is static (T, C), and ``Mod``/``Reshape``
    of constants are constants: folded, the Reshape target's channel entry is a constant to rewrite."""
    b = GraphBuilder((N, T, C))
    y = _linear(b, "input", C)
    dims = b.node("Shape", [y], (3,))
    batch = b.node("Slice", [dims, *(b.const(np.array([x], dtype=np.int64)) for x in (0, 1))], (1,))
    two = b.node(
        "Mod", [b.const(np.array([5], dtype=np.int64)), b.const(np.array([3], dtype=np.int64))], (1,)
    )
    two = b.node("Reshape", [two, b.const(np.array([1], dtype=np.int64))], (1,))
    rest = b.node(
        "Slice",
        [
            dims,
            b.const(np.array([1], dtype=np.int64)),
            b.node("Add", [two, b.const(np.array([1], dtype=np.int64))], (1,)),
        ],
        (2,),
    )
    target = b.node("Concat", [batch, rest], (3,), axis=0)
    z = b.node("Reshape", [y, target], (N, T, C))
    model = normalize(b.build([_linear(b, b.unary("Relu", z), C)])).model
    ops = [n.op_type for n in model.graph.node]
    assert "Mod" not in ops and ops.count("Slice") == 1, ops  # shape[0:1] (the batch) stays computed
    result = prune_check(model, (N, T, C), seed=0)
    g = result.group_of(b.nodes[0].name)
    assert g.prunable and g.shape_edits, g.reason
    assert result.max_rel_error <= TOL and result.shrunk()


def test_product_over_a_contracted_channel_ties_both_sides() -> None:
    """``(x W1) @ (x W2)ᵀ``: column k of W1 meets column k of W2 in the sum over k; removing both is
    exact (either side zero), so they are one channel and the product carries none."""
    b = GraphBuilder((N, T, C))
    left, right = _linear(b, "input", 6), b.transpose(_linear(b, "input", 6), [0, 2, 1])
    s = b.node("MatMul", [left, right], (N, T, T))
    result = prune_check(b.build([_linear(b, s, 3)]), (N, T, C), seed=0)
    g = result.group_of(b.nodes[0].name)
    assert g.prunable and g.channels == 6 and len(g.source_nodes) == 2, g.reason
    assert result.max_rel_error <= TOL and result.shrunk()


def test_product_moves_row_channels() -> None:
    """``(x W)ᵀ @ y`` with ``y`` computed and untracked: unit k of W is row k of the product, read by the
    next layer after a transpose; a zeroed row stays zero."""
    b = GraphBuilder((N, T, C))
    rows = b.transpose(_linear(b, "input", 6), [0, 2, 1])  # (N, 6, T)
    y = b.unary("Tanh", "input")  # (N, T, C), no channels
    s = b.transpose(b.node("MatMul", [rows, y], (N, 6, C)), [0, 2, 1])  # (N, C, 6)
    result = prune_check(b.build([_linear(b, s, 3)]), (N, T, C), seed=1)
    g = result.group_of(b.nodes[0].name)
    assert g.prunable and g.channels == 6, g.reason
    assert result.max_rel_error <= TOL and result.shrunk()


# -- MLP hidden units --------------------------------------------------------------------------------


def _gelu(b: GraphBuilder, x: str, form: str) -> str:
    """GELU as exporters write it: the Erf form, the tanh form (with Pow or x·x·x), the Gelu op."""
    if form == "op" or form == "op_tanh":
        return b.unary("Gelu", x, approximate="tanh" if form == "op_tanh" else "none")
    if form == "erf":
        e = b.unary("Erf", b.binary_const("Div", x, np.array(np.sqrt(2.0))))
        return b.binary_const("Mul", b.mul(x, b.binary_const("Add", e, np.array(1.0))), np.array(0.5))
    if form == "tanh_pow":
        cube = b.node("Pow", [x, b.const(np.array(3.0, dtype=np.float32))], b.shapes[x])
    else:
        cube = b.mul(b.mul(x, x), x)
    inner = b.add(x, b.binary_const("Mul", cube, np.array(0.044715)))
    t = b.unary("Tanh", b.binary_const("Mul", inner, np.array(np.sqrt(2 / np.pi))))
    return b.binary_const("Mul", b.mul(x, b.binary_const("Add", t, np.array(1.0))), np.array(0.5))


@pytest.mark.parametrize("form", ["erf", "tanh_pow", "tanh_mul", "op", "op_tanh"])
@pytest.mark.parametrize("layer", ["matmul", "gemm"])
def test_mlp_units_through_gelu(form: str, layer: str) -> None:
    """fc1's output columns go with fc2's input rows through every GELU form: the scalar constants keep
    each unit's identity, and a removed unit (0) stays 0 through GELU."""
    opset = 20 if form.startswith("op") else 17
    b = GraphBuilder((N * T, C) if layer == "gemm" else (N, T, C), opset=opset)
    fc1 = b.gemm("input", 4 * C) if layer == "gemm" else _linear(b, "input", 4 * C)
    h = _gelu(b, fc1, form)
    out = b.gemm(h, C) if layer == "gemm" else _linear(b, h, C)
    result = prune_check(b.build([out]), b.input_shape, seed=0)
    g = result.group_of(b.nodes[0].name)
    assert g.prunable and g.channels == 4 * C, g.reason
    assert result.max_rel_error <= TOL and result.shrunk()


def test_kept_full_size_operand_keeps_the_channels() -> None:
    """``x * y`` with ``y`` computed and as wide as ``x``: removing a channel of ``x`` would leave ``y``
    with the old width (an invalid Mul), so the channel stays; the pruned model stays valid."""
    b = GraphBuilder((1, 3, 8, 8))
    x = b.conv("input", 3)
    z = b.mul(x, b.unary("Sigmoid", "input"))
    model = b.build([b.gemm(b.flatten(b.gap(b.conv(z, 4))), 3)])
    result = prune_check(model, (1, 3, 8, 8))
    g = result.group_of(b.nodes[0].name)
    assert not g.prunable and "kept tensor" in (g.reason or "")
    assert result.max_rel_error <= TOL
