"""Exact Euclidean projection onto "at most k channels of a group are non-zero".

A group's channel ``c`` owns, in each SOURCE member ``m``, the slice ``T_m[..., idx_m(c), ...]`` along the
member's torch axis, ``idx_m(c)`` the indices its index map gives ``c`` (one filter, or several: a whole
conv-group, a channel tied to itself through a shuffle). With ``n_c² = Σ_m ‖slice_m(c)‖²`` the
channel norms, the projection of ``{T_m}`` onto ``S_k = {at most k channels non-zero}`` keeps the k channels
of largest ``n_c`` and zeroes the others:

    ‖T − Z‖² = Σ_{c pruned} n_c²   is minimal  ⇔  the pruned channels have the smallest norms.

(Slices of distinct channels are disjoint, which the index maps guarantee.) Indices of a member that no
channel owns (another group's offset range) are left as they are. Ties are broken by the lower channel index.

Everything works on plain ``name -> tensor`` dicts and an ``axis_of(name, onnx_axis) -> torch axis``
function (``ImportedModel.torch_axis``), so it is testable without onnx2torch. DEPENDENT members are never
touched here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch

from ..plan import Group, Member

__all__ = [
    "AxisOf",
    "apply_masks",
    "group_norms",
    "identity_axis",
    "member_mask",
    "project",
    "project_groups",
    "tensor_masks",
    "topk_keep",
]

AxisOf = Callable[[str, int], int]
"""``(initializer name, ONNX axis) -> torch axis``."""


def identity_axis(name: str, onnx_axis: int) -> int:
    """The axis map of tensors stored in ONNX layout."""
    return onnx_axis


def _axis(t: torch.Tensor, member: Member, axis_of: AxisOf) -> int:
    ax = axis_of(member.initializer, member.axis)
    if not -t.dim() <= ax < max(t.dim(), 1):
        raise ValueError(f"axis {ax} out of range for {member.initializer!r} of shape {tuple(t.shape)}")
    return ax % max(t.dim(), 1)


def _positions(t: torch.Tensor, member: Member, channels: int, ax: int) -> torch.Tensor:
    """(L,) channel owning each index of the member's axis, -1 where none does."""
    try:
        pos = member.index_map.positions(t.shape[ax], channels)
    except (IndexError, ValueError) as e:
        raise ValueError(
            f"index map of {member.initializer!r} does not fit axis {ax} of length {t.shape[ax]}"
        ) from e
    if pos.size and pos.max() >= channels:
        raise ValueError(f"index map of {member.initializer!r} names channel {int(pos.max())} of {channels}")
    return torch.as_tensor(pos, dtype=torch.long, device=t.device)


def group_norms(
    tensors: Mapping[str, torch.Tensor], group: Group, axis_of: AxisOf = identity_axis
) -> torch.Tensor:
    """(C,) float64 channel norms ``n_c = sqrt(Σ_{m SOURCE} ‖slice_m(c)‖²)`` (on the tensors' device)."""
    sources = group.sources
    if not sources:
        raise ValueError(f"group {group.name!r} has no SOURCE member")
    sq: torch.Tensor | None = None
    for m in sources:
        t = tensors[m.initializer].detach()
        ax = _axis(t, m, axis_of)
        pos = _positions(t, m, group.channels, ax)
        per_index = t.to(torch.float64).pow(2).movedim(ax, 0).reshape(t.shape[ax], -1).sum(dim=1)
        owned = pos >= 0
        part = torch.zeros(group.channels, dtype=torch.float64, device=t.device)
        part.scatter_add_(0, pos[owned], per_index[owned])
        sq = part if sq is None else sq + part
    assert sq is not None
    return sq.sqrt()


