"""Groups found on the graph, and every reason a group is kept."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from onnxprune.graph.analysis import analyze
from onnxprune.graph.load import normalize
from onnxprune.graph.registry import Handler, HandlerRegistry
from onnxprune.plan import Role
from tests.builders import GraphBuilder, vgg_like


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


def _producer_then(op_builder) -> onnx.ModelProto:
    b = GraphBuilder((1, 3, 6, 6))
    x = b.conv("input", 4)
    x = op_builder(b, x)
    return b.build([b.gemm(b.flatten(x), 2)])


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda b, x: b.unary("Sigmoid", x), "non-zero"),
        (lambda b, x: b.unary("Softplus", x), "non-zero"),
        (lambda b, x: b.add(x, b.conv("input", 4)), "coupled"),
        (lambda b, x: b.binary_const("Add", x, np.array([0.5], dtype=np.float32)), "adds a constant"),
        (lambda b, x: b.conv(x, 4, group=2), "grouped"),
        (lambda b, x: b.unary("Softmax", x, axis=1), "no channel rule for Softmax"),
        (
            lambda b, x: b.node("Clip", [x, b.const(np.float32(0.1)), b.const(np.float32(6))], b.shapes[x]),
            "maps zero",
        ),
    ],
)
def test_group_is_kept_with_reason(make, reason: str) -> None:
    plan = plan_of(_producer_then(make), (1, 3, 6, 6))
    first = plan.groups[0]
    assert not first.prunable
    assert reason in first.reason


def test_zero_preserving_clip_passes() -> None:
    plan = plan_of(
        _producer_then(
            lambda b, x: b.node("Clip", [x, b.const(np.float32(0)), b.const(np.float32(6))], b.shapes[x])
        ),
        (1, 3, 6, 6),
    )
    assert plan.groups[0].prunable


def test_shared_initializer_keeps_group() -> None:
    b = GraphBuilder((1, 3, 6, 6))
    x = b.unary("Relu", b.conv("input", 4))
    y = b.conv(x, 4)
    z = b.node("Conv", [x, b.nodes[-1].input[1]], b.shapes[y], pads=[1] * 4)  # same weight, second user
    model = b.build([b.gemm(b.flatten(y), 2), b.gemm(b.flatten(z), 2)])
    plan = plan_of(model, (1, 3, 6, 6))
    # both convs read the same channels through the same weight: slicing its input axis is consistent
    assert plan.groups[0].prunable
    assert len(plan.groups[0].consumers) == 2
    # but removing filters of one conv would change the other one too
    shared = [g for g in plan.groups if g.source_node in ("Conv10", "Conv12")]
    assert shared and all("shared with node" in (g.reason or "") for g in shared)


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
