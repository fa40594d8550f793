"""Exact Euclidean projections onto element (non-structured) sparsity sets, in torch layout.

Irregular, ``S_k = {Z : ‖Z‖₀ ≤ k}``: ``‖T − Z‖² ≥ Σ_{i ∉ supp Z} t_i²`` with equality for ``Z = T`` on the
support, so the projection keeps T on the k entries of largest |t_i| (the pruned sum of squares is then
minimal) and zeroes the rest.

N:M along an axis, ``S = {Z : every block of M consecutive entries along the axis has ≤ N non-zeros}``:
the blocks are disjoint and the constraint acts on each separately, so the projection is the per-block
irregular projection — keep the N largest |t| of every block.

Shape-wise, ``S = {Z : at most k columns non-zero}``, a column being the slice along the output axis
(filters) at one index of every other axis (``W[:, c, kh, kw]``): the columns are disjoint groups, so
``‖T − Z‖² ≥ Σ_{pruned columns} ‖T_col‖²`` with equality for Z = T on the kept columns, and the projection
keeps the k columns of largest L2 norm (the group-count projection of :mod:`.projection`).

Ties (equal |t|, or equal column norms) keep the lower flat index (irregular), the lower position in
the block (N:M), or the lower column index in row-major order of the non-output axes (shape): a stable
descending sort. Non-finite values are rejected.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from ..graph.elements import NM, Columns, ElementConstraint, Irregular
from .projection import AxisOf, identity_axis

__all__ = ["PROJECTIONS", "element_mask", "nm_mask", "project_elements", "shape_mask", "topk_mask"]


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


def shape_mask(t: torch.Tensor, k: int, out_axis: int) -> torch.Tensor:
    """Bool mask keeping the k columns (slices along ``out_axis``) of largest L2 norm, whole columns."""
    _check_finite(t)
    moved = t.detach().movedim(out_axis, 0)
    norms = moved.to(torch.float64).pow(2).sum(dim=0)  # one per column, shape of the other axes
    keep = topk_mask(norms, k)
    return keep.unsqueeze(0).expand_as(moved).movedim(0, out_axis).contiguous()


# constraint type -> the support of the projection of a tensor (torch layout) onto its set; the axes
# are ONNX axes of the initializer, mapped to torch by axis_of(name, axis)
PROJECTIONS: dict[type[ElementConstraint], Callable[[torch.Tensor, Any, str, AxisOf], torch.Tensor]] = {
    Irregular: lambda t, c, name, axis_of: topk_mask(t, c.keep),
    NM: lambda t, c, name, axis_of: nm_mask(t, c.n, c.m, axis_of(name, c.axis)),
    Columns: lambda t, c, name, axis_of: shape_mask(t, c.columns, axis_of(name, c.out_axis)),
}


def element_mask(
    t: torch.Tensor, c: ElementConstraint, name: str = "", axis_of: AxisOf = identity_axis
) -> torch.Tensor:
    """The support of the projection of ``t`` (torch layout of ``c.initializer``) onto ``c``'s set."""
    return PROJECTIONS[type(c)](t, c, name or c.initializer, axis_of)


def project_elements(
    tensors: Mapping[str, torch.Tensor],
    constraints: Mapping[str, ElementConstraint],
    axis_of: AxisOf = identity_axis,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """``(Z, mask)`` by tensor name: Z = Π(T), T on the mask's support and exactly 0 elsewhere."""
    masks = {name: element_mask(tensors[name], c, name, axis_of) for name, c in constraints.items()}
    z = {name: tensors[name].detach().masked_fill(~mask, 0.0) for name, mask in masks.items()}
    return z, masks
