"""Channels that no consumer reads any more: every input slice of every consumer weight is zero.

Shape-wise sparsity can zero all the columns ``W[:, c, :, :]`` of a Conv for one input channel ``c``
(and a Gemm's features of one flattened channel). If every consumer of the channel (the plan lists them as
DEPENDENT members of its group: Conv/Gemm/MatMul weights along their input axis) has a zero slice for it,
the channel's value never reaches the output, so removing it — the producer's filter, its BN entries,
and the consumers' (zero) slices — is the existing filter surgery and changes nothing. The caller checks
that on ORT (pruned ≡ masked) and keeps the channel if not.

Removing dead channels can *slow* a model down: on the VGG-style reference (``shape:0.5``) cutting 24 → 22
and 48 → 47 filters made ORT CPU 1.6x slower, because unaligned channel counts fall out of MLAS's blocked
NCHWc kernels (see ``--align`` in benchmarks/README.md). :func:`aligned_removal` therefore removes only as
many dead channels as leave a kept count that is a multiple of the alignment (the others stay, with zero
consumer columns: still exact).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx

from ..plan import PruningPlan, Role
from .layerops import weight_readers
from .weights import initializer_values

__all__ = ["aligned_removal", "dead_channels"]


def dead_channels(
    plan: PruningPlan, model: onnx.ModelProto, masks: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Per prunable group, the bool mask of the channels still kept by ``masks`` whose every consumer
    weight slice is zero in ``model`` (only groups with at least one such channel, and never all of a
    group's channels or of one of its cover sets)."""
    readers = weight_readers(model)
    consumers_of = {
        g.name: [m for m in g.members if m.role == Role.DEPENDENT and (m.node, m.initializer) in readers]
        for g in plan.prunable
    }
    # only the consumer weights are read, each once
    arrays = initializer_values(model, {m.initializer for ms in consumers_of.values() for m in ms})
    out: dict[str, np.ndarray] = {}
    for g in plan.prunable:
        keep = masks.get(g.name, np.ones(g.channels, dtype=bool))
        consumers = consumers_of[g.name]
        if not consumers:
            continue
        dead = keep.copy()
        for m in consumers:
            a = arrays[m.initializer]
            nonzero = np.moveaxis(a != 0, m.axis, 0).reshape(a.shape[m.axis], -1).any(axis=1)
            owner = m.index_map.positions(a.shape[m.axis], g.channels)  # channel of each index, -1: none
            used = np.zeros(g.channels, dtype=bool)
            used[owner[(owner >= 0) & nonzero]] = True
            dead &= ~used
        after = keep & ~dead
        if not dead.any() or not after.any() or any(not after[list(c)].any() for c in g.cover_sets):
            continue
        out[g.name] = dead
    return out


def aligned_removal(
    dead: Mapping[str, np.ndarray], masks: Mapping[str, np.ndarray], multiple: int
) -> dict[str, np.ndarray]:
    """The dead channels to remove so that each group keeps a multiple of ``multiple`` channels: the kept
    count rounded *up* from ``kept − dead`` (the highest-index dead channels stay); groups where nothing
    can be removed are left out."""
    out: dict[str, np.ndarray] = {}
    for name, d in dead.items():
        keep = masks.get(name, np.ones(d.size, dtype=bool))
        kept, target = int(keep.sum()), int(keep.sum() - d.sum())
        if multiple > 1:
            target = -(-target // multiple) * multiple
        removable = kept - target
        if removable <= 0:
            continue
        cut = np.zeros_like(d)
        cut[np.flatnonzero(d)[:removable]] = True
        out[name] = cut
    return out
