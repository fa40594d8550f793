"""Shape-wise sparsity: parsing, the projection against brute force, the lowered export (exact), the
form chooser, dead-channel removal, end to end and errors."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from onnxprune import compress
from onnxprune.config.recipe import parse_recipe
from onnxprune.config.sparsity import parse_sparsity
from onnxprune.errors import SpecError
from onnxprune.graph.dead import aligned_removal
from onnxprune.graph.elements import Columns
from onnxprune.graph.lowered import lower_model
from onnxprune.graph.verify import compare_models
from onnxprune.graph.weights import initializer_values
from onnxprune.pipeline import TrainOptions
from onnxprune.runtime.forms import choose, shape_form
from tests.builders import GraphBuilder, vgg_like
from tests.test_cli import PREVIEW, assert_one_line_error, run
from tests.test_element_sparsity import QUICK, constraints, four_channel_cnn


# -- parsing and constraints -----------------------------------------------------------------------------
def test_parse_and_recipe() -> None:
    rule = parse_sparsity(" SHAPE:0.5 ").rules[0]
    assert (rule.kind, rule.ratio, rule.elementwise, str(rule)) == ("shape", 0.5, True, "shape:0.5")
    rec = parse_recipe({"sparsity": [{"type": "shape", "ratio": 0.7, "op": "Conv"}]}, "<t>")
    assert rec.sparsity is not None and str(rec.sparsity.rules[0]) == "shape:0.7 (op=Conv)"


@pytest.mark.parametrize(
    ("text", "message"),
    [("shape:1", "must be in [0, 1)"), ("shape:-0.1", "[0, 1)"), ("shape:x", "not a number")],
)
def test_bad_ratio(text: str, message: str) -> None:
    with pytest.raises(SpecError) as e:
        parse_sparsity(text)
    assert message in str(e.value)


def test_constraints_count_columns() -> None:
    got = constraints(four_channel_cnn(), "shape:0.75")
    by_op = sorted((c.op_type, c.shape, c.out_axis, c.n_columns, c.columns, c.keep) for c in got.values())
    assert by_op == [
        ("Conv", (8, 4, 3, 3), 0, 36, 9, 72),
        ("Conv", (8, 8, 3, 3), 0, 72, 18, 144),
        ("Gemm", (8, 4), 1, 8, 2, 8),  # transB=0: B[K, N], a column is a row of B (an input feature)
        ("Gemm", (8, 32), 0, 32, 8, 64),  # transB=1: B[N, K]
    ]


def test_grouped_conv_is_refused() -> None:
    b = GraphBuilder((1, 4, 8, 8), seed=2)
    x = b.conv(b.unary("Relu", b.conv("input", 8)), 8, group=4)
    model = b.build([b.gemm(b.flatten(x), 4)])
    with pytest.raises(SpecError) as e:
        constraints(model, "shape:0.5")
    assert "grouped/depthwise Conv (group=4)" in str(e.value) and "exclude the layer" in str(e.value)


@pytest.mark.torch
def test_cli_grouped_conv_is_a_one_line_error(tmp_path: Path) -> None:
    b = GraphBuilder((1, 4, 8, 8), seed=2)
    model = b.build([b.conv(b.conv("input", 8), 8, group=8)])
    onnx.save(model, str(tmp_path / "m.onnx"))
    code, out = run(["compress", tmp_path / "m.onnx", "-s", "shape:0.5", *PREVIEW, "-o", tmp_path / "o.onnx"])
    assert_one_line_error(code, out, "group=8")


# -- projection ------------------------------------------------------------------------------------------
def _brute_force(t: np.ndarray, k: int) -> float:
    """min over all k-subsets S of columns of ‖T − T|_S‖² (the best Z with support S is T on S)."""
    sq = (t.astype(np.float64) ** 2).sum(axis=0).reshape(-1)
    return min(sq.sum() - sq[list(s)].sum() for s in itertools.combinations(range(sq.size), k))


@settings(max_examples=60, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 2), st.integers(1, 2)),
    data=st.data(),
)
def test_projection_matches_brute_force(shape: tuple[int, ...], data: st.DataObject) -> None:
    torch = pytest.importorskip("torch")
    from onnxprune.train.elements import shape_mask

    n = int(np.prod(shape[1:]))
    k = data.draw(st.integers(1, n))
    values = data.draw(
        st.lists(st.integers(-4, 4), min_size=int(np.prod(shape)), max_size=int(np.prod(shape)))
    )
    t = torch.tensor(values, dtype=torch.float32).reshape(shape) / 2
    mask = shape_mask(t, k, 0)
    cols = mask.any(dim=0)
    assert int(cols.sum()) == k and bool((mask == cols.unsqueeze(0)).all())  # whole columns
    z = t.masked_fill(~mask, 0)
    assert float(((t - z) ** 2).sum()) == pytest.approx(_brute_force(t.numpy(), k), abs=1e-9)


def test_projection_ties_keep_lower_column_and_other_axes() -> None:
    torch = pytest.importorskip("torch")
    from onnxprune.train.elements import element_mask, shape_mask

    t = torch.ones(2, 2, 1, 2)  # four equal columns
    mask = shape_mask(t, 2, 0)
    assert mask[0, :, 0, :].tolist() == [[True, True], [False, False]]
    # a Gemm weight in torch layout (N, K) with a transposing binding: the output axis of B[K, N] is 1
    c = Columns("B", "G", "Gemm", (3, 2), 0, rule="shape:0.5", columns=1)
    b = torch.tensor([[0.1, 3.0, 0.2], [1.0, 0.0, 1.0]])  # torch (N=2, K=3)
    got = element_mask(b, c, "B", axis_of=lambda name, ax: 1 - ax)
    assert got.tolist() == [[False, True, False], [False, True, False]]


# -- lowered form ----------------------------------------------------------------------------------------
def _conv_model(k: int, stride: int, pad: int, dil: int, bias: bool, cin: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((6, cin, k, k)).astype(np.float32)
    cols = rng.random((cin, k, k)) < 0.5
    cols.reshape(-1)[0] = True
    w[:, ~cols] = 0
    inits = [numpy_helper.from_array(w, "w")]
    if bias:
        inits.append(numpy_helper.from_array(rng.standard_normal(6).astype(np.float32), "b"))
    node = helper.make_node(
        "Conv",
        ["x", "w", *(["b"] if bias else [])],
        ["y"],
        name="conv",
        kernel_shape=[k, k],
        strides=[stride, stride],
        pads=[pad, pad + 1, pad, pad],
        dilations=[dil, dil],
    )
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", cin, 9, 10])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 6, "OH", "OW"])
    graph = helper.make_graph([node], "g", [x], [y], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), int(cols.sum())


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize(("stride", "pad", "dil"), [(1, 0, 1), (1, 1, 1), (2, 1, 1), (1, 2, 2), (2, 0, 2)])
@pytest.mark.parametrize("bias", [True, False])
def test_lowered_conv_is_exact(k: int, stride: int, pad: int, dil: int, bias: bool) -> None:
    model, kept = _conv_model(k, stride, pad, dil, bias)
    lowered, layers = lower_model(model, ["w"])
    onnx.checker.check_model(lowered, full_check=True)
    assert [(x.lowered, x.kept, x.columns) for x in layers] == [(True, kept, 5 * k * k)]
    assert "w" not in {t.name for t in lowered.graph.initializer}
    convs = [n for n in lowered.graph.node if n.op_type == "Conv"]
    assert len(convs) == 1 and convs[0].name == "conv"  # one GEMM of the kept columns, same node name
    wk = initializer_values(lowered, [convs[0].input[1]])[convs[0].input[1]]
    assert wk.shape == (6, kept, 1, 1)
    x = np.random.default_rng(1).standard_normal((3, 5, 9, 10)).astype(np.float32)
    assert compare_models(model, lowered, [x], rtol=1e-5).max_rel_error <= 1e-5


@pytest.mark.parametrize(("trans_a", "trans_b"), [(0, 0), (0, 1), (1, 1)])
def test_lowered_gemm_is_exact(trans_a: int, trans_b: int) -> None:
    rng = np.random.default_rng(3)
    b = rng.standard_normal((4, 7) if trans_b else (7, 4)).astype(np.float32)
    dead = [1, 2, 5]
    if trans_b:
        b[:, dead] = 0
    else:
        b[dead, :] = 0
    node = helper.make_node("Gemm", ["a", "B", "c"], ["y"], name="gemm", transA=trans_a, transB=trans_b)
    a_shape = [7, 3] if trans_a else [3, 7]
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, a_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [
            numpy_helper.from_array(b, "B"),
            numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "c"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    lowered, layers = lower_model(model, ["B"])
    assert [(x.lowered, x.kept, x.columns) for x in layers] == [(True, 4, 7)]
    x = rng.standard_normal(a_shape).astype(np.float32)
    assert compare_models(model, lowered, [x], rtol=1e-5).max_rel_error <= 1e-5


def test_dynamic_spatial_axes_stay_dense() -> None:
    model, _ = _conv_model(3, 1, 1, 1, True)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "H", "W"
    lowered, layers = lower_model(model, ["w"])
    assert not layers[0].lowered and "dynamic spatial" in layers[0].reason
    assert [n.op_type for n in lowered.graph.node] == ["Conv"]


# -- chooser ---------------------------------------------------------------------------------------------
def test_choose_by_timings() -> None:
    form, why = choose({"dense": {1: 1.0, 32: 10.0}, "lowered": {1: 0.8, 32: 9.0}})
    assert form == "lowered" and "0.85x" in why and "b32: dense 10.000 ms, lowered 9.000 ms" in why
    form, why = choose({"dense": {1: 1.0, 32: 10.0}, "lowered": {1: 0.7, 32: 16.0}})  # geo mean 1.06
    assert form == "dense" and "dense is faster" in why


def test_shape_form_uses_the_timer() -> None:
    model, _ = _conv_model(3, 1, 1, 1, True)
    x = [np.random.default_rng(0).standard_normal((2, 5, 9, 10)).astype(np.float32)]
    calls = []

    def fake(fast: str):
        def timer(dense, lowered, batches, shape, repeats):
            calls.append(tuple(batches))
            return {f: {b: 1.0 if f == fast else 2.0 for b in batches} for f in ("dense", "lowered")}

        return timer

    for fast in ("lowered", "dense"):
        written, info = shape_form(model, ["w"], x, "auto", (1, 32), (1, 5, 9, 10), timer=fake(fast))
        assert info["chosen"] == fast and info["timings"]["lowered"][32] == (
            1.0 if fast == "lowered" else 2.0
        )
        assert (len(written.graph.node) > 1) == (fast == "lowered")
        assert info["lowered_rel_error"] <= 1e-5 and info["macs_lowered"] < info["macs_dense"]
    assert calls == [(1, 32), (1, 32)]
    _, info = shape_form(model, ["w"], x, "auto", (), timer=fake("lowered"))  # nothing to time
    assert info["chosen"] == "dense" and "not timed" in info["reason"] and len(calls) == 2
    written, info = shape_form(model, ["w"], x, "lowered", (1,), timer=fake("dense"))  # forced
    assert info["chosen"] == "lowered" and "forced" in info["reason"] and len(written.graph.node) > 1
    with pytest.raises(SpecError):
        shape_form(model, ["w"], x, "fastest")


# -- end to end ------------------------------------------------------------------------------------------
@pytest.mark.torch
def test_admm_shape_lowered_export_equals_masked(npz: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.onnx"
    result = compress(
        four_channel_cnn(),
        "shape:0.5",
        str(npz),
        out,
        train=QUICK,
        shape_form="lowered",
        bench_batches=(),
        quiet=True,
    )
    r = result.report
    assert r.verification.passed and r.history["admm"] and r.shape_form is not None
    assert r.shape_form["chosen"] == "lowered" and all(x["lowered"] for x in r.shape_form["layers"])
    for e in r.elements:  # whole columns, at most k of them (dead-channel surgery may slice the weight)
        assert e["columns_kept"] <= e["max_columns"] and e["nonzeros"] % (e["size"] // e["columns"]) == 0
    saved = onnx.load(str(out))
    assert sum(n.op_type == "Concat" for n in saved.graph.node) == 2  # the two 3x3 convs
    x = np.random.default_rng(1).random((4, 4, 8, 8)).astype(np.float32)
    assert compare_models(result.masked, saved, [x], rtol=1e-5).max_rel_error <= 1e-5
    assert r.shape_form["macs_written"] < r.totals["macs_before"]
    assert "shape form written: lowered (forced" in r.format()


@pytest.mark.torch
def test_masks_are_whole_columns_and_dense_form_is_default(npz: Path) -> None:
    result = compress(
        four_channel_cnn(),
        "shape:0.75",
        str(npz),
        method="magnitude",
        train=TrainOptions(finetune_epochs=1, batch_size=32),
        bench_batches=(),
        quiet=True,
    )
    assert result.report.shape_form is not None and result.report.shape_form["chosen"] == "dense"
    arrays = initializer_values(result.masked, [e["initializer"] for e in result.report.elements])
    for e in result.report.elements:
        a = arrays[e["initializer"]]
        out_axis = 1 if a.shape == (8, 4) else 0
        cols = np.any(a != 0, axis=out_axis)
        assert int(cols.sum()) == e["max_columns"]  # exactly k columns survive in the masked model
        full = np.all(a != 0, axis=out_axis)
        assert np.array_equal(cols, full)  # a kept column is non-zero in every filter (trained weights)


def test_aligned_removal_rounds_kept_counts_up() -> None:
    dead = {"a": np.array([1, 1, 0, 0, 1] + [0] * 19, bool), "b": np.array([1] * 10 + [0] * 14, bool)}
    got = aligned_removal(dead, {}, 8)
    assert "a" not in got  # 24 - 3 = 21 -> 24: nothing to remove
    assert got["b"].sum() == 8 and got["b"][:8].all()  # 24 - 10 = 14 -> 16: the first 8 dead go
    assert aligned_removal(dead, {}, 1)["a"].sum() == 3


@pytest.mark.torch
def test_dead_channels_are_removed_exactly() -> None:
    result = compress(
        vgg_like(),
        "shape:0.9",
        align=2,  # the model's 5-8 channels: the default multiple of 8 would keep them all
        data="random",
        method="magnitude",
        train=TrainOptions(finetune_epochs=0),
        bench_batches=(),
        quiet=True,
    )
    r = result.report
    assert r.shape_form is not None and r.shape_form["dead_channels"] and r.shape_form["dead_removed"]
    assert r.totals["macs_after"] < r.totals["macs_before"]  # the dense form lost whole channels
    assert r.verification.passed
    x = np.random.default_rng(4).random((3, 3, 8, 8)).astype(np.float32)
    assert compare_models(result.masked, result.model, [x], rtol=1e-5).max_rel_error <= 1e-5
    assert "every consumer column is pruned" in r.format()


@pytest.mark.torch
def test_cli_shape_form_option(tmp_path: Path) -> None:
    path, out, report = tmp_path / "m.onnx", tmp_path / "o.onnx", tmp_path / "r.json"
    onnx.save(vgg_like(), str(path))
    code, text = run(["compress", path, "-s", "shape:0.5", "--shape-form", "lowered", *PREVIEW, "-o", out])
    assert code == 0, text
    assert "shape form written: lowered" in text and "columns kept" in text
    assert any(n.op_type == "Concat" for n in onnx.load(str(out)).graph.node)
    code, text = run(
        ["compress", path, "-s", "shape:0.5", "--shape-form", "x", *PREVIEW, "-o", out, "--report", report]
    )
    assert code != 0 and "x" in text
