"""The multiple-choice knapsack of latency-aware pruning (HALP, Shen et al., NeurIPS 2022).

Each group ``i`` takes exactly one of its choices ``j`` (a kept width), worth ``v_ij`` (the importance
it keeps) and costing ``c_ij`` (its latency); maximize ``Σ_i v_i,j(i)`` subject to ``Σ_i c_i,j(i) ≤ C``.

Solved exactly over real costs by dynamic programming on Pareto frontiers: after the first ``i`` groups,
the frontier holds every reachable (cost, value) with no other state both cheaper-or-equal and
worth-more-or-equal; adding a group combines each state with each choice, drops what exceeds ``C`` and
what is dominated. The optimum is the frontier's most valuable state. Dominance keeps the frontier
small in practice (at most one state per distinct cost); no rounding of costs is involved.
"""

from __future__ import annotations

from collections.abc import Sequence

Choice = tuple[float, float]  # (cost, value)


def dominated_choices(choices: Sequence[Choice]) -> set[int]:
    """Indices of choices no better than another: costing at least as much and worth at most as much
    (ties: the later index goes). A width that is no faster than a wider one, while keeping less
    importance, is such a choice: it is never kept."""
    out = set()
    for i, (ci, vi) in enumerate(choices):
        for j, (cj, vj) in enumerate(choices):
            if j != i and cj <= ci and vj >= vi and (cj < ci or vj > vi or j < i):
                out.add(i)
                break
    return out


def solve_mckp(groups: Sequence[Sequence[Choice]], capacity: float) -> list[int] | None:
    """The optimal choice index per group (see the module docstring), or None when even the cheapest
    choices exceed ``capacity``. Ties in value: the cheaper solution."""
    frontier: list[tuple[float, float, tuple[int, ...]]] = [(0.0, 0.0, ())]
    eps = 1e-12 * max(1.0, abs(capacity))
    for choices in groups:
        if not choices:
            raise ValueError("every group needs at least one choice")
        skip = dominated_choices(choices)
        states = [
            (cost + c, value + v, (*picks, j))
            for cost, value, picks in frontier
            for j, (c, v) in enumerate(choices)
            if j not in skip and cost + c <= capacity + eps
        ]
        if not states:
            return None
        states.sort(key=lambda s: (s[0], -s[1]))
        frontier = []
        for s in states:  # ascending cost: keep a state only if it is worth more than every cheaper one
            if not frontier or s[1] > frontier[-1][1]:
                frontier.append(s)
    best = max(frontier, key=lambda s: (s[1], -s[0]))
    return list(best[2])


__all__ = ["Choice", "dominated_choices", "solve_mckp"]
