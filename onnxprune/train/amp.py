"""Mixed precision for the training steps (``--amp bf16|fp16``): autocast on the forward pass and loss.

The weights, Adam state, ADMM Z/U and the penalty stay float32 (autocast only runs the matmul/conv-like ops
in low precision), so the exported model keeps its dtype. fp16 scales the loss (``GradScaler``) against
gradient underflow and needs CUDA; bf16 has float32's range, needs no scaler and also runs on CPU (where
it is rarely faster: it exists there for testing and memory).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch

from ..config.settings import AMP_MODES
from ..errors import SpecError

__all__ = ["MODES", "Amp", "check"]

MODES = AMP_MODES
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check(mode: str, device: str) -> None:
    """Raise :class:`SpecError` for a mode the device cannot run."""
    if mode not in MODES:
        raise SpecError(f"amp must be one of {', '.join(MODES)}, not {mode!r}")
    if mode == "fp16" and device != "cuda":
        raise SpecError("amp fp16 needs device cuda (use bf16 on CPU)")


class Amp:
    """Autocast context and (fp16) loss scaling around ``backward`` and the optimizer step."""

    def __init__(self, mode: str, device: torch.device) -> None:
        self.mode, self.device = mode, device
        self.scaler = torch.amp.GradScaler(device.type) if mode == "fp16" else None

    @contextmanager
    def autocast(self) -> Iterator[None]:
        if self.mode == "off":
            yield
            return
        with torch.autocast(device_type=self.device.type, dtype=_DTYPES[self.mode]):
            yield

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler else loss).backward()

    def step(self, opt: torch.optim.Optimizer) -> None:
        """``opt.step()``; with fp16 skipped on inf/nan gradients and the scale adapted."""
        if self.scaler is None:
            opt.step()
            return
        self.scaler.step(opt)
        self.scaler.update()

    def state_dict(self) -> dict[str, Any] | None:
        return self.scaler.state_dict() if self.scaler else None

    def load_state_dict(self, state: Mapping[str, Any] | None) -> None:
        if self.scaler is not None and state is not None:
            self.scaler.load_state_dict(dict(state))
