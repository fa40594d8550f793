"""The channel-rule registry: one handler per op family, keyed by (domain, op type, since-opset).

A handler's :meth:`Handler.transfer` sees a node and the :class:`~onnxprune.graph.channels.Channels` of
each input (None where no tracked channel arrives) and returns an :class:`Effect`:

* the labels of its outputs (pass-through ops move them, a Concat offsets them, a Reshape regroups them);
* new elements when it *produces* channels (a Conv's filters, a Gemm's units), with their SOURCE members;
* the initializer slices that go with arriving channels (a consumer's input-channel weights, a BN's
  statistics), shape constants to rewrite, biases to fold into;
* *ties* (two elements that must be removed together: a residual Add, an SE gate's Mul) and *stops*
  (elements that must stay, with the reason).

Returning :class:`Stop` stops every element that arrives. A node whose op has no handler does the same:
conservative by construction, only rules that exist can allow a removal.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx

from ..plan import Role
from .channels import Channels
from .index import GraphIndex


@dataclass(frozen=True)
class SlotMember:
    """An initializer slice whose index ``i`` along ``axis`` goes with element ``ids[i]`` (-1: none)."""

    initializer: str
    axis: int
    role: Role
    node: str
    ids: np.ndarray


@dataclass(frozen=True)
class SlotEdit:
    """An integer (initializer entry or node attribute) that drops one per removed index of ``ids``."""

    initializer: str
    position: int
    node: str
    ids: np.ndarray
    attribute: str | None = None


@dataclass(frozen=True)
class SlotFold:
    """Non-zero removed values reaching an affine consumer: see :class:`onnxprune.plan.Fold`."""

    node: str
    op: str
    weight: str
    axis: int
    bias: str | None
    ids: np.ndarray
    values: np.ndarray
    scale: float = 1.0


@dataclass
class Effect:
    outputs: dict[str, Channels] = field(default_factory=dict)
    members: list[SlotMember] = field(default_factory=list)
    ties: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    stops: list[tuple[np.ndarray, str]] = field(default_factory=list)
    edits: list[SlotEdit] = field(default_factory=list)
    folds: list[SlotFold] = field(default_factory=list)

    def absorb(self, other: Effect) -> None:
        """Add ``other``'s outputs, members, ties, stops, edits and folds to this one."""
        self.outputs.update(other.outputs)
        self.members += other.members
        self.ties += other.ties
        self.stops += other.stops
        self.edits += other.edits
        self.folds += other.folds

    def output(self, name: str, ch: Channels | None) -> Effect:
        if ch is not None:
            self.outputs[name] = ch
        return self

    def member(self, node: onnx.NodeProto, init: str, axis: int, role: Role, ids: np.ndarray) -> Effect:
        self.members.append(SlotMember(init, axis, role, node.name, np.asarray(ids, dtype=np.int64).ravel()))
        return self

    def tie(self, a: np.ndarray, b: np.ndarray) -> Effect:
        self.ties.append((np.asarray(a, dtype=np.int64).ravel(), np.asarray(b, dtype=np.int64).ravel()))
        return self

    def stop(self, ids: np.ndarray, reason: str) -> Effect:
        ids = np.asarray(ids, dtype=np.int64).ravel()
        if (ids >= 0).any():
            self.stops.append((ids[ids >= 0], reason))
        return self


@dataclass
class Stop:
    reason: str


Outcome = Effect | Stop


class ChannelSpace:
    """Allocates elements; remembers which node created each batch (one batch = one source's channels)."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, int, int]] = []  # (node, first id, count)
        self._next = 0

    def fresh(self, node: onnx.NodeProto, count: int) -> np.ndarray:
        ids = np.arange(self._next, self._next + count, dtype=np.int64)
        self.batches.append((node.name, self._next, count))
        self._next += count
        return ids

    @property
    def size(self) -> int:
        return self._next


class Handler:
    """Base handler: produces nothing and stops whatever arrives. Subclasses override what they know."""

    def transfer(
        self, ctx: GraphIndex, node: onnx.NodeProto, inputs: Sequence[Channels | None], space: ChannelSpace
    ) -> Outcome:
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
