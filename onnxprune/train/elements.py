"""Exact Euclidean projections onto element (non-structured) sparsity sets, in torch layout.

Irregular, ``S_k = {Z : ‖Z‖₀ ≤ k}``: ``‖T − Z‖² ≥ Σ_{i ∉ supp Z} t_i²`` with equality for ``Z = T`` on the
support, so the projection keeps T on the k entries of largest |t_i| (the pruned sum of squares is then
minimal) and zeroes the rest.

N:M along an axis, ``S = {Z : every block of M consecutive entries along the axis has ≤ N non-zeros}``:
the blocks are disjoint and the constraint acts on each separately, so the projection is the per-block
irregular projection — keep the N largest |t| of every block.

Ties (equal |t|) keep the lower flat index (irregular) or the lower position in the block (N:M): a stable
descending sort. Non-finite values are rejected.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ..sparsity import ElementSparsity
from .projection import AxisOf, identity_axis

__all__ = ["element_mask", "nm_mask", "project_elements", "topk_mask"]


def _check_finite(t: torch.Tensor) -> None:
    if not torch.isfinite(t).all():
        raise ValueError("weights are not finite (NaN or inf)")


def topk_mask(t: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask (shape of ``t``) of the k entries of largest |t|; among equal |t| the lower flat index."""
    if not 0 <= k <= t.numel():
        raise ValueError(f"cannot keep {k} of {t.numel()} entries")
    _check_finite(t)
    order = torch.argsort(-t.detach().abs().reshape(-1), stable=True)
    mask = torch.zeros(t.numel(), dtype=torch.bool, device=t.device)
    mask[order[:k]] = True
    return mask.reshape(t.shape)


def nm_mask(t: torch.Tensor, n: int, m: int, axis: int) -> torch.Tensor:
    """Bool mask keeping the n largest |t| in every block of m consecutive entries along ``axis``."""
    if not 1 <= n <= m:
        raise ValueError(f"need 1 <= n <= m, not {n}:{m}")
    length = t.shape[axis]
    if length % m:
        raise ValueError(f"axis {axis} of length {length} is not a multiple of {m}")
    _check_finite(t)
    moved = t.detach().abs().movedim(axis, -1)
    blocks = moved.reshape(*moved.shape[:-1], length // m, m)
    order = torch.argsort(-blocks, dim=-1, stable=True)
    keep = torch.zeros_like(blocks, dtype=torch.bool)
    keep.scatter_(-1, order[..., :n], True)
    return keep.reshape(moved.shape).movedim(-1, axis)


def element_mask(
    t: torch.Tensor, c: ElementSparsity, name: str = "", axis_of: AxisOf = identity_axis
) -> torch.Tensor:
    """The support of the projection of ``t`` (torch layout of ``c.initializer``) onto ``c``'s set."""
    if c.kind == "irregular":
        return topk_mask(t, c.keep)
    return nm_mask(t, c.n, c.m, axis_of(name or c.initializer, c.axis))


def project_elements(
    tensors: Mapping[str, torch.Tensor],
    constraints: Mapping[str, ElementSparsity],
    axis_of: AxisOf = identity_axis,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """``(Z, mask)`` by tensor name: Z = Π(T), T on the mask's support and exactly 0 elsewhere."""
    masks = {name: element_mask(tensors[name], c, name, axis_of) for name, c in constraints.items()}
    z = {name: tensors[name].detach().masked_fill(~mask, 0.0) for name, mask in masks.items()}
    return z, masks
