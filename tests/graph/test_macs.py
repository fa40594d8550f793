"""MAC and parameter counts of tiny synthetic models against hand-computed formulas."""

from __future__ import annotations

import json
import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxprune.graph.macs import CostShapeError, count_costs

FLOAT = TensorProto.FLOAT


def _init(name: str, shape: tuple[int, ...], dtype: type = np.float32) -> onnx.TensorProto:
    return numpy_helper.from_array(np.ones(shape, dtype=dtype), name)


def _model(
    nodes: list[onnx.NodeProto],
    inputs: list[onnx.ValueInfoProto],
    inits: list[onnx.TensorProto],
    output: str = "y",
) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info(output, FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _out(size: int, k: int, stride: int, pad: int, dilation: int) -> int:
    """Output size of one spatial dim with symmetric padding."""
    return (size + 2 * pad - dilation * (k - 1) - 1) // stride + 1


def _ort_out_shape(model: onnx.ModelProto, shape: tuple[int, ...]) -> tuple[int, ...]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return tuple(sess.run(None, {name: np.zeros(shape, np.float32)})[0].shape)


CONV_CASES = {
    # name: (n, cin, cout, hw, k, group, stride, pad, dilation)
    "plain": (1, 3, 8, 10, 3, 1, 1, 0, 1),
    "batch": (4, 3, 8, 10, 3, 1, 1, 0, 1),
    "stride2": (1, 4, 6, 11, 3, 1, 2, 0, 1),
    "padding": (2, 4, 6, 9, 3, 1, 1, 1, 1),
    "dilation": (1, 4, 6, 12, 3, 1, 1, 0, 2),
    "all": (2, 6, 4, 13, 5, 1, 2, 2, 2),
    "grouped": (1, 8, 12, 9, 3, 4, 1, 1, 1),
    "depthwise": (2, 16, 16, 8, 3, 16, 2, 1, 1),
    "depthwise_x2": (1, 4, 8, 8, 3, 4, 1, 1, 1),
    "pointwise": (3, 5, 7, 6, 1, 1, 1, 0, 1),
}


@pytest.mark.parametrize("case", CONV_CASES.values(), ids=CONV_CASES.keys())
@pytest.mark.parametrize("bias", [True, False])
def test_conv_macs_match_formula(case: tuple[int, ...], bias: bool) -> None:
    n, cin, cout, hw, k, group, stride, pad, dil = case
    inputs = ["x", "w", "b"] if bias else ["x", "w"]
    node = helper.make_node(
        "Conv", inputs, ["y"], name="conv", group=group, strides=[stride] * 2, pads=[pad] * 4,
        dilations=[dil] * 2, kernel_shape=[k, k],
    )  # fmt: skip
    inits = [_init("w", (cout, cin // group, k, k))] + ([_init("b", (cout,))] if bias else [])
    model = _model([node], [helper.make_tensor_value_info("x", FLOAT, ["N", cin, hw, hw])], inits)

    cost = count_costs(model, (n, cin, hw, hw))

    o = _out(hw, k, stride, pad, dil)
    node_cost = cost.nodes["conv"]
    assert node_cost.out_shape == (n, cout, o, o) == _ort_out_shape(model, (n, cin, hw, hw))
    assert node_cost.macs == n * cout * o * o * (cin // group) * k * k
    assert node_cost.params == cout * (cin // group) * k * k + (cout if bias else 0)
    assert cost.total_macs == cost.conv_macs == node_cost.macs
    assert cost.params == node_cost.params


def test_conv_asymmetric_pads_rectangular_kernel_and_auto_pad() -> None:
    x = helper.make_tensor_value_info("x", FLOAT, [1, 2, 9, 7])
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["h"], name="c1", pads=[0, 1, 2, 0], kernel_shape=[3, 2]),
        helper.make_node("Conv", ["h", "w2"], ["y"], name="c2", auto_pad="SAME_UPPER", strides=[2, 2]),
    ]
    model = _model(nodes, [x], [_init("w1", (5, 2, 3, 2)), _init("w2", (3, 5, 3, 3))])

    cost = count_costs(model, (1, 2, 9, 7))

    h1, w1 = 9 + 0 + 2 - 3 + 1, 7 + 1 + 0 - 2 + 1  # (8, 7)
    assert cost.nodes["c1"].out_shape == (1, 5, h1, w1)
    assert cost.nodes["c1"].macs == 5 * h1 * w1 * 2 * 3 * 2
    h2, w2 = math.ceil(h1 / 2), math.ceil(w1 / 2)
    assert cost.nodes["c2"].out_shape == (1, 3, h2, w2) == _ort_out_shape(model, (1, 2, 9, 7))
    assert cost.nodes["c2"].macs == 3 * h2 * w2 * 5 * 3 * 3


@pytest.mark.parametrize(("group", "stride"), [(1, 1), (1, 2), (2, 2)])
def test_conv_transpose_macs(group: int, stride: int) -> None:
    n, cin, cout, hw, k = 2, 4, 6, 5, 3
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="up", group=group, strides=[stride] * 2)
    x = helper.make_tensor_value_info("x", FLOAT, ["N", cin, hw, hw])
    model = _model([node], [x], [_init("w", (cin, cout // group, k, k))])

    cost = count_costs(model, (n, cin, hw, hw))

    o = (hw - 1) * stride + k
    assert cost.nodes["up"].out_shape == (n, cout, o, o)
    assert cost.nodes["up"].macs == n * cin * hw * hw * (cout // group) * k * k
    assert cost.conv_macs == cost.total_macs == cost.nodes["up"].macs


@pytest.mark.parametrize("trans_a", [0, 1])
@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm_macs(trans_a: int, trans_b: int) -> None:
    m, k, n = 5, 7, 3
    a_shape = [k, m] if trans_a else [m, k]
    node = helper.make_node("Gemm", ["a", "b", "c"], ["y"], name="fc", transA=trans_a, transB=trans_b)
    b = _init("b", (n, k) if trans_b else (k, n))
    model = _model([node], [helper.make_tensor_value_info("a", FLOAT, a_shape)], [b, _init("c", (n,))])

    cost = count_costs(model, tuple(a_shape))

    assert cost.nodes["fc"].out_shape == (m, n)
    assert cost.nodes["fc"].macs == m * n * k
    assert cost.nodes["fc"].params == k * n + n
    assert cost.conv_macs == 0
    assert cost.total_macs == m * n * k


MATMUL_CASES = {
    # name: (a shape, b shape, out shape, K)
    "2d": ((4, 6), (6, 3), (4, 3), 6),
    "batched_a": ((2, 4, 6), (6, 3), (2, 4, 3), 6),
    "batched_both": ((2, 4, 6), (2, 6, 3), (2, 4, 3), 6),
    "broadcast": ((2, 1, 4, 6), (3, 6, 5), (2, 3, 4, 5), 6),
    "vec_mat": ((6,), (6, 3), (3,), 6),
    "mat_vec": ((4, 6), (6,), (4,), 6),
}


@pytest.mark.parametrize("case", MATMUL_CASES.values(), ids=MATMUL_CASES.keys())
@pytest.mark.parametrize("b_is_initializer", [True, False])
def test_matmul_macs(case: tuple[tuple[int, ...], ...], b_is_initializer: bool) -> None:
    a_shape, b_shape, out_shape, k = case
    node = helper.make_node("MatMul", ["a", "b"], ["y"], name="mm")
    inputs = [helper.make_tensor_value_info("a", FLOAT, list(a_shape))]
    if b_is_initializer:
        inits = [_init("b", b_shape)]
    else:
        inits = []
        inputs.append(helper.make_tensor_value_info("b", FLOAT, list(b_shape)))
    model = _model([node], inputs, inits)

    cost = count_costs(model, a_shape)

    assert cost.nodes["mm"].out_shape == out_shape
    assert cost.nodes["mm"].macs == math.prod(out_shape) * k
    assert cost.nodes["mm"].params == (math.prod(b_shape) if b_is_initializer else 0)


def _conv_gemm_model() -> onnx.ModelProto:
    """x[N,3,8,8] -> Conv(4, 3x3, pad 1) -> Relu -> Reshape[N, 256] -> Gemm(10) -> y."""
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1] * 4, kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Reshape", ["r", "shape"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], name="fc", transB=1),
    ]
    inits = [
        _init("w", (4, 3, 3, 3)),
        _init("b", (4,)),
        numpy_helper.from_array(np.array([-1, 256], np.int64), "shape"),
        _init("fw", (10, 256)),
        _init("fb", (10,)),
        _init("unused", (7,)),
    ]
    return _model(nodes, [helper.make_tensor_value_info("x", FLOAT, ["N", 3, 8, 8])], inits)


def test_totals_split_conv_from_all_and_count_every_float_initializer() -> None:
    cost = count_costs(_conv_gemm_model(), (2, 3, 8, 8))

    conv = 2 * 4 * 8 * 8 * 3 * 3 * 3
    fc = 2 * 10 * 256
    assert set(cost.nodes) == {"conv", "fc"}
    assert cost.conv_macs == conv
    assert cost.total_macs == conv + fc
    assert cost.macs_by_op() == {"Conv": conv, "Gemm": fc}
    assert cost.params == 4 * 27 + 4 + 2560 + 10 + 7  # float initializers only, used or not
    assert cost.nodes["fc"].params == 2570


def test_macs_scale_with_batch_and_input_model_is_untouched() -> None:
    model = _conv_gemm_model()
    before = model.SerializeToString()

    one = count_costs(model, (1, 3, 8, 8))
    four = count_costs(model, (4, 3, 8, 8))

    assert four.total_macs == 4 * one.total_macs
    assert four.params == one.params
    assert model.SerializeToString() == before


def test_to_dict_is_json_serializable() -> None:
    cost = count_costs(_conv_gemm_model(), (1, 3, 8, 8))

    d = json.loads(json.dumps(cost.to_dict()))

    assert d["total_macs"] == cost.total_macs
    assert d["conv_macs"] == cost.conv_macs
    assert d["params"] == cost.params
    assert d["input_shape"] == [1, 3, 8, 8]
    assert d["nodes"]["conv"] == {
        "op_type": "Conv",
        "macs": cost.conv_macs,
        "params": 112,
        "out_shape": [1, 4, 8, 8],
    }


def test_unnamed_and_duplicate_node_names_get_unique_keys() -> None:
    nodes = [
        helper.make_node("MatMul", ["a", "w1"], ["h"]),
        helper.make_node("MatMul", ["h", "w2"], ["g"], name="mm"),
        helper.make_node("MatMul", ["g", "w3"], ["y"], name="mm"),
    ]
    inits = [_init("w1", (4, 4)), _init("w2", (4, 4)), _init("w3", (4, 2))]
    model = _model(nodes, [helper.make_tensor_value_info("a", FLOAT, [3, 4])], inits)

    cost = count_costs(model, (3, 4))

    assert list(cost.nodes) == ["MatMul_0", "mm", "mm#2"]
    assert [n.macs for n in cost.nodes.values()] == [48, 48, 24]


def test_unknown_weight_shape_raises_naming_the_node() -> None:
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="the_conv")
    inputs = [
        helper.make_tensor_value_info("x", FLOAT, [1, 3, 8, 8]),
        helper.make_tensor_value_info("w", FLOAT, ["a", "b", 3, 3]),
    ]
    model = _model([node], inputs, [])

    with pytest.raises(ValueError, match="the_conv") as info:
        count_costs(model, (1, 3, 8, 8))
    assert isinstance(info.value, CostShapeError)
    assert "'w'" in str(info.value)


def test_unknown_matmul_output_raises_naming_the_node() -> None:
    nodes = [helper.make_node("MatMul", ["a", "b"], ["y"], name="mm_dynamic")]
    inputs = [
        helper.make_tensor_value_info("a", FLOAT, ["N", 4]),
        helper.make_tensor_value_info("b", FLOAT, [4, "M"]),
    ]
    with pytest.raises(ValueError, match="mm_dynamic"):
        count_costs(_model(nodes, inputs, []), (2, 4))


@pytest.mark.parametrize(
    ("shape", "message"),
    [((1, 3, 8), "rank"), ((1, 5, 8, 8), "fixed dim 1"), ((1, 3, 0, 8), "positive"), ((), "positive")],
)
def test_bad_input_shape_raises(shape: tuple[int, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        count_costs(_conv_gemm_model(), shape)
