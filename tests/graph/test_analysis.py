"""Groups found on the graph, and every reason a group is kept."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from onnxprune.graph.analysis import analyze
from onnxprune.graph.load import normalize, reshare
from onnxprune.graph.registry import Handler, HandlerRegistry
from onnxprune.graph.verify import compare_models, verification_inputs
from onnxprune.plan import Role
from tests.builders import GraphBuilder, vgg_like, weight_standardized_cnn
from tests.graph.checks import prune_check


def plan_of(model: onnx.ModelProto, shape: tuple[int, ...] = (1, 3, 8, 8)):
    return analyze(normalize(model).model, shape)


def test_vgg_like_groups_and_roles() -> None:
    plan = plan_of(vgg_like())
    first = plan.groups[0]
    assert first.op_type == "Conv" and first.channels == 8 and first.prunable
    roles = {(m.node.split("_")[0], m.role) for m in first.members}
    assert {m.role for m in first.sources} == {Role.SOURCE}
    assert len(first.sources) == 4  # weight, bias, BN scale, BN shift
    assert len(first.dependents) == 3  # BN mean, BN var, next conv's input channels
    assert roles
    flatten_member = next(m for m in plan.groups[2].members if m.role is Role.DEPENDENT)
    assert flatten_member.index_map.inner == 4  # 5 channels x 2x2 spatial feed the Gemm
    assert not plan.groups[-1].prunable
    assert "graph output" in plan.groups[-1].reason


SHAPE = (1, 4, 6, 6)


def _producer_then(op_builder, opset: int = 17) -> onnx.ModelProto:
    """Conv (the producer under test, 4 filters) -> the ops under test -> Flatten -> Gemm (logits)."""
    b = GraphBuilder(SHAPE, opset=opset)
    x = b.conv("input", 4)
    x = op_builder(b, x)
    return b.build([b.gemm(b.flatten(x), 2)])


def _slice(b: GraphBuilder, x: str, start: int, end: int, step: int) -> str:
    ins = [x, *(b.const(np.array([v], dtype=np.int64)) for v in (start, end, 1, step))]
    return b.node("Slice", ins, (1, len(range(start, end, step)), 6, 6))


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda b, x: b.unary("Softmax", x, axis=1), "normalizes across the channels"),
        (lambda b, x: b.node("LRN", [x], b.shapes[x], size=3), "normalizes across channels"),
        (lambda b, x: b.conv(b.unary("Sigmoid", x), 3), "padded"),  # 0.5 meets the zero border
        (lambda b, x: b.add(x, "input"), "kept tensor"),
        (lambda b, x: b.matmul(b.transpose(b.unary("Sigmoid", x), [0, 2, 3, 1]), 3), "no bias"),
        (lambda b, x: b.conv_transpose(b.unary("Sigmoid", x), 3), "non-zero removed channel"),
        (lambda b, x: b.reduce_mean(x, [1]), "reduces over the channels"),
        (lambda b, x: _slice(b, x, 0, 4, 2), "with a step"),
        (lambda b, x: b.reshape(x, [0, 0, 36], (1, 4, 36)), "copies the channel count"),
        (lambda b, x: b.conv(b.concat([x, "input"]), 4, group=2), "conv-groups with kept inputs"),
        (lambda b, x: b.node("Reshape", [x, b.node("Shape", [x], (4,))], b.shapes[x]), "reads the channel"),
    ],
)
def test_group_is_kept_with_reason(make, reason: str) -> None:
    plan = plan_of(_producer_then(make, opset=18), SHAPE)
    first = plan.groups[0]
    assert first.source_node == "Conv4"
    assert not first.prunable
    assert reason in first.reason


def _clip(b: GraphBuilder, x: str, lo: float, hi: float) -> str:
    return b.node("Clip", [x, b.const(np.float32(lo)), b.const(np.float32(hi))], b.shapes[x])


@pytest.mark.parametrize(
    ("make", "folds"),
    [
        (lambda b, x: b.unary("Sigmoid", x), 1),  # sigmoid(0) = 0.5 folds into the Gemm bias
        (lambda b, x: b.unary("Softplus", x), 1),
        (lambda b, x: b.binary_const("Add", x, np.array([0.5], dtype=np.float32)), 1),
        (lambda b, x: _clip(b, x, 0.1, 6), 1),
        (lambda b, x: _clip(b, x, 0, 6), 0),  # maps zero to zero: nothing to fold
    ],
)
def test_nonzero_constant_before_gemm_is_folded(make, folds: int) -> None:
    result = prune_check(_producer_then(make), SHAPE, seed=3)
    first = result.plan.groups[0]
    assert first.prunable, first.reason
    assert len(first.folds) == folds
    gemm = result.model.graph.node[-1]
    assert all(f.op == "Gemm" and f.node == gemm.name and f.weight == gemm.input[1] for f in first.folds)
    assert result.max_rel_error <= 1e-5
    assert result.shrunk()


def test_residual_add_of_two_convs_is_one_group() -> None:
    result = prune_check(_producer_then(lambda b, x: b.add(x, b.conv("input", 4))), SHAPE, seed=1)
    first = result.plan.groups[0]
    assert first.prunable, first.reason
    assert len(first.source_nodes) == 2 and first.channels == 4
    assert result.max_rel_error <= 1e-5
    assert result.shrunk()


def test_grouped_conv_removes_whole_conv_groups() -> None:
    result = prune_check(_producer_then(lambda b, x: b.conv(x, 4, group=2)), SHAPE, seed=0)
    first = result.plan.groups[0]
    assert first.prunable, first.reason
    assert first.channels == 2  # one channel per conv-group
    assert [e.attribute for e in first.shape_edits] == ["group"]
    grouped = next(n for n in result.pruned.graph.node if n.name == first.shape_edits[0].node)
    assert onnx.helper.get_attribute_value(next(a for a in grouped.attribute if a.name == "group")) == 1
    assert result.max_rel_error <= 1e-5
    assert result.shrunk()


def test_shared_initializer_is_unshared_and_reshared() -> None:
    b = GraphBuilder((1, 3, 6, 6))
    x = b.unary("Relu", b.conv("input", 4))
    y = b.conv(x, 4)
    w = b.nodes[-1].input[1]
    z = b.node("Conv", [x, w], b.shapes[y], pads=[1] * 4)  # same weight, second reader
    model = b.build([b.gemm(b.flatten(y), 2), b.gemm(b.flatten(z), 2)])
    norm = normalize(model)
    assert norm.copies == {f"{w}__1": w}
    plan = analyze(norm.model, (1, 3, 6, 6))
    # both convs read the first group's channels, each through its own copy
    assert plan.groups[0].prunable
    assert len(plan.groups[0].consumers) == 2
    y_group, z_group = (
        next(g for g in plan.groups if g.source_node == n.name) for n in b.nodes if n.output[0] in (y, z)
    )
    assert y_group.prunable and z_group.prunable, plan.format()
    assert {m.initializer for m in z_group.sources} == {f"{w}__1"}

    keep = np.array([True, False, True, False])
    for masks, merged in (({y_group.name: keep, z_group.name: keep}, True), ({y_group.name: keep}, False)):
        result = prune_check(model, (1, 3, 6, 6), masks=masks)
        assert result.max_rel_error <= 1e-5
        reshared = reshare(result.pruned, norm.copies)
        names = {t.name for t in reshared.graph.initializer}
        z_node = next(n for n in reshared.graph.node if n.output[0] == z)
        if merged:  # pruned the same way: still equal, the copy goes
            assert f"{w}__1" not in names and z_node.input[1] == w
        else:  # pruned differently: both stay
            assert f"{w}__1" in names and z_node.input[1] == f"{w}__1"
        onnx.checker.check_model(reshared, full_check=True)
        x_in = verification_inputs((1, 3, 6, 6), 0)
        assert compare_models(result.pruned, reshared, x_in).max_rel_error == 0.0


def test_plan_is_printable_and_serializable() -> None:
    plan = plan_of(vgg_like())
    text = plan.format()
    assert "prunable" in text and "kept:" in text
    d = plan.to_dict()
    assert [g["name"] for g in d["groups"]] == [g.name for g in plan.groups]
    assert all(isinstance(m["role"], str) for g in d["groups"] for m in g["members"])


def test_registry_refuses_duplicates_and_names_known_ops() -> None:
    reg = HandlerRegistry()
    reg.register("Relu", Handler())
    with pytest.raises(ValueError, match="already registered"):
        reg.register("Relu", Handler())
    with pytest.raises(KeyError, match=r"Relu"):
        reg.require("Concat")


def test_registry_picks_newest_version_not_above_opset() -> None:
    reg = HandlerRegistry()
    old, new = Handler(), Handler()
    reg.register("Clip", old, since_version=1)
    reg.register("Clip", new, since_version=11)
    assert reg.lookup("Clip", opset=10) is old
    assert reg.lookup("Clip", opset=13) is new
    assert reg.lookup("Clip", domain="com.microsoft") is None


def test_unregistered_op_stops_with_its_name() -> None:
    b = GraphBuilder((1, 3, 6, 6))
    x = b.conv("input", 4)
    x = b.node("LRN", [x], b.shapes[x], size=3)
    model = b.build([b.gemm(b.flatten(x), 2)])
    empty = HandlerRegistry()
    assert analyze(normalize(model).model, (1, 3, 6, 6), registry=empty).groups == []
    plan = plan_of(model, (1, 3, 6, 6))
    assert "LRN" in plan.groups[0].reason


def test_constant_and_identity_weights_are_found() -> None:
    b = GraphBuilder((1, 3, 6, 6))
    x = b.conv("input", 4)
    conv = b.nodes[-1]
    w_name = conv.input[1]
    w = next(t for t in b.inits if t.name == w_name)
    b.inits.remove(w)
    b.nodes.insert(0, helper.make_node("Constant", [], ["wc"], name="const_w", value=w))
    b.nodes.insert(1, helper.make_node("Identity", ["wc"], [w_name], name="id_w"))
    model = b.build([b.gemm(b.flatten(b.unary("Relu", x)), 2)])
    plan = plan_of(model, (1, 3, 6, 6))
    assert plan.groups[0].prunable
    assert plan.groups[0].sources[0].initializer == "wc"


def test_tensor_read_inside_a_subgraph_keeps_its_channels() -> None:
    """An If branch reading a pruned tensor from the enclosing graph has no input edge to follow."""
    b = GraphBuilder((1, 3, 6, 6))
    x = b.unary("Relu", b.conv("input", 4))
    y = b.gemm(b.flatten(x), 2)
    out_vi = helper.make_tensor_value_info("branch_out", onnx.TensorProto.FLOAT, None)
    branch = helper.make_graph([helper.make_node("Identity", [x], ["branch_out"])], "then", [], [out_vi])
    cond = b.const(np.array(True))
    z = b.node("If", [cond], (1, 4, 6, 6), then_branch=branch, else_branch=branch)
    plan = plan_of(b.build([y, z]), (1, 3, 6, 6))
    assert not plan.groups[0].prunable
    assert "reads" in plan.groups[0].reason and "subgraph" in plan.groups[0].reason


def test_conv_with_computed_weight_is_a_kept_group_with_a_reason() -> None:
    """A weight-standardized Conv (its weight computed by a training-mode BatchNorm over the raw weight):
    removing its input channels would change each filter's statistics, so the group feeding it stays;
    its own filters are a group of their own, listed and kept with the same reason; the last Conv's
    filters reach the output."""
    model = normalize(weight_standardized_cnn()).model
    plan = analyze(model, (1, 3, 8, 8))
    convs = [n.name for n in model.graph.node if n.op_type == "Conv"]
    by_source = {g.source_node: g for g in plan.groups}
    assert set(by_source) == set(convs)
    first, middle, last = (by_source[c] for c in convs)
    for g in (first, middle):
        assert not g.prunable and "computed weight" in (g.reason or "")
    assert middle.channels == 6 and not middle.sources  # nothing is sliced where the weight is computed
    assert not last.prunable and "graph output" in (last.reason or "")
