"""Find the pruning groups of a graph: plan before anything is changed.

One forward pass in graph order: each node's handler maps the channel labels of its inputs to its outputs,
creates elements (Conv filters, Gemm units), and reports ties, stops and member slices (see
:mod:`onnxprune.graph.registry`). Then:

1. elements tied together form one *channel* (union-find): a residual Add makes filter ``c`` of both
   branches one channel; a grouped Conv makes a whole conv-group one channel;
2. channels that share a source node form one *group* (all filters of a Conv, plus every Conv tied to it);
3. a group is prunable unless one of its elements was stopped, or an initializer it slices is also read by
   a node outside the group;
4. a prunable group can also be pruned *channel-wise* (by the input-channel slices ``W[:, c]`` of the node
   that reads it, :meth:`~onnxprune.plan.Group.as_channel`) when exactly one node reads its channels
   without passing them on, that node is a Conv/Gemm reading them through its weight's input axis, and
   every channel reaches that weight; otherwise ``channel_reason`` says why not.

Preconditions: the model is normalized (:func:`onnxprune.graph.load.normalize`): named nodes, weights as
initializers, topologically sorted. Postcondition: the plan names every member by initializer; nothing in
the model changed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

import numpy as np
import onnx

from ..plan import Fold, Group, Member, PruningPlan, ShapeEdit, SlotMap, channel_map
from . import handlers  # noqa: F401  (registers the channel rules)
from .index import GraphIndex, outer_scope_reads
from .registry import REGISTRY, ChannelSpace, Effect, HandlerRegistry, Stop
from .shapes import ShapeArg, static_shapes
from .weights import WeightTarget, weight_targets


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = np.arange(n, dtype=np.int64)

    def find(self, x: int) -> int:
        root = x
        while self.parent[root] != root:
            root = int(self.parent[root])
        while self.parent[x] != root:
            self.parent[x], x = root, int(self.parent[x])
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)  # the smaller id is the root: deterministic order


def analyze(
    model: onnx.ModelProto,
    input_shape: ShapeArg,
    registry: HandlerRegistry = REGISTRY,
) -> PruningPlan:
    """The pruning plan of ``model`` at ``input_shape``: the first input's shape (batch included), or a
    mapping input name -> shape for every data input (see :mod:`onnxprune.graph.inputs`)."""
    shape = input_shape if isinstance(input_shape, Mapping) else tuple(input_shape)
    ctx = GraphIndex(model, static_shapes(model, shape))
    space = ChannelSpace()
    trace = _forward(ctx, registry, space)
    return PruningPlan(_groups(ctx, space, trace))


def _forward(ctx: GraphIndex, registry: HandlerRegistry, space: ChannelSpace) -> Effect:
    trace = Effect()  # the whole graph's effect, in element ids
    for node in ctx.graph.node:
        inputs = [trace.outputs.get(i) if i else None for i in node.input]
        for name in outer_scope_reads(node):  # If/Loop/Scan bodies reading a tensor without an input
            ch = trace.outputs.get(name)
            if ch is not None:
                trace.stops.append(
                    (ch.elements(), f"{node.op_type} {node.name!r} reads {name!r} in a subgraph")
                )
        handler = registry.lookup(node.op_type, node.domain, ctx.opset(node.domain))
        outcome = (
            handler.transfer(ctx, node, inputs, space)
            if handler is not None
            else Stop(f"no channel rule for {node.op_type} (node {node.name!r})")
        )
        if isinstance(outcome, Stop):
            for ch in inputs:
                if ch is not None:
                    trace.stops.append((ch.elements(), outcome.reason))
            continue
        trace.absorb(outcome)
    for out in ctx.outputs:
        ch = trace.outputs.get(out)
        if ch is not None:
            trace.stops.append((ch.elements(), f"its channels reach the graph output {out!r}"))
    return trace


def _numbering(space: ChannelSpace, trace: Effect) -> tuple[np.ndarray, np.ndarray, dict[int, int]]:
    """Element -> its group id, element -> its channel's index in the group, group id -> channels.

    Tied elements are one channel (union-find over the ties); a source's channels belong to one group."""
    n = space.size
    channels_uf = _UnionFind(n)
    for a, b in trace.ties:
        for x, y in zip(a.tolist(), b.tolist(), strict=True):
            if x >= 0 and y >= 0:
                channels_uf.union(x, y)
    channel_of = np.array([channels_uf.find(e) for e in range(n)], dtype=np.int64)
    # a source's channels belong to one group: union the channels of every batch
    groups_uf = _UnionFind(n)
    for _, first, count in space.batches:
        roots = channel_of[first : first + count]
        for r in roots[1:].tolist():
            groups_uf.union(int(roots[0]), r)
    group_of = np.array([groups_uf.find(int(c)) for c in channel_of], dtype=np.int64)

    # number the channels of each group in order of their smallest element
    index_in_group = np.full(n, -1, dtype=np.int64)
    counts: dict[int, int] = defaultdict(int)
    for e in range(n):
        if channel_of[e] == e:
            index_in_group[e] = counts[int(group_of[e])]
            counts[int(group_of[e])] += 1
    chan = index_in_group[channel_of] if n else index_in_group  # element -> channel index in its group
    return group_of, chan, counts


