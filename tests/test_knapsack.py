"""The multiple-choice knapsack of --target-speedup: the exact optimum, against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from onnxprune.pipeline.knapsack import dominated_choices, solve_mckp


def brute_force(groups, capacity):
    best = None
    for picks in itertools.product(*(range(len(g)) for g in groups)):
        cost = sum(groups[i][j][0] for i, j in enumerate(picks))
        value = sum(groups[i][j][1] for i, j in enumerate(picks))
        if cost <= capacity + 1e-12 and (best is None or value > best[0] + 1e-12):
            best = (value, picks)
    return best


@pytest.mark.parametrize("seed", range(60))
def test_exact_optimum_against_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 6))
    groups = []
    for _ in range(n):
        m = int(rng.integers(1, 5))
        # a width's latency and importance as in pruning: both grow with width, latency in steps
        costs = np.sort(rng.choice([0.5, 1.0, 1.0, 2.0, 3.0, 3.0], m) * rng.uniform(0.5, 2.0))
        values = np.sort(rng.uniform(-3, 1, m)) if seed % 2 else rng.uniform(-3, 1, m)  # odd: any value
        groups.append([(float(c), float(v)) for c, v in zip(costs, values, strict=True)])
    total_min = sum(min(c for c, _ in g) for g in groups)
    total_max = sum(max(c for c, _ in g) for g in groups)
    for capacity in (total_min - 0.1, total_min, (total_min + total_max) / 2, total_max):
        expected = brute_force(groups, capacity)
        got = solve_mckp(groups, capacity)
        if expected is None:
            assert got is None
            continue
        assert got is not None
        cost = sum(groups[i][j][0] for i, j in enumerate(got))
        value = sum(groups[i][j][1] for i, j in enumerate(got))
        assert cost <= capacity + 1e-9
        assert value == pytest.approx(expected[0], abs=1e-9)


def test_a_width_no_faster_than_a_wider_one_is_never_kept() -> None:
    # widths 8, 12, 16: 12 measures as slow as 16 (unaligned) and keeps less importance
    choices = [(1.0, -2.0), (2.0, -1.0), (2.0, 0.0)]
    assert dominated_choices(choices) == {1}
    assert solve_mckp([choices], 2.0) == [2]
    assert solve_mckp([choices], 1.5) == [0]
    assert solve_mckp([choices], 0.5) is None
    assert dominated_choices([(1.0, 0.0), (1.0, 0.0)]) == {1}  # equal: one of the two stays
