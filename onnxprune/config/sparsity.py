"""What to prune: sparsity rules per group, exclusions and channel-count alignment.

``--sparsity filter:R`` is the uniform shorthand: remove the fraction R of the channels of every prunable
group. A recipe (:mod:`onnxprune.config.recipe`) gives a list of rules instead; a rule selects groups by the
names of their source nodes (a glob, ``fnmatch`` syntax, case-sensitive) and/or the op type of those nodes,
and the LAST matching rule sets a group's ratio (so specific rules go after general ones). Groups whose
source node matches an ``exclude`` glob, or that no rule selects, keep all their channels.

Kept counts are ``C·(1 − R)`` rounded to nearest (a tie to the smaller count: it removes at least R), at
least one, at least one per cover set of the group, and, with ``align`` > 1, rounded to the nearest count
whose filters are a multiple of ``align`` (:func:`onnxprune.config.alignment.aligned_keep`).

``channel:R`` prunes the same channels from the other side: the fraction R of the input channels
``W[:, c]`` of every Conv/Gemm whose input channels are channel-prunable (each channel read by that layer
alone, see :func:`onnxprune.graph.analysis.analyze`). Its rules select a group by the name / op type of
that *consuming* layer; the projection keeps the k input-channel slices of largest L2 norm, and surgery
removes the channels from the consumer and, with them, the producer's filters. A weight cannot be both
channel-pruned (its input channels) and filter-pruned (its filters): :func:`training_plan` refuses it.

Element (non-structured) kinds act on single weights of Conv/Gemm layers instead of channels, by the
same rules (a rule selects a layer by its node name / op type; the last matching rule wins per layer):

* ``irregular:R`` keeps the ``k = max(1, round((1 − R)·n))`` largest-|w| entries of the n of each
  selected weight tensor;
* ``nm:N:M`` keeps, in every block of M consecutive weights along the layer's input dimension (Conv:
  C_in/group for each (out, kh, kw); Gemm: the reduction axis K, i.e. axis 1 with transB, else 0), the N
  of largest |w|. A layer whose input dimension is not a multiple of M is rejected (no logical padding:
  a padded block would not be the 2:4 pattern sparse kernels expect);
* ``shape:R`` keeps the ``k = max(1, round((1 − R)·n))`` im2col columns of largest L2 norm of the n of
  each selected weight: a column is ``W[:, c, kh, kw]`` of a Conv (across all filters), ``W[:, c]`` of a
  Gemm (an input feature). Grouped and depthwise Convs are rejected (a column would not span all filters).

Element-pruned weights stay dense, with exact zeros; no graph surgery (shape-wise: channels whose every
consumer column is zero are cut by filter surgery, and the rest may be written in the lowered im2col form:
:mod:`onnxprune.graph.dead`, :mod:`onnxprune.graph.lowered`, :mod:`onnxprune.runtime.forms`). A weight
cannot be both element-pruned and the SOURCE of a pruned group (see :func:`element_constraints`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, Protocol

from ..errors import SpecError
from ..graph.elements import NM, Columns, ElementConstraint, Irregular
from ..graph.layerops import output_axis
from ..graph.weights import WeightTarget
from ..plan import Group, PruningPlan, keep_count
from .alignment import aligned_keep


class Selectable(Protocol):
    """What a rule looks at: a filter group, or a layer's weight (:class:`WeightTarget`)."""

    @property
    def op_type(self) -> str: ...

    @property
    def source_nodes(self) -> Sequence[str]: ...


@dataclass(frozen=True)
class ChannelTarget:
    """A channel-prunable group as ``channel`` rules see it: by the Conv/Gemm that reads its channels."""

    group: Group

    @property
    def op_type(self) -> str:
        return self.group.channel_op or ""

    @property
    def source_nodes(self) -> tuple[str, ...]:
        return (self.group.channel_node,) if self.group.channel_node else ()


@dataclass(frozen=True)
class Rule:
    """Remove ``ratio`` of the ``kind`` structures of the groups (filter) or weights (element kinds) this
    rule selects. ``nm`` rules carry ``n`` and ``m``; their ratio is ``1 − n/m``."""

    kind: str
    ratio: float
    match: str = "*"  # glob over the group's source node names
    op: str | None = None  # op type of the group's source nodes
    n: int = 0  # nm only
    m: int = 0

    def __post_init__(self) -> None:
        check_kind(self.kind, self.kind)
        if KINDS[self.kind].counted:
            check_nm(self.n, self.m, f"nm:{self.n}:{self.m}")
            object.__setattr__(self, "ratio", 1.0 - self.n / self.m)
        check_ratio(self.ratio, str(self))

    @property
    def elementwise(self) -> bool:
        return KINDS[self.kind].elementwise

    @property
    def by_reader(self) -> bool:
        """A ``channel`` rule: it selects a group by the layer that reads its channels."""
        return KINDS[self.kind].by_reader

    def selects(self, target: Selectable) -> bool:
        if self.op is not None and target.op_type != self.op:
            return False
        return any(fnmatchcase(node, self.match) for node in target.source_nodes)

    def __str__(self) -> str:
        where = [] if self.match == "*" else [f"match={self.match}"]
        where += [] if self.op is None else [f"op={self.op}"]
        what = f"{self.kind}:{self.n}:{self.m}" if KINDS[self.kind].counted else f"{self.kind}:{self.ratio:g}"
        return what + (f" ({', '.join(where)})" if where else "")


