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

Channel-wise pruning (:meth:`Group.as_channel`) swaps the roles: the input-channel slices of the one
Conv/Gemm that reads the channels become the SOURCE members, the producer's filters DEPENDENT ones.

Shape constants (a Reshape target that flattens channels into features) are rewritten through
:class:`ShapeEdit`. This module is shared by the ONNX and torch sides: it depends on numpy only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
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

    def positions(self, axis_len: int, channels: int) -> np.ndarray:
        """(axis_len,) channel owning each index, -1 where none of the ``channels`` does."""
        out = np.full(axis_len, -1, dtype=np.int64)
        table = self.table(channels)
        out[table.reshape(-1)] = np.repeat(np.arange(channels), table.shape[1])
        return out

    def owned(self, channels: int) -> np.ndarray:
        """The channels (of ``channels``) that own at least one index."""
        return np.arange(channels) if self.per_channel else np.zeros(0, dtype=np.int64)

    def describe(self) -> str:
        return (
            ""
            if self == IDENTITY
            else f" map=(offset={self.offset}, inner={self.inner}, outer={self.outer}, period={self.period})"
        )


IDENTITY = IndexMap()
"""Channel c <-> index c."""


@dataclass(frozen=True)
class SlotMap:
    """Explicit map: ``slots[i]`` is the channel owning index ``i`` of the axis, -1 for none.

    What the analysis emits when channels are permuted (channel shuffle), interleaved (Concat then
    Reshape) or own several indices (a grouped Conv's whole conv-group). A channel may own any number
    of indices; the indices of distinct channels are disjoint by construction.
    """

    slots: tuple[int, ...]

    def indices(self, channels: Iterable[int]) -> np.ndarray:
        arr = np.asarray(self.slots, dtype=np.int64)
        return np.flatnonzero(np.isin(arr, np.asarray(list(channels), dtype=np.int64)))

    def positions(self, axis_len: int, channels: int) -> np.ndarray:
        if len(self.slots) != axis_len:
            raise ValueError(f"slot map of length {len(self.slots)} applied to an axis of length {axis_len}")
        return np.asarray(self.slots, dtype=np.int64)

    def owned(self, channels: int) -> np.ndarray:
        arr = np.asarray(self.slots, dtype=np.int64)
        return np.unique(arr[(arr >= 0) & (arr < channels)])

    @property
    def per_channel(self) -> int:
        counts = np.bincount(np.asarray([s for s in self.slots if s >= 0], dtype=np.int64))
        return int(counts.max()) if counts.size else 0

    def describe(self) -> str:
        head = ",".join(map(str, self.slots[:12]))
        return f" slots=[{head}{',...' if len(self.slots) > 12 else ''}] (len {len(self.slots)})"


ChannelMap = IndexMap | SlotMap


def channel_map(slots: np.ndarray, channels: int) -> ChannelMap:
    """The compact form of a slot vector over a group of ``channels``: an affine :class:`IndexMap` when one
    fits (it then covers every channel of the group), else a SlotMap."""
    slots = np.asarray(slots, dtype=np.int64)
    owned = slots[slots >= 0]
    if owned.size:
        counts = np.bincount(owned, minlength=channels)
        if len(counts) == channels and counts.min() == counts.max():
            per = int(counts[0])
            first = int(np.flatnonzero(slots >= 0)[0])
            zero = np.flatnonzero(slots == 0)
            period = int(zero[1] - zero[0]) if per > 1 else 0
            for cand in (IndexMap(first, per, 1, 0), IndexMap(first, 1, per, period)):
                top = int(cand.indices(range(channels)).max())
                if top < len(slots) and np.array_equal(cand.positions(len(slots), channels), slots):
                    return cand
    return SlotMap(tuple(int(s) for s in slots))


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
    index_map: ChannelMap = IDENTITY


@dataclass(frozen=True)
class ShapeEdit:
    """A count that shrinks with the group: entry ``position`` of an int64 initializer (a Reshape target,
    Split sizes, Slice ends), or of node ``node``'s integer attribute when ``attribute`` is set (a grouped
    Conv's ``group``, an old Split's ``split``). It decreases by the number of indices of ``index_map``
    owned by removed channels; ``per_channel`` is that number for one channel (for display)."""

    initializer: str
    position: int
    per_channel: int
    node: str
    index_map: ChannelMap | None = None
    attribute: str | None = None

    def amount(self, removed: np.ndarray) -> int:
        if self.index_map is None:
            return self.per_channel * len(removed)
        return len(self.index_map.indices(removed))


