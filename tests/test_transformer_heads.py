"""Attention heads and MLP units on transformers exported by their own libraries (random weights): timm's
ViT-Tiny and ViT-S/32 at 64x64, a tiny Hugging Face BERT (int64 ids and mask, dynamic batch and sequence)
and a tiny Hugging Face ViT. At ``filter:0.5`` the preview (one-shot magnitude, no training) removes half
the heads (rounded: 2 of 3 kept in ViT-Tiny) and half the MLP units of every block, verifies pruned ==
masked on ORT, and reduces the MACs — attention's q kᵀ and p v products included. The residual stream
(read by LayerNorm, and the patch embedding that feeds it) stays. Skipped when timm / transformers are
not installed.
"""

from __future__ import annotations

import pytest

from onnxprune.testing import realworld

pytest.importorskip("torch")
pytest.importorskip("onnx2torch")

pytestmark = pytest.mark.slow

# entry -> (heads per block, kept heads at filter:0.5, blocks, minimum MAC reduction)
CASES = {
    "vit_tiny_patch16_224": (3, 1, 12, 2.1),  # keep_count(3, 0.5) = 1: a tie keeps fewer
    "vit_small_patch32_224": (6, 3, 12, 1.9),
    "hf_bert_tiny": (4, 2, 2, 1.9),
    "hf_vit_tiny": (4, 2, 2, 1.7),  # the patch-embedding Conv (on the residual stream) stays
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_heads_and_mlp_units_prune_exactly(name, tmp_path):
    from onnxprune.pipeline import TrainOptions, compress

    entry = realworld.ENTRIES[name]
    for module in entry.requires:
        pytest.importorskip(module)
    heads, kept, blocks, ratio = CASES[name]
    result = compress(
        entry.export(tmp_path),
        "filter:0.5",
        data="random",
        input_shape=entry.input_shape(),
        method="magnitude",
        train=TrainOptions(finetune_epochs=0, threads=1),
        max_samples=16,
        bench_batches=(),
        seed=0,
        quiet=True,
    )
    report = result.report
    assert report.verification.passed and report.verification.max_rel_error <= 1e-4
    groups = [g for g in report.groups if g["prunable"]]
    head_groups = [g for g in groups if g["channels"] == heads]
    assert len(head_groups) == blocks and len(groups) >= 2 * blocks, [g["name"] for g in groups]
    assert all(g["kept"] == kept for g in head_groups), head_groups
    totals = report.totals
    assert totals["macs_before"] / totals["macs_after"] >= ratio, totals


def test_bert_with_torch_sdpa_attention(tmp_path):
    """transformers' default attention (``scaled_dot_product_attention``): a boolean mask turned into an
    additive one by ``Where``, and the NaN guard ``Where(IsNaN(p), 0, p)`` after the softmax."""
    transformers = pytest.importorskip("transformers")
    import torch

    from onnxprune.pipeline import TrainOptions, compress

    torch.manual_seed(0)
    config = transformers.BertConfig(**realworld._TINY_TEXT, attn_implementation="sdpa")
    model = realworld._TextWrapper(transformers.BertForSequenceClassification(config).eval())
    ids, mask = torch.randint(0, 1000, (2, 32)), torch.ones(2, 32, dtype=torch.int64)
    dyn = {"input_ids": {0: "b", 1: "t"}, "attention_mask": {0: "b", 1: "t"}, "logits": {0: "b"}}
    path = realworld._torch_export(
        model, (ids, mask), tmp_path / "bert_sdpa.onnx", ["input_ids", "attention_mask"], ["logits"], dyn
    )
    result = compress(
        path,
        "filter:0.5",
        data="random",
        input_shape={"input_ids": (1, 32), "attention_mask": (1, 32)},
        method="magnitude",
        train=TrainOptions(finetune_epochs=0, threads=1),
        max_samples=16,
        bench_batches=(),
        seed=0,
        quiet=True,
    )
    report = result.report
    assert report.verification.passed and report.verification.max_rel_error <= 1e-4
    assert sum(g["channels"] == 4 and g["kept"] == 2 for g in report.groups) == 2  # the heads of each layer
    assert report.totals["macs_before"] / report.totals["macs_after"] >= 1.9


def test_torchvision_vit_by_head_width(tmp_path):
    """torchvision's VisionTransformer (nn.MultiheadAttention inside, dynamic batch): the heads are folded
    into the batch axis, so each attention block prunes by head width (dim d of every head)."""
    torchvision = pytest.importorskip("torchvision")
    import torch

    from onnxprune.pipeline import TrainOptions, compress

    torch.manual_seed(0)
    vit = torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=64, mlp_dim=128, num_classes=10
    ).eval()
    realworld._redraw_zero_weights(vit)  # the zero-initialized head would make every output 0
    path = realworld._torch_export(
        vit, (torch.randn(1, 3, 32, 32),), tmp_path / "vit.onnx", ["x"], ["y"], {"x": {0: "n"}, "y": {0: "n"}}
    )
    result = compress(
        path,
        "filter:0.5",
        data="random",
        input_shape=(1, 3, 32, 32),
        method="magnitude",
        train=TrainOptions(finetune_epochs=0, threads=1),
        max_samples=16,
        bench_batches=(),
        seed=0,
        quiet=True,
    )
    report = result.report
    assert report.verification.passed and report.verification.max_rel_error <= 1e-4
    widths = [g for g in report.groups if g["prunable"] and g["channels"] == 64 // 4]
    assert len(widths) == 2 and all(g["kept"] == 8 for g in widths), report.groups
    assert report.totals["macs_before"] / report.totals["macs_after"] >= 1.5