@dataclass(frozen=True)
class SparsitySpec:
    rules: tuple[Rule, ...]
    exclude: tuple[str, ...] = ()
    align: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.align, int) or self.align < 1:
            raise SpecError(f"align must be a positive integer, not {self.align!r}")

    @property
    def uniform(self) -> Rule | None:
        """The single rule of a ``TYPE:RATIO`` spec (all groups, no exclusions), else None."""
        if len(self.rules) == 1 and self.rules[0].match == "*" and self.rules[0].op is None:
            return None if self.exclude else self.rules[0]
        return None

    @property
    def kind(self) -> str:
        return self.rules[0].kind if self.rules else "filter"

    @property
    def ratio(self) -> float:
        return self.rules[0].ratio if self.rules else 0.0

    def excluded(self, target: Selectable) -> bool:
        """Whether a source node of ``target`` matches an ``exclude`` glob."""
        return any(fnmatchcase(node, pattern) for pattern in self.exclude for node in target.source_nodes)

    def rule_for(self, target: Selectable) -> Rule | None:
        """The last rule selecting ``target``; None when it is excluded or no rule selects it.

        For a :class:`Group`: ``channel`` rules select it through its consumer (:class:`ChannelTarget`,
        only when it is channel-prunable), the other kinds through its source nodes; an ``exclude`` glob
        matching either keeps it."""
        if self.excluded(target):
            return None
        if not isinstance(target, Group):
            return next((r for r in reversed(self.rules) if r.selects(target) and not r.by_reader), None)
        via = ChannelTarget(target)
        for r in reversed(self.rules):
            if not r.by_reader and r.selects(target):
                return r
            if r.by_reader and target.channel_prunable and not self.excluded(via) and r.selects(via):
                return r
        return None

    @property
    def elementwise(self) -> bool:
        """Whether any rule is of an element kind (irregular, nm)."""
        return any(r.elementwise for r in self.rules)

    def __str__(self) -> str:
        uniform = self.uniform
        text = str(uniform) if uniform else "; ".join(str(r) for r in self.rules) or "nothing"
        if self.exclude:
            text += f"; exclude {', '.join(self.exclude)}"
        return text + (f"; align {self.align}" if self.align > 1 else "")


def check_kind(kind: str, where: str) -> None:
    if kind not in KNOWN_KINDS:
        raise SpecError(f"unknown sparsity type {kind!r} in {where!r} (known: {', '.join(KNOWN_KINDS)})")


def check_nm(n: object, m: object, where: str) -> None:
    """N:M needs integers 1 <= N < M."""
    ok = all(isinstance(v, int) and not isinstance(v, bool) for v in (n, m))
    if not ok or not 1 <= n < m:  # type: ignore[operator]
        raise SpecError(f"invalid N:M sparsity {where!r}: need integers 1 <= N < M, e.g. nm:2:4")


def check_ratio(ratio: float, where: str) -> None:
    if isinstance(ratio, bool) or not isinstance(ratio, int | float):
        raise SpecError(f"invalid sparsity ratio {ratio!r} in {where!r}: not a number")
    if not 0.0 <= ratio < 1.0:
        raise SpecError(f"invalid sparsity ratio {ratio:g} in {where!r}: must be in [0, 1)")


def check_target(target: Any, where: str = "--target-macs") -> float:
    """``target`` as a float in (0, 1], else a SpecError naming it."""
    if isinstance(target, bool) or not isinstance(target, int | float):
        raise SpecError(f"{where} must be a number in (0, 1], not {target!r}")
    if not 0.0 < float(target) <= 1.0:
        raise SpecError(f"{where} must be in (0, 1] (the fraction of the MACs to keep), not {target:g}")
    return float(target)


