"""The pruning plan: groups of coupled (initializer, axis, index map) members.

A *group* is one set of channels that must be kept or removed together. Removing channel ``c`` of a
group removes, from every member, the indices ``member.index_map.indices([c])`` along ``member.axis``.

Members have one of two roles:

* ``SOURCE``: the tensors that *produce* the channel (a Conv filter ``W[f]``, its bias ``b[f]``, and the
  BatchNormalization scale/shift that follow). Their values make the channel non-zero, so the masked
  model zeroes them, and the group norm used by the projection is taken over all of them together.
* ``DEPENDENT``: tensors that are only sliced (BatchNormalization mean/var, the input-channel slices
  of consumers). Once the sources are zero the channel carries exact zeros, so dropping the matching
  slice of a consumer changes nothing: this is why pruned == masked holds exactly.

Shape constants (a Reshape target that flattens channels into features) are rewritten through
:class:`ShapeEdit`. This module is shared by the ONNX and torch sides: it depends on numpy only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum

import numpy as np


@dataclass(frozen=True)
class IndexMap:
    """Maps channel ``c`` to the indices ``offset + c*inner + i + o*period`` (``i < inner``, ``o < outer``).

    * identity (a Conv's output channel in its weight's axis 0): ``IndexMap()``;
    * NCHW Flatten feeding a Gemm, channel ``c`` owns features ``[c*H*W, (c+1)*H*W)``: ``inner=H*W``;
    * channels-last flatten, channel ``c`` owns features ``c + o*C``: ``outer=H*W, period=C``.
    """

    offset: int = 0
    inner: int = 1
    outer: int = 1
    period: int = 0

    def indices(self, channels: Iterable[int]) -> np.ndarray:
        ch = np.asarray(list(channels), dtype=np.int64).reshape(-1, 1, 1)
        i = np.arange(self.inner, dtype=np.int64).reshape(1, 1, -1)
        o = np.arange(self.outer, dtype=np.int64).reshape(1, -1, 1)
        return (self.offset + ch * self.inner + i + o * self.period).reshape(-1)

    def table(self, channels: int) -> np.ndarray:
        """(channels, inner*outer) array: row c lists the indices owned by channel c."""
        return self.indices(range(channels)).reshape(channels, self.inner * self.outer)

    @property
    def per_channel(self) -> int:
        return self.inner * self.outer


IDENTITY = IndexMap()
"""Channel c <-> index c."""


class Role(StrEnum):
    SOURCE = "source"
    DEPENDENT = "dependent"


@dataclass(frozen=True)
class Member:
    """One tensor slice tied to a group: ``initializer[..., index_map(c), ...]`` along ``axis``."""

    initializer: str
    axis: int
    role: Role
    node: str
    index_map: IndexMap = IDENTITY


@dataclass(frozen=True)
class ShapeEdit:
    """An int64 shape constant whose entry ``position`` shrinks by ``per_channel`` per removed channel."""

    initializer: str
    position: int
    per_channel: int
    node: str


@dataclass
class Group:
    """Channels that are kept or removed together; ``name`` is the tensor that carries them."""

    name: str
    source_node: str
    op_type: str
    channels: int
    members: list[Member] = field(default_factory=list)
    shape_edits: list[ShapeEdit] = field(default_factory=list)
    consumers: list[str] = field(default_factory=list)
    tensors: list[str] = field(default_factory=list)  # activations that carry the channels
    reason: str | None = None  # why the group cannot be pruned; None when it can

    @property
    def prunable(self) -> bool:
        return self.reason is None

    @property
    def sources(self) -> list[Member]:
        return [m for m in self.members if m.role is Role.SOURCE]

    @property
    def dependents(self) -> list[Member]:
        return [m for m in self.members if m.role is Role.DEPENDENT]


@dataclass
class PruningPlan:
    groups: list[Group]

    def __post_init__(self) -> None:
        names = [g.name for g in self.groups]
        if len(set(names)) != len(names):
            raise ValueError("duplicate group names in plan")

    @property
    def prunable(self) -> list[Group]:
        return [g for g in self.groups if g.prunable]

    def group(self, name: str) -> Group:
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(f"no group {name!r}; groups: {[g.name for g in self.groups]}")

    def source_initializers(self) -> list[str]:
        return sorted({m.initializer for g in self.prunable for m in g.sources})

    def to_dict(self) -> dict:
        return {"groups": [_group_dict(g) for g in self.groups]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def format(self) -> str:
        """Human-readable listing: one line per group, then its members."""
        lines = []
        for g in self.groups:
            status = "prunable" if g.prunable else f"kept: {g.reason}"
            lines.append(f"group {g.name!r} ({g.op_type} {g.source_node!r}, {g.channels} channels): {status}")
            for m in g.members:
                im = m.index_map
                mapping = "" if im == IDENTITY else f" map={asdict(im)}"
                lines.append(f"    {m.role.value:9s} {m.initializer} axis={m.axis}{mapping} (node {m.node})")
            for s in g.shape_edits:
                lines.append(
                    f"    shape     {s.initializer}[{s.position}] -= {s.per_channel}/channel (node {s.node})"
                )
        return "\n".join(lines)


def _group_dict(g: Group) -> dict:
    d = asdict(g)
    d["prunable"] = g.prunable
    for m in d["members"]:
        m["role"] = m["role"].value if isinstance(m["role"], Role) else m["role"]
    return d


Masks = Mapping[str, np.ndarray]
"""Group name -> boolean keep-vector of length ``group.channels``."""


def keep_count(channels: int, ratio: float) -> int:
    """Channels kept when removing ``ratio`` of ``channels``: rounded, at least one."""
    return max(1, min(channels, round(channels * (1.0 - ratio))))


def member_keep_indices(member: Member, keep: np.ndarray, axis_len: int) -> np.ndarray:
    """Indices along ``member.axis`` that survive when the group keeps ``keep`` (bool per channel).

    Indices the index map does not cover (another group's channels, or constant offsets) are kept.
    """
    removed = member.index_map.indices(np.flatnonzero(~keep))
    alive = np.ones(axis_len, dtype=bool)
    alive[removed] = False
    return np.flatnonzero(alive)


def validate_masks(plan: PruningPlan, masks: Masks) -> None:
    for name, keep in masks.items():
        g = plan.group(name)
        if keep.dtype != np.bool_ or keep.shape != (g.channels,):
            raise ValueError(f"mask of group {name!r} must be bool of shape ({g.channels},)")
        if not keep.any():
            raise ValueError(f"mask of group {name!r} removes every channel")
        if not g.prunable and not keep.all():
            raise ValueError(f"group {name!r} is not prunable ({g.reason}) but its mask removes channels")


def full_masks(groups: Sequence[Group]) -> dict[str, np.ndarray]:
    return {g.name: np.ones(g.channels, dtype=bool) for g in groups}