def _groups(ctx: GraphIndex, space: ChannelSpace, trace: Effect) -> list[Group]:
    group_of, chan, counts = _numbering(space, trace)
    groups: dict[int, Group] = {}
    for node_name, first, count in space.batches:
        if count == 0:
            continue
        gid = int(group_of[first])
        if gid not in groups:
            node = ctx.nodes[node_name]
            groups[gid] = Group(node.output[0], node.name, node.op_type, counts[gid], source_nodes=[])
        if node_name not in groups[gid].source_nodes:
            groups[gid].source_nodes.append(node_name)

    def split(ids: np.ndarray) -> dict[int, np.ndarray]:
        """Slot vectors per group: index i -> channel of group g, -1 elsewhere."""
        out: dict[int, np.ndarray] = {}
        valid = ids >= 0
        gids = np.where(valid, group_of[np.where(valid, ids, 0)], -1)
        for g in np.unique(gids[valid]).tolist():
            out[int(g)] = np.where(gids == g, chan[np.where(valid, ids, 0)], -1)
        return out

    for m in trace.members:
        for gid, slots in split(m.ids).items():
            member = Member(m.initializer, m.axis, m.role, m.node, channel_map(slots, counts[gid]))
            if member not in groups[gid].members:
                groups[gid].members.append(member)
    for edit in trace.edits:
        for gid, slots in split(edit.ids).items():
            cmap = channel_map(slots, counts[gid])
            per = int(np.bincount(slots[slots >= 0]).max())
            groups[gid].shape_edits.append(
                ShapeEdit(edit.initializer, edit.position, per, edit.node, cmap, edit.attribute)
            )
    for f in trace.folds:
        for gid, slots in split(f.ids).items():
            vals = tuple(float(v) if s >= 0 else 0.0 for v, s in zip(f.values, slots, strict=True))
            cmap = channel_map(slots, counts[gid])
            new_bias = f"{f.node}.folded_bias"
            groups[gid].folds.append(
                Fold(f.node, f.op, f.weight, f.axis, f.bias, new_bias, cmap, vals, f.scale)
            )
    for tensor, ch in trace.outputs.items():
        for gid in split(ch.ids.ravel()):
            groups[gid].tensors.append(tensor)
    for ids, reason in trace.stops:
        for gid in np.unique(group_of[ids]).tolist():
            if groups[int(gid)].reason is None:
                groups[int(gid)].reason = reason

    out = []
    for group in groups.values():
        group.cover_sets = _cover_sets(group)
        group.consumers = sorted({m.node for m in group.dependents} - set(group.source_nodes))
        if group.reason is None:
            group.reason = _unsourced(group) or _shared_initializer(ctx, group)
        out.append(group)
    targets = {t.node: t for t in weight_targets(ctx.model)}
    for group in out:
        _channel_consumer(ctx, group, targets)
    return out


