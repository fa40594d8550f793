"""Coupled channels, pattern by pattern: the group structure the analysis finds, and pruned == masked.

Each test builds one small pattern, checks which groups are prunable, how many source nodes one group ties
and its channel count, then prunes with random masks (two seeds) and checks that the pruned model passes
the full ONNX check, reproduces the masked model (<= 1e-5) and really has smaller weights.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from onnxprune.graph.analysis import analyze
from onnxprune.graph.load import normalize
from onnxprune.plan import Group, PruningPlan
from tests.builders import GraphBuilder
from tests.graph.checks import Pruned, prune_check

SEEDS = [0, 1]
TOL = 1e-5
# with and without conv/gemm biases, each with its own mask seed (the cross product doubles the runtime)
bias_and_seed = pytest.mark.parametrize(("bias", "seed"), [(True, 0), (False, 1)])


def head(b: GraphBuilder, x: str, gap: bool = True) -> str:
    """Logits: [GlobalAveragePool ->] Flatten -> Gemm (kept: it reaches the graph output)."""
    return b.gemm(b.flatten(b.gap(x) if gap else x), 3)


def plan_of(model: onnx.ModelProto, shape: tuple[int, ...]) -> PruningPlan:
    return analyze(normalize(model).model, shape)


def assert_exact(result: Pruned) -> None:
    assert result.max_rel_error <= TOL, result.plan.format()
    assert any(not keep.all() for keep in result.masks.values()), "nothing was pruned"
    assert result.shrunk(), result.plan.format()


def group(result: Pruned, node: str) -> Group:
    """The group that ``node`` produces channels for."""
    return next(g for g in result.plan.groups if node in g.source_nodes)


def node_of(b: GraphBuilder, output: str) -> str:
    return next(n.name for n in b.nodes if output in n.output)


def int_const(model: onnx.ModelProto, name: str) -> list[int]:
    return numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == name)).tolist()


def attr(model: onnx.ModelProto, node: str, name: str):
    n = next(n for n in model.graph.node if n.name == node)
    return onnx.helper.get_attribute_value(next(a for a in n.attribute if a.name == name))


def all_prunable_but_logits(result: Pruned) -> None:
    kept = [g for g in result.plan.groups if not g.prunable]
    assert len(kept) == 1 and "graph output" in kept[0].reason, result.plan.format()


# --- residual Add / Sum --------------------------------------------------------------------------------


@bias_and_seed
@pytest.mark.parametrize("blocks", [2, 3])
def test_residual_blocks_on_one_trunk(blocks: int, bias: bool, seed: int) -> None:
    b = GraphBuilder((2, 3, 8, 8), seed=seed)
    stem = b.conv("input", 6, bias=bias)
    t = b.unary("Relu", stem)
    ends = []
    for _ in range(blocks):
        y = b.conv(b.unary("Relu", b.bn(b.conv(t, 4, bias=bias))), 6, bias=bias)
        ends.append(y)
        t = b.unary("Relu", b.add(t, b.bn(y)))
    result = prune_check(b.build([head(b, t)]), (2, 3, 8, 8), seed)
    all_prunable_but_logits(result)
    trunk = group(result, node_of(b, stem))
    assert trunk.channels == 6
    assert sorted(trunk.source_nodes) == sorted(node_of(b, o) for o in [stem, *ends])
    assert len(result.plan.prunable) == 1 + blocks  # the trunk and each block's inner conv
    assert_exact(result)


@bias_and_seed
def test_residual_with_projection_shortcut(bias: bool, seed: int) -> None:
    b = GraphBuilder((2, 3, 8, 8), seed=seed)
    t = b.unary("Relu", b.conv("input", 4, bias=bias))
    y1 = b.conv(b.unary("Relu", b.conv(t, 4, bias=bias)), 6, bias=bias)
    proj = b.conv(t, 6, k=1, bias=bias)  # 1x1 projection: the widths differ
    t = b.unary("Relu", b.add(proj, y1))
    y2 = b.conv(b.unary("Relu", b.conv(t, 4, bias=bias)), 6, bias=bias)
    t = b.unary("Relu", b.add(t, y2))
    result = prune_check(b.build([head(b, t)]), (2, 3, 8, 8), seed)
    all_prunable_but_logits(result)
    trunk = group(result, node_of(b, proj))
    assert trunk.channels == 6
    assert sorted(trunk.source_nodes) == sorted(node_of(b, o) for o in (proj, y1, y2))
    stem = result.plan.groups[0]
    assert stem.source_nodes == [stem.source_node] and stem.channels == 4  # the projection decouples it
    assert_exact(result)


@bias_and_seed
def test_sum_ties_every_input(bias: bool, seed: int) -> None:
    b = GraphBuilder((2, 3, 8, 8), seed=seed)
    convs = [b.conv("input", 5, bias=bias), b.conv("input", 5, bias=bias), b.conv("input", 5, k=1, bias=bias)]
    s = b.unary("Relu", b.sum(convs))
    result = prune_check(b.build([head(b, b.conv(s, 4, bias=bias))]), (2, 3, 8, 8), seed)
    all_prunable_but_logits(result)
    tied = group(result, node_of(b, convs[0]))
    assert tied.channels == 5 and len(tied.source_nodes) == 3
    assert_exact(result)


# --- Concat / Split / Slice on channels ------------------------------------------------------------------


@bias_and_seed
def test_dense_concat_then_bn_relu_conv(bias: bool, seed: int) -> None:
    b = GraphBuilder((2, 3, 8, 8), seed=seed)
    x = b.unary("Relu", b.conv("input", 4, bias=bias))
    for _ in range(2):  # DenseNet: the input and the new features, concatenated
        x = b.concat([x, b.conv(b.unary("Relu", b.bn(x)), 3, bias=bias)])
    bn = b.bn(x)
    x = b.conv(b.unary("Relu", bn), 5, k=1, bias=bias)
    result = prune_check(b.build([head(b, x)]), (2, 3, 8, 8), seed)
    all_prunable_but_logits(result)
    assert [g.channels for g in result.plan.prunable] == [4, 3, 3, 5]
    assert all(len(g.source_nodes) == 1 for g in result.plan.groups)  # a Concat couples nothing
    # the BN after the last concat is sliced by all three groups, each at its offset
    offsets = sorted(
        m.index_map.offset
        for g in result.plan.prunable
        for m in g.members
        if m.node == node_of(b, bn) and "mean" in m.initializer
    )
    assert offsets == [0, 4, 7]
    assert_exact(result)


@pytest.mark.parametrize("opset", [11, 13, 17])  # split sizes: attribute before 13, input from 13
@bias_and_seed
def test_split_on_channels(opset: int, bias: bool, seed: int) -> None:
    b = GraphBuilder((2, 3, 8, 8), seed=seed, opset=opset)
    x = b.unary("Relu", b.conv("input", 8, bias=bias))
    p, q = b.split(x, [3, 5])
    y = b.concat([b.conv(p, 4, bias=bias), b.unary("Relu", b.conv(q, 4, k=1, bias=bias))])
    result = prune_check(b.build([head(b, y)]), (2, 3, 8, 8), seed)
    all_prunable_but_logits(result)
    first = result.plan.groups[0]
    assert first.channels == 8 and len(first.shape_edits) == 2
    split = next(n for n in result.pruned.graph.node if n.op_type == "Split")
    sizes = (
        int_const(result.pruned, split.input[1]) if opset >= 13 else attr(result.pruned, split.name, "split")
    )
    keep = result.masks[first.name]
    assert sizes == [int(keep[:3].sum()), int(keep[3:].sum())]
    assert [e.attribute for e in first.shape_edits] == ([None] * 2 if opset >= 13 else ["split"] * 2)
    assert_exact(result)


@pytest.mark.parametrize("opset", [11, 17])
@bias_and_seed
def test_slice_on_channels(opset: int, bias: bool, seed: int) -> None:
    b = GraphBuilder((2, 3, 8, 8), seed=seed, opset=opset)
    x = b.unary("Relu", b.conv("input", 8, bias=bias))
    y = b.concat([b.conv(b.slice(x, 2, 6), 4, bias=bias), b.conv(b.slice(x, 0, 3), 4, bias=bias)])
    result = prune_check(b.build([head(b, y)]), (2, 3, 8, 8), seed)
    all_prunable_but_logits(result)
    first = result.plan.groups[0]
    assert len(first.shape_edits) == 3  # start and end of [2, 6), end of [0, 3)
    keep = result.masks[first.name]
    slices = [n for n in result.pruned.graph.node if n.op_type == "Slice"]
    bounds = [
        (int_const(result.pruned, n.input[1])[0], int_const(result.pruned, n.input[2])[0]) for n in slices
    ]
    assert bounds == [(int(keep[:2].sum()), int(keep[:6].sum())), (0, int(keep[:3].sum()))]
    assert_exact(result)


# --- depthwise and grouped convolutions ---------------------------------------------------------------


@pytest.mark.parametrize("residual", [False, True])
@bias_and_seed
def test_mobilenet_block(residual: bool, bias: bool, seed: int) -> None:
    b = GraphBuilder((2, 3, 8, 8), seed=seed)
    stem = b.conv("input", 6, bias=bias)
    x = b.unary("Relu", b.bn(stem))
    expand = b.conv(x, 12, k=1, bias=bias)
    y = b.unary("Relu", b.bn(expand))
    dw = b.conv(y, 12, group=12, bias=bias)
    y = b.unary("Relu", b.bn(dw))
    project = b.conv(y, 6, k=1, bias=bias)
    y = b.bn(project)
    if residual:
        y = b.add(x, y)
    result = prune_check(b.build([head(b, y)]), (2, 3, 8, 8), seed)
    all_prunable_but_logits(result)
    inner = group(result, node_of(b, expand))
    assert inner.channels == 12 and inner.source_nodes == [node_of(b, expand)]
    assert [(e.node, e.attribute) for e in inner.shape_edits] == [(node_of(b, dw), "group")]
    assert attr(result.pruned, node_of(b, dw), "group") == int(result.masks[inner.name].sum())
    trunk = group(result, node_of(b, stem))
    assert len(trunk.source_nodes) == (2 if residual else 1)
    assert len(result.plan.prunable) == (2 if residual else 3)
    assert_exact(result)


@pytest.mark.parametrize("groups", [2, 4])
@bias_and_seed
def test_grouped_convs(groups: int, bias: bool, seed: int) -> None:
    b = GraphBuilder((2, 3, 8, 8), seed=seed)
    first = b.conv("input", 8, bias=bias)
    g1 = b.conv(b.unary("Relu", first), 8, group=groups, bias=bias)  # 8 / groups inputs per conv-group
    g2 = b.conv(b.unary("Relu", g1), 12, k=1, group=groups, bias=bias)
    result = prune_check(b.build([head(b, b.unary("Relu", g2))]), (2, 3, 8, 8), seed)
    all_prunable_but_logits(result)
    tied = group(result, node_of(b, first))
    assert tied.channels == groups  # a conv-group is one channel, through both grouped convs
    assert tied.sources[0].index_map.per_channel == 8 // groups
    kept = int(result.masks[tied.name].sum())
    for conv in (g1, g2):
        assert attr(result.pruned, node_of(b, conv), "group") == kept
    w2 = next(n for n in result.pruned.graph.node if n.name == node_of(b, g2)).input[1]
    assert tuple(next(t.dims for t in result.pruned.graph.initializer if t.name == w2)) == (
        12 // groups * kept,
        8 // groups,
        1,
        1,
    )
    assert_exact(result)


# --- gates, shuffles, layouts --------------------------------------------------------------------------


@pytest.mark.parametrize("gate", ["Sigmoid", "HardSigmoid"])
@bias_and_seed
def test_squeeze_excitation(gate: str, bias: bool, seed: int) -> None:
    b = GraphBuilder((2, 3, 8, 8), seed=seed)
    trunk = b.conv("input", 8, bias=bias)
    x = b.unary("Relu", trunk)
    squeeze = b.conv(b.gap(x), 4, k=1, bias=bias)
    excite = b.conv(b.unary("Relu", squeeze), 8, k=1, bias=bias)
    y = b.mul(x, b.unary(gate, excite))
    result = prune_check(b.build([head(b, b.conv(y, 5, bias=bias))]), (2, 3, 8, 8), seed)
    all_prunable_but_logits(result)
    tied = group(result, node_of(b, trunk))
    assert tied.channels == 8
    assert sorted(tied.source_nodes) == sorted([node_of(b, trunk), node_of(b, excite)])
    assert group(result, node_of(b, squeeze)).channels == 4
    assert not any(g.folds for g in result.plan.groups)  # 0 * gate = 0: nothing to fold
    assert_exact(result)


def shuffle_unit(b: GraphBuilder, x: str, bias: bool) -> tuple[str, str]:
    """ShuffleNetV2 unit: split halves, branch (1x1, dw 3x3, 1x1), concat, channel shuffle (2 groups).
    Returns (output, the branch's last conv output)."""
    n, c, h, w = b.shapes[x]
    half = c // 2
    keep, branch = b.split(x, [half, half])
    branch = b.bn(b.conv(b.unary("Relu", b.conv(branch, half, k=1, bias=bias)), half, group=half, bias=bias))
    last = b.conv(branch, half, k=1, bias=bias)
    y = b.concat([keep, b.unary("Relu", last)])
    y = b.reshape(y, [-1, 2, half, h, w], (n, 2, half, h, w))
    y = b.transpose(y, [0, 2, 1, 3, 4])
    return b.reshape(y, [-1, c, h, w], (n, c, h, w)), last


@bias_and_seed
def test_channel_shuffle(bias: bool, seed: int) -> None:
    b = GraphBuilder((2, 3, 8, 8), seed=seed)
    stem = b.conv("input", 8, bias=bias)
    y, last = shuffle_unit(b, b.unary("Relu", stem), bias)
    p, q = b.split(y, [4, 4])
    y = b.concat([b.conv(p, 3, bias=bias), b.conv(q, 3, k=1, bias=bias)])
    result = prune_check(b.build([head(b, y)]), (2, 3, 8, 8), seed)
    all_prunable_but_logits(result)
    tied = group(result, node_of(b, stem))
    # the shuffle ties column j of both halves: stem filter j (pass-through half) with the branch's filter j
    assert tied.channels == 8
    assert sorted(tied.source_nodes) == sorted([node_of(b, stem), node_of(b, last)])
    edited = {e.initializer for e in tied.shape_edits}
    reshapes = [n for n in result.model.graph.node if n.op_type == "Reshape"]
    assert {n.input[1] for n in reshapes} <= edited
    # the reshape targets follow the pruned widths: (N, 2, C'/2, H, W) and (N, C', H, W)
    kept_pass = int(result.masks[tied.name][:4].sum())
    pruned_targets = [int_const(result.pruned, n.input[1]) for n in reshapes]
    assert pruned_targets == [[-1, 2, kept_pass, 8, 8], [-1, 2 * kept_pass, 8, 8]]
    assert_exact(result)


@bias_and_seed
def test_nhwc_matmul_on_channels(bias: bool, seed: int) -> None:
    b = GraphBuilder((2, 3, 6, 6), seed=seed)
    x = b.unary("Relu", b.conv("input", 6, bias=bias))
    t = b.unary("Relu", b.matmul(b.transpose(x, [0, 2, 3, 1]), 5))  # a pointwise layer, channels last
    y = b.conv(b.transpose(t, [0, 3, 1, 2]), 4, bias=bias)
    result = prune_check(b.build([head(b, y)]), (2, 3, 6, 6), seed)
    all_prunable_but_logits(result)
    assert [(g.op_type, g.channels) for g in result.plan.prunable] == [
        ("Conv", 6),
        ("MatMul", 5),
        ("Conv", 4),
    ]
    mm = next(n for n in result.model.graph.node if n.op_type == "MatMul")
    assert {(m.initializer, m.axis) for m in result.plan.groups[0].dependents} == {(mm.input[1], 0)}
    assert_exact(result)


@pytest.mark.parametrize("opset", [11, 13])  # axes: attribute before 13, input from 13
@bias_and_seed
def test_squeeze_unsqueeze_around_gemm(opset: int, bias: bool, seed: int) -> None:
    b = GraphBuilder((2, 3, 6, 6), seed=seed, opset=opset)
    x = b.unary("Relu", b.conv("input", 6, bias=bias))
    x = b.unary("Relu", b.gemm(b.squeeze(b.gap(x), [2, 3]), 5, bias=bias))
    x = b.conv(b.unsqueeze(x, [2, 3]), 4, k=1, bias=bias)
    result = prune_check(b.build([head(b, x, gap=False)]), (2, 3, 6, 6), seed)
    all_prunable_but_logits(result)
    assert [(g.op_type, g.channels) for g in result.plan.prunable] == [("Conv", 6), ("Gemm", 5), ("Conv", 4)]
    assert_exact(result)


@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("mode", ["nearest", "linear"])
@bias_and_seed
def test_resize_in_trunk(opset: int, mode: str, bias: bool, seed: int) -> None:
    b = GraphBuilder((2, 3, 4, 4), seed=seed, opset=opset)
    x = b.resize(b.unary("Relu", b.conv("input", 6, bias=bias)), 2, mode=mode)
    result = prune_check(b.build([head(b, b.conv(x, 4, bias=bias))]), (2, 3, 4, 4), seed)
    all_prunable_but_logits(result)
    assert result.plan.groups[0].channels == 6 and not result.plan.groups[0].shape_edits  # scales: no edit
    assert_exact(result)


@pytest.mark.parametrize("opset", [11, 18])  # axes: attribute before 18, input from 18
@bias_and_seed
def test_reduce_mean_spatial_then_gemm(opset: int, bias: bool, seed: int) -> None:
    b = GraphBuilder((2, 3, 6, 6), seed=seed, opset=opset)
    x = b.unary("Relu", b.conv("input", 6, bias=bias))
    x = b.unary("Relu", b.gemm(b.reduce_mean(x, [2, 3], keepdims=0), 5, bias=bias))
    result = prune_check(b.build([b.gemm(x, 3)]), (2, 3, 6, 6), seed)
    all_prunable_but_logits(result)
    assert [(g.op_type, g.channels) for g in result.plan.prunable] == [("Conv", 6), ("Gemm", 5)]
    assert_exact(result)


@bias_and_seed
def test_instance_normalization(bias: bool, seed: int) -> None:
    b = GraphBuilder((2, 3, 6, 6), seed=seed)
    conv = b.conv("input", 6, bias=bias)
    norm = b.instance_norm(conv)
    result = prune_check(b.build([head(b, b.conv(b.unary("Relu", norm), 4, bias=bias))]), (2, 3, 6, 6), seed)
    all_prunable_but_logits(result)
    first = result.plan.groups[0]
    inorm = node_of(b, norm)
    assert sorted(m.role.value for m in first.members if m.node == inorm) == ["source", "source"]
    assert_exact(result)


@bias_and_seed
def test_conv_transpose_as_producer_and_consumer(bias: bool, seed: int) -> None:
    b = GraphBuilder((2, 3, 4, 4), seed=seed)
    x = b.unary("Relu", b.conv("input", 6, bias=bias))
    up1 = b.conv_transpose(x, 5, bias=bias)
    up2 = b.conv_transpose(b.unary("Relu", up1), 4, bias=bias)
    result = prune_check(b.build([head(b, b.conv(up2, 3, bias=bias))]), (2, 3, 4, 4), seed)
    all_prunable_but_logits(result)
    assert [(g.op_type, g.channels) for g in result.plan.prunable] == [
        ("Conv", 6),
        ("ConvTranspose", 5),
        ("ConvTranspose", 4),
        ("Conv", 3),
    ]
    up1_group = group(result, node_of(b, up1))
    w = next(n for n in result.model.graph.node if n.name == node_of(b, up1)).input[1]
    assert {(m.initializer, m.axis) for m in up1_group.sources} >= {(w, 1)}  # filters on axis 1
    assert_exact(result)


# --- non-zero removed channels: folding ----------------------------------------------------------------


def sigmoid_then_conv(
    bias: bool, k: int, consumer_bias: bool = True, seed: int = 0
) -> tuple[GraphBuilder, str]:
    b = GraphBuilder((2, 3, 6, 6), seed=seed)
    x = b.unary("Sigmoid", b.conv("input", 6, bias=bias))
    return b, b.conv(x, 4, k=k, bias=consumer_bias)


@bias_and_seed
def test_sigmoid_then_unpadded_conv_folds(bias: bool, seed: int) -> None:
    b, y = sigmoid_then_conv(bias, k=1, seed=seed)
    result = prune_check(b.build([head(b, y)]), (2, 3, 6, 6), seed)
    all_prunable_but_logits(result)
    first = result.plan.groups[0]
    assert [(f.op, f.node) for f in first.folds] == [("Conv", node_of(b, y))]
    assert np.allclose([v for v in first.folds[0].values if v], 0.5)  # sigmoid(0)
    assert_exact(result)


@pytest.mark.parametrize("bias", [True, False])
def test_sigmoid_then_padded_conv_is_kept(bias: bool) -> None:
    b, y = sigmoid_then_conv(bias, k=3)
    result = prune_check(b.build([head(b, y)]), (2, 3, 6, 6))
    first = result.plan.groups[0]
    assert not first.prunable and "padded" in first.reason
    assert not first.folds
    assert_exact(result)  # the consumer conv itself is still pruned


def test_fold_creates_a_bias_for_a_conv_without_one() -> None:
    b, y = sigmoid_then_conv(True, k=1, consumer_bias=False)
    model = b.build([head(b, y)])
    first = plan_of(model, (2, 3, 6, 6)).groups[0]
    masks = {first.name: np.array([True, False] * 3)}  # only the producer: the consumer keeps its filters
    result = prune_check(model, (2, 3, 6, 6), masks=masks)
    consumer = next(n for n in result.pruned.graph.node if n.name == node_of(b, y))
    assert len(consumer.input) == 3 and consumer.input[2] == first.folds[0].new_bias
    assert_exact(result)


@pytest.mark.parametrize("consumer", ["Conv", "Gemm"])
def test_fold_into_created_bias_of_a_pruned_consumer(consumer: str) -> None:
    b = GraphBuilder((2, 3, 6, 6), seed=0)
    x = b.unary("Sigmoid", b.conv("input", 6))
    if consumer == "Conv":
        y = b.unary("Relu", b.conv(x, 4, k=1, bias=False))  # unpadded: folds, no bias: one is created
        out = head(b, y)
    else:
        y = b.unary("Relu", b.gemm(b.flatten(x), 5, bias=False))
        out = b.gemm(y, 3)
    result = prune_check(b.build([out]), (2, 3, 6, 6), seed=0)
    assert len(result.plan.prunable) == 2 and all(not k.all() for k in result.masks.values())
    assert_exact(result)


@pytest.mark.parametrize("opset", [11, 13])  # Clip bounds are inputs from 11 (attributes before: skipped)
@bias_and_seed
def test_clip_with_positive_min_then_gemm_folds(opset: int, bias: bool, seed: int) -> None:
    b = GraphBuilder((2, 3, 6, 6), seed=seed, opset=opset)
    x = b.conv("input", 6, bias=bias)
    x = b.node("Clip", [x, b.const(np.float32(0.1)), b.const(np.float32(6.0))], b.shapes[x])
    result = prune_check(b.build([b.gemm(b.flatten(x), 3, bias=bias)]), (2, 3, 6, 6), seed)
    all_prunable_but_logits(result)
    (fold,) = result.plan.groups[0].folds
    assert fold.op == "Gemm" and fold.index_map.per_channel == 36  # each channel owns 6x6 features
    assert_exact(result)


@pytest.mark.parametrize("trans_b", [0, 1])
@bias_and_seed
def test_add_scalar_then_gemm_folds(trans_b: int, bias: bool, seed: int) -> None:
    b = GraphBuilder((2, 3, 6, 6), seed=seed)
    x = b.binary_const("Add", b.conv("input", 6, bias=bias), np.array([0.5]))
    result = prune_check(b.build([b.gemm(b.flatten(b.maxpool(x)), 3, trans_b=trans_b)]), (2, 3, 6, 6), seed)
    all_prunable_but_logits(result)
    assert len(result.plan.groups[0].folds) == 1
    assert_exact(result)


@pytest.mark.parametrize("seed", SEEDS)
def test_gemm_without_bias_gets_one(seed: int) -> None:
    b = GraphBuilder((2, 3, 6, 6), seed=seed)
    x = b.unary("Softplus", b.conv("input", 6))
    result = prune_check(b.build([b.gemm(b.flatten(x), 3, bias=False)]), (2, 3, 6, 6), seed)
    all_prunable_but_logits(result)
    gemm = next(n for n in result.pruned.graph.node if n.op_type == "Gemm")
    assert len(gemm.input) == 3
    bias = next(t for t in result.pruned.graph.initializer if t.name == gemm.input[2])
    assert tuple(bias.dims) == (3,)
    assert_exact(result)


# --- masks that empty a tensor -------------------------------------------------------------------------


def test_mask_emptying_a_reshaped_tensor() -> None:
    b = GraphBuilder((2, 3, 6, 6), seed=1)
    stem = b.conv("input", 4)
    y, _ = shuffle_unit(b, b.unary("Relu", stem), bias=True)
    model = b.build([head(b, b.conv(y, 3))])
    plan = plan_of(model, (2, 3, 6, 6))
    tied = next(g for g in plan.groups if node_of(b, stem) in g.source_nodes)
    assert tied.channels == 4 and tied.prunable
    # channels 0, 1: the pass-through half, tied to the branch's filters: all that reaches the shuffle.
    # Channels 2, 3 only feed the branch. Removing 0 and 1 would turn the shuffle's Reshape entries into 0
    # ("copy the input dim"): the plan says at least one of them must stay, masks breaking that are refused.
    assert (0, 1) in tied.cover_sets
    with pytest.raises(ValueError, match="shape entry counts"):
        prune_check(model, (2, 3, 6, 6), masks={tied.name: np.array([False, False, True, True])})
    result = prune_check(model, (2, 3, 6, 6), masks={tied.name: np.array([False, True, True, False])})
    assert result.max_rel_error <= TOL
