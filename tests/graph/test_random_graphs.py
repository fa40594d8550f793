"""Property: on random small CNNs built from coupled blocks, pruned == masked for random masks.

Blocks: plain conv (+BN) (+Relu/Sigmoid/HardSwish), residual (tied Add, identity or 1x1 projection
shortcut), DenseNet concat, MobileNet depthwise (with or without residual), grouped conv, SE gate (Sigmoid
or HardSigmoid), ShuffleNetV2 unit (split, branch, concat, channel shuffle); head GAP->Flatten->Gemm or
Flatten->Gemm.
"""

from __future__ import annotations

import numpy as np
import onnx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onnxprune.graph.analysis import analyze
from onnxprune.graph.edit import mask_model, prune_model
from onnxprune.graph.load import normalize
from onnxprune.graph.verify import compare_models, verification_inputs
from tests.builders import GraphBuilder
from tests.graph.test_surgery import random_masks, weight_shapes

SHAPE = (2, 3, 8, 8)
MAX_WIDTH = 12
BLOCKS = ("conv", "residual", "concat", "depthwise", "grouped", "se", "shuffle")
ACTS = ("Relu", "Sigmoid", "HardSwish", None)


def _width(draw, lo: int = 2, hi: int = 8) -> int:
    return draw(st.integers(lo, hi))


def _conv_bias(draw) -> bool:
    return draw(st.booleans())


def _to_width(b: GraphBuilder, x: str, width: int, bias: bool) -> str:
    """A 1x1 Conv -> Relu to ``width`` channels (when the block needs a particular channel count)."""
    return b.unary("Relu", b.conv(x, width, k=1, bias=bias)) if b.shapes[x][1] != width else x


def _block(draw, b: GraphBuilder, x: str, kind: str) -> str:
    c = b.shapes[x][1]
    bias = _conv_bias(draw)
    if kind == "conv":
        x = b.conv(x, _width(draw), k=draw(st.sampled_from([1, 3])), bias=bias)
        if draw(st.booleans()):
            x = b.bn(x)
        act = draw(st.sampled_from(ACTS))
        return b.unary(act, x) if act else x
    if kind == "residual":
        y = b.unary("Relu", b.bn(b.conv(x, _width(draw), bias=bias)))
        out = draw(st.sampled_from([c, _width(draw)]))
        y = b.conv(y, out, bias=_conv_bias(draw))
        shortcut = x if out == c and draw(st.booleans()) else b.conv(x, out, k=1, bias=_conv_bias(draw))
        return b.unary("Relu", b.add(shortcut, y))
    if kind == "concat":
        if c + 4 > MAX_WIDTH:
            x = _to_width(b, x, 4, bias)
        f = b.conv(b.unary("Relu", b.bn(x)), _width(draw, 1, 4), bias=bias)
        return b.concat([x, f])
    if kind == "depthwise":
        mid = _width(draw, 2, MAX_WIDTH)
        y = b.unary("Relu", b.bn(b.conv(x, mid, k=1, bias=bias)))
        y = b.unary("Relu", b.bn(b.conv(y, mid, group=mid, bias=_conv_bias(draw))))
        residual = draw(st.booleans())
        y = b.bn(b.conv(y, c if residual else _width(draw), k=1, bias=_conv_bias(draw)))
        return b.add(x, y) if residual else y
    if kind == "grouped":
        group = draw(st.sampled_from([2, 3, 4]))
        if c % group or c == group:
            x = _to_width(b, x, group * draw(st.integers(2, 3)), bias)
        per_out = draw(st.integers(1, 3))
        x = b.conv(x, group * per_out, k=draw(st.sampled_from([1, 3])), group=group, bias=bias)
        return b.unary("Relu", x)
    if kind == "se":
        s = b.unary("Relu", b.conv(b.gap(x), _width(draw, 1, 4), k=1, bias=bias))
        s = b.unary(draw(st.sampled_from(["Sigmoid", "HardSigmoid"])), b.conv(s, c, k=1, bias=_conv_bias(draw)))
        return b.mul(x, s)
    if kind == "shuffle":
        half = _width(draw, 1, MAX_WIDTH // 2)
        x = _to_width(b, x, 2 * half, bias)
        n, _, h, w = b.shapes[x]
        keep, branch = b.split(x, [half, half])
        branch = b.unary("Relu", b.bn(b.conv(branch, half, k=1, bias=_conv_bias(draw))))
        branch = b.bn(b.conv(branch, half, group=half, bias=_conv_bias(draw)))
        branch = b.unary("Relu", b.bn(b.conv(branch, half, k=1, bias=_conv_bias(draw))))
        y = b.concat([keep, branch])
        y = b.reshape(y, [-1, 2, half, h, w], (n, 2, half, h, w))
        y = b.transpose(y, [0, 2, 1, 3, 4])
        return b.reshape(y, [-1, 2 * half, h, w], (n, 2 * half, h, w))
    raise AssertionError(kind)


@st.composite
def random_cnns(draw) -> onnx.ModelProto:
    b = GraphBuilder(SHAPE, seed=draw(st.integers(0, 2**16)))
    x = b.unary("Relu", b.conv("input", _width(draw), bias=_conv_bias(draw)))
    for kind in draw(st.lists(st.sampled_from(BLOCKS), min_size=1, max_size=4)):
        x = _block(draw, b, x, kind)
        if b.shapes[x][2] > 2 and draw(st.integers(0, 3)) == 0:
            x = b.maxpool(x)
    if draw(st.booleans()):
        x = b.gap(x)
    return b.build([b.gemm(b.flatten(x), 3, bias=draw(st.booleans()))])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=random_cnns(), seed=st.integers(0, 1000))
def test_random_cnn_pruned_equals_masked(model: onnx.ModelProto, seed: int) -> None:
    model = normalize(model).model
    plan = analyze(model, SHAPE)
    assert plan.prunable, plan.format()
    masks = random_masks(plan, seed)
    masked = mask_model(model, plan, masks)
    pruned = prune_model(masked, plan, masks)
    onnx.checker.check_model(pruned, full_check=True)
    err = compare_models(masked, pruned, verification_inputs(SHAPE, seed)).max_rel_error
    assert err <= 1e-5, plan.format()
    before, after = weight_shapes(model), weight_shapes(pruned)
    if any(not keep.all() for keep in masks.values()):
        assert sum(map(np.prod, after.values())) < sum(map(np.prod, before.values()))