@dataclass(frozen=True)
class Fold:
    """A removed channel that is a non-zero constant ``v`` in the masked model (bias after Sigmoid, Clip with
    min > 0, ...) reaching a consumer whose output is affine in it: its contribution moves into the
    consumer's bias when the channel is removed.

    * Conv without padding (``op="Conv"``): ``b'[o] = b[o] + Σ_p v_p Σ_{kh,kw} W[o, p, kh, kw]`` — exact
      because every output pixel sees the constant through the whole kernel (no zero border);
    * Gemm (``op="Gemm"``): ``C'[n] = C[n] + (alpha/beta) Σ_p v_p opB[p, n]``.

    ``weight`` is read along ``axis`` (the input-channel axis); ``values[p]`` is ``v`` at index ``p`` of that
    axis; ``bias`` is None when the consumer has none (surgery then adds one, named ``new_bias``).
    """

    node: str
    op: str
    weight: str
    axis: int
    bias: str | None
    new_bias: str
    index_map: ChannelMap
    values: tuple[float, ...]
    scale: float = 1.0


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
    source_nodes: list[str] = field(default_factory=list)  # every node producing the channels (coupled)
    folds: list[Fold] = field(default_factory=list)
    # disjoint channel sets of which at least one must stay: all of a Reshape entry's or Split part's
    # indices, whose removal would make that count 0 (a Reshape reads 0 as "copy the input dim")
    cover_sets: list[tuple[int, ...]] = field(default_factory=list)
    # channel-wise pruning (see :meth:`as_channel`): the one Conv/Gemm whose input channels these are,
    # its op type, and why channel-wise pruning is refused (None when it is allowed)
    channel_node: str | None = None
    channel_op: str | None = None
    channel_reason: str | None = "not analyzed"
    kind: str = "filter"  # which slices the projection looks at: "filter" (sources) or "channel"

    def __post_init__(self) -> None:
        if not self.source_nodes:
            self.source_nodes = [self.source_node]

    @property
    def prunable(self) -> bool:
        return self.reason is None

    @property
    def sources(self) -> list[Member]:
        return [m for m in self.members if m.role is Role.SOURCE]

    @property
    def dependents(self) -> list[Member]:
        return [m for m in self.members if m.role is Role.DEPENDENT]

    @property
    def channel_prunable(self) -> bool:
        return self.channel_reason is None and self.channel_node is not None

    def as_channel(self) -> Group:
        """The same channels pruned *channel-wise*: by the input-channel slices ``W[:, c]`` of the one
        Conv/Gemm that reads them (:attr:`channel_node`) instead of by the filters that produce them.

        Those slices become the SOURCE members (the projection's groups, zeroed in the masked model);
        the former sources (filters, biases, BN scale/shift) become DEPENDENT: surgery still removes them,
        and since the consumer's slices are zero, nothing the removed channel carries reaches any output,
        so pruned == masked holds exactly. Folds are dropped (a zero slice contributes no constant).
        """
        if self.kind == "channel":
            return self
        if not self.channel_prunable:
            raise ValueError(f"group {self.name!r} cannot be pruned channel-wise: {self.channel_reason}")
        members = [
            replace(m, role=Role.SOURCE if self._consumer_slice(m) else Role.DEPENDENT) for m in self.members
        ]
        return replace(self, members=members, folds=[], kind="channel")

    def _consumer_slice(self, m: Member) -> bool:
        return m.node == self.channel_node and m.role is Role.DEPENDENT


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

    @property
    def channel_prunable(self) -> list[Group]:
        return [g for g in self.groups if g.channel_prunable]

    def with_channels(self, names: Iterable[str]) -> PruningPlan:
        """This plan with the groups ``names`` pruned channel-wise (:meth:`Group.as_channel`)."""
        chosen = set(names)
        return PruningPlan([g.as_channel() if g.name in chosen else g for g in self.groups])

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
            coupled = f", coupled with {len(g.source_nodes) - 1} more" if len(g.source_nodes) > 1 else ""
            lines.append(
                f"group {g.name!r} ({g.op_type} {g.source_node!r}{coupled}, {g.channels} channels): {status}"
            )
            lines.append(f"    channel-wise: {_channel_text(g)}")
            for m in g.members:
                mapping = m.index_map.describe()
                lines.append(f"    {m.role.value:9s} {m.initializer} axis={m.axis}{mapping} (node {m.node})")
            for s in g.shape_edits:
                target = f"{s.node}.{s.attribute}" if s.attribute else s.initializer
                lines.append(
                    f"    shape     {target}[{s.position}] -= {s.per_channel}/channel (node {s.node})"
                )
            for f in g.folds:
                lines.append(f"    fold      {f.weight} axis={f.axis} -> bias of {f.op} {f.node!r}")
        return "\n".join(lines)