def parse_rule(text: str) -> Rule:
    """``'filter:0.7'`` -> ``Rule('filter', 0.7)``; R must lie in [0, 1). ``'nm:2:4'`` -> an N:M rule."""
    kind, sep, value = text.strip().partition(":")
    kind = kind.strip().lower()
    if not sep or not kind or not value.strip():
        raise SpecError(f"invalid sparsity {text!r}: expected TYPE:RATIO or nm:N:M, e.g. filter:0.5")
    check_kind(kind, text)
    if KINDS[kind].counted:
        n, sep, m = value.partition(":")
        try:
            n_int, m_int = int(n), int(m)
        except ValueError:
            raise SpecError(
                f"invalid N:M sparsity {text!r}: expected nm:N:M with integers, e.g. nm:2:4"
            ) from None
        check_nm(n_int, m_int, text)
        return Rule(kind, 0.0, n=n_int, m=m_int)
    try:
        ratio = float(value)
    except ValueError:
        raise SpecError(f"invalid sparsity ratio {value.strip()!r} in {text!r}: not a number") from None
    check_ratio(ratio, text)
    return Rule(kind, ratio)


def parse_sparsity(text: str, align: int = 1) -> SparsitySpec:
    """The uniform shorthand ``TYPE:RATIO`` as a one-rule spec.

    A list (``filter:0.5,shape:0.3``) is refused with a pointer to recipes: each weight takes one structure,
    and different layers get different structures through a recipe's rules.
    """
    if "," in text:
        raise SpecError(
            f"--sparsity takes one structure, not the list {text!r}: a weight is pruned one way; give "
            "different layers different structures in a recipe (--config, one rule per selection)"
        )
    return SparsitySpec((parse_rule(text),), align=align)


def group_width(group: Group) -> int:
    """Indices of the source tensor one channel owns (a conv-group of a grouped conv owns several)."""
    source = next(iter(group.sources), None)
    if source is None or group.channels == 0:
        return 1
    return max(1, len(source.index_map.indices(range(group.channels))) // group.channels)


def keep_counts(plan: PruningPlan, spec: SparsitySpec) -> dict[str, int]:
    """Channels kept per selected prunable group, filter- or channel-wise (see the module docstring for the
    rounding)."""
    counts = {}
    for g in plan.prunable:
        rule = spec.rule_for(g)
        if rule is None or rule.kind not in GROUP_KINDS:
            continue
        floor = max(1, len(g.cover_sets))
        k = max(keep_count(g.channels, rule.ratio), floor)
        counts[g.name] = aligned_keep(k, g.channels, group_width(g), spec.align, minimum=floor)
    return counts


def channel_groups(plan: PruningPlan, spec: SparsitySpec, keep: Mapping[str, int]) -> list[str]:
    """The groups of ``keep`` that a ``channel`` rule prunes."""
    out = []
    for g in plan.prunable:
        rule = spec.rule_for(g)
        if g.name in keep and rule is not None and rule.by_reader:
            out.append(g.name)
    return out


def training_plan(plan: PruningPlan, spec: SparsitySpec, keep: Mapping[str, int]) -> PruningPlan:
    """``plan`` with the groups a ``channel`` rule prunes turned channel-wise (:meth:`Group.as_channel`).

    Raises :class:`SpecError` when one weight would be channel-pruned (its input channels are the
    projection's groups) and filter-pruned (its filters are) at once: the projection onto both
    constraints together is not the product of the two, so that combination is not supported.
    """
    out = plan.with_channels(channel_groups(plan, spec, keep))
    owner: dict[str, Group] = {}
    for g in out.groups:
        if keep.get(g.name, g.channels) >= g.channels:
            continue
        for m in g.sources:
            other = owner.setdefault(m.initializer, g)
            if other.kind != g.kind:
                ch, fi = (other, g) if other.kind == "channel" else (g, other)
                raise SpecError(
                    f"weight {m.initializer!r} of {ch.channel_op} {ch.channel_node!r} is both channel-pruned "
                    f"(its input channels, group {ch.name!r}) and filter-pruned (its filters, group "
                    f"{fi.name!r}); combining both on one weight is not supported: exclude one rule from it"
                )
    return out


def unmatched_rules(plan: PruningPlan, spec: SparsitySpec, targets: Sequence[Selectable] = ()) -> list[Rule]:
    """Rules that select no prunable group (filter), no channel-prunable layer (channel) or no layer weight
    (element kinds): a typo in a glob, or a recipe written for another model."""
    channel = [ChannelTarget(g) for g in plan.channel_prunable]

    def candidates(r: Rule) -> Sequence[Selectable]:
        return targets if r.elementwise else channel if r.by_reader else plan.prunable

    return [r for r in spec.rules if not any(r.selects(t) for t in candidates(r))]


def _irregular(t: WeightTarget, rule: Rule) -> Irregular | None:
    """``irregular:R``: the ``max(1, round((1 − R)·n))`` largest-|w| entries of the weight's n."""
    k = max(1, min(t.size, round((1.0 - rule.ratio) * t.size)))
    if k == t.size:
        return None
    return Irregular(t.initializer, t.node, t.op_type, t.shape, t.input_axis, str(rule), entries=k)


def _nm(t: WeightTarget, rule: Rule) -> NM:
    """``nm:N:M`` along the layer's input dimension, which must be a multiple of M (no padding)."""
    length = t.shape[t.input_axis]
    if length % rule.m:
        raise SpecError(
            f"layer {t.node!r} ({t.op_type}): input dimension {length} of weight "
            f"{t.initializer!r} is not a multiple of M={rule.m} for {rule}; exclude the layer or "
            "choose another M"
        )
    return NM(t.initializer, t.node, t.op_type, t.shape, t.input_axis, str(rule), n=rule.n, m=rule.m)


def _columns(t: WeightTarget, rule: Rule) -> Columns | None:
    """``shape:R``: the ``max(1, round((1 − R)·n))`` of the n im2col columns of largest L2 norm."""
    if t.group != 1:
        raise SpecError(
            f"layer {t.node!r}: {rule} on a grouped/depthwise Conv (group={t.group}) is not supported: an "
            "im2col column W[:, c, kh, kw] would span only one conv-group's filters; exclude the layer"
        )
    filters = t.shape[output_axis(t.op_type, t.input_axis)]
    n = t.size // filters
    k = max(1, min(n, round((1.0 - rule.ratio) * n)))
    if k == n:
        return None
    return Columns(t.initializer, t.node, t.op_type, t.shape, t.input_axis, str(rule), columns=k)


@dataclass(frozen=True)
class Kind:
    """A sparsity structure rules name: a group kind (``filter``; ``channel``, which selects a group by
    the layer reading its channels) or an element kind with the constraint it puts on a layer's weight
    (None: the rule keeps every element there). ``counted``: written ``nm:N:M``, the ratio 1 − N/M."""

    name: str
    constrain: Callable[[WeightTarget, Rule], ElementConstraint | None] | None = None
    by_reader: bool = False
    counted: bool = False

    @property
    def elementwise(self) -> bool:
        return self.constrain is not None


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("filter"),
        Kind("channel", by_reader=True),
        Kind("irregular", _irregular),
        Kind("nm", _nm, counted=True),
        Kind("shape", _columns),
    )
}
ELEMENT_KINDS = tuple(name for name, k in KINDS.items() if k.elementwise)
GROUP_KINDS = tuple(name for name, k in KINDS.items() if not k.elementwise)
KNOWN_KINDS = tuple(KINDS)


