"""The training objective f of ADMM and retraining: labels, self-distillation from the dense model, or both.

    f = (1 − w)·CE(s, y) + w·D(s, t)        w = ``distill`` weight (1 without labels, 0 by default with)

s are the student's outputs, t the frozen teacher's (the original dense model, imported before any
training), y the labels. D is summed over the model's outputs, each with its own loss:

- ``kl``: T²·KL(softmax(t/T) ‖ softmax(s/T)), batch mean (Hinton et al., 2015). For outputs that are
  already probabilities (the graph ends in Softmax) log p stands in for the logits.
- ``mse``: mean (s − t)² / (mean t² + ε), i.e. the MSE relative to the teacher's output power. Scale-free:
  a plain MSE on logits of magnitude 1e4 (untrained deep nets) gave gradients that diverged to NaN.
- ``cosine``: 1 − cos(s_i, t_i) per sample (outputs flattened), batch mean; blind to scale.

``auto`` picks ``kl`` for classifier heads (an output of shape (N, C), C ≥ 2) and ``mse`` otherwise.

Default T = 1, from benchmarks.run_distill (VGG-style, filter:0.5, labels withheld): with T = 4
ADMM's residual ‖W−Z‖/‖W‖ stayed near 0.9 over both rounds (T = 1: down to 0.11), and top-1 ended
0.33 pp lower at 2+2 epochs and 0.34 pp lower at 2+5.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config.settings import DistillSettings

log = logging.getLogger("onnxprune")

_EPS = 1e-12


DistillConfig = DistillSettings
"""How the dense model teaches the pruned one (defined with the other settings, in config.settings)."""


def outputs(out: Any) -> list[torch.Tensor]:
    """The tensors a module returned, as a list."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, list | tuple):
        return [o for o in out if isinstance(o, torch.Tensor)]
    raise TypeError(f"model returned {type(out).__name__}, expected tensors")


def looks_like_probabilities(p: torch.Tensor) -> bool:
    """Non-negative rows summing to 1 along dim 1: the model ends in Softmax."""
    if p.dim() < 2 or p.shape[1] < 2:
        return False
    return bool((p >= 0).all() and torch.allclose(p.sum(dim=1), torch.ones((), dtype=p.dtype), atol=1e-3))


def is_classifier_output(t: torch.Tensor) -> bool:
    return t.dim() == 2 and t.shape[1] >= 2


def kl_loss(
    s: torch.Tensor, t: torch.Tensor, temperature: float, probabilities: bool = False
) -> torch.Tensor:
    if probabilities:
        s, t = s.clamp_min(_EPS).log(), t.clamp_min(_EPS).log()
    log_p_s = F.log_softmax(s / temperature, dim=1)
    log_p_t = F.log_softmax(t / temperature, dim=1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * temperature**2


def relative_mse(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return (s - t).pow(2).mean() / (t.pow(2).mean() + _EPS)


def cosine_loss(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return (1 - F.cosine_similarity(s.flatten(1), t.flatten(1), dim=1, eps=1e-8)).mean()


def choose_losses(loss: str, teacher_outputs: Sequence[torch.Tensor]) -> list[str]:
    """The loss of each output: ``loss`` itself, or for 'auto' kl on (N, C) heads and mse elsewhere."""
    if loss != "auto":
        return [loss] * len(teacher_outputs)
    return ["kl" if is_classifier_output(t) else "mse" for t in teacher_outputs]


class Objective:
    """f(out, x, y, t): see the module docstring. ``t`` (cached teacher outputs) may be None: online."""

    def __init__(
        self,
        module: nn.Module,
        labeled: bool,
        probe: tuple[torch.Tensor, ...] | None,
        cfg: DistillConfig,
        teacher: nn.Module | None = None,
    ) -> None:
        """``teacher``: the model to distill from (default: a frozen copy of ``module`` as it is now, the
        dense model before pruning); given when ``module`` is already the pruned model."""
        cfg.validate()
        self.cfg = cfg
        self.labeled = labeled
        self.weight = cfg.weight_for(labeled)
        self.teacher: nn.Module | None = None
        self.probabilities = False
        self.losses: list[str] = []
        if probe is not None:
            was_training = module.training
            module.eval()
            with torch.no_grad():
                outs = outputs(module(*probe))
            module.train(was_training)
            self.probabilities = looks_like_probabilities(outs[0])
            self.losses = choose_losses(cfg.loss, outs)
            if self.probabilities:
                log.info("model outputs probabilities: losses use their logarithm")
        if self.weight > 0:
            self.teacher = (copy.deepcopy(module) if teacher is None else teacher).eval()
            for p in self.teacher.parameters():
                p.requires_grad_(False)
            log.info(
                "objective: %s%s (T=%g) to the dense model",
                "" if self.weight == 1 else f"{1 - self.weight:g}·CE + {self.weight:g}·",
                "+".join(self.losses) or cfg.loss,
                cfg.temperature,
            )

    @property
    def distills(self) -> bool:
        return self.weight > 0

    def teacher_outputs(self, x: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
        assert self.teacher is not None, "self-distillation needs the teacher"
        with torch.no_grad():
            return outputs(self.teacher(*x))

    def __call__(
        self,
        out: Any,
        x: tuple[torch.Tensor, ...],
        y: torch.Tensor | None,
        t: Sequence[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        outs = outputs(out)
        total = torch.zeros((), device=outs[0].device)
        if y is not None and self.weight < 1:
            total = total + (1 - self.weight) * self._supervised(outs[0], y)
        if self.weight > 0:
            targets = list(t) if t is not None else self.teacher_outputs(x)
            total = total + self.weight * self.distillation(outs, targets)
        return total

    def _supervised(self, s: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.probabilities:
            return F.nll_loss(s.clamp_min(_EPS).log(), y)
        return F.cross_entropy(s, y)

    def distillation(self, outs: Sequence[torch.Tensor], targets: Sequence[torch.Tensor]) -> torch.Tensor:
        losses = self.losses or choose_losses(self.cfg.loss, targets)
        terms = {
            "kl": lambda s, t: kl_loss(s, t, self.cfg.temperature, self.probabilities),
            "mse": relative_mse,
            "cosine": cosine_loss,
        }
        total = torch.zeros((), device=outs[0].device)
        for kind, s, t in zip(losses, outs, targets, strict=True):
            total = total + terms[kind](s, t)
        return total
