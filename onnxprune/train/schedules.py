"""Optimizers and learning-rate schedules of the two training phases.

Optimizer (``optimizer``): Adam, or SGD with momentum 0.9 and Nesterov's correction (how most vision models
are trained; a model trained with it is fine-tuned best by it). Both take the phase's peak lr as given.

Schedule (``lr_schedule``), the lr at step s of a phase of T steps, peak η, warm-up w = ⌈warmup·T⌉ steps:

    warmup-cosine:  ADMM:        η·min(1, (s + 1)/w)                    (then constant, extra rounds too)
                    retraining:  η·(s + 1)/w for s < w,  then η·(1 + cos(π·(s − w)/(T − w)))/2
    constant:       ADMM: η;  retraining: η·(1 + cos(π·s/T))/2          (the schedules before issue 20)

Both phases warm up: a trained model is moved gently at the start of each phase, which is where a large
first step wrecked it (issue 20: Adam at 3e-3 raised a trained model's task loss from 0.15 to 14 in 10
steps). Retraining restarts its schedule (warm-up included) at the hard prune and decays to 0. The ADMM lr
does not decay: Adam's step is about lr whatever the gradient, so a round moves a weight at most about
lr·round_iters and the W-step must still follow Z − U when ρ is large, in the last rounds and the extra
rounds of ``primal_tol``. Measured on the residual test's MLP (tests/train/test_penalty.py problem, 48-step
rounds, lr 0.01, residual balancing): a cosine decay to 0.1·η left the primal residual at 0.54 after 10
extra rounds, the constant peak brought it to 0.04 after 7. The ADMM lr is further multiplied by the loss
guard's back-off factor (:mod:`.guard`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

MOMENTUM = 0.9


def make_optimizer(
    name: str, params: Iterable[torch.Tensor], lr: float, weight_decay: float
) -> torch.optim.Optimizer:
    """``adam`` or ``sgd`` (momentum 0.9, Nesterov) over ``params``."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=MOMENTUM, nesterov=True, weight_decay=weight_decay)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def warmup_steps(total: int, warmup: float) -> int:
    """⌈warmup·total⌉ (0 when ``warmup`` is 0)."""
    return min(total, math.ceil(warmup * total)) if warmup > 0 else 0


def warmup_cosine(step: int, total: int, warmup: int, floor: float) -> float:
    """The factor on the peak lr at ``step`` (see the module docstring)."""
    if step < warmup:
        return (step + 1) / warmup
    if step >= total:
        return floor
    progress = (step - warmup) / max(total - warmup, 1)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


class AdmmLr:
    """The ADMM phase's lr: peak·scale·factor(step); ``scale`` is the loss guard's back-off."""

    def __init__(self, peak: float, total: int, warmup: float, schedule: str) -> None:
        self.peak, self.total, self.schedule = peak, total, schedule
        self.warmup = warmup_steps(total, warmup)
        self.scale = 1.0

    def at(self, step: int) -> float:
        if self.schedule == "constant" or step >= self.warmup:
            return self.peak * self.scale
        return self.peak * self.scale * (step + 1) / self.warmup

    def apply(self, opt: torch.optim.Optimizer, step: int) -> None:
        """Set the lr of every parameter group for the step after ``step`` steps."""
        lr = self.at(step)
        for group in opt.param_groups:
            group["lr"] = lr


def finetune_schedule(
    opt: torch.optim.Optimizer, total: int, warmup: float, schedule: str
) -> torch.optim.lr_scheduler.LRScheduler:
    """The retraining schedule, stepped once per step (a torch scheduler: its state is checkpointed)."""
    if schedule == "constant":  # exactly the schedule before issue 20
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(total, 1))
    w = warmup_steps(total, warmup)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, total, w, 0.0))
