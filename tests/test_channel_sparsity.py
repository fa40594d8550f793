"""Channel-wise sparsity: eligibility (analysis), projection, exact export, rules, training and CLI."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onnxprune import compress
from onnxprune.config.recipe import parse_recipe
from onnxprune.config.sparsity import (
    element_constraints,
    keep_counts,
    parse_sparsity,
    training_plan,
    unmatched_rules,
)
from onnxprune.errors import SpecError
from onnxprune.graph.analysis import analyze
from onnxprune.graph.edit import initializer_arrays, mask_model, prune_model
from onnxprune.graph.load import normalize
from onnxprune.graph.verify import compare_models
from onnxprune.graph.weights import weight_targets
from onnxprune.plan import Group, IndexMap, Member, PruningPlan, Role
from tests.builders import GraphBuilder
from tests.test_cli import PREVIEW, assert_one_line_error, run
from tests.test_element_sparsity import QUICK, four_channel_cnn


def _plan(model: onnx.ModelProto) -> tuple[onnx.ModelProto, PruningPlan]:
    base = normalize(model).model
    shape = tuple(d.dim_value for d in base.graph.input[0].type.tensor_type.shape.dim)
    return base, analyze(base, (1, *shape[1:]))


def _by_producer(plan: PruningPlan, node: str) -> Group:
    return next(g for g in plan.groups if g.source_node == node)


# -- graphs: (builder, producer node, consumer node) ------------------------------------------------------
def conv_conv(bias: bool) -> onnx.ModelProto:
    b = GraphBuilder((1, 3, 8, 8), seed=2)
    x = b.conv("input", 6, bias=bias)  # Conv2
    return b.build([b.gap(b.conv(x, 4, bias=bias))])


def conv_bn_relu_pool_conv() -> onnx.ModelProto:
    b = GraphBuilder((1, 3, 8, 8), seed=3)
    x = b.maxpool(b.unary("Relu", b.bn(b.conv("input", 6))))
    return b.build([b.gap(b.conv(x, 4))])


def conv_flatten_gemm(trans_b: int, bias: bool) -> onnx.ModelProto:
    b = GraphBuilder((1, 3, 8, 8), seed=4)
    x = b.maxpool(b.unary("Relu", b.conv("input", 5, bias=bias)))
    return b.build([b.gemm(b.flatten(x), 3, trans_b=trans_b, bias=bias)])


def gemm_gemm() -> onnx.ModelProto:
    b = GraphBuilder((1, 3, 4, 4), seed=5)
    x = b.unary("Relu", b.gemm(b.flatten("input"), 9))
    return b.build([b.gemm(x, 3, trans_b=0)])


def conv_depthwise_conv() -> onnx.ModelProto:
    """The depthwise conv passes the channels on (tied): the 1x1 conv after it is the one reader."""
    b = GraphBuilder((1, 3, 8, 8), seed=6)
    x = b.unary("Relu", b.conv("input", 6))
    x = b.unary("Relu", b.conv(x, 6, group=6))
    return b.build([b.gap(b.conv(x, 4, k=1))])


def conv_sigmoid_unpadded_conv() -> onnx.ModelProto:
    """Filter-wise the removed channel is 0.5 after the Sigmoid (folded); channel-wise no fold is needed."""
    b = GraphBuilder((1, 3, 8, 8), seed=7)
    x = b.unary("Sigmoid", b.conv("input", 6))
    return b.build([b.gap(b.conv(x, 4, k=1))])


def concat_conv() -> onnx.ModelProto:
    """Two producers concatenated: each group's channels are an offset range of the one reader's inputs."""
    b = GraphBuilder((1, 3, 8, 8), seed=11)
    x = b.concat([b.unary("Relu", b.conv("input", 4)), b.unary("Relu", b.conv("input", 5))])
    return b.build([b.gap(b.conv(x, 3))])


CASES: dict[str, tuple[Callable[[], onnx.ModelProto], str, str]] = {
    "conv-conv": (lambda: conv_conv(True), "Conv4", "Conv8"),
    "conv-conv-nobias": (lambda: conv_conv(False), "Conv3", "Conv6"),
    "bn-relu-maxpool": (conv_bn_relu_pool_conv, "Conv4", "Conv18"),
    "flatten-gemm-transB": (lambda: conv_flatten_gemm(1, True), "Conv4", "Gemm14"),
    "flatten-gemm-nobias": (lambda: conv_flatten_gemm(0, False), "Conv3", "Gemm12"),
    "gemm-gemm": (gemm_gemm, "Gemm6", "Gemm12"),
    "depthwise-between": (conv_depthwise_conv, "Conv4", "Conv16"),
    "sigmoid-fold": (conv_sigmoid_unpadded_conv, "Conv4", "Conv10"),
    "concat-second": (concat_conv, "Conv10", "Conv18"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_export_is_exact(case: str) -> None:
    """Masked model zeroes only the consumer's W[:, c]; surgery also removes the producer's filters; equal."""
    build, producer, consumer = CASES[case]
    base, plan = _plan(build())
    g = _by_producer(plan, producer)
    assert g.channel_prunable and g.channel_node == consumer, (g.channel_node, g.channel_reason)
    chan = plan.with_channels([g.name])
    cg = chan.group(g.name)
    assert cg.kind == "channel" and not cg.folds
    assert {m.node for m in cg.sources} == {consumer}
    keep = np.zeros(g.channels, dtype=bool)
    keep[np.random.default_rng(0).permutation(g.channels)[: max(1, g.channels // 2)]] = True
    masks = {g.name: keep}
    masked = mask_model(base, chan, masks)
    pruned = prune_model(masked, chan, masks)
    before, after = initializer_arrays(masked), initializer_arrays(base)
    changed = {n for n in before if not np.array_equal(before[n], after[n])}
    assert changed == {m.initializer for m in cg.sources}  # the producer's filters stay non-zero
    pruned_arrays = initializer_arrays(pruned)
    for m in g.sources:  # ... but surgery removes them
        assert pruned_arrays[m.initializer].shape[m.axis] < after[m.initializer].shape[m.axis]
    x = np.random.default_rng(1).standard_normal((3, *base_shape(base))).astype(np.float32)
    assert compare_models(masked, pruned, [x]).max_rel_error <= 1e-5
    onnx.checker.check_model(pruned, full_check=True)


def base_shape(model: onnx.ModelProto) -> tuple[int, ...]:
    return tuple(d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim)[1:]


# -- refusals ------------------------------------------------------------------------------------------
def two_readers() -> onnx.ModelProto:
    b = GraphBuilder((1, 3, 8, 8), seed=8)
    x = b.unary("Relu", b.conv("input", 6))
    return b.build([b.add(b.gap(b.conv(x, 4)), b.gap(b.conv(x, 4)))])


def matmul_reader() -> onnx.ModelProto:
    b = GraphBuilder((1, 3, 4, 4), seed=9)
    x = b.unary("Relu", b.gemm(b.flatten("input"), 6))
    return b.build([b.matmul(x, 3)])


def residual_reader() -> onnx.ModelProto:
    """conv1 -> relu = a; conv2(a) + a: the channels of a are read by conv2 and by the Add's consumer."""
    b = GraphBuilder((1, 3, 8, 8), seed=10)
    a = b.unary("Relu", b.conv("input", 4))
    s = b.unary("Relu", b.add(b.conv(a, 4), a))
    return b.build([b.gap(b.conv(s, 2))])


