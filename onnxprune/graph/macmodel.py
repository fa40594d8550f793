"""Total MACs as a closed-form function of the kept channel count of every pruning group.

Every counted node of :mod:`onnxprune.graph.macs` costs a constant times the product of the lengths of
its weight's first two axes, and surgery changes nothing else about it:

* ``Conv``: ``N·Cout·H'·W' · (Cin/g)·k`` with ``W: (Cout, Cin/g, k...)`` -> ``∝ W.shape[0]·W.shape[1]``;
* ``ConvTranspose``: ``N·Cin·H·W · (Cout/g)·k`` with ``W: (Cin, Cout/g, k...)`` -> the same product;
* ``Gemm`` / ``MatMul`` with an initializer ``B`` (2-D): ``M·K·N`` with ``B`` of shape ``(K, N)`` or
  ``(N, K)`` -> ``∝ B.shape[0]·B.shape[1]`` (the activation's K is B's K).

Surgery shortens axis ``a`` of initializer ``w`` by the indices that the plan's members on ``(w, a)``
remove: a group keeping ``k`` of its ``C`` channels removes ``(C − k)·n`` indices of a member whose index
map gives each channel ``n`` indices. So with ``x_g = C_g − k_g`` (removed channels)::

    len(w, a) = L(w, a) − Σ_g n(g, w, a) · x_g
    MACs(k)   = Σ_node  macs0(node) · len(w, 0)/L(w, 0) · len(w, 1)/L(w, 1)

a sum of constant, linear and bilinear terms in the removed counts (a producer's output axis times a
consumer's input axis). Nodes whose weight is not an initializer (two activations multiplied) keep their
MACs. Exact whenever each channel of a group owns the same number of indices of each member (every
:class:`~onnxprune.plan.IndexMap`; a :class:`~onnxprune.plan.SlotMap` uses its average).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import onnx

from ..plan import PruningPlan
from .layerops import LAYER_OPS
from .macs import ModelCost, node_keys


@dataclass(frozen=True)
class _Axis:
    length: int
    shrink: dict[str, float]  # group -> indices removed per removed channel


@dataclass(frozen=True)
class _Term:
    macs: int
    axes: tuple[_Axis, ...]


@dataclass(frozen=True)
class MacModel:
    """``macs(keep)`` of a model from its per-node MACs and its plan (see the module docstring)."""

    terms: tuple[_Term, ...]
    channels: dict[str, int]  # group -> channels
    constant: int = 0  # MACs of nodes no group touches
    total: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "total", self.constant + sum(t.macs for t in self.terms))

    def macs(self, keep: Mapping[str, int]) -> float:
        """Total MACs when group ``g`` keeps ``keep[g]`` channels (groups not named keep all)."""
        removed = {g: self.channels[g] - k for g, k in keep.items() if g in self.channels}
        out = float(self.constant)
        for t in self.terms:
            factor = 1.0
            for a in t.axes:
                factor *= (a.length - sum(n * removed.get(g, 0) for g, n in a.shrink.items())) / a.length
            out += t.macs * factor
        return out

    def fraction(self, keep: Mapping[str, int]) -> float:
        """``macs(keep)`` over the MACs of the whole model."""
        return self.macs(keep) / self.total if self.total else 1.0


def _weight(node: onnx.NodeProto, inits: Mapping[str, tuple[int, ...]]) -> str | None:
    """The initializer whose first two axes scale ``node``'s MACs, or None (a MatMul's constant operand
    only when it is a matrix: a batched one would scale more axes)."""
    op = LAYER_OPS.get(node.op_type)
    name = op.weight(node, inits) if op is not None else None
    if (
        name is None
        or len(inits[name]) < 2
        or (op is not None and op.constant_operand and len(inits[name]) > 2)
    ):
        return None
    return name


def axis_shrink(model: onnx.ModelProto, plan: PruningPlan) -> dict[tuple[str, int], dict[str, float]]:
    """(initializer, axis 0 or 1) -> {group: indices of that axis removed per removed channel}."""
    inits = {t.name: tuple(int(d) for d in t.dims) for t in model.graph.initializer}
    shrink: dict[tuple[str, int], dict[str, float]] = {}
    for g in plan.groups:
        if not g.channels:
            continue
        for m in g.members:
            if m.initializer not in inits or m.axis > 1:
                continue
            per = len(m.index_map.indices(range(g.channels))) / g.channels
            axis = shrink.setdefault((m.initializer, m.axis), {})
            axis[g.name] = axis.get(g.name, 0.0) + per
    return shrink


def mac_model(model: onnx.ModelProto, plan: PruningPlan, cost: ModelCost) -> MacModel:
    """The closed form of ``model``'s MACs (``cost = count_costs(model, shape)``) over ``plan``'s groups."""
    inits = {t.name: tuple(int(d) for d in t.dims) for t in model.graph.initializer}
    shrink = axis_shrink(model, plan)
    terms, constant = [], 0
    for key, node in zip(node_keys(model.graph.node), model.graph.node, strict=True):
        cost_node = cost.nodes.get(key)
        if cost_node is None:
            continue
        w = _weight(node, inits)
        axes = tuple(_Axis(inits[w][a], shrink[(w, a)]) for a in (0, 1) if w is not None and (w, a) in shrink)
        if axes:
            terms.append(_Term(cost_node.macs, axes))
        else:
            constant += cost_node.macs
    return MacModel(tuple(terms), {g.name: g.channels for g in plan.groups}, constant)


__all__ = ["MacModel", "axis_shrink", "mac_model"]
