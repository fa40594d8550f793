"""The channel-rule registry: one handler per op family, keyed by (domain, op type, since-opset).

A handler answers two questions about a node:

* ``source(ctx, node)``: does this node *produce* a prunable channel dimension (a Conv's filters, a
  Gemm's output units)? If so, which tensors hold those channels (SOURCE members) and which output
  tensor carries them.
* ``propagate(ctx, node, port, flow)``: channels of a group arrive at input ``port`` of this node along
  ``flow.axis``. The handler returns members to slice (a consumer's input-channel weights), flows that
  carry the channels on (pass-through ops), or a :class:`Stop` with the reason the channels must stay.

A node whose op has no handler stops propagation: the group reaching it is kept. Conservative by
construction: only rules that exist can allow a removal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import onnx

from ..plan import IDENTITY, IndexMap, Member, ShapeEdit
from .index import GraphIndex


@dataclass(frozen=True)
class Flow:
    """Channels of a group travelling in ``tensor`` along ``axis``; channel c owns ``index_map(c)``."""

    tensor: str
    axis: int
    index_map: IndexMap = IDENTITY


@dataclass
class Forward:
    """The node passes the channels on (and may add members, e.g. a BatchNormalization's scale/shift)."""

    flows: list[Flow]
    members: list[Member] = field(default_factory=list)
    shape_edits: list[ShapeEdit] = field(default_factory=list)


@dataclass
class Consume:
    """The channels end here: the node's matching input slices are removed with them."""

    members: list[Member] = field(default_factory=list)
    shape_edits: list[ShapeEdit] = field(default_factory=list)


@dataclass
class Stop:
    reason: str


Outcome = Forward | Consume | Stop


@dataclass
class Source:
    """A node that produces ``channels`` prunable channels carried by ``flow``."""

    channels: int
    members: list[Member]
    flow: Flow


class Handler:
    """Base handler: not a source, and stops every flow. Subclasses override what they know."""

    def source(self, ctx: GraphIndex, node: onnx.NodeProto) -> Source | Stop | None:
        return None

    def propagate(self, ctx: GraphIndex, node: onnx.NodeProto, port: int, flow: Flow) -> Outcome:
        return Stop(f"no channel rule for {node.op_type} (node {node.name!r})")


@dataclass(frozen=True, order=True)
class Key:
    domain: str
    op_type: str
    since_version: int


class HandlerRegistry:
    def __init__(self) -> None:
        self._handlers: dict[Key, Handler] = {}

    def register(self, op_type: str, handler: Handler, domain: str = "", since_version: int = 1) -> None:
        key = Key(domain, op_type, since_version)
        if key in self._handlers:
            raise ValueError(f"a handler for {key} is already registered: {self._handlers[key]!r}")
        self._handlers[key] = handler

    def lookup(self, op_type: str, domain: str = "", opset: int = 10**6) -> Handler | None:
        """The handler of the newest registered version <= ``opset``; None when the op has no rule."""
        best: tuple[int, Handler] | None = None
        for key, h in self._handlers.items():
            matches = key.domain == domain and key.op_type == op_type and key.since_version <= opset
            if matches and (best is None or key.since_version > best[0]):
                best = (key.since_version, h)
        return best[1] if best else None

    def require(self, op_type: str, domain: str = "", opset: int = 10**6) -> Handler:
        h = self.lookup(op_type, domain, opset)
        if h is None:
            known = sorted({k.op_type for k in self._handlers if k.domain == domain})
            raise KeyError(f"no channel rule for {domain or 'ai.onnx'}::{op_type}; rules exist for {known}")
        return h

    def known_ops(self) -> list[str]:
        return sorted({k.op_type for k in self._handlers})


REGISTRY = HandlerRegistry()


def register(
    *op_types: str, domain: str = "", since_version: int = 1
) -> Callable[[type[Handler]], type[Handler]]:
    """Class decorator: register one instance of the handler for each op type."""

    def wrap(cls: type[Handler]) -> type[Handler]:
        inst = cls()
        for op in op_types:
            REGISTRY.register(op, inst, domain=domain, since_version=since_version)
        return cls

    return wrap
