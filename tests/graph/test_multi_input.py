"""Models with several data inputs on the ONNX side: shape resolution, analysis, costs, runs, verification.

The graphs are built with :class:`tests.builders.GraphBuilder` (which tracks one image input) plus extra
inputs declared here; every data input shares the dynamic batch ``N``.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxprune.errors import DataError
from onnxprune.graph.analysis import analyze
from onnxprune.graph.inputs import ModelInputs, data_inputs, input_dtypes, input_shapes
from onnxprune.graph.load import normalize
from onnxprune.graph.macs import count_costs
from onnxprune.graph.shapes import ShapeError, infer_shapes, static_shapes
from onnxprune.graph.verify import compare_models, verification_inputs
from onnxprune.runtime.sessions import make_session, run_batched, top1
from tests.builders import GraphBuilder, vgg_like
from tests.graph.checks import prune_check

FLOAT, INT64 = TensorProto.FLOAT, TensorProto.INT64
A, B = (2, 3, 8, 8), (2, 2, 8, 8)  # the two image inputs at batch 2
SHAPES = {"input": A, "b": B}


def build(b: GraphBuilder, inputs: dict[str, tuple[int, list[int | str]]], outputs: list[str]):
    """A checked model of ``b``'s nodes with the given data inputs (name -> (elem type, dims))."""
    vis = [helper.make_tensor_value_info(name, elem, dims) for name, (elem, dims) in inputs.items()]
    outs = [helper.make_tensor_value_info(o, FLOAT, ["N", *b.shapes[o][1:]]) for o in outputs]
    graph = helper.make_graph(b.nodes, "g", vis, outs, b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", b.opset)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def head(b: GraphBuilder, x: str) -> str:
    return b.gemm(b.flatten(b.gap(x)), 3)


def node_of(b: GraphBuilder, output: str) -> str:
    return next(n.name for n in b.nodes if output in n.output)


IMAGES = {"input": (FLOAT, ["N", 3, "H", "W"]), "b": (FLOAT, ["N", 2, "H", "W"])}


def two_images_add(seed: int = 0, bias: bool = True) -> tuple[onnx.ModelProto, GraphBuilder, list[str]]:
    """input -> Conv(4), b -> Conv(4), Add (ties the two convs), Relu, Conv(5), head."""
    b = GraphBuilder(A, seed=seed)
    b.shapes["b"] = B
    ca, cb = b.conv("input", 4, bias=bias), b.conv("b", 4, bias=bias)
    c3 = b.conv(b.unary("Relu", b.add(ca, cb)), 5, bias=bias)
    return build(b, IMAGES, [head(b, b.unary("Relu", c3))]), b, [ca, cb, c3]


def two_images_concat(seed: int = 0) -> tuple[onnx.ModelProto, GraphBuilder, list[str]]:
    """input -> Conv(4), b -> Conv(3), Concat (6 + ... channels, not tied), Relu, Conv(5), head."""
    b = GraphBuilder(A, seed=seed)
    b.shapes["b"] = B
    ca, cb = b.conv("input", 4), b.conv("b", 3)
    c3 = b.conv(b.unary("Relu", b.concat([ca, cb])), 5)
    return build(b, IMAGES, [head(b, b.unary("Relu", c3))]), b, [ca, cb, c3]


def image_and_gate(seed: int = 0) -> tuple[onnx.ModelProto, GraphBuilder, list[str]]:
    """input -> Conv(4), times the int64 input ``t`` (one value per sample: Cast, Unsqueeze), Relu,
    Conv(5), head."""
    b = GraphBuilder(A, seed=seed)
    b.shapes["t"] = (2,)
    gate = b.unsqueeze(b.node("Cast", ["t"], (2,), to=FLOAT), [1, 2, 3])
    c1 = b.conv("input", 4)
    c2 = b.conv(b.unary("Relu", b.mul(c1, gate)), 5)
    inputs = {"input": (FLOAT, ["N", 3, 8, 8]), "t": (INT64, ["N"])}
    return build(b, inputs, [head(b, b.unary("Relu", c2))]), b, [c1, c2]


# --- inputs: names, dims, dtypes, shapes ---------------------------------------------------------------


def test_data_inputs_skip_initializers_listed_as_inputs() -> None:
    model, _, _ = two_images_add()
    w = model.graph.initializer[0]
    model.graph.input.append(helper.make_tensor_value_info(w.name, w.data_type, list(w.dims)))

    assert [vi.name for vi in data_inputs(model)] == ["input", "b"]
    assert ModelInputs.of(model).dims() == {"input": ["N", 3, "H", "W"], "b": ["N", 2, "H", "W"]}
    assert ModelInputs.of(model).dims()["input"] == ["N", 3, "H", "W"]


def test_input_dtypes_follow_the_elem_types() -> None:
    model, _, _ = image_and_gate()

    assert input_dtypes(model) == {"input": np.dtype(np.float32), "t": np.dtype(np.int64)}


def test_plain_shape_resolves_the_other_inputs_by_symbol_and_batch() -> None:
    images, _, _ = two_images_add()
    gate, _, _ = image_and_gate()

    assert input_shapes(images, (2, 3, 8, 8)) == {"input": A, "b": B}
    assert input_shapes(images, (5, 3, 4, 6)) == {"input": (5, 3, 4, 6), "b": (5, 2, 4, 6)}
    assert input_shapes(gate, (7, 3, 8, 8)) == {"input": (7, 3, 8, 8), "t": (7,)}


def test_unnamed_dim0_takes_the_batch_and_unknown_dims_raise() -> None:
    model, _, _ = two_images_add()
    model.graph.input[1].type.tensor_type.shape.dim[0].Clear()  # unnamed dynamic batch
    assert input_shapes(model, A)["b"] == B

    model.graph.input[1].type.tensor_type.shape.dim[3].dim_param = "S"  # not a dim of the first input
    with pytest.raises(ShapeError, match=r"dim 3 \('S'\) of graph input 'b'.*every input"):
        input_shapes(model, A)
    assert input_shapes(model, {"input": A, "b": (2, 2, 8, 5)})["b"] == (2, 2, 8, 5)


def test_mapping_is_checked_and_returned_in_input_order() -> None:
    model, _, _ = two_images_add()

    assert list(input_shapes(model, {"b": [2, 2, 8, 8], "input": A}).items()) == [("input", A), ("b", B)]


@pytest.mark.parametrize(
    ("shapes", "message"),
    [
        ({"input": A}, "no shape for graph input 'b'"),
        ({**SHAPES, "c": B}, "'c', which is not a graph input"),
        ({"input": A, "b": (2, 2, 8)}, "rank 3 but graph input 'b' has rank 4"),
        ({"input": A, "b": (2, 3, 8, 8)}, "fixed dim 1"),
        ({"input": A, "b": (2, 2, 0, 8)}, "positive"),
        ({"input": A, "b": (3, 2, 8, 8)}, "'N'.*same size"),
        ({"input": A, "b": (2, 2, 4, 8)}, "'H'.*same size"),
    ],
)
def test_bad_mapping_raises(shapes: dict, message: str) -> None:
    model, _, _ = two_images_add()

    with pytest.raises(ShapeError, match=message):
        input_shapes(model, shapes)


@pytest.mark.parametrize(
    ("shape", "message"), [((1, 3, 8), "rank"), ((1, 5, 8, 8), "fixed dim 1"), ((), "positive")]
)
def test_bad_plain_shape_raises_as_before(shape: tuple[int, ...], message: str) -> None:
    model, _, _ = image_and_gate()

    with pytest.raises(ShapeError, match=message):
        input_shapes(model, shape)


# --- shapes, analysis, costs -----------------------------------------------------------------------------


def test_infer_shapes_fixes_every_input() -> None:
    model, _, (_, cb, c3) = two_images_add()

    plain, mapping = static_shapes(model, A), static_shapes(model, SHAPES)

    assert plain == mapping
    assert plain["b"] == B and plain[cb] == (2, 4, 8, 8) and plain[c3] == (2, 5, 8, 8)


def test_plain_shape_leaves_unresolvable_dims_dynamic_in_inference() -> None:
    model, _, (ca, _, _) = two_images_add()
    model.graph.input[1].type.tensor_type.shape.dim[3].dim_param = "S"

    shapes = infer_shapes(model, A)

    assert shapes["b"] == (2, 2, 8, None) and shapes[ca] == (2, 4, 8, 8)


def test_runtime_fallback_feeds_every_input_in_its_dtype() -> None:
    """Range's length is data-dependent: inference leaves it unknown, one ORT run (float and int64
    zeros) reads it."""
    nodes = [
        helper.make_node("Size", ["t"], ["n"]),
        helper.make_node("Range", ["zero", "n", "one"], ["r"]),
        helper.make_node("Cast", ["r"], ["rf"], to=FLOAT),
        helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
        helper.make_node("Mul", ["rf", "s"], ["y"]),
    ]
    inits = [numpy_helper.from_array(np.array(v, np.int64), k) for k, v in (("zero", 0), ("one", 1))]
    inputs = [
        helper.make_tensor_value_info("x", FLOAT, ["N", 3]),
        helper.make_tensor_value_info("t", INT64, ["N", "T"]),
    ]
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("y", FLOAT, ["L"])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])

    assert infer_shapes(model, {"x": (2, 3), "t": (2, 5)})["y"] == (10,)
    assert infer_shapes(model, (2, 3))["y"] == (None,)  # T unresolved: no run


