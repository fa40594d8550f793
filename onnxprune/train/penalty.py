"""The ADMM penalty ρ: its schedule and the rescaling of the scaled dual U when it changes.

Residuals after a Z-step (over every constrained tensor together, since ρ is common to all):
primal r = ‖W − Z‖_F, dual s = ρ‖Z − Z_prev‖_F (Boyd et al., "Distributed optimization ... ADMM", §3.3).

``geometric``: ρ ← min(ρ·growth, ρ_max) every round (the authors' later code; growth 1.3).

``balanced`` (residual balancing, Boyd et al. §3.4.1, μ = 10, τ = 2):

    r > μ·s:  ρ ← min(ρ·τ, ρ_max)        the constraint is violated more than Z moves: push harder
    s > μ·r:  ρ ← max(ρ/τ, ρ0)           Z flips while W already sits at it: let the task loss lead
    else:     ρ unchanged

Why not geometric by default (issue 20): on a well-trained model the task gradient is strong and ρ growing
by 1.3 from 0.01 stayed too weak, so the primal residual grew over the first epoch (0.78 → 1.23) and the
hard prune landed at chance accuracy. Balancing doubles ρ for as long as the primal residual dominates.
In the extra rounds before the hard prune (``primal_tol``), ρ grows by τ every round whatever the balance:
those rounds exist to reach feasibility.

When ρ changes, the scaled dual is rescaled, U ← U·ρ_old/ρ_new, so that the unscaled multiplier Λ = ρU,
and with it the penalty's gradient at any W, ρ(W − Z + U) = ρ(W − Z) + Λ, keeps its dual part (§3.4.1).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

MU = 10.0  # residual ratio that triggers a change
TAU = 2.0  # factor of a change


class Penalty:
    """ρ's schedule (``kind`` 'balanced' or 'geometric'); :meth:`next` gives the ρ of the next round."""

    def __init__(self, kind: str, rho0: float, growth: float, rho_max: float) -> None:
        self.kind, self.rho0, self.growth, self.rho_max = kind, rho0, growth, rho_max

    def next(self, rho: float, primal: float, dual: float, extra: bool = False) -> tuple[float, str]:
        """The new ρ and why ('up', 'down', 'hold'); ``primal``, ``dual``: r and s above (absolute)."""
        if self.kind == "geometric":
            return min(rho * self.growth, self.rho_max), "up"
        if extra or primal > MU * dual:
            new = min(rho * TAU, self.rho_max)
        elif dual > MU * primal:
            new = max(rho / TAU, self.rho0)
        else:
            new = rho
        return new, ("up" if new > rho else "down" if new < rho else "hold")


def rescale_dual(u: Iterable[torch.Tensor], rho_old: float, rho_new: float) -> None:
    """U ← U·ρ_old/ρ_new in place: Λ = ρU unchanged."""
    if rho_new == rho_old:
        return
    with torch.no_grad():
        for dual in u:
            dual.mul_(rho_old / rho_new)
