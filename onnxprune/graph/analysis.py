"""Find the pruning groups of a graph: plan before anything is changed.

For every node whose handler says it produces channels (Conv filters, Gemm units), follow the tensor
carrying those channels through the registry's rules until every path ends in a consumer that absorbs
them (next Conv, Gemm, MatMul) or in a :class:`Stop`. A group is prunable only when every path ended
in a consumer and each member initializer is used by the group's own nodes alone.

Preconditions: the model is normalized (:func:`onnxprune.graph.load.normalize`): named nodes, weights as
initializers. Postcondition: the plan names every member by initializer; nothing in the model changed.
"""

from __future__ import annotations

from collections.abc import Sequence

import onnx

from ..plan import Group, Member, PruningPlan, ShapeEdit
from . import handlers  # noqa: F401  (registers the channel rules)
from .index import GraphIndex
from .registry import REGISTRY, Consume, Forward, HandlerRegistry, Source, Stop
from .shapes import static_shapes


def analyze(
    model: onnx.ModelProto,
    input_shape: Sequence[int],
    registry: HandlerRegistry = REGISTRY,
) -> PruningPlan:
    """The pruning plan of ``model`` with its first input of shape ``input_shape`` (batch included)."""
    ctx = GraphIndex(model, static_shapes(model, tuple(input_shape)))
    groups = []
    for node in model.graph.node:
        handler = registry.lookup(node.op_type, node.domain, ctx.opset(node.domain))
        if handler is None:
            continue
        src = handler.source(ctx, node)
        if src is None:
            continue
        if isinstance(src, Stop):
            groups.append(
                Group(node.output[0], node.name, node.op_type, _channels_hint(ctx, node), reason=src.reason)
            )
            continue
        groups.append(_follow(ctx, registry, node, src))
    return PruningPlan(groups)


def _channels_hint(ctx: GraphIndex, node: onnx.NodeProto) -> int:
    shape = ctx.shape(node.output[0])
    return shape[1] if shape and len(shape) > 1 else 0


def _follow(ctx: GraphIndex, registry: HandlerRegistry, node: onnx.NodeProto, src: Source) -> Group:
    group = Group(node.output[0], node.name, node.op_type, src.channels, members=list(src.members))
    stack = [src.flow]
    seen: set[str] = set()
    while stack and group.reason is None:
        flow = stack.pop()
        if flow.tensor in seen:
            continue
        seen.add(flow.tensor)
        group.tensors.append(flow.tensor)
        if flow.tensor in ctx.outputs:
            group.reason = f"its channels reach the graph output {flow.tensor!r}"
            break
        for user, port in ctx.users(flow.tensor):
            handler = registry.lookup(user.op_type, user.domain, ctx.opset(user.domain))
            outcome = (
                handler.propagate(ctx, user, port, flow)
                if handler is not None
                else Stop(f"no channel rule for {user.op_type} (node {user.name!r})")
            )
            if isinstance(outcome, Stop):
                group.reason = outcome.reason
                break
            group.members.extend(outcome.members)
            group.shape_edits.extend(outcome.shape_edits)
            if isinstance(outcome, Forward):
                stack.extend(outcome.flows)
            elif isinstance(outcome, Consume):
                group.consumers.append(user.name)
    if group.reason is None:
        group.reason = _shared_initializer(ctx, group.members, group.shape_edits)
    return group


def _shared_initializer(ctx: GraphIndex, members: list[Member], edits: list[ShapeEdit]) -> str | None:
    """Slicing an initializer that other nodes also read would change those nodes too."""
    owners: dict[str, set[str]] = {}
    items: list[Member | ShapeEdit] = [*members, *edits]
    for item in items:
        owners.setdefault(item.initializer, set()).add(item.node)
    for init, nodes in owners.items():
        users = {n.name for n, _ in ctx.users(init)}
        if users - nodes:
            return f"initializer {init!r} is shared with node {sorted(users - nodes)[0]!r}"
        if init in ctx.outputs:
            return f"initializer {init!r} is a graph output"
    return None
