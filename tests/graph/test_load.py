"""Loading and normalization: clear errors for bad files, weights made into initializers."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from onnxprune.errors import InvalidModelError, RuntimeRefusedError
from onnxprune.graph.analysis import analyze
from onnxprune.graph.edit import mask_model, prune_model
from onnxprune.graph.inputs import ModelInputs
from onnxprune.graph.load import load_model, normalize
from onnxprune.graph.verify import compare_models, verification_inputs
from onnxprune.runtime.sessions import make_session
from tests.builders import GraphBuilder, legacy_model, vgg_like


def test_not_onnx(tmp_path: Path) -> None:
    bad = tmp_path / "x.onnx"
    bad.write_text("hello, I am not a model")
    with pytest.raises(InvalidModelError, match="not a valid ONNX"):
        load_model(bad)


def test_truncated(tmp_path: Path) -> None:
    data = vgg_like().SerializeToString()
    bad = tmp_path / "t.onnx"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidModelError, match="not a valid ONNX"):
        load_model(bad)


def test_missing_and_directory(tmp_path: Path) -> None:
    with pytest.raises(InvalidModelError, match="no such file"):
        load_model(tmp_path / "nope.onnx")
    with pytest.raises(InvalidModelError, match="not a file"):
        load_model(tmp_path)


def test_external_data_round_trip(tmp_path: Path) -> None:
    model = vgg_like()
    path = tmp_path / "ext.onnx"
    # onnx turns the saved tensors into external references in place: save a copy
    onnx.save_model(
        copy.deepcopy(model), str(path), save_as_external_data=True, location="ext.data", size_threshold=0
    )
    loaded, external = load_model(path)
    assert external
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    assert compare_models(model, loaded, [x]).max_rel_error == 0.0


def test_normalize_names_nodes_and_lifts_constants() -> None:
    b = GraphBuilder((1, 3, 6, 6))
    x = b.conv("input", 4)
    conv = b.nodes[-1]
    bias_name = conv.input[2]
    bias = next(t for t in b.inits if t.name == bias_name)
    b.inits.remove(bias)
    b.nodes.insert(0, helper.make_node("Constant", [], ["bc"], value=bias))
    b.nodes.insert(1, helper.make_node("Identity", ["bc"], [bias_name]))
    model = b.build([x])
    norm = normalize(model)
    g = norm.model.graph
    assert all(n.name for n in g.node)
    assert {n.op_type for n in g.node} == {"Conv"}
    assert "bc" in {t.name for t in g.initializer}
    assert any("Constant" in note for note in norm.notes) and any("Identity" in note for note in norm.notes)
    xin = np.random.default_rng(1).standard_normal((2, 3, 6, 6)).astype(np.float32)
    assert compare_models(model, norm.model, [xin]).max_rel_error == 0.0
    assert model.graph.node[0].op_type == "Constant", "the input model must not change"


def test_existing_node_names_are_kept() -> None:
    model = vgg_like()
    before = [n.name for n in model.graph.node]
    assert [n.name for n in normalize(model).model.graph.node] == before


def test_initializers_in_graph_inputs_are_dropped_from_inputs() -> None:
    model = vgg_like()
    model.ir_version = 3
    for t in model.graph.initializer:
        model.graph.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    norm = normalize(model).model
    assert [i.name for i in norm.graph.input] == ["input"]
    assert list(ModelInputs.of(norm).first.dims or ()) == ["batch", 3, 8, 8]


def test_old_opset_is_lifted_and_still_prunable_exactly() -> None:
    b = GraphBuilder((1, 3, 6, 6), opset=9)
    x = b.unary("Relu", b.bn(b.conv("input", 4)))
    model = b.build([b.gemm(b.flatten(b.maxpool(x)), 2)])
    normalized = normalize(model)
    assert normalized.model.opset_import[0].version == 11
    assert any("converted opset 9 to 11" in n for n in normalized.notes)
    onnx.checker.check_model(normalized.model, full_check=True)
    plan = analyze(normalized.model, (1, 3, 6, 6))
    assert plan.groups[0].prunable
    keep = {plan.groups[0].name: np.array([True, False, True, False])}
    masked = mask_model(normalized.model, plan, keep)
    pruned = prune_model(masked, plan, keep)
    assert compare_models(masked, pruned, verification_inputs((1, 3, 6, 6), 0)).max_rel_error <= 1e-5


def test_static_shape_arithmetic_is_folded_and_dynamic_dims_stay() -> None:
    """``x.view(x.size(0), C // 2, 2, H, W)``-style targets: the channel entry becomes a constant, the
    batch entry stays read from the input at run time."""
    b = GraphBuilder((1, 4, 6, 6))
    x = b.conv("input", 4)
    shape = b.node("Shape", [x], (4,))
    batch = b.node("Gather", [shape, b.const(np.array([0], dtype=np.int64))], (1,), axis=0)
    chans = b.node("Gather", [shape, b.const(np.array([1], dtype=np.int64))], (1,), axis=0)
    half = b.node("Div", [chans, b.const(np.array([2], dtype=np.int64))], (1,))
    rest = b.const(np.array([2, 6, 6], dtype=np.int64))
    target = b.node("Concat", [batch, half, rest], (5,), axis=0)
    y = b.node("Reshape", [x, target], (1, 2, 2, 6, 6))
    flat = b.node("Reshape", [y, b.const(np.array([-1, 144], dtype=np.int64))], (1, 144))
    model = b.build([flat])
    normalized = normalize(model)
    ops = [n.op_type for n in normalized.model.graph.node]
    assert ops.count("Shape") == 1 and "Div" not in ops  # the batch entry is still read at run time
    assert any("folded" in n for n in normalized.notes)
    for batch_size in (1, 3):
        x_in = np.random.default_rng(0).standard_normal((batch_size, 4, 6, 6)).astype(np.float32)
        want = make_session(model).run(None, {"input": x_in})[0]
        got = make_session(normalized.model).run(None, {"input": x_in})[0]
        np.testing.assert_allclose(got, want, rtol=1e-6)


def _ort(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return make_session(model).run(None, {"x": x})[0]


def test_legacy_broadcast_of_constants_becomes_numpy_broadcasting() -> None:
    """Opset 6 ``Mul``/``Add`` with ``broadcast=1, axis=1`` on a per-channel constant: the constant is
    reshaped to (C, 1, 1), the attributes go, no Unsqueeze is inserted, and the values are the legacy
    ones. ``s`` is also read by a broadcast that needs no reshape (rank-2 operand): that one keeps it."""
    rng = np.random.default_rng(0)
    s, b = rng.standard_normal(4).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    nodes = [
        helper.make_node("Mul", ["x", "s"], ["m"], name="mul", broadcast=1, axis=1),
        helper.make_node("Add", ["m", "b"], ["a"], name="add", broadcast=1, axis=1),
        helper.make_node("ReduceMean", ["a"], ["r"], name="mean", axes=[2, 3], keepdims=0),
        helper.make_node("Sub", ["r", "s"], ["y"], name="sub", broadcast=1, axis=1),
    ]
    model = legacy_model(nodes, {"s": s, "b": b}, (2, 4, 3, 3), (2, 4))
    normalized = normalize(model)
    m = normalized.model
    assert m.opset_import[0].version == 11
    assert any("legacy broadcast" in n for n in normalized.notes)
    assert [n.op_type for n in m.graph.node] == ["Mul", "Add", "ReduceMean", "Sub"]
    assert all(not n.attribute for n in m.graph.node if n.op_type != "ReduceMean")
    dims = {t.name: list(t.dims) for t in m.graph.initializer}
    mul, sub = m.graph.node[0], m.graph.node[3]
    assert dims[mul.input[1]] == [4, 1, 1] and dims[sub.input[1]] == [4]
    onnx.checker.check_model(m, full_check=True)
    x = rng.standard_normal((2, 4, 3, 3)).astype(np.float32)
    want = (x * s[:, None, None] + b[:, None, None]).mean(axis=(2, 3)) - s
    np.testing.assert_allclose(_ort(m, x), want, rtol=1e-5, atol=1e-6)


def test_legacy_broadcast_of_a_computed_operand_is_unsqueezed_to_the_right_rank() -> None:
    """onnx's converter unsqueezes a computed per-channel operand to (C, 1, 1, 1) (axes [1, 2, 3]), which
    broadcasts to a wrong (C, C, H, W) result; normalize inserts Unsqueeze(axes=[1, 2]) itself."""
    s = np.arange(1, 4, dtype=np.float32)
    nodes = [
        helper.make_node("Mul", ["s", "s"], ["v"], name="square"),
        helper.make_node("Add", ["x", "v"], ["y"], name="add", broadcast=1, axis=1),
    ]
    model = legacy_model(nodes, {"s": s}, (1, 3, 2, 2), (1, 3, 2, 2))
    m = normalize(model).model
    onnx.checker.check_model(m, full_check=True)
    x = np.random.default_rng(1).standard_normal((1, 3, 2, 2)).astype(np.float32)
    got = _ort(m, x)
    assert got.shape == (1, 3, 2, 2)
    np.testing.assert_allclose(got, x + (s * s)[:, None, None], rtol=1e-6)


def test_lifted_model_that_ort_refuses_is_a_one_line_error() -> None:
    """A float + int64 Add passes onnx's checker and the version converter; ORT refuses it: a
    RuntimeRefusedError (an InvalidModelError) naming the conversion, not ORT's traceback."""
    nodes = [helper.make_node("Add", ["x", "i"], ["y"], name="add", broadcast=1)]
    model = legacy_model(nodes, {"i": np.ones(3, dtype=np.int64)}, (1, 3), (1, 3))
    with pytest.raises(RuntimeRefusedError, match="converted from opset 6 to 11") as info:
        normalize(model)
    assert isinstance(info.value, InvalidModelError) and "\n" not in str(info.value)
