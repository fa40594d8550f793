"""The Torch-Pruning side of benchmarks/run_peers.py on a tiny VGG (skipped without torch-pruning).

Properties: the torch module rebuilt from an exported ONNX model gives ORT's logits; Torch-Pruning at ratio
0.5 halves every conv (and the hidden Linear) and keeps the 10 logits; the pruned module, trained a few
steps and exported, runs in ORT with the module's logits and fewer MACs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

pytest.importorskip("torch")
pytest.importorskip("torch_pruning")

import torch
from torch import nn

from benchmarks import peers_tp
from benchmarks.peers_settings import Finetune, TpSettings
from onnxprune.data import ArrayData
from onnxprune.graph.macs import count_costs

pytestmark = pytest.mark.torch

WIDTHS = (8, 8, 16, 16, 12, 12)
HIDDEN = 32


def tiny_vgg() -> nn.Module:
    return peers_tp.reference_module().FmnistVGG(widths=WIDTHS, hidden=HIDDEN)


@pytest.fixture(scope="module")
def dense(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny FmnistVGG with random weights and BN statistics (so BN is no identity), exported as the
    references are."""
    torch.manual_seed(0)
    model = tiny_vgg()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                assert m.running_mean is not None and m.running_var is not None
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    path = tmp_path_factory.mktemp("peers") / "tiny_vgg.onnx"
    peers_tp.export(model, path)
    return path


def images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 1, 28, 28), dtype=np.float32)


def test_module_from_onnx_reproduces_ort(dense: Path) -> None:
    model = peers_tp.module_from_onnx("vgg", dense, build=tiny_vgg)
    assert not any(isinstance(m, nn.Dropout) for m in model.modules())
    assert peers_tp.check_logits(model, dense, images(64)) <= peers_tp.LOGIT_ATOL
    fresh = tiny_vgg().eval()  # a module that was not loaded differs: the check has teeth
    assert peers_tp.max_logit_diff(fresh, dense, images(64)) > 1e-2


def test_module_from_onnx_rejects_a_mismatched_model(dense: Path) -> None:
    with pytest.raises(ValueError, match="wants"):
        peers_tp.module_from_onnx("vgg", dense, build=lambda: peers_tp.reference_module().FmnistVGG())


@pytest.mark.parametrize("method", ["tp-oneshot", "tp-iterative", "tp-gsl"])
def test_tp_halves_the_convs_and_exports(method: str, dense: Path, tmp_path: Path) -> None:
    model = peers_tp.module_from_onnx("vgg", dense, build=tiny_vgg)
    before = peers_tp.conv_widths(model)
    labels = np.random.default_rng(1).integers(0, 10, 48)
    train = ArrayData(images(48, seed=2), labels)
    ft = Finetune(batch_size=16)
    peers_tp.run_tp(method, model, train, 0.5, 1, 0, ft, TpSettings(iterative_steps=3))
    after = peers_tp.conv_widths(model)
    assert after == {name: w // 2 for name, w in before.items()}
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [m.out_features for m in linears] == [HIDDEN // 2, 10]  # the classifier is ignored
    out = tmp_path / "pruned.onnx"
    peers_tp.export(model, out)
    assert peers_tp.check_logits(model, out, images(32, seed=3)) <= peers_tp.LOGIT_ATOL
    macs = count_costs(onnx.load(str(out)), (1, 1, 28, 28)).total_macs
    dense_macs = count_costs(onnx.load(str(dense)), (1, 1, 28, 28)).total_macs
    assert macs < 0.3 * dense_macs  # halving both sides of every conv: ~1/4 of its MACs


def test_split_steps_covers_the_budget() -> None:
    for total in (0, 1, 7, 10, 101):
        parts = peers_tp.split_steps(total, 5)
        assert sum(parts) == total and max(parts) - min(parts) <= 1
