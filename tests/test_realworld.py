"""The real-world corpus in CI: one small member of each family (a YOLOv8n detector at 64x64, the timm
hybrid MobileViT-XXS, the timm CNN ResNet10-T at 32x32, the timm ViT DeiT-Tiny at 32x32, a tiny Hugging Face
BERT with int64 ids and mask, and of the other conventions an opset-9 MobileNetV2 with a fixed batch of 1 and
its initializers listed as graph inputs),
exported by its own library (an entry whose library is not installed is skipped),
through the preview (one-shot magnitude, no training) and a few ADMM + retraining steps on random data
(self-distillation), each verified (pruned == masked on ORT within 1e-4). A model that verifies in the
preview must verify after training too. Every entry runs in benchmarks/run_realworld.py.
"""

from __future__ import annotations

import pytest

from onnxprune.testing import realworld

pytest.importorskip("torch")
pytest.importorskip("onnx2torch")

pytestmark = pytest.mark.slow

PREVIEW = dict(method="magnitude", finetune_epochs=0)
TRAIN = dict(method="admm", admm_epochs=1, finetune_epochs=1, round_iters=1, batch_size=8)  # 2 + 2 steps


@pytest.mark.parametrize("name", sorted(realworld.CI_ENTRIES))
def test_preview_and_training_verify(name, tmp_path):
    from onnxprune.pipeline import TrainOptions, compress

    entry = realworld.CI_ENTRIES[name]
    for module in entry.requires:
        pytest.importorskip(module)
    path = entry.export(tmp_path)
    for settings in (PREVIEW, TRAIN):
        opts = dict(settings)
        method = opts.pop("method")
        result = compress(
            path,
            "filter:0.5",
            data="random",
            input_shape=entry.input_shape(),
            method=str(method),
            train=TrainOptions(**opts, threads=1),  # type: ignore[arg-type]
            max_samples=16,
            bench_batches=(),
            seed=0,
            quiet=True,
        )
        report = result.report
        assert report.verification.passed and report.verification.max_rel_error <= 1e-4, method
        assert report.totals["macs_after"] < report.totals["macs_before"], method
        assert any(g["prunable"] for g in report.groups)
        if method == "admm":  # ADMM trained the shrunk model: its plan matched and its values carried back
            assert report.config["admm_on"].startswith("shrunk ("), report.config["admm_on"]