def test_add_ties_the_convs_of_both_inputs() -> None:
    model, b, (ca, cb, _) = two_images_add()
    norm = normalize(model).model

    plan = analyze(norm, SHAPES)

    assert plan.format() == analyze(norm, A).format()
    tied = next(g for g in plan.groups if node_of(b, ca) in g.source_nodes)
    assert sorted(tied.source_nodes) == sorted([node_of(b, ca), node_of(b, cb)])
    assert tied.channels == 4 and tied.prunable
    assert [g.channels for g in plan.prunable] == [4, 5]


def test_concat_keeps_the_input_branches_apart() -> None:
    model, b, (ca, cb, c3) = two_images_concat()

    plan = analyze(normalize(model).model, SHAPES)

    assert [(g.source_nodes, g.channels) for g in plan.prunable] == [
        ([node_of(b, ca)], 4),
        ([node_of(b, cb)], 3),
        ([node_of(b, c3)], 5),
    ]


def test_count_costs_matches_the_hand_count() -> None:
    model, b, (ca, cb, c3) = two_images_add()
    n, hw = 2, 8 * 8
    expected = {
        node_of(b, ca): n * 4 * hw * 3 * 9,
        node_of(b, cb): n * 4 * hw * 2 * 9,
        node_of(b, c3): n * 5 * hw * 4 * 9,
    }

    cost = count_costs(model, SHAPES)

    assert {k: v.macs for k, v in cost.nodes.items() if v.op_type == "Conv"} == expected
    assert cost.total_macs == sum(expected.values()) + n * 5 * 3  # + the Gemm
    assert cost.input_shape == A and cost.input_shapes == SHAPES
    assert count_costs(model, A).to_dict() == cost.to_dict()
    d = json.loads(json.dumps(cost.to_dict()))
    assert d["input_shape"] == list(A) and d["input_shapes"] == {"input": list(A), "b": list(B)}


