"""Training-time augmentation of image inputs, applied per batch on the torch side.

For every input of shape (N, C, H, W) with a floating dtype, each sample independently:

- ``crop``: zero-pad by p pixels on every side, p = clamp(round(min(H, W)/8), 2, 4) (2 for 8×8 inputs, 4 for
  28×28 and 32×32, the usual CIFAR/Fashion-MNIST setting), and cut an H×W window at a uniformly random
  offset in [0, 2p]²: a random shift of up to p pixels;
- ``flip``: with probability 1/2, reverse the W axis.

The random numbers come from torch's global CPU generator (checkpointed with the rest of the run's RNG
state), drawn on the CPU whatever the device so that a run's draws do not depend on where it trains. The
inputs of a multi-input model that are images get the same crop offsets (the padding of the first) and
flips.
"""

from __future__ import annotations

import torch

from ..config.settings import parse_augment


def crop_padding(h: int, w: int) -> int:
    return min(4, max(2, round(min(h, w) / 8)))


def is_image(t: torch.Tensor) -> bool:
    return t.dim() == 4 and t.is_floating_point()


def random_crop(x: torch.Tensor, oy: torch.Tensor, ox: torch.Tensor, pad: int) -> torch.Tensor:
    """Sample n's window of the zero-padded ``x`` at offset (oy[n], ox[n]) ∈ [0, 2·pad]²."""
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    rows = (oy.to(x.device)[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # N,1,H,1
    cols = (ox.to(x.device)[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # N,1,1,W
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chan = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return padded[batch, chan, rows, cols]


def flip(x: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
    """Reverse the last axis of the samples where ``which`` is True."""
    return torch.where(which.to(x.device)[:, None, None, None], x.flip(-1), x)


class Augment:
    """The augmentations named by ``spec`` ('crop,flip', '' for none); callable on a batch's inputs."""

    def __init__(self, spec: str) -> None:
        self.kinds = parse_augment(spec)

    def __bool__(self) -> bool:
        return bool(self.kinds)

    def __call__(self, x: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        images = [t for t in x if is_image(t)]
        if not self.kinds or not images:
            return x
        n, _, h, w = images[0].shape
        pad = crop_padding(h, w)
        draws: dict[str, torch.Tensor] = {}
        if "crop" in self.kinds:
            draws["oy"] = torch.randint(0, 2 * pad + 1, (n,))
            draws["ox"] = torch.randint(0, 2 * pad + 1, (n,))
        if "flip" in self.kinds:
            draws["flip"] = torch.rand(n) < 0.5
        return tuple(self._one(t, draws, pad) if is_image(t) else t for t in x)

    @staticmethod
    def _one(t: torch.Tensor, draws: dict[str, torch.Tensor], pad: int) -> torch.Tensor:
        if "oy" in draws:
            t = random_crop(t, draws["oy"], draws["ox"], pad)
        if "flip" in draws:
            t = flip(t, draws["flip"])
        return t