def element_constraints(
    spec: SparsitySpec,
    targets: Sequence[WeightTarget],
    plan: PruningPlan,
    keep: Mapping[str, int],
) -> dict[str, ElementConstraint]:
    """Per weight initializer, the element constraint of the last rule selecting its layer.

    Raises :class:`SpecError` for an N:M layer whose input dimension is not a multiple of M, for a weight
    that is also the SOURCE of a pruned group (its filters filter-pruned, or its input channels
    channel-pruned: combining both on one layer is not supported), and for an N:M layer whose input
    channels a filter-pruned group removes (the blocks would shift). ``plan`` may be the analysis plan or
    the :func:`training_plan`.
    """
    plan = training_plan(plan, spec, keep)
    out: dict[str, ElementConstraint] = {}
    for t in targets:
        rule = spec.rule_for(t)
        constrain = KINDS[rule.kind].constrain if rule is not None else None
        c = constrain(t, rule) if constrain is not None and rule is not None else None
        if c is None:
            continue
        if out.setdefault(t.initializer, c) != c:
            raise SpecError(f"weight {t.initializer!r} is shared by layers with different element sparsity")
    _check_against_groups(out, plan, keep)
    return out


def _check_against_groups(
    constraints: Mapping[str, ElementConstraint], plan: PruningPlan, keep: Mapping[str, int]
) -> None:
    """No element-pruned weight is the SOURCE of a pruned group, nor an N:M weight losing input channels."""
    for g in plan.groups:
        if g.name not in keep or keep[g.name] >= g.channels:
            continue
        for m in g.members:
            c = constraints.get(m.initializer)
            if c is None:
                continue
            if m in g.sources:
                raise SpecError(
                    f"layer {c.node!r}: weight {c.initializer!r} is both {g.kind}-pruned (group {g.name!r}) "
                    f"and {c.rule}; combining both on one layer is not supported (exclude one rule from it)"
                )
            if isinstance(c, NM) and m.axis % len(c.shape) == c.axis:
                raise SpecError(
                    f"layer {c.node!r}: {c.rule} needs its whole input dimension, but {g.kind} pruning of "
                    f"group {g.name!r} removes input channels of {c.initializer!r}; exclude one of the two"
                )