def test_count_costs_of_the_gated_model() -> None:
    model, b, (c1, c2) = image_and_gate()

    cost = count_costs(model, (4, 3, 8, 8))

    assert cost.nodes[node_of(b, c1)].macs == 4 * 4 * 64 * 3 * 9
    assert cost.nodes[node_of(b, c2)].macs == 4 * 5 * 64 * 4 * 9
    assert cost.input_shapes == {"input": (4, 3, 8, 8), "t": (4,)}


# --- running and verification ----------------------------------------------------------------------------


def _feeds(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "input": rng.standard_normal((n, 3, 8, 8)).astype(np.float32),
        "b": rng.standard_normal((n, 2, 8, 8)).astype(np.float32),
    }


def test_run_batched_with_a_mapping_equals_one_run() -> None:
    model, _, _ = two_images_add()
    sess = make_session(model)
    x = _feeds(7)

    (direct,) = sess.run(None, x)
    (batched,) = run_batched(sess, {"b": x["b"], "input": x["input"]}, batch_size=3)

    np.testing.assert_allclose(batched, direct, rtol=1e-5, atol=1e-6)
    y = direct.argmax(axis=1)
    assert top1(sess, x, y, batch_size=2) == 1.0


def test_run_batched_int_input() -> None:
    model, _, _ = image_and_gate()
    sess = make_session(model)
    x = {"input": _feeds(5)["input"], "t": np.array([0, 1, 2, 3, 1], dtype=np.int64)}

    (direct,) = sess.run(None, x)
    (batched,) = run_batched(sess, x, batch_size=2)

    np.testing.assert_allclose(batched, direct, rtol=1e-5, atol=1e-6)


