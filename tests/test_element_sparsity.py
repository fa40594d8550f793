"""Element sparsity (irregular, N:M): parsing, per-layer constraints, export, sparse initializers, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from onnxprune import compress
from onnxprune.config.recipe import parse_recipe
from onnxprune.config.sparsity import element_constraints, keep_counts, parse_sparsity
from onnxprune.errors import SpecError
from onnxprune.graph.analysis import analyze
from onnxprune.graph.load import normalize
from onnxprune.graph.verify import compare_models
from onnxprune.graph.weights import initializer_values, nm_violations, to_sparse_initializers, weight_targets
from onnxprune.pipeline import TrainOptions
from onnxprune.pipeline.writing import storage as _storage
from tests.builders import GraphBuilder, vgg_like
from tests.test_cli import PREVIEW, assert_one_line_error, run

QUICK = TrainOptions(admm_epochs=1, finetune_epochs=1, batch_size=32, round_iters=2)


def four_channel_cnn() -> onnx.ModelProto:
    """x (N,4,8,8) -> Conv(8)-Relu-pool -> Conv(8)-Relu-pool -> flatten(32) -> Gemm(8, transB) -> Gemm(4)."""
    b = GraphBuilder((1, 4, 8, 8), seed=1)
    x = b.maxpool(b.unary("Relu", b.conv("input", 8)))
    x = b.maxpool(b.unary("Relu", b.conv(x, 8)))
    x = b.unary("Relu", b.gemm(b.flatten(x), 8, trans_b=1))
    return b.build([b.gemm(x, 4, trans_b=0)])


def constraints(model: onnx.ModelProto, spec_text: str | None = None, recipe: dict | None = None):
    base = normalize(model).model
    plan = analyze(base, (1, *[d.dim_value for d in base.graph.input[0].type.tensor_type.shape.dim][1:]))
    spec = parse_sparsity(spec_text) if spec_text else parse_recipe(recipe or {}, "<test>").sparsity
    assert spec is not None
    return element_constraints(spec, weight_targets(base), plan, keep_counts(plan, spec))


# -- parsing ---------------------------------------------------------------------------------------------
def test_parse() -> None:
    irr = parse_sparsity("irregular:0.8").rules[0]
    assert (irr.kind, irr.ratio, str(irr)) == ("irregular", 0.8, "irregular:0.8")
    nm = parse_sparsity(" NM:2:4 ").rules[0]
    assert (nm.kind, nm.n, nm.m, nm.ratio, str(nm)) == ("nm", 2, 4, 0.5, "nm:2:4")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("irregular:1", "must be in [0, 1)"),
        ("irregular:-0.2", "must be in [0, 1)"),
        ("irregular:x", "not a number"),
        ("nm:5:4", "need integers 1 <= N < M"),
        ("nm:0:4", "need integers 1 <= N < M"),
        ("nm:4:4", "need integers 1 <= N < M"),
        ("nm:2", "expected nm:N:M"),
        ("nm:a:4", "expected nm:N:M"),
        ("block:0.5", "unknown sparsity type"),
        ("filter:0.5,shape:0.3", "takes one structure"),
    ],
)
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(SpecError) as e:
        parse_sparsity(text)
    assert message in str(e.value)


@pytest.mark.torch
def test_recipe_rules() -> None:
    rec = parse_recipe(
        {
            "sparsity": [
                {"type": "filter", "ratio": 0.5, "op": "Conv"},
                {"type": "nm", "n": 1, "m": 4, "op": "Gemm"},
                "irregular:0.3",
            ],
            "sparse_initializers": True,
        },
        "<test>",
    )
    assert rec.sparse_initializers is True
    assert rec.sparsity is not None and [str(r) for r in rec.sparsity.rules] == [
        "filter:0.5 (op=Conv)",
        "nm:1:4 (op=Gemm)",
        "irregular:0.3",
    ]


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"type": "nm", "n": 2, "m": 4, "ratio": 0.5}, "not 'ratio'"),
        ({"type": "nm", "n": 2}, "missing 'm'"),
        ({"type": "nm", "n": 6, "m": 4}, "need integers 1 <= N < M"),
        ({"type": "irregular", "ratio": 0.5, "n": 2}, "belong to nm rules only"),
    ],
)
def test_recipe_errors(rule: dict, message: str) -> None:
    with pytest.raises(SpecError) as e:
        parse_recipe({"sparsity": [rule]}, "<test>")
    assert message in str(e.value)


# -- constraints per layer ------------------------------------------------------------------------------
def test_constraints_per_layer_and_gemm_axes() -> None:
    got = constraints(four_channel_cnn(), "nm:2:4")
    by_op = sorted((c.op_type, c.shape, c.axis, c.keep) for c in got.values())
    # Conv: C_in axis 1; Gemm transB=1: B[N, K] axis 1; Gemm transB=0: B[K, N] axis 0
    assert by_op == [
        ("Conv", (8, 4, 3, 3), 1, 144),
        ("Conv", (8, 8, 3, 3), 1, 288),
        ("Gemm", (8, 4), 0, 16),
        ("Gemm", (8, 32), 1, 128),
    ]
    irr = constraints(four_channel_cnn(), "irregular:0.8")
    assert sorted(c.keep for c in irr.values()) == [round(0.2 * n) for n in (32, 256, 288, 576)]


def test_indivisible_input_dimension_names_the_layer() -> None:
    with pytest.raises(SpecError) as e:
        constraints(vgg_like(), "nm:2:4")  # the first conv has 3 input channels
    assert "input dimension 3" in str(e.value) and "not a multiple of M=4" in str(e.value)


def test_nm_after_filter_pruned_layer_is_rejected() -> None:
    recipe = {
        "sparsity": [
            {"type": "filter", "ratio": 0.5, "op": "Conv"},
            {"type": "nm", "n": 2, "m": 4, "op": "Gemm"},
        ]
    }
    with pytest.raises(SpecError) as e:
        constraints(four_channel_cnn(), recipe=recipe)
    assert "removes input channels" in str(e.value)


# -- sparse initializers -----------------------------------------------------------------------------------
def test_sparse_initializer_round_trip() -> None:
    model = four_channel_cnn()
    names = [t.initializer for t in weight_targets(model)]
    dense = initializer_values(model, names)
    for t in model.graph.initializer:  # zero 3 of every 4 weights
        if t.name in names:
            a = dense[t.name].copy()
            a.reshape(-1)[np.arange(a.size) % 4 != 0] = 0
            t.CopyFrom(onnx.numpy_helper.from_array(a, t.name))
    stored = to_sparse_initializers(model, names)
    assert len(stored.graph.sparse_initializer) == len(names) and stored.ByteSize() < model.ByteSize()
    onnx.checker.check_model(stored)
    assert all(
        np.array_equal(initializer_values(stored, [n])[n], initializer_values(model, [n])[n]) for n in names
    )
    x = np.random.default_rng(0).random((3, 4, 8, 8)).astype(np.float32)
    assert compare_models(model, stored, [x]).max_rel_error == 0.0


# -- end to end ------------------------------------------------------------------------------------------
@pytest.mark.torch
def test_admm_irregular_exact_zero_counts_and_sparse_export(npz: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.onnx"
    result = compress(
        four_channel_cnn(),
        "irregular:0.75",
        str(npz),
        out,
        train=QUICK,
        sparse_initializers=True,
        bench_batches=(),
        quiet=True,
    )
    r = result.report
    assert r.verification.passed and r.history["admm"]
    saved = onnx.load(str(out))
    assert len(saved.graph.sparse_initializer) == 4 and r.totals["sparse_initializers"]
    arrays = initializer_values(saved, [e["initializer"] for e in r.elements])
    for e in r.elements:
        a = arrays[e["initializer"]]
        assert a.size - np.count_nonzero(a) == a.size - round(0.25 * a.size) == e["zeros"]
    # the exported model is the masked model: same structure, same outputs, smaller file
    x = np.random.default_rng(1).random((4, 4, 8, 8)).astype(np.float32)
    assert compare_models(result.masked, saved, [x]).max_rel_error <= 1e-6
    assert r.totals["macs_after"] == r.totals["macs_before"]
    assert r.totals["effective_macs_after"] < r.totals["macs_after"]
    assert r.totals["bytes_sparse_stored"] < r.totals["bytes_dense"]
    assert "no speedup" in r.totals["element_note"] and "effective non-zero" in r.format()


@pytest.mark.torch
def test_magnitude_nm_pattern_and_mixed_recipe(npz: Path, tmp_path: Path) -> None:
    result = compress(
        four_channel_cnn(),
        recipe={
            "sparsity": [
                {"type": "nm", "n": 2, "m": 4, "op": "Gemm"},
                {"type": "filter", "ratio": 0.5, "match": "Conv*"},
            ],
            "exclude": ["Conv12"],  # the last conv feeds the nm Gemm: its channels must stay
            "method": "magnitude",
        },
        data=str(npz),
        output=tmp_path / "p.onnx",
        train=TrainOptions(finetune_epochs=1, batch_size=32),
        bench_batches=(),
        quiet=True,
    )
    saved = onnx.load(str(tmp_path / "p.onnx"))
    assert not saved.graph.sparse_initializer
    kinds = {e["node"]: e["rule"] for e in result.report.elements}
    assert sorted(kinds.values()) == ["nm:2:4 (op=Gemm)"] * 2
    arrays = initializer_values(saved, [e["initializer"] for e in result.report.elements])
    for e in result.report.elements:
        a = arrays[e["initializer"]]
        axis = 1 if a.shape == (8, 32) else 0
        blocks = np.moveaxis(a, axis, -1).reshape(-1, 4)
        assert ((blocks != 0).sum(axis=1) == 2).all() and nm_violations(a, axis, 2, 4) == 0
    assert any(g["kept"] < g["channels"] for g in result.report.groups)  # the first conv lost filters
    x = np.random.default_rng(2).random((4, 4, 8, 8)).astype(np.float32)
    assert compare_models(result.masked, saved, [x]).max_rel_error <= 1e-4


@pytest.mark.torch
def test_cli_indivisible_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(vgg_like(), str(path))
    code, out = run(["compress", path, "-s", "nm:2:4", *PREVIEW, "-o", tmp_path / "o.onnx"])
    assert_one_line_error(code, out, "not a multiple of M=4")


def test_sparse_storage_kept_dense_when_not_smaller() -> None:
    model = four_channel_cnn()
    names = [t.initializer for t in weight_targets(model)]
    c = constraints(model, "irregular:0.5")
    x = np.random.default_rng(0).random((2, 4, 8, 8)).astype(np.float32)
    written, info = _storage(model, c, True, [x])  # nothing zeroed: COO would be ~3x the dense bytes
    assert written is model and info["bytes_sparse_stored"] > info["bytes_dense"]
    assert "not be smaller" in info["sparse_note"] and set(c) == set(names)


@pytest.mark.torch
def test_cli_sparse_initializers(tmp_path: Path) -> None:
    path, out, report = tmp_path / "m.onnx", tmp_path / "o.onnx", tmp_path / "r.json"
    onnx.save(vgg_like(), str(path))
    args = ["compress", path, "-s", "irregular:0.9", "--sparse-initializers", *PREVIEW, "-o", out]
    code, text = run([*args, "--report", report, "--emit-masked", tmp_path / "masked.onnx"])
    assert code == 0, text
    assert "effective non-zero" in text and "no speed" in text
    saved = onnx.load(str(out))
    assert len(saved.graph.sparse_initializer) == 5  # 3 Conv + 2 Gemm weights
    x = np.random.default_rng(3).random((2, 3, 8, 8)).astype(np.float32)
    masked = onnx.load(str(tmp_path / "masked.onnx"))  # dense storage of the same weights
    assert not masked.graph.sparse_initializer and masked.ByteSize() > saved.ByteSize()
    assert compare_models(masked, saved, [x]).max_rel_error == 0.0


@pytest.mark.torch
def test_irregular_after_filter_pruned_producer_verifies() -> None:
    """Surgery slices the input columns of an irregular Gemm: still verified, never more non-zeros than k."""
    result = compress(
        four_channel_cnn(),
        recipe={"sparsity": ["filter:0.5", {"type": "irregular", "ratio": 0.6, "op": "Gemm"}]},
        data="random",
        method="magnitude",
        train=TrainOptions(finetune_epochs=0),
        bench_batches=(),
        quiet=True,
    )
    r = result.report
    assert r.verification.passed and len(r.elements) == 2
    assert any(g["kept"] < g["channels"] for g in r.groups)
    assert sorted((e["size"], e["max_nonzeros"]) for e in r.elements) == [(32, 13), (128, 102)]  # 8x32 sliced
    assert all(0 < e["nonzeros"] <= e["max_nonzeros"] for e in r.elements)
