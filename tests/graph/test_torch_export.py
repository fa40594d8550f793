"""The coupled patterns as torch's exporter writes them: ``chunk`` as Slice with bounds computed from Shape,
the channel shuffle as Reshape targets built from Shape -> Gather -> Concat, SE gates with HardSigmoid, a
residual Add. Normalization must fold the shape arithmetic for the analysis to see the channel counts."""

from __future__ import annotations

import functools
import io

import onnx
import pytest

from tests.graph.checks import prune_check

torch = pytest.importorskip("torch")
nn, F = torch.nn, torch.nn.functional

SHAPE = (2, 3, 8, 8)


def _shuffle(x, groups: int = 2):
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).contiguous().view(n, c, h, w)


class _ShuffleUnit(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        h = c // 2
        self.branch = nn.Sequential(
            nn.Conv2d(h, h, 1, bias=False),
            nn.BatchNorm2d(h),
            nn.ReLU(),
            nn.Conv2d(h, h, 3, padding=1, groups=h, bias=False),
            nn.BatchNorm2d(h),
            nn.Conv2d(h, h, 1, bias=False),
            nn.BatchNorm2d(h),
            nn.ReLU(),
        )

    def forward(self, x):
        keep, branch = x.chunk(2, dim=1)
        return _shuffle(torch.cat([keep, self.branch(branch)], 1))


class _Net(nn.Module):
    """Stem, two ShuffleNetV2 units, a MobileNetV3 block (HardSwish, depthwise, SE with HardSigmoid) added
    to the trunk, GAP, Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.u1, self.u2 = _ShuffleUnit(8), _ShuffleUnit(8)
        self.mb = nn.Sequential(
            nn.Conv2d(8, 12, 1),
            nn.BatchNorm2d(12),
            nn.Hardswish(),
            nn.Conv2d(12, 12, 3, padding=1, groups=12),
            nn.BatchNorm2d(12),
            nn.Hardswish(),
        )
        self.se1, self.se2 = nn.Conv2d(12, 4, 1), nn.Conv2d(4, 12, 1)
        self.proj = nn.Sequential(nn.Conv2d(12, 8, 1), nn.BatchNorm2d(8))
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        x = self.u2(self.u1(self.stem(x)))
        y = self.mb(x)
        y = y * F.hardsigmoid(self.se2(F.relu(self.se1(F.adaptive_avg_pool2d(y, 1)))))
        x = x + self.proj(y)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


@functools.cache
def _exported(opset: int) -> bytes:
    torch.manual_seed(0)
    net = _Net().eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):  # non-trivial statistics
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    f = io.BytesIO()
    torch.onnx.export(
        net,
        (torch.zeros(1, *SHAPE[1:]),),
        f,
        dynamo=False,
        opset_version=opset,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        training=torch.onnx.TrainingMode.EVAL,
        do_constant_folding=False,
    )
    return f.getvalue()


def exported(opset: int) -> onnx.ModelProto:
    return onnx.load_from_string(_exported(opset))


@pytest.mark.parametrize("opset", [11, 13, 17])
@pytest.mark.parametrize("seed", [0, 1])
def test_exported_model_pruned_equals_masked(opset: int, seed: int) -> None:
    result = prune_check(exported(opset), SHAPE, seed)
    assert result.max_rel_error <= 1e-5
    assert result.shrunk()


def _assert_everything_but_logits_prunable(opset: int) -> None:
    result = prune_check(exported(opset), SHAPE)
    kept = [g for g in result.plan.groups if not g.prunable]
    assert [g.name for g in kept] == ["logits"], result.plan.format()
    trunk = result.plan.groups[0]
    # stem filter j, u1's and u2's last branch conv (tied by the shuffles) and the residual's projection
    assert sorted(trunk.source_nodes) == sorted(
        ["/stem/stem.0/Conv", "/u1/branch/branch.5/Conv", "/u2/branch/branch.5/Conv", "/proj/proj.0/Conv"]
    )
    se = next(g for g in result.plan.groups if "/mb/mb.0/Conv" in g.source_nodes)
    assert sorted(se.source_nodes) == ["/mb/mb.0/Conv", "/se2/Conv"]  # the SE gate ties its expand conv


def test_exported_shuffle_and_se_are_prunable() -> None:
    _assert_everything_but_logits_prunable(17)


@pytest.mark.parametrize("opset", [11, 13])
def test_exported_shuffle_is_prunable_below_opset_14(opset: int) -> None:
    _assert_everything_but_logits_prunable(opset)


def _trained_net() -> nn.Module:
    torch.manual_seed(0)
    net = _Net().eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return net


def test_bn_folded_by_the_exporter_is_prunable_exactly() -> None:
    """Constant folding merges BN into the convs and dedups equal tensors (the zero biases): the
    normalizer's private copies keep the convs independent."""
    f = io.BytesIO()
    torch.onnx.export(
        _trained_net(), (torch.zeros(1, *SHAPE[1:]),), f, dynamo=False, opset_version=17,
        input_names=["input"], output_names=["logits"], dynamic_axes={"input": {0: "batch"}},
        do_constant_folding=True,
    )  # fmt: skip
    model = onnx.load_from_string(f.getvalue())
    assert not any(n.op_type == "BatchNormalization" for n in model.graph.node)
    result = prune_check(model, SHAPE)
    assert [g.name for g in result.plan.groups if not g.prunable] == ["logits"]
    assert result.max_rel_error <= 1e-5 and result.shrunk()


def test_dynamo_export_is_prunable_exactly() -> None:
    pytest.importorskip("onnxscript")
    program = torch.onnx.export(
        _trained_net(), (torch.zeros(2, *SHAPE[1:]),), dynamo=True,
        dynamic_shapes=({0: torch.export.Dim("batch")},), input_names=["input"], output_names=["logits"],
    )  # fmt: skip
    model = program.model_proto
    assert model.opset_import[0].version >= 18
    result = prune_check(model, SHAPE)
    assert [g.name for g in result.plan.groups if not g.prunable] == ["logits"]
    assert result.max_rel_error <= 1e-5 and result.shrunk()
    dims = result.pruned.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param  # the batch stays dynamic