def test_run_batched_bare_array_feeds_the_first_input() -> None:
    model = vgg_like()
    sess = make_session(model)
    x = np.random.default_rng(0).standard_normal((5, 3, 8, 8)).astype(np.float32)

    (direct,) = sess.run(None, {"input": x})

    np.testing.assert_allclose(run_batched(sess, x, 2)[0], direct, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(run_batched(sess, {"input": x}, 2)[0], direct, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("x", "message"),
    [
        ({"input": np.zeros((2, 3, 8, 8), np.float32)}, "missing 'b'"),
        ({**_feeds(2), "c": np.zeros(2, np.float32)}, "unknown 'c'"),
        ({"input": np.zeros((2, 3, 8, 8), np.float32), "b": np.zeros((3, 2, 8, 8), np.float32)}, "counts"),
    ],
)
def test_run_batched_bad_mapping_raises(x: dict, message: str) -> None:
    model, _, _ = two_images_add()

    with pytest.raises(DataError, match=message):
        run_batched(make_session(model), x)


def test_verification_inputs_plain_shape_is_unchanged() -> None:
    rng = np.random.default_rng(3)
    real = np.ones((5, 3, 8, 8), dtype=np.float64)

    batches = verification_inputs((1, 3, 8, 8), 3, real, batch=4)

    assert len(batches) == 3 and all(x.dtype == np.float32 for x in batches)
    np.testing.assert_array_equal(batches[0], rng.standard_normal((4, 3, 8, 8)).astype(np.float32))
    np.testing.assert_array_equal(batches[1], rng.uniform(0, 1, (4, 3, 8, 8)).astype(np.float32))
    np.testing.assert_array_equal(batches[2], real[:4].astype(np.float32))
    assert len(verification_inputs((1, 3, 8, 8), 3)) == 2


def test_verification_inputs_one_float_input_mapping_equals_the_plain_arrays() -> None:
    plain = verification_inputs((1, 3, 8, 8), 5)
    mapped = verification_inputs({"input": (1, 3, 8, 8)}, 5)

    assert len(mapped) == 2
    for p, m in zip(plain, mapped, strict=True):
        np.testing.assert_array_equal(p, m["input"])


def test_verification_inputs_per_input_dtypes_and_shapes() -> None:
    shapes = {"input": (1, 3, 8, 8), "t": (1,), "mask": (1, 6)}
    dtypes = {"input": np.float32, "t": np.int64, "mask": np.bool_}
    real = {
        "input": np.ones((3, 3, 8, 8), np.float32),
        "t": np.array([4, 5, 6], np.int64),
        "mask": np.ones((3, 6), bool),
    }

    without = verification_inputs(shapes, 0, batch=4, dtypes=dtypes)
    batches = verification_inputs(shapes, 0, real, batch=4, dtypes=dtypes)

    assert len(without) == 2 and len(batches) == 3
    for batch in [*without, *batches[:2]]:
        assert list(batch) == ["input", "t", "mask"]
        assert {k: (v.dtype, v.shape) for k, v in batch.items()} == {
            "input": (np.float32, (4, 3, 8, 8)),
            "t": (np.int64, (4,)),
            "mask": (np.bool_, (4, 6)),
        }
    assert not without[0]["t"].any() and not without[1]["mask"].any()  # zeros without real samples
    assert batches[0]["t"].tolist() == [4, 5, 6, 4]  # real values, tiled
    assert batches[1]["mask"].all()
    assert batches[2]["t"].tolist() == [4, 5, 6] and batches[2]["input"].shape == (3, 3, 8, 8)
    np.testing.assert_array_equal(batches[0]["input"], without[0]["input"])


@pytest.mark.parametrize(
    ("real", "message"),
    [
        (np.zeros((2, 3, 8, 8), np.float32), "keyed by input name"),
        ({"input": np.zeros((2, 3, 8, 8), np.float32)}, "missing 't'"),
        ({"input": np.zeros((2, 3, 8, 8), np.float32), "t": np.zeros((2, 2), np.int64)}, "shape"),
    ],
)
def test_verification_inputs_bad_real_raises(real, message: str) -> None:
    with pytest.raises(DataError, match=message):
        verification_inputs({"input": (1, 3, 8, 8), "t": (1,)}, 0, real, dtypes={"t": np.int64})


def test_compare_models_counts_mapping_samples() -> None:
    model, _, _ = two_images_add()

    result = compare_models(model, model, [_feeds(3), _feeds(2, seed=1)])

    assert result.samples == 5 and result.max_rel_error == 0.0


# --- pruned == masked ------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_pruned_equals_masked_two_images_add(seed: int) -> None:
    model, _, _ = two_images_add(seed, bias=seed == 0)

    result = prune_check(model, SHAPES, seed)

    assert any(not keep.all() for keep in result.masks.values())
    assert result.shrunk() and result.max_rel_error <= 1e-5


def test_pruned_equals_masked_two_images_concat() -> None:
    result = prune_check(two_images_concat()[0], SHAPES, 0)

    assert result.shrunk() and result.max_rel_error <= 1e-5


def test_pruned_equals_masked_with_an_int_gate() -> None:
    model, _, _ = image_and_gate(1)
    real = {"input": _feeds(6)["input"], "t": np.array([1, 2, 0, 3, 1, 2], np.int64)}

    result = prune_check(model, {"input": A, "t": (2,)}, 1, real=real)

    assert [g.channels for g in result.plan.prunable] == [4, 5]
    assert result.shrunk() and result.max_rel_error <= 1e-5


# --- single-input paths ----------------------------------------------------------------------------------


def test_single_input_plain_and_mapping_agree() -> None:
    model = normalize(vgg_like()).model
    shape = (2, 3, 8, 8)

    assert infer_shapes(model, shape) == infer_shapes(model, {"input": shape})
    assert analyze(model, shape).format() == analyze(model, {"input": list(shape)}).format()
    assert count_costs(model, shape) == count_costs(model, {"input": shape})
    assert count_costs(model, [2, 3, 8, 8]).input_shape == shape
    assert input_shapes(model, shape) == {"input": shape}
