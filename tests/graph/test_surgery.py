"""Pruned == masked, per consumer op, with and without bias, on random masks."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onnxprune.graph.analysis import analyze
from onnxprune.graph.edit import mask_model, prune_model, write_back
from onnxprune.graph.load import normalize
from onnxprune.graph.verify import compare_models, verification_inputs
from onnxprune.plan import PruningPlan
from tests.builders import GraphBuilder, vgg_like


def random_masks(plan: PruningPlan, seed: int, ratio: float = 0.5) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    masks = {}
    for g in plan.prunable:
        keep = np.zeros(g.channels, dtype=bool)
        keep[rng.choice(g.channels, max(1, round(g.channels * (1 - ratio))), replace=False)] = True
        for cover in g.cover_sets:  # the plan's rule: one channel of each such set stays
            if not keep[list(cover)].any():
                keep[rng.choice(cover)] = True
        masks[g.name] = keep
    return masks


def prune_and_compare(
    model: onnx.ModelProto, shape: tuple[int, ...], seed: int = 0
) -> tuple[float, PruningPlan]:
    model = normalize(model).model
    plan = analyze(model, shape)
    masks = random_masks(plan, seed)
    masked = mask_model(model, plan, masks)
    pruned = prune_model(masked, plan, masks)
    onnx.checker.check_model(pruned, full_check=True)
    return compare_models(masked, pruned, verification_inputs(shape, seed)).max_rel_error, plan


def weight_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    return {t.name: tuple(t.dims) for t in model.graph.initializer}


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("head", ["flatten", "reshape", "reshape_dynamic"])
def test_vgg_like_pruned_equals_masked(bias: bool, head: str) -> None:
    err, plan = prune_and_compare(vgg_like(bias=bias, head=head), (1, 3, 8, 8))
    assert err <= 1e-5
    assert len(plan.prunable) == 4  # three convs and the hidden Gemm; the logits are kept


def _chain(consumer: str, bias: bool) -> tuple[onnx.ModelProto, tuple[int, ...]]:
    """Conv (the pruned producer) -> ReLU -> the consumer under test -> graph output."""
    b = GraphBuilder((2, 3, 6, 6), seed=3)
    x = b.unary("Relu", b.conv("input", 6, bias=bias))
    if consumer == "Conv":
        out = b.conv(x, 4, bias=bias)
    elif consumer == "Gemm":
        out = b.gemm(b.flatten(x), 5, trans_b=1, bias=bias)
    elif consumer == "GemmT":
        out = b.gemm(b.flatten(b.maxpool(x)), 5, trans_b=0, bias=bias)
    elif consumer == "MatMul":
        out = b.matmul(b.flatten(b.gap(x)), 5)
    elif consumer == "BatchNormalization":
        out = b.conv(b.bn(x), 4, bias=bias)
    elif consumer == "Reshape":
        out = b.gemm(b.reshape_flatten(x), 5, bias=bias)
    else:
        raise AssertionError(consumer)
    return b.build([out]), (2, 3, 6, 6)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("consumer", ["Conv", "Gemm", "GemmT", "MatMul", "BatchNormalization", "Reshape"])
def test_each_consumer_op(consumer: str, bias: bool) -> None:
    model, shape = _chain(consumer, bias)
    err, plan = prune_and_compare(model, shape)
    assert err <= 1e-5
    first = plan.groups[0]
    assert first.prunable, first.reason
    assert first.consumers, "the producer's channels must end in a consumer"


def test_surgery_shrinks_every_member_and_rewrites_shape_constant() -> None:
    model = normalize(vgg_like(head="reshape")).model
    plan = analyze(model, (1, 3, 8, 8))
    masks = random_masks(plan, 0)
    pruned = prune_model(mask_model(model, plan, masks), plan, masks)
    before, after = weight_shapes(model), weight_shapes(pruned)
    for g in plan.prunable:
        kept = int(masks[g.name].sum())
        for m in g.members:
            per = m.index_map.per_channel
            assert after[m.initializer][m.axis] == before[m.initializer][m.axis] - (g.channels - kept) * per
    edit = next(e for g in plan.prunable for e in g.shape_edits)
    shape_const = {t.name: onnx.numpy_helper.to_array(t) for t in pruned.graph.initializer}[edit.initializer]
    gemm_in = next(n for n in pruned.graph.node if n.op_type == "Gemm")
    assert shape_const[1] == after[gemm_in.input[1]][1]


def test_masking_zeroes_only_source_slices() -> None:
    model = normalize(vgg_like()).model
    plan = analyze(model, (1, 3, 8, 8))
    masks = random_masks(plan, 1)
    masked = mask_model(model, plan, masks)
    arr = {t.name: onnx.numpy_helper.to_array(t) for t in masked.graph.initializer}
    orig = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    for g in plan.prunable:
        removed = np.flatnonzero(~masks[g.name])
        kept = np.flatnonzero(masks[g.name])
        for m in g.sources:
            assert np.all(np.take(arr[m.initializer], removed, axis=m.axis) == 0)
            np.testing.assert_array_equal(
                np.take(arr[m.initializer], kept, axis=m.axis),
                np.take(orig[m.initializer], kept, axis=m.axis),
            )
        for m in g.dependents:
            if all(m.initializer != s.initializer for gg in plan.prunable for s in gg.sources):
                np.testing.assert_array_equal(arr[m.initializer], orig[m.initializer])


def test_write_back_rejects_shape_change_and_unknown_names() -> None:
    model = vgg_like()
    name = model.graph.initializer[0].name
    with pytest.raises(ValueError, match="shape"):
        write_back(model, {name: np.zeros((1,), dtype=np.float32)})
    with pytest.raises(KeyError, match="nope"):
        write_back(model, {"nope": np.zeros((1,), dtype=np.float32)})


def test_input_model_is_not_modified() -> None:
    model = normalize(vgg_like()).model
    snapshot = model.SerializeToString()
    plan = analyze(model, (1, 3, 8, 8))
    masks = random_masks(plan, 2)
    prune_model(mask_model(model, plan, masks), plan, masks)
    assert model.SerializeToString() == snapshot


def test_dynamic_batch_is_kept() -> None:
    model = normalize(vgg_like()).model
    plan = analyze(model, (1, 3, 8, 8))
    masks = random_masks(plan, 0)
    pruned = prune_model(mask_model(model, plan, masks), plan, masks)
    assert pruned.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert pruned.graph.output[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    err = compare_models(mask_model(model, plan, masks), pruned, [np.ones((5, 3, 8, 8), np.float32)])
    assert err.max_rel_error <= 1e-5


# --- random graphs -------------------------------------------------------------------------------------

LAYER = st.sampled_from(["conv", "conv_bn", "conv_nobias", "pool", "act", "mul_const", "add_const"])
ACTS = st.sampled_from(["Relu", "LeakyRelu", "Tanh", "Elu", "HardSwish"])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    layers=st.lists(LAYER, min_size=1, max_size=6),
    act=ACTS,
    widths=st.lists(st.integers(2, 6), min_size=6, max_size=6),  # 1 channel: constants look shared
    head=st.sampled_from(["flatten", "gap_gemm", "reshape"]),
    seed=st.integers(0, 1000),
)
def test_random_chains_pruned_equals_masked(
    layers: list[str], act: str, widths: list[int], head: str, seed: int
) -> None:
    b = GraphBuilder((2, 2, 8, 8), seed=seed)
    x = b.conv("input", widths[0])
    for i, kind in enumerate(layers):
        c = b.shapes[x][1]
        if kind.startswith("conv"):
            x = b.conv(x, widths[i % 6], bias=kind != "conv_nobias")
            if kind == "conv_bn":
                x = b.bn(x)
        elif kind == "pool" and b.shapes[x][2] >= 2:
            x = b.maxpool(x)
        elif kind == "act":
            x = b.unary(act, x)
        elif kind == "mul_const":
            x = b.binary_const("Mul", x, b.rng.uniform(0.5, 2, (c, 1, 1)))
        elif kind == "add_const":
            x = b.binary_const("Add", x, b.rng.standard_normal((c, 1, 1)))
    if head == "flatten":
        x = b.gemm(b.flatten(x), 3)
    elif head == "gap_gemm":
        x = b.gemm(b.flatten(b.gap(x)), 3, trans_b=0)
    else:
        x = b.gemm(b.reshape_flatten(x), 3)
    err, plan = prune_and_compare(b.build([x]), (2, 2, 8, 8), seed)
    assert err <= 1e-5
    assert plan.prunable, plan.format()


def _window_pad_model() -> onnx.ModelProto:
    """Swin's window-partition pad: Pad's ``pads`` is a Concat of 1-d constants and the Unsqueeze of a
    0-d scalar (the pad amount), between two Convs so that the block prunes."""
    b = GraphBuilder((1, 3, 6, 6))
    x = b.unary("Relu", b.conv("input", 8))
    zeros = b.const(np.zeros(7, dtype=np.int64), "zeros")
    amount = b.const(np.array(2, dtype=np.int64), "amount")  # 0-d, as torch exports a Python int
    axes = b.const(np.array([0], dtype=np.int64), "axes")
    tail = b.node("Unsqueeze", [amount, axes], (1,))
    pads = b.node("Concat", [zeros, tail], (8,), axis=0)
    padded = b.node("Pad", [x, pads], (1, 8, 6, 8))
    return b.build([b.conv(padded, 4)])


def test_write_back_keeps_scalar_initializers_scalar() -> None:
    """Regression (swin_t / timm swin_tiny): writing every initializer back, as training does, turned the
    0-d pad amount into shape (1,) (np.ascontiguousarray is at least 1-d), and the Unsqueeze -> Concat of
    the pruned model failed the checker ("Input 1 has rank 2 != 1")."""
    model = normalize(_window_pad_model()).model
    values = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    trained = write_back(model, values)
    assert {t.name: list(t.dims) for t in trained.graph.initializer} == {
        t.name: list(t.dims) for t in model.graph.initializer
    }
    onnx.checker.check_model(trained, full_check=True)
    plan = analyze(trained, (1, 3, 6, 6))
    assert plan.prunable
    masks = random_masks(plan, 0)
    masked = mask_model(trained, plan, masks)
    pruned = prune_model(trained, plan, masks)
    onnx.checker.check_model(pruned, full_check=True)
    assert compare_models(masked, pruned, verification_inputs((1, 3, 6, 6), 0)).passed