def topk_keep(norms: torch.Tensor, k: int, cover_sets: Sequence[Sequence[int]] = ()) -> torch.Tensor:
    """Bool (C,) mask of the k largest norms; among equal norms the lower index is kept.

    ``cover_sets``: disjoint sets of channels of which at least one must stay (the channels a Reshape
    entry or a Split part counts: emptying it would make the entry 0). The projection onto
    {≤ k channels, each set hit} keeps the strongest channel of every set and fills the remaining slots
    with the largest other norms — exact for disjoint sets, since swapping a set's kept channel for its
    strongest one can only raise the kept norm.
    """
    c = norms.numel()
    if not 0 <= k <= c:
        raise ValueError(f"cannot keep {k} of {c} channels")
    if not torch.isfinite(norms).all():
        raise ValueError("channel norms are not finite (NaN or inf weights)")
    flat = norms.reshape(-1)
    keep = torch.zeros(c, dtype=torch.bool, device=norms.device)
    forced = []
    for cover in cover_sets:
        idx = torch.as_tensor(list(cover), dtype=torch.long, device=norms.device)
        forced.append(int(idx[torch.argsort(-flat[idx], stable=True)[0]]))
    if len(forced) > k:
        raise ValueError(f"keeping {k} channels cannot cover {len(forced)} sets that must each keep one")
    keep[forced] = True
    order = torch.argsort(-flat, stable=True)  # descending; stable keeps lower index first
    rest = order[~keep[order]][: k - int(keep.sum())]
    keep[rest] = True
    return keep


def member_mask(
    member: Member, keep: torch.Tensor | np.ndarray, tensor: torch.Tensor, axis_of: AxisOf = identity_axis
) -> torch.Tensor:
    """Bool mask broadcastable to ``tensor``: False exactly at the indices of the removed channels.

    Shape ``[1, …, L, …, 1]`` with ``L = tensor.shape[axis]`` on the member's torch axis.
    """
    keep_t = torch.as_tensor(
        np.asarray(keep) if isinstance(keep, np.ndarray) else keep.cpu(), dtype=torch.bool
    )
    ax = _axis(tensor, member, axis_of)
    pos = _positions(tensor, member, keep_t.numel(), ax).cpu()
    alive = torch.ones(tensor.shape[ax], dtype=torch.bool)
    owned = pos >= 0
    alive[owned] = keep_t[pos[owned]]
    shape = [1] * tensor.dim()
    shape[ax] = tensor.shape[ax]
    return alive.reshape(shape).to(tensor.device)


def tensor_masks(
    tensors: Mapping[str, torch.Tensor],
    keeps: Iterable[tuple[Group, torch.Tensor | np.ndarray]],
    axis_of: AxisOf = identity_axis,
) -> dict[str, torch.Tensor]:
    """Per SOURCE tensor, the AND of its members' masks over every group (a tensor may serve several)."""
    out: dict[str, torch.Tensor] = {}
    for group, keep in keeps:
        for m in group.sources:
            mask = member_mask(m, keep, tensors[m.initializer], axis_of)
            out[m.initializer] = mask if m.initializer not in out else out[m.initializer] & mask
    return out


def apply_masks(tensors: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor]) -> None:
    """Zero, in place, the entries of ``tensors[name]`` where ``masks[name]`` is False (exact zeros)."""
    with torch.no_grad():
        for name, mask in masks.items():
            tensors[name].masked_fill_(~mask, 0.0)


def project(
    tensors: Mapping[str, torch.Tensor], group: Group, k: int, axis_of: AxisOf = identity_axis
) -> dict[str, torch.Tensor]:
    """Z = Π_{S_k}(T) for one group: a new tensor for each SOURCE member, the k strongest channels kept."""
    z, _ = project_groups(tensors, [(group, k)], axis_of)
    return z


def project_groups(
    tensors: Mapping[str, torch.Tensor],
    groups: Iterable[tuple[Group, int]],
    axis_of: AxisOf = identity_axis,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Joint projection for groups whose SOURCE slices are disjoint: ``(Z by tensor name, keep by group)``.

    With disjoint slices the constraint sets act on separate coordinates, so the joint projection is the
    product of the per-group projections; every group's norms are taken from the input ``tensors``.
    """
    groups = list(groups)
    keeps = {g.name: topk_keep(group_norms(tensors, g, axis_of), k, g.cover_sets) for g, k in groups}
    masks = tensor_masks(tensors, [(g, keeps[g.name]) for g, _ in groups], axis_of)
    z = {name: tensors[name].detach().masked_fill(~mask, 0.0) for name, mask in masks.items()}
    return z, keeps
