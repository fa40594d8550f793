"""The training objective: distillation losses, their automatic choice, the label/teacher mix, caching."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from onnxprune.data import ArrayData
from onnxprune.errors import SpecError
from onnxprune.train.admm import TrainConfig, run_admm
from onnxprune.train.importer import import_model
from onnxprune.train.objective import (
    DistillConfig,
    Objective,
    choose_losses,
    cosine_loss,
    kl_loss,
    relative_mse,
)
from tests.train import graphs as G
from tests.train.test_admm import FAST, cnn_plan


def _logits(seed: int, n: int = 6, c: int = 5) -> torch.Tensor:
    return torch.randn(n, c, generator=torch.Generator().manual_seed(seed))


def test_kl_is_the_tempered_kl_times_t_squared() -> None:
    s, t = _logits(0), _logits(1)
    for temp in (1.0, 4.0):
        p_t = torch.softmax(t / temp, dim=1)
        manual = (p_t * (p_t.log() - torch.log_softmax(s / temp, dim=1))).sum(1).mean() * temp**2
        torch.testing.assert_close(kl_loss(s, t, temp), manual)
    assert float(kl_loss(t, t, 4.0)) == pytest.approx(0.0, abs=1e-6)


def test_kl_on_probabilities_uses_their_log() -> None:
    s, t = _logits(2), _logits(3)
    p_s, p_t = torch.softmax(s, 1), torch.softmax(t, 1)
    torch.testing.assert_close(kl_loss(p_s, p_t, 2.0, probabilities=True), kl_loss(s, t, 2.0))


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e4])
def test_relative_mse_and_cosine_are_scale_free(scale: float) -> None:
    s, t = _logits(4), _logits(5)
    torch.testing.assert_close(relative_mse(scale * s, scale * t), relative_mse(s, t), rtol=1e-4, atol=0)
    torch.testing.assert_close(relative_mse(s, t), F.mse_loss(s, t) / t.pow(2).mean())
    torch.testing.assert_close(cosine_loss(scale * s, t), cosine_loss(s, t), rtol=1e-4, atol=1e-6)
    assert float(cosine_loss(t, 3 * t)) == pytest.approx(0.0, abs=1e-6)


def test_auto_picks_kl_for_classifier_heads_only() -> None:
    outs = [torch.zeros(4, 10), torch.zeros(4, 3, 8, 8), torch.zeros(4, 1), torch.zeros(4)]
    assert choose_losses("auto", outs) == ["kl", "mse", "mse", "mse"]
    assert choose_losses("cosine", outs) == ["cosine"] * 4


class _Two(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.lin(x)
        return h, h.unsqueeze(-1) * 2


def test_objective_mixes_labels_and_teacher() -> None:
    torch.manual_seed(0)
    student = _Two()
    x = (torch.randn(8, 3),)
    y = torch.randint(0, 4, (8,))
    mixed = Objective(student, True, x, DistillConfig(weight=0.25, temperature=2.0))
    assert mixed.losses == ["kl", "mse"] and mixed.distills
    with torch.no_grad():
        student.lin.weight.add_(0.5)  # the teacher is a frozen copy taken at construction
    out = student(*x)
    teacher = mixed.teacher_outputs(x)
    expected = 0.75 * F.cross_entropy(out[0], y) + 0.25 * (
        kl_loss(out[0], teacher[0], 2.0) + relative_mse(out[1], teacher[1])
    )
    torch.testing.assert_close(mixed(out, x, y), expected)
    torch.testing.assert_close(mixed(out, x, y, teacher), expected)  # cached targets give the same
    labels_only = Objective(student, True, x, DistillConfig())
    assert labels_only.teacher is None and not labels_only.distills
    torch.testing.assert_close(labels_only(out, x, y), F.cross_entropy(out[0], y))
    unlabeled = Objective(student, False, x, DistillConfig(weight=0.0))  # no labels: always distill
    assert unlabeled.weight == 1.0 and unlabeled.teacher is not None


@pytest.mark.parametrize(
    ("cfg", "needle"),
    [
        (DistillConfig(loss="l1"), "unknown distillation loss 'l1'"),
        (DistillConfig(teacher="disk"), "unknown teacher mode 'disk'"),
        (DistillConfig(weight=1.5), r"weight must be in \[0, 1\]"),
        (DistillConfig(temperature=0.0), "temperature must be > 0"),
    ],
)
def test_distill_config_errors(cfg: DistillConfig, needle: str) -> None:
    with pytest.raises(SpecError, match=needle):
        cfg.validate()


def _label_free_run(teacher: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], list]:
    model = G.cnn()
    x = np.random.default_rng(7).standard_normal((40, 2, 8, 8)).astype(np.float32)
    imported = import_model(model)
    cfg = TrainConfig(
        admm_epochs=1, finetune_epochs=1, round_iters=2, distill=DistillConfig(teacher=teacher), **FAST
    )
    result = run_admm(imported, cnn_plan(), {"c1": 3}, ArrayData(x[:32]), ArrayData(x[32:]), cfg)
    return result.masks, imported.onnx_arrays(), result.history


def test_cached_teacher_trains_exactly_like_the_online_one() -> None:
    masks_c, arrays_c, hist_c = _label_free_run("cache")
    masks_o, arrays_o, hist_o = _label_free_run("online")
    for name in masks_c:
        np.testing.assert_array_equal(masks_c[name], masks_o[name])
    for name in arrays_c:
        np.testing.assert_allclose(arrays_c[name], arrays_o[name], rtol=1e-5, atol=1e-6)
    last = [h for h in hist_c if h["phase"] == "finetune"][-1]
    assert "val_agree" in last and 0.0 <= last["val_agree"] <= 1.0 and "val_acc" not in last
    assert last["val_loss"] == pytest.approx([h for h in hist_o if h["phase"] == "finetune"][-1]["val_loss"])