def _channel_consumer(ctx: GraphIndex, group: Group, targets: Mapping[str, WeightTarget]) -> None:
    """Set ``group.channel_node``/``channel_op``, or ``channel_reason`` when channel-wise pruning is refused.

    A *reader* is a node that slices a DEPENDENT member of the group and either does not pass the channels
    on or produces channels of its own that are tied to them (a Conv inside a residual block), or that
    folds them. A BatchNormalization's statistics, a per-channel Mul or a depthwise Conv on the way pass
    the channels on and are sliced with the producer: they are not readers. Channel-wise pruning needs
    exactly one reader, a Conv/Gemm reading them through its weight's input axis only, at every channel:
    then zeroing that weight's slices is all the masked model changes, and surgery may remove the
    producer's filters with them.
    """
    group.channel_node = group.channel_op = None
    if not group.prunable:
        group.channel_reason = group.reason
        return
    carried, producers = set(group.tensors), set(group.source_nodes)
    readers: dict[str, list[Member]] = {}
    for m in group.dependents:
        if m.node in producers or not carried.intersection(ctx.nodes[m.node].output):
            readers.setdefault(m.node, []).append(m)
    for f in group.folds:
        readers.setdefault(f.node, [])
    if not readers:
        group.channel_reason = "no Conv/Gemm reads the channels"
        return
    names = list(readers)
    if len(names) > 1:
        group.channel_reason = (
            f"the channels are also read by another consumer: {ctx.nodes[names[1]].op_type} {names[1]!r} "
            f"(besides {ctx.nodes[names[0]].op_type} {names[0]!r})"
        )
        return
    node, members = names[0], readers[names[0]]
    op = ctx.nodes[node].op_type
    target = targets.get(node)
    through_weight = target is not None and all(
        m.initializer == target.initializer and m.axis == target.input_axis for m in members
    )
    if target is None or not members or not through_weight:
        group.channel_reason = f"{op} {node!r} reads the channels (channel-wise needs a Conv/Gemm weight)"
        return
    owned = np.zeros(group.channels, dtype=bool)
    for m in members:
        owned[m.index_map.owned(group.channels)] = True
    if not owned.all():
        group.channel_reason = f"{op} {node!r} does not read channel {int(np.flatnonzero(~owned)[0])}"
        return
    group.channel_node, group.channel_op, group.channel_reason = node, op, None


def _cover_sets(group: Group) -> list[tuple[int, ...]]:
    """Channel sets that must each keep one channel: those owning every index a shape entry counts.

    Only sets that are a strict subset of the group matter (removing every channel is never allowed),
    a set containing another is dropped (implied), and the projection handles the remaining sets exactly
    when they are disjoint; a group whose sets still overlap is kept whole (reported)."""
    sets: list[set[int]] = []
    for e in group.shape_edits:
        slots = np.asarray(e.index_map.slots) if isinstance(e.index_map, SlotMap) else None
        if slots is None or (slots < 0).any():
            continue
        owned = set(np.unique(slots).tolist())
        if len(owned) < group.channels and owned not in sets:
            sets.append(owned)
    # a set containing another is implied by it (keeping one of the smaller keeps one of the larger)
    sets = [a for a in sets if not any(b < a for b in sets)]
    disjoint = all(not (a & b) for i, a in enumerate(sets) for b in sets[i + 1 :])
    if not disjoint:
        group.reason = group.reason or "shape entries count overlapping channel sets"
        return []
    return [tuple(sorted(s)) for s in sets]


def _unsourced(group: Group) -> str | None:
    owned = np.zeros(group.channels, dtype=bool)
    for m in group.sources:
        owned[m.index_map.owned(group.channels)] = True
    if not owned.all():
        return f"channel {int(np.flatnonzero(~owned)[0])} has no weights that produce it"
    return None


def _shared_initializer(ctx: GraphIndex, group: Group) -> str | None:
    """Slicing an initializer that other nodes also read would change those nodes too."""
    owners: dict[str, set[str]] = {}
    items: list[Member | ShapeEdit] = [*group.members, *[e for e in group.shape_edits if e.attribute is None]]
    for item in items:
        owners.setdefault(item.initializer, set()).add(item.node)
    for f in group.folds:
        if f.bias is not None:
            owners.setdefault(f.bias, set()).add(f.node)
    for init, nodes in owners.items():
        users = {n.name for n, _ in ctx.users(init)}
        if users - nodes:
            return f"initializer {init!r} is shared with node {sorted(users - nodes)[0]!r}"
        if init in ctx.outputs:
            return f"initializer {init!r} is a graph output"
    return None
