"""Property: on random small CNNs built from coupled blocks, pruned == masked for random masks.

Blocks: plain conv (+BN) (+Relu/Sigmoid/HardSwish), residual (tied Add, identity or 1x1 projection
shortcut), DenseNet concat, MobileNet depthwise (with or without residual), grouped conv, SE gate (Sigmoid
or HardSigmoid), ShuffleNetV2 unit (split, branch, concat, channel shuffle); head GAP->Flatten->Gemm or
Flatten->Gemm.

Masks are random, respecting only the plan's cover sets (a Reshape entry or Split part never loses all its
channels). A removed channel after a Sigmoid is the constant 0.5, folded into the next unpadded Conv's bias
(created when the Conv has none).
"""

from __future__ import annotations

import onnx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.builders import GraphBuilder
from tests.graph.checks import prune_check

SHAPE = (2, 3, 8, 8)
MAX_WIDTH = 12
BLOCKS = ("conv", "residual", "concat", "depthwise", "grouped", "se", "shuffle")
ACTS = ("Relu", "Sigmoid", "HardSwish", None)


class _Net:
    """A GraphBuilder plus the hypothesis draws that shape it."""

    def __init__(self, draw, seed: int) -> None:
        self.draw = draw
        self.b = GraphBuilder(SHAPE, seed=seed)

    def width(self, lo: int = 2, hi: int = 8) -> int:
        return self.draw(st.integers(lo, hi))

    def bias(self) -> bool:
        return self.draw(st.booleans())

    def conv(self, x: str, cout: int, k: int = 3, group: int = 1) -> str:
        return self.b.conv(x, cout, k=k, group=group, bias=self.bias())

    def act(self, x: str, op: str | None) -> str:
        return self.b.unary(op, x) if op else x

    def to_width(self, x: str, width: int) -> str:
        """A 1x1 Conv -> Relu to ``width`` channels, when a block needs that channel count."""
        return self.act(self.conv(x, width, k=1), "Relu") if self.b.shapes[x][1] != width else x

    def block(self, x: str, kind: str) -> str:
        b, draw = self.b, self.draw
        c = b.shapes[x][1]
        if kind == "conv":
            x = self.conv(x, self.width(), k=draw(st.sampled_from([1, 3])))
            if draw(st.booleans()):
                x = b.bn(x)
            return self.act(x, draw(st.sampled_from(ACTS)))
        if kind == "residual":
            y = self.act(b.bn(self.conv(x, self.width())), "Relu")
            out = draw(st.sampled_from([c, self.width()]))
            y = self.conv(y, out)
            shortcut = x if out == c and draw(st.booleans()) else self.conv(x, out, k=1)
            return self.act(b.add(shortcut, y), "Relu")
        if kind == "concat":
            if c + 4 > MAX_WIDTH:
                x = self.to_width(x, 4)
            return b.concat([x, self.conv(self.act(b.bn(x), "Relu"), self.width(1, 4))])
        if kind == "depthwise":
            mid = self.width(2, MAX_WIDTH)
            y = self.act(b.bn(self.conv(x, mid, k=1)), "Relu")
            y = self.act(b.bn(self.conv(y, mid, group=mid)), "Relu")
            residual = draw(st.booleans())
            y = b.bn(self.conv(y, c if residual else self.width(), k=1))
            return b.add(x, y) if residual else y
        if kind == "grouped":
            group = draw(st.sampled_from([2, 3, 4]))
            if c % group or c == group:
                x = self.to_width(x, group * draw(st.integers(2, 3)))
            x = self.conv(x, group * draw(st.integers(1, 3)), k=draw(st.sampled_from([1, 3])), group=group)
            return self.act(x, "Relu")
        if kind == "se":
            s = self.act(self.conv(b.gap(x), self.width(1, 4), k=1), "Relu")
            s = self.act(self.conv(s, c, k=1), draw(st.sampled_from(["Sigmoid", "HardSigmoid"])))
            return b.mul(x, s)
        if kind == "shuffle":  # ShuffleNetV2 unit: split, branch, concat, channel shuffle
            half = self.width(1, MAX_WIDTH // 2)
            x = self.to_width(x, 2 * half)
            n, _, h, w = b.shapes[x]
            keep, branch = b.split(x, [half, half])
            branch = self.act(b.bn(self.conv(branch, half, k=1)), "Relu")
            branch = b.bn(self.conv(branch, half, group=half))
            branch = self.act(b.bn(self.conv(branch, half, k=1)), "Relu")
            y = b.reshape(b.concat([keep, branch]), [-1, 2, half, h, w], (n, 2, half, h, w))
            y = b.transpose(y, [0, 2, 1, 3, 4])
            return b.reshape(y, [-1, 2 * half, h, w], (n, 2 * half, h, w))
        raise AssertionError(kind)


@st.composite
def random_cnns(draw) -> onnx.ModelProto:
    net = _Net(draw, draw(st.integers(0, 2**16)))
    b = net.b
    x = net.act(net.conv("input", net.width()), "Relu")
    for kind in draw(st.lists(st.sampled_from(BLOCKS), min_size=1, max_size=4)):
        x = net.block(x, kind)
        if b.shapes[x][2] > 2 and draw(st.integers(0, 3)) == 0:
            x = b.maxpool(x)
    if draw(st.booleans()):
        x = b.gap(x)
    return b.build([b.gemm(b.flatten(x), 3, bias=draw(st.booleans()))])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=random_cnns(), seed=st.integers(0, 1000))
def test_random_cnn_pruned_equals_masked(model: onnx.ModelProto, seed: int) -> None:
    result = prune_check(model, SHAPE, seed)
    assert result.plan.prunable, result.plan.format()
    assert result.max_rel_error <= 1e-5, result.plan.format()
    if any(not keep.all() for keep in result.masks.values()):
        assert result.shrunk()
