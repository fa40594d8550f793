"""What to prune: sparsity rules per group, exclusions and channel-count alignment.

``--sparsity filter:R`` is the uniform shorthand: remove the fraction R of the channels of every prunable
group. A recipe (:mod:`onnxprune.recipe`) gives a list of rules instead; a rule selects groups by the
names of their source nodes (a glob, ``fnmatch`` syntax, case-sensitive) and/or the op type of those nodes,
and the LAST matching rule sets a group's ratio (so specific rules go after general ones). Groups whose
source node matches an ``exclude`` glob, or that no rule selects, keep all their channels.

Kept counts are ``round(C·(1 − R))``, at least one, at least one per cover set of the group, and, with
``align`` > 1, rounded to the nearest count whose filters are a multiple of ``align``
(:func:`onnxprune.alignment.aligned_keep`).
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from .alignment import aligned_keep
from .errors import SpecError
from .plan import Group, PruningPlan, keep_count

KNOWN_KINDS = ("filter",)
# the other structures of the ADAM-ADMM paper, and N:M; named in errors until they exist
PLANNED_KINDS = ("channel", "shape", "irregular", "n:m")


@dataclass(frozen=True)
class Rule:
    """Remove ``ratio`` of the ``kind`` structures of the groups this rule selects."""

    kind: str
    ratio: float
    match: str = "*"  # glob over the group's source node names
    op: str | None = None  # op type of the group's source nodes

    def __post_init__(self) -> None:
        check_kind(self.kind, str(self))
        check_ratio(self.ratio, str(self))

    def selects(self, group: Group) -> bool:
        if self.op is not None and group.op_type != self.op:
            return False
        return any(fnmatchcase(node, self.match) for node in group.source_nodes)

    def __str__(self) -> str:
        where = [] if self.match == "*" else [f"match={self.match}"]
        where += [] if self.op is None else [f"op={self.op}"]
        return f"{self.kind}:{self.ratio:g}" + (f" ({', '.join(where)})" if where else "")


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

    def excluded(self, group: Group) -> bool:
        """Whether a source node of ``group`` matches an ``exclude`` glob."""
        return any(fnmatchcase(node, pattern) for pattern in self.exclude for node in group.source_nodes)

    def rule_for(self, group: Group) -> Rule | None:
        """The last rule selecting ``group``; None when it is excluded or no rule selects it."""
        if self.excluded(group):
            return None
        return next((r for r in reversed(self.rules) if r.selects(group)), None)

    def __str__(self) -> str:
        uniform = self.uniform
        text = str(uniform) if uniform else "; ".join(str(r) for r in self.rules) or "nothing"
        if self.exclude:
            text += f"; exclude {', '.join(self.exclude)}"
        return text + (f"; align {self.align}" if self.align > 1 else "")


def check_kind(kind: str, where: str) -> None:
    if kind in PLANNED_KINDS:
        raise SpecError(
            f"sparsity type {kind!r} in {where!r} is not supported yet (supported: {', '.join(KNOWN_KINDS)})"
        )
    if kind not in KNOWN_KINDS:
        raise SpecError(f"unknown sparsity type {kind!r} in {where!r} (known: {', '.join(KNOWN_KINDS)})")


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
    """``'filter:0.7'`` -> ``Rule('filter', 0.7)``; R must lie in [0, 1)."""
    kind, sep, value = text.strip().partition(":")
    kind = kind.strip().lower()
    if not sep or not kind or not value.strip():
        raise SpecError(f"invalid sparsity {text!r}: expected TYPE:RATIO, e.g. filter:0.5")
    check_kind(kind, text)
    try:
        ratio = float(value)
    except ValueError:
        raise SpecError(f"invalid sparsity ratio {value.strip()!r} in {text!r}: not a number") from None
    check_ratio(ratio, text)
    return Rule(kind, ratio)


def parse_sparsity(text: str, align: int = 1) -> SparsitySpec:
    """The uniform shorthand ``TYPE:RATIO`` as a one-rule spec."""
    return SparsitySpec((parse_rule(text),), align=align)


def group_width(group: Group) -> int:
    """Indices of the source tensor one channel owns (a conv-group of a grouped conv owns several)."""
    source = next(iter(group.sources), None)
    if source is None or group.channels == 0:
        return 1
    return max(1, len(source.index_map.indices(range(group.channels))) // group.channels)


def keep_counts(plan: PruningPlan, spec: SparsitySpec) -> dict[str, int]:
    """Channels kept per selected prunable group (see the module docstring for the rounding)."""
    counts = {}
    for g in plan.prunable:
        rule = spec.rule_for(g)
        if rule is None:
            continue
        floor = max(1, len(g.cover_sets))
        k = max(keep_count(g.channels, rule.ratio), floor)
        counts[g.name] = aligned_keep(k, g.channels, group_width(g), spec.align, minimum=floor)
    return counts


def unmatched_rules(plan: PruningPlan, spec: SparsitySpec) -> list[Rule]:
    """Rules that select no prunable group (a typo in a glob, or a recipe written for another model)."""
    return [r for r in spec.rules if not any(r.selects(g) for g in plan.prunable)]
