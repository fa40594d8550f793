"""The torchvision corpus in CI: a small member of most families, exported to ONNX and compressed with
``filter:0.5`` on random data with a handful of steps (see onnxprune/testing/corpus.py).

For each model: the pruned model passes the ONNX checker (full check) and runs in ONNX Runtime with the
original's output shape, pruned == masked within 1e-4, fewer MACs than the original, and the batch dim is
still dynamic. Models the library cannot prune yet are in ``corpus.XFAIL`` with their reason (strict).
Every model that fits, at 64x64 with ORT latency, is in ``python -m benchmarks.run_corpus``.

To keep the module within its CI budget (6 minutes on 2 CPU cores) the inputs are 32x32 here and training
is one ADMM epoch without retraining (``corpus.CI_TRAIN``); the benchmark runs 64x64 with retraining.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.builders import GraphBuilder

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")
pytest.importorskip("onnx2torch")

from onnxprune.testing import corpus  # noqa: E402  (needs torchvision)

pytestmark = pytest.mark.slow

SIZE = 32
# One small member of most families. The rest runs in benchmarks.run_corpus, among them AlexNet and VGG
# (224x224 only: 75 s and more each), Wide ResNet (60 s), ViT (its 88M parameters make export, import and
# verification take minutes) and MaxViT (224x224 only).
CI_MODELS = [
    "convnext_tiny",
    "densenet121",
    "efficientnet_b0",
    "efficientnet_v2_s",
    "googlenet",
    "inception_v3",
    "mnasnet0_5",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "regnet_x_400mf",
    "regnet_y_400mf",
    "resnet18",
    "resnext50_32x4d",
    "shufflenet_v2_x0_5",
    "squeezenet1_1",
    "swin_t",
]


def _cases() -> list[object]:
    cases = []
    for name in CI_MODELS:
        reason = corpus.XFAIL.get(name)
        marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
        cases.append(pytest.param(name, marks=marks, id=name))
    return cases


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _batch_dim_is_dynamic(vi: onnx.ValueInfoProto) -> bool:
    dim = vi.type.tensor_type.shape.dim[0]
    return bool(dim.dim_param) and not dim.HasField("dim_value")


@pytest.mark.parametrize("name", _cases())
def test_filter_half_prunes_torchvision_model(name: str, tmp_path: Path) -> None:
    path = corpus.export(name, tmp_path, SIZE)
    shape = corpus.input_shape(name, SIZE)
    result = corpus.compress_model(path, shape, train=corpus.CI_TRAIN)
    original, pruned, report = onnx.load(str(path)), result.model, result.report

    onnx.checker.check_model(pruned, full_check=True)
    x = np.random.default_rng(0).standard_normal((3, *shape[1:])).astype(np.float32)
    ref, got = _run(original, x), _run(pruned, x)
    assert got.shape == ref.shape == (3, corpus.NUM_CLASSES)
    assert np.isfinite(got).all()
    assert report.verification.passed
    assert report.verification.max_rel_error <= 1e-4
    assert report.totals["macs_after"] < report.totals["macs_before"]
    assert _batch_dim_is_dynamic(pruned.graph.input[0])
    assert _batch_dim_is_dynamic(pruned.graph.output[0])


def test_ci_subset_is_in_the_corpus_and_fits() -> None:
    models = corpus.list_models()
    assert len(models) >= 80
    assert set(CI_MODELS) <= set(models)
    assert set(corpus.XFAIL) <= set(models)
    assert corpus.fits("vit_h_14") == corpus.NOT_FIT


def test_requested_reduction_halves_inner_channels_only() -> None:
    # image (3 ch) -> conv 8 -> conv 8 -> depthwise 8 -> gap -> gemm 10 (the logits)
    b = GraphBuilder((1, 3, 8, 8))
    y = b.conv("input", 8)
    y = b.conv(y, 8)
    y = b.conv(y, 8, group=8)
    y = b.gemm(b.flatten(b.gap(y)), 10)
    model = b.build([y])
    macs = [8 * 64 * 3 * 9, 8 * 64 * 8 * 9, 8 * 64 * 9, 10 * 8]
    ideal = macs[0] * 0.5 + macs[1] * 0.25 + macs[2] * 0.5 + macs[3] * 0.5
    got = corpus.requested_reduction(model, (1, 3, 8, 8))
    assert got["macs"] == sum(macs)
    assert got["reduction"] == pytest.approx(sum(macs) / ideal)
