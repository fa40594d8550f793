"""The sparsity spec: ``filter:R`` removes the fraction R of the filters of every prunable group.

Parsed and validated up front, with an error that names the problem.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import SpecError
from .plan import PruningPlan, keep_count

KNOWN_KINDS = ("filter",)


@dataclass(frozen=True)
class SparsitySpec:
    kind: str
    ratio: float

    def __str__(self) -> str:
        return f"{self.kind}:{self.ratio:g}"


def parse_sparsity(text: str) -> SparsitySpec:
    """``'filter:0.7'`` -> ``SparsitySpec('filter', 0.7)``; R must lie in [0, 1)."""
    kind, sep, value = text.strip().partition(":")
    kind = kind.strip().lower()
    if not sep or not kind or not value.strip():
        raise SpecError(f"invalid sparsity {text!r}: expected TYPE:RATIO, e.g. filter:0.5")
    if kind not in KNOWN_KINDS:
        raise SpecError(f"unknown sparsity type {kind!r} in {text!r} (known: {', '.join(KNOWN_KINDS)})")
    try:
        ratio = float(value)
    except ValueError:
        raise SpecError(f"invalid sparsity ratio {value.strip()!r} in {text!r}: not a number") from None
    if not 0.0 <= ratio < 1.0:
        raise SpecError(f"invalid sparsity ratio {ratio:g} in {text!r}: must be in [0, 1)")
    return SparsitySpec(kind, ratio)


def keep_counts(plan: PruningPlan, spec: SparsitySpec) -> dict[str, int]:
    """Channels kept per prunable group (rounded, at least one, and at least one per cover set)."""
    return {g.name: max(keep_count(g.channels, spec.ratio), len(g.cover_sets)) for g in plan.prunable}
