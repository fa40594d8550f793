"""The loss guard of the first ADMM rounds: a trained model must not be wrecked by the W-step.

Before the first step the dense model's task loss f₀ is measured on a probe: the first few training
batches, in order, not augmented, in the ADMM phase's mode (dropout off), no gradient. At the end of each
of the first ``guard_rounds`` accepted rounds, before its Z-step, the same probe gives f of the round's
final weights (the round's mean training loss alone would not do: each step's loss is taken before that
step, so the damage of a round's last steps would show only in the next round, whose start is already
damaged). The round's mean training loss f̄ is checked too, against the dense model's loss f₀ᵗ on the
probe batches as training sees them (augmented when ``augment`` is on; else f₀ᵗ = f₀), so that the weights
inside the round are watched as well:

    f > factor·f₀  or  f̄ > factor·f₀ᵗ:
        restore W, the buffers (BatchNorm statistics) and the optimizer state of the round's start,
        halve the ADMM lr, redo the round on the next batches (Z, U, ρ untouched)

at most ``MAX_BACKOFFS`` times in a row (then the round is accepted, with a warning). Why: issue 20, Adam at
3e-3 raised a trained model's task loss from 0.15 to 14 in 10 steps and the phase re-learnt from chance.
The halving persists for the rest of the ADMM phase (not retraining, whose schedule restarts). Every back-off
is an entry of the run's history (phase 'guard').
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

MAX_BACKOFFS = 10  # consecutive halvings of one round: lr/1024


class LossGuard:
    """Snapshots at round starts and the back-off decision (see the module docstring)."""

    def __init__(self, factor: float, rounds: int, dense_loss: float, dense_train_loss: float = 0.0) -> None:
        self.factor, self.rounds, self.dense_loss = factor, rounds, dense_loss
        self.dense_train_loss = dense_train_loss or dense_loss
        self.backoffs = 0  # in a row, for the current round
        self.total = 0
        self._snapshot: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None

    def active(self, accepted_rounds: int) -> bool:
        """Watching the round after ``accepted_rounds`` accepted ones."""
        return self.factor > 0 and accepted_rounds < self.rounds and self.dense_loss > 0

    @property
    def limit(self) -> float:
        return self.factor * self.dense_loss

    def snapshot(self, module: nn.Module, opt: torch.optim.Optimizer) -> None:
        """Remember the weights, buffers and optimizer state of the round's start."""
        state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        self._snapshot = (state, copy.deepcopy(opt.state_dict()))

    @property
    def train_limit(self) -> float:
        return self.factor * self.dense_train_loss

    def exceeds(self, probe_loss: float, round_loss: float) -> bool:
        """The round's task loss ran away: at its end on the probe, or on its training batches."""
        return probe_loss > self.limit or round_loss > self.train_limit

    def can_back_off(self) -> bool:
        return self.backoffs < MAX_BACKOFFS and self._snapshot is not None

    def accept(self) -> None:
        """The round is kept: the next one starts with a fresh count of back-offs."""
        self.backoffs = 0

    def restore(self, module: nn.Module, opt: torch.optim.Optimizer) -> None:
        """Back to the snapshot; counts the back-off."""
        assert self._snapshot is not None
        state, opt_state = self._snapshot
        with torch.no_grad():
            for k, v in module.state_dict().items():
                v.copy_(state[k])
        opt.load_state_dict(copy.deepcopy(opt_state))
        self.backoffs += 1
        self.total += 1

    def state(self) -> dict[str, Any]:
        return {
            "dense_loss": self.dense_loss,
            "dense_train_loss": self.dense_train_loss,
            "backoffs": self.backoffs,
            "total": self.total,
        }

    def load(self, state: dict[str, Any]) -> None:
        self.dense_loss, self.dense_train_loss = state["dense_loss"], state["dense_train_loss"]
        self.backoffs, self.total = state["backoffs"], state["total"]
