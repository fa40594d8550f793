"""A read-only index over a graph: producers, consumers, initializers, static shapes, opset."""

from __future__ import annotations

from collections import defaultdict
from functools import cached_property

import numpy as np
import onnx
from onnx import helper, numpy_helper


class GraphIndex:
    def __init__(self, model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]]):
        self.model = model
        self.graph = model.graph
        self.shapes = shapes
        self.opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
        self.nodes = {n.name: n for n in self.graph.node}
        self.initializers = {t.name: t for t in self.graph.initializer}
        self.outputs = {o.name for o in self.graph.output}
        self.producer: dict[str, onnx.NodeProto] = {}
        consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = defaultdict(list)
        for n in self.graph.node:
            for o in n.output:
                if o:
                    self.producer[o] = n
            for port, i in enumerate(n.input):
                if i:
                    consumers[i].append((n, port))
        self.consumers = dict(consumers)
        self._arrays: dict[str, np.ndarray] = {}

    def opset(self, domain: str = "") -> int:
        return self.opsets.get(domain or "ai.onnx", 0)

    def is_initializer(self, name: str) -> bool:
        return name in self.initializers

    def array(self, name: str) -> np.ndarray:
        if name not in self._arrays:
            self._arrays[name] = numpy_helper.to_array(self.initializers[name])
        return self._arrays[name]

    def shape(self, name: str) -> tuple[int, ...] | None:
        return self.shapes.get(name)

    def users(self, name: str) -> list[tuple[onnx.NodeProto, int]]:
        return self.consumers.get(name, [])

    @cached_property
    def _attrs(self) -> dict[str, dict[str, object]]:
        return {n.name: {a.name: helper.get_attribute_value(a) for a in n.attribute} for n in self.graph.node}

    def attr(self, node: onnx.NodeProto, name: str, default: object = None) -> object:
        return self._attrs[node.name].get(name, default)

    def int_attr(self, node: onnx.NodeProto, name: str, default: int) -> int:
        v = self.attr(node, name, default)
        assert isinstance(v, int)
        return v


def outer_scope_reads(node: onnx.NodeProto) -> set[str]:
    """Names a node's subgraphs (If/Loop/Scan bodies) read from the enclosing graph."""
    reads: set[str] = set()
    for attr in node.attribute:
        graphs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
        for g in graphs:
            local = {i.name for i in g.input} | {t.name for t in g.initializer}
            for n in g.node:
                reads |= {i for i in n.input if i and i not in local} | outer_scope_reads(n)
                local |= set(n.output)
    return reads
