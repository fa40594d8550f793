"""Learning-rate schedules of the two phases and the SGD option."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from onnxprune.train.admm import TrainConfig, run_admm
from onnxprune.train.importer import import_model
from onnxprune.train.schedules import AdmmLr, finetune_schedule, make_optimizer, warmup_steps

from . import graphs as G
from .test_admm import FAST, mlp_plan, split, teacher_labels


def lrs(opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler, n: int) -> list[float]:
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_retraining_warms_up_then_decays_by_a_cosine_to_zero() -> None:
    opt = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=1e-3)
    total = 50
    seq = lrs(opt, finetune_schedule(opt, total, 0.1, "warmup-cosine"), total)
    w = warmup_steps(total, 0.1)
    assert w == 5
    assert seq[:w] == pytest.approx([1e-3 * (s + 1) / w for s in range(w)])  # linear up to the peak
    assert max(seq) == pytest.approx(1e-3) and seq[w - 1] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(seq[w - 1 :], seq[w:], strict=False))  # then non-increasing
    assert seq[-1] < 1e-3 * 0.01
    # constant: the cosine from the peak of before (CosineAnnealingLR), no warm-up
    opt = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=1e-3)
    old = lrs(opt, finetune_schedule(opt, total, 0.1, "constant"), total)
    assert old == pytest.approx([1e-3 * (1 + math.cos(math.pi * s / total)) / 2 for s in range(total)])


def test_the_admm_lr_warms_up_then_holds_and_the_guard_scales_it() -> None:
    lr = AdmmLr(3e-3, total=40, warmup=0.1, schedule="warmup-cosine")
    assert [lr.at(s) for s in range(4)] == pytest.approx([3e-3 * (s + 1) / 4 for s in range(4)])
    assert lr.at(4) == lr.at(39) == lr.at(100) == pytest.approx(3e-3)  # extra rounds too
    lr.scale = 0.25
    assert lr.at(10) == pytest.approx(7.5e-4)
    assert AdmmLr(3e-3, 40, 0.1, "constant").at(0) == 3e-3


def test_sgd_is_nesterov_momentum_and_trains() -> None:
    opt = make_optimizer("sgd", [torch.zeros(1, requires_grad=True)], 0.01, 0.0)
    assert isinstance(opt, torch.optim.SGD)
    assert opt.defaults["momentum"] == 0.9 and opt.defaults["nesterov"]
    assert isinstance(
        make_optimizer("adam", [torch.zeros(1, requires_grad=True)], 0.01, 0.0), torch.optim.Adam
    )
    model = G.mlp_matmul(seed=1)
    x = np.random.default_rng(0).standard_normal((128, 12)).astype(np.float32)
    train, val = split(x, teacher_labels(model, x), 96)
    cfg = TrainConfig(
        admm_epochs=2, finetune_epochs=4, round_iters=3, optimizer="sgd", lr=0.05, finetune_lr=0.05, **FAST
    )
    result = run_admm(import_model(model), mlp_plan(), {"h": 4}, train, val, cfg)
    tuned = [h for h in result.history if h["phase"] == "finetune"]
    pruned = result.last("pruned")
    assert pruned is not None and tuned[-1]["val_loss"] < pruned["val_loss"]  # retraining recovers