def _channel_text(g: Group) -> str:
    if g.channel_prunable:
        return f"input channels of {g.channel_op} {g.channel_node!r}"
    return f"no ({g.channel_reason})"


def _map_dict(im: ChannelMap | None) -> dict | None:
    if im is None:
        return None
    if isinstance(im, SlotMap):
        return {"slots": list(im.slots)}
    return asdict(im)


def _group_dict(g: Group) -> dict:
    d = {
        "name": g.name,
        "source_node": g.source_node,
        "source_nodes": list(g.source_nodes),
        "op_type": g.op_type,
        "channels": g.channels,
        "prunable": g.prunable,
        "reason": g.reason,
        "consumers": list(g.consumers),
        "tensors": list(g.tensors),
        "members": [
            {
                "initializer": m.initializer,
                "axis": m.axis,
                "role": m.role.value,
                "node": m.node,
                "index_map": _map_dict(m.index_map),
            }
            for m in g.members
        ],
        "shape_edits": [
            {**{k: v for k, v in asdict(e).items() if k != "index_map"}, "index_map": _map_dict(e.index_map)}
            for e in g.shape_edits
        ],
        "folds": [{"node": f.node, "op": f.op, "weight": f.weight, "bias": f.bias} for f in g.folds],
        "cover_sets": [list(c) for c in g.cover_sets],
        "kind": g.kind,
        "channel_node": g.channel_node,
        "channel_op": g.channel_op,
        "channel_prunable": g.channel_prunable,
        "channel_reason": g.channel_reason,
    }
    return d


Masks = Mapping[str, np.ndarray]
"""Group name -> boolean keep-vector of length ``group.channels``."""


TIE = 1e-9  # products like 10 * (1 - 0.85) = 1.5000000000000002 are ties too


def keep_count(channels: int, ratio: float) -> int:
    """Channels kept when removing ``ratio`` of ``channels``: ``C·(1 − R)`` rounded to the nearest count,
    a tie to the smaller one (the count that removes at least ``R``), at least one.

    Ties matter for coarse units: an attention block of 3 heads at ``filter:0.5`` keeps 1 head (removing
    1/3 would miss the request, 2/3 meets it), 5 channels keep 2."""
    return max(1, min(channels, math.floor(channels * (1.0 - ratio) + 0.5 - TIE)))


def member_keep_indices(member: Member, keep: np.ndarray, axis_len: int) -> np.ndarray:
    """Indices along ``member.axis`` that survive when the group keeps ``keep`` (bool per channel).

    Indices the index map does not cover (another group's channels, or constant offsets) are kept.
    """
    removed = member.index_map.indices(np.flatnonzero(~keep))
    if len(removed) and (removed.min() < 0 or removed.max() >= axis_len):
        raise ValueError(f"index map of {member.initializer!r} leaves the axis of length {axis_len}")
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
        for cover in g.cover_sets:
            if not keep[list(cover)].any():
                raise ValueError(
                    f"mask of group {name!r} removes all of channels {list(cover)[:8]}, "
                    + "which a shape entry counts"
                )


def full_masks(groups: Sequence[Group]) -> dict[str, np.ndarray]:
    return {g.name: np.ones(g.channels, dtype=bool) for g in groups}
