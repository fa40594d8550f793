"""Residual balancing of ρ, the dual rescaling, and the primal residual driven under its threshold."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from onnxprune.train.admm import TrainConfig, run_admm
from onnxprune.train.importer import import_model
from onnxprune.train.penalty import MU, TAU, Penalty, rescale_dual

from . import graphs as G
from .test_admm import FAST, mlp_plan, split, teacher_labels


def test_balancing_raises_rho_when_the_primal_residual_dominates_and_lowers_it_in_the_opposite_case() -> None:
    p = Penalty("balanced", rho0=0.01, growth=1.3, rho_max=1.0)
    assert p.next(0.1, primal=MU * 1.01, dual=1.0) == (pytest.approx(0.1 * TAU), "up")
    assert p.next(0.1, primal=1.0, dual=MU * 1.01) == (pytest.approx(0.1 / TAU), "down")
    assert p.next(0.1, primal=1.0, dual=1.0) == (0.1, "hold")
    assert p.next(0.8, primal=100.0, dual=0.0) == (1.0, "up")  # capped at rho_max
    assert p.next(0.015, primal=0.0, dual=1.0) == (0.01, "down")  # floored at rho0
    assert p.next(0.1, primal=1.0, dual=1.0, extra=True) == (pytest.approx(0.2), "up")  # extra rounds push
    geometric = Penalty("geometric", rho0=0.01, growth=1.3, rho_max=1.0)
    assert geometric.next(0.1, primal=0.0, dual=1.0)[0] == pytest.approx(0.13)


@pytest.mark.parametrize(("rho_old", "rho_new"), [(0.01, 0.02), (1.0, 0.5), (0.3, 0.3)])
def test_rescaling_u_keeps_the_multiplier_and_the_augmented_lagrangian(
    rho_old: float, rho_new: float
) -> None:
    g = torch.Generator().manual_seed(0)
    w, z, u = (torch.randn(5, 7, generator=g, dtype=torch.float64) for _ in range(3))
    lam = rho_old * u  # the unscaled dual Λ = ρU
    u_new = u.clone()
    rescale_dual([u_new], rho_old, rho_new)
    torch.testing.assert_close(rho_new * u_new, lam)
    # ρ/2‖W − Z + U‖² − ρ/2‖U‖² = Λ·(W − Z) + ρ/2‖W − Z‖²: the same Λ, the new ρ
    lhs = rho_new / 2 * (w - z + u_new).pow(2).sum() - rho_new / 2 * u_new.pow(2).sum()
    rhs = (lam * (w - z)).sum() + rho_new / 2 * (w - z).pow(2).sum()
    torch.testing.assert_close(lhs, rhs)
    # the penalty's gradient at W = Z is Λ before and after
    wz = z.clone().requires_grad_(True)
    (rho_new / 2 * (wz - z + u_new).pow(2).sum()).backward()
    assert wz.grad is not None
    torch.testing.assert_close(wz.grad, lam)


# the issue-20 settings (opt-in; the defaults are the geometric schedule capped at 1, constant lr)
OPT_IN = dict(lr_schedule="warmup-cosine", rho_max=10.0)


def _admm(**kw: object) -> dict:
    model = G.mlp_matmul(seed=1)
    x = np.random.default_rng(0).standard_normal((256, 12)).astype(np.float32)
    train, val = split(x, teacher_labels(model, x), 192)  # 6 steps per epoch: 6 rounds of 48 steps
    base = dict(admm_epochs=48, finetune_epochs=0, lr=0.01, rho0=0.01, round_iters=48)
    cfg = TrainConfig(**(FAST | OPT_IN | base | kw))
    result = run_admm(import_model(model), mlp_plan(), {"h": 3}, train, val, cfg)
    rounds = [h for h in result.history if h["phase"] == "admm"]
    end = result.last("admm_end")
    assert end is not None and end["primal_max"] == rounds[-1]["primal_max"]
    return end | {"rounds_seen": rounds}


def test_the_balanced_schedule_drives_the_primal_residual_under_the_threshold() -> None:
    tol = 0.05
    end = _admm(rho_schedule="balanced", primal_tol=tol, max_extra_rounds=12)
    assert end["primal_met"] and end["primal_max"] <= tol
    assert end["rounds_seen"][0]["primal_max"] > tol  # there was something to drive down
    # the old schedule, same rounds: ρ 0.01·1.3^k stays too weak to get there
    old = _admm(rho_schedule="geometric", primal_tol=tol, max_extra_rounds=0)
    assert not old["primal_met"] and old["extra_rounds"] == 0
