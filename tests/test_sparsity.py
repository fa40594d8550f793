from __future__ import annotations

import pytest

from onnxprune.config.sparsity import keep_counts, parse_sparsity
from onnxprune.errors import SpecError
from onnxprune.graph.analysis import analyze
from onnxprune.graph.load import normalize
from onnxprune.plan import Group, PruningPlan, keep_count
from tests.builders import vgg_like


@pytest.mark.parametrize(
    ("text", "ratio"), [("filter:0.7", 0.7), ("FILTER: 0", 0.0), (" filter:0.999 ", 0.999)]
)
def test_parse(text: str, ratio: float) -> None:
    spec = parse_sparsity(text)
    assert spec.kind == "filter" and spec.ratio == pytest.approx(ratio)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("filter:1", "must be in [0, 1)"),
        ("filter:1.5", "must be in [0, 1)"),
        ("filter:-0.1", "must be in [0, 1)"),
        ("filter:abc", "not a number"),
        ("bogus:0.5", "unknown sparsity type 'bogus'"),
        ("0.5", "expected TYPE:RATIO"),
        ("filter:", "expected TYPE:RATIO"),
    ],
)
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(SpecError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        parse_sparsity(text)


@pytest.mark.parametrize(
    ("channels", "ratio", "kept"),
    [
        (10, 0.5, 5),
        (10, 0.7, 3),
        (3, 0.9, 1),
        (1, 0.5, 1),
        (7, 0.0, 7),
        (8, 0.99, 1),
        (3, 0.5, 1),
        (5, 0.5, 2),
        (7, 0.5, 3),
        (10, 0.85, 1),
        (10, 0.75, 2),
        (20, 0.85, 3),
    ],
)
def test_keep_count_rounds_and_keeps_one(channels: int, ratio: float, kept: int) -> None:
    assert keep_count(channels, ratio) == kept


def test_keep_counts_cover_prunable_groups_only() -> None:
    plan = analyze(normalize(vgg_like()).model, (1, 3, 8, 8))
    counts = keep_counts(plan, parse_sparsity("filter:0.5"))
    assert set(counts) == {g.name for g in plan.prunable}
    assert all(1 <= counts[g.name] <= g.channels for g in plan.prunable)


def test_keep_counts_leave_one_channel_per_cover_set() -> None:
    g = Group("g", "n", "Conv", 8, cover_sets=[(0, 1), (2, 3), (4, 5)])
    plan = PruningPlan([g])
    assert keep_counts(plan, parse_sparsity("filter:0.9")) == {"g": 3}
    assert keep_counts(plan, parse_sparsity("filter:0.25")) == {"g": 6}
