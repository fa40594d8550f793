"""BatchNorm statistics recalibration after the hard prune (``bn_recalibrate``).

The running mean and variance were accumulated (exponential averages) while the weights moved through the
ADMM phase; after the hard prune the layer inputs have other statistics. Recalibration resets them and
re-estimates them as the plain average over training batches: forward passes in training mode (dropout
off), no gradient, BatchNorm momentum None (torch's cumulative average), as SWA's ``update_bn`` does.
A pruned channel's input is exactly 0, so its statistics become mean 0, variance 0 and its output stays
0 (its scale and shift are pruned with it): the masked model still equals the physically smaller one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

MAX_BATCHES = 100


def batchnorms(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The torch BatchNorm layers that keep running statistics."""
    return [
        m
        for m in module.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]


def recalibrate(
    module: nn.Module, batches: Iterable[tuple[torch.Tensor, ...]], forward: Callable[..., object]
) -> int:
    """Re-estimate the running statistics of ``module``'s BatchNorm layers from up to ``MAX_BATCHES`` of
    ``batches`` (model inputs) through ``forward``; the caller sets the modes. Returns the batches used."""
    layers = batchnorms(module)
    if not layers:
        return 0
    momenta = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None
    used = 0
    try:
        with torch.no_grad():
            for x in batches:
                forward(*x)
                used += 1
                if used >= MAX_BATCHES:
                    break
    finally:
        for m, momentum in zip(layers, momenta, strict=True):
            m.momentum = momentum
    return used