REFUSED = {
    "also-read-elsewhere": (two_readers, "Conv4", "also read by another consumer: Conv"),
    "graph-output": (lambda: conv_conv(True), "Conv8", "reach the graph output"),
    "matmul-reader": (matmul_reader, "Gemm6", "MatMul 'MatMul"),
    "residual": (residual_reader, "Conv4", "also read by another consumer: Conv 'Conv18'"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_refused_with_reason(case: str) -> None:
    build, producer, needle = REFUSED[case]
    _, plan = _plan(build())
    g = _by_producer(plan, producer)
    assert not g.channel_prunable and g.channel_reason is not None and needle in g.channel_reason
    assert needle in plan.format()
    with pytest.raises(ValueError, match="cannot be pruned channel-wise"):
        g.as_channel()


# -- projection ----------------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(
    out=st.integers(1, 3),
    channels=st.integers(1, 5),
    inner=st.integers(1, 3),
    data=st.data(),
)
def test_projection_matches_brute_force(out: int, channels: int, inner: int, data: st.DataObject) -> None:
    """Π keeps the k input-channel slices W[:, c·inner:(c+1)·inner] of largest norm: no subset is closer."""
    torch = pytest.importorskip("torch")
    from onnxprune.train.projection import project_groups

    k = data.draw(st.integers(1, channels))
    values = data.draw(
        st.lists(
            st.floats(-4, 4, allow_nan=False, width=32),
            min_size=out * channels * inner,
            max_size=out * channels * inner,
        )
    )
    w = torch.tensor(values, dtype=torch.float32).reshape(out, channels * inner)
    g = Group("t", "P", "Conv", channels, [Member("w", 1, Role.SOURCE, "L", IndexMap(inner=inner))])
    z, keeps = project_groups({"w": w}, [(g, k)])
    assert int(keeps["t"].sum()) == k
    best = min(
        float(w.reshape(out, channels, inner)[:, [c for c in range(channels) if c not in kept]].pow(2).sum())
        for kept in itertools.combinations(range(channels), k)
    )
    assert float((w - z["w"]).pow(2).sum()) == pytest.approx(best, rel=1e-5, abs=1e-6)
    removed = np.flatnonzero(~keeps["t"].numpy())
    assert not z["w"].reshape(out, channels, inner)[:, removed].any()


# -- rules ---------------------------------------------------------------------------------------------
def test_rules_select_by_consumer_and_exclude() -> None:
    _, plan = _plan(four_channel_cnn())
    spec = parse_sparsity("channel:0.5")
    keep = keep_counts(plan, spec)
    chan = training_plan(plan, spec, keep)
    kinds = {g.source_node: g.kind for g in chan.groups if g.name in keep}
    assert set(kinds.values()) == {"channel"} and len(kinds) == 3  # 2 convs + first Gemm; last Gemm: output
    rec = parse_recipe(
        {"sparsity": [{"type": "channel", "ratio": 0.5, "op": "Gemm"}], "exclude": ["Gemm28"]}, "<t>"
    )
    assert rec.sparsity is not None
    keep = keep_counts(plan, rec.sparsity)  # Gemm22: its reader Gemm28 is excluded
    assert [plan.group(n).source_node for n in keep] == ["Conv12"]
    none = parse_recipe({"sparsity": [{"type": "channel", "ratio": 0.5, "match": "Nope*"}]}, "<t>").sparsity
    assert none is not None and [str(r) for r in unmatched_rules(plan, none)] == ["channel:0.5 (match=Nope*)"]


def test_channel_and_filter_on_one_weight_refused() -> None:
    base, plan = _plan(four_channel_cnn())
    # Conv12's input channels channel-wise, its filters filter-wise: both on Conv12's weight
    rec = parse_recipe(
        {"sparsity": ["filter:0.5", {"type": "channel", "ratio": 0.5, "match": "Conv12"}]}, "<t>"
    )
    assert rec.sparsity is not None
    with pytest.raises(SpecError, match=r"both channel-pruned .* and filter-pruned"):
        training_plan(plan, rec.sparsity, keep_counts(plan, rec.sparsity))
    irr = parse_recipe(
        {"sparsity": ["channel:0.5", {"type": "irregular", "ratio": 0.5, "match": "Conv12"}]}, "<t>"
    ).sparsity
    assert irr is not None
    with pytest.raises(SpecError, match="both channel-pruned"):
        element_constraints(irr, weight_targets(base), plan, keep_counts(plan, irr))


# -- training and export -----------------------------------------------------------------------------------
@pytest.mark.torch
def test_admm_channel_export(npz: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.onnx"
    result = compress(
        four_channel_cnn(), "channel:0.5", str(npz), out, train=QUICK, bench_batches=(), quiet=True
    )
    r = result.report
    assert r.verification.passed and r.verification.max_rel_error <= 1e-4 and r.history["admm"]
    pruned_groups = [g for g in r.groups if g["kind"] == "channel"]
    assert len(pruned_groups) == 3 and all(g["kept"] == g["channels"] // 2 for g in pruned_groups)
    # masked: the consumers' removed input slices are zero; the pruned model lost them and the filters
    masked = initializer_arrays(result.masked)
    for g in result.plan.groups:
        if g.kind != "channel":
            continue
        removed = np.flatnonzero(~result.masks[g.name])
        for m in g.sources:
            assert not np.take(masked[m.initializer], m.index_map.indices(removed), axis=m.axis).any()
    assert r.totals["macs_after"] < r.totals["macs_before"] and "pruned channel-wise" in r.format()
    x = np.random.default_rng(4).random((4, 4, 8, 8)).astype(np.float32)
    assert compare_models(result.masked, onnx.load(str(out)), [x]).max_rel_error <= 1e-4


# -- CLI -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("channel:1", "must be in [0, 1)"),
        ("channel:x", "not a number"),
        ("block:0.5", "unknown sparsity type"),
    ],
)
def test_cli_spec_errors(tmp_path: Path, spec: str, needle: str) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(four_channel_cnn(), str(path))
    code, out = run(["compress", path, "-s", spec, *PREVIEW, "-o", tmp_path / "o.onnx"])
    assert_one_line_error(code, out, needle)


@pytest.mark.torch
def test_cli_conflict_inspect_and_recipe(tmp_path: Path) -> None:
    path, recipe = tmp_path / "m.onnx", tmp_path / "r.yaml"
    onnx.save(four_channel_cnn(), str(path))
    recipe.write_text("sparsity:\n  - filter:0.5\n  - {type: channel, ratio: 0.5, match: Conv12}\n")
    code, out = run(["compress", path, "--config", recipe, *PREVIEW, "-o", tmp_path / "o.onnx"])
    assert_one_line_error(code, out, "both channel-pruned")
    code, out = run(["inspect", path, "--emit-recipe", tmp_path / "e.yaml"])
    assert code == 0 and "channel-wise (--sparsity channel:R)" in out and "Gemm Gemm22: 8 channels" in out
    assert "refused, its channels reach the graph output" in out
    emitted = (tmp_path / "e.yaml").read_text()
    assert '# - {type: channel, ratio: 0.5, match: "Conv12"}' in emitted
    code, out = run(["compress", path, "-s", "channel:0.5", *PREVIEW, "-o", tmp_path / "o.onnx"])
    assert code == 0, out
