"""The group projection is the exact Euclidean projection: checked against enumerating every k-subset."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from onnxprune.plan import Group, IndexMap, Member, Role, SlotMap
from onnxprune.train.projection import (
    apply_masks,
    group_norms,
    member_mask,
    project,
    project_groups,
    tensor_masks,
    topk_keep,
)


@st.composite
def groups_and_tensors(draw: st.DrawFn) -> tuple[Group, dict[str, torch.Tensor], int]:
    """A group of C channels over 1-3 SOURCE members (random rank, axis, index map) plus a DEPENDENT one."""
    c = draw(st.integers(1, 6))
    k = draw(st.integers(0, c))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    integer_values = draw(st.booleans())  # small integers: many exact ties between channel norms
    members, tensors = [], {}
    for i in range(draw(st.integers(1, 3))):
        inner, outer, offset = draw(st.integers(1, 3)), draw(st.integers(1, 2)), draw(st.integers(0, 2))
        period = c * inner if outer > 1 else 0
        im = IndexMap(offset=offset, inner=inner, outer=outer, period=period)
        length = int(im.indices(range(c)).max()) + 1 + draw(st.integers(0, 1))
        ndim = draw(st.integers(1, 3))
        axis = draw(st.integers(0, ndim - 1))
        shape = [int(rng.integers(1, 3)) for _ in range(ndim)]
        shape[axis] = length
        values = rng.integers(-2, 3, size=shape) if integer_values else rng.standard_normal(shape)
        name = f"t{i}"
        tensors[name] = torch.tensor(values, dtype=torch.float32)
        members.append(Member(name, axis, Role.SOURCE, "n", im))
    tensors["dep"] = torch.randn(c, 2)
    members.append(Member("dep", 0, Role.DEPENDENT, "n"))
    return Group("g", "n", "Conv", c, members), tensors, k


def _zero_channels(
    tensors: dict[str, torch.Tensor], group: Group, keep: np.ndarray
) -> dict[str, torch.Tensor]:
    """Z for a given kept set, written independently of the module: zero each removed channel's indices."""
    out = {m.initializer: tensors[m.initializer].clone() for m in group.sources}
    for m in group.sources:
        idx = torch.as_tensor(m.index_map.indices(np.flatnonzero(~keep)), dtype=torch.long)
        out[m.initializer].index_fill_(m.axis, idx, 0.0)
    return out


def _sq_dist(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return sum(float((a[n].double() - b[n].double()).pow(2).sum()) for n in a)


@settings(max_examples=150, deadline=None)
@given(groups_and_tensors())
def test_projection_is_the_nearest_point_with_at_most_k_channels(case):
    group, tensors, k = case
    before = {n: t.clone() for n, t in tensors.items()}
    z = project(tensors, group, k)
    assert set(z) == {m.initializer for m in group.sources}
    keep = topk_keep(group_norms(tensors, group), k).numpy()
    assert keep.sum() == k
    # feasible: Z is exactly the tensors with the removed channels zeroed (uncovered indices untouched)
    expected = _zero_channels(tensors, group, keep)
    for name in z:
        assert torch.equal(z[name], expected[name])
    # optimal: no k-subset is closer
    sources = {n: tensors[n] for n in z}
    best = min(
        _sq_dist(sources, _zero_channels(tensors, group, np.isin(np.arange(group.channels), subset)))
        for subset in itertools.combinations(range(group.channels), k)
    )
    assert _sq_dist(sources, z) <= best * (1 + 1e-9) + 1e-9
    # the input is not modified, DEPENDENT members are not projected
    assert all(torch.equal(tensors[n], before[n]) for n in tensors)
    assert "dep" not in z


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=1, max_size=8), st.data())
def test_topk_keeps_largest_and_breaks_ties_by_lower_index(values, data):
    k = data.draw(st.integers(0, len(values)))
    keep = topk_keep(torch.tensor(values, dtype=torch.float64), k)
    ranked = sorted(range(len(values)), key=lambda i: (-values[i], i))
    assert set(np.flatnonzero(keep.numpy()).tolist()) == set(ranked[:k])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.floats(0, 10), min_size=2, max_size=9), st.data())
def test_topk_with_cover_sets_is_the_exact_projection(values, data):
    """Against brute force: among all k-subsets hitting every (disjoint) cover set, the kept squared norm
    is the largest possible — the projection onto {≤ k channels, one of each set} is exact."""
    c = len(values)
    order = data.draw(st.permutations(range(c)))
    cuts = sorted(data.draw(st.sets(st.integers(1, c - 1), max_size=3)))
    parts = [order[a:b] for a, b in zip([0, *cuts], [*cuts, c], strict=True)]
    covers = [tuple(p) for p in parts[: data.draw(st.integers(0, len(parts)))] if len(p) < c]
    k = data.draw(st.integers(max(1, len(covers)), c))
    norms = torch.tensor(values, dtype=torch.float64)
    keep = topk_keep(norms, k, covers).numpy()
    assert keep.sum() == k and all(keep[list(cov)].any() for cov in covers)
    sq = np.asarray(values) ** 2
    best = max(
        sq[list(sub)].sum()
        for sub in itertools.combinations(range(c), k)
        if all(set(cov) & set(sub) for cov in covers)
    )
    assert sq[keep].sum() >= best - 1e-9


def test_topk_refuses_more_cover_sets_than_slots():
    with pytest.raises(ValueError, match="cannot cover"):
        topk_keep(torch.ones(4), 1, [(0, 1), (2, 3)])


def test_norms_follow_the_torch_axis():
    """A member stored transposed in torch (Gemm transB=0 -> nn.Linear) gives the same norms via axis_of."""
    rng = np.random.default_rng(1)
    w = torch.tensor(rng.standard_normal((5, 3)), dtype=torch.float32)  # ONNX layout: channels on axis 1
    b = torch.tensor(rng.standard_normal(3), dtype=torch.float32)
    group = Group("g", "n", "Gemm", 3, [Member("w", 1, Role.SOURCE, "n"), Member("b", 0, Role.SOURCE, "n")])
    onnx_norms = group_norms({"w": w, "b": b}, group)
    expected = torch.sqrt((w.double() ** 2).sum(0) + b.double() ** 2)
    assert torch.allclose(onnx_norms, expected)

    def transposed(name: str, axis: int) -> int:
        return 1 - axis if name == "w" else axis

    torch_norms = group_norms({"w": w.T.contiguous(), "b": b}, group, transposed)
    assert torch.allclose(torch_norms, onnx_norms)
    z = project({"w": w.T.contiguous(), "b": b}, group, 1, transposed)
    kept = int(torch.argmax(onnx_norms))
    assert torch.count_nonzero(z["w"].abs().sum(1)) == 1 and z["w"][kept].abs().sum() > 0
    assert torch.count_nonzero(z["b"]) == 1 and z["b"][kept] == b[kept]


def test_masks_broadcast_and_zero_in_place_across_groups():
    """Two groups owning disjoint offset ranges of one tensor (a Concat): masks AND together."""
    t = torch.arange(1.0, 1.0 + 6 * 2).reshape(6, 2)
    g1 = Group("a", "n", "Conv", 2, [Member("t", 0, Role.SOURCE, "n", IndexMap(offset=0))])
    g2 = Group("b", "n", "Conv", 4, [Member("t", 0, Role.SOURCE, "n", IndexMap(offset=2))])
    keeps = [(g1, np.array([True, False])), (g2, np.array([False, True, True, False]))]
    masks = tensor_masks({"t": t}, keeps)
    assert masks["t"].shape == (6, 1) and masks["t"].dtype == torch.bool
    assert masks["t"].reshape(-1).tolist() == [True, False, False, True, True, False]
    single = member_mask(g2.members[0], keeps[1][1], t)
    assert single.reshape(-1).tolist() == [True, True, False, True, True, False]
    apply_masks({"t": t}, masks)
    assert t[[1, 2, 5]].abs().sum() == 0 and bool((t[[0, 3, 4]] != 0).all())

    z, kept = project_groups({"t": torch.ones(6, 2)}, [(g1, 1), (g2, 2)])
    assert kept["a"].tolist() == [True, False] and kept["b"].tolist() == [True, True, False, False]
    assert z["t"][:, 0].tolist() == [1, 0, 1, 1, 0, 0]


def test_bad_requests_are_rejected():
    g = Group("g", "n", "Conv", 3, [Member("t", 0, Role.SOURCE, "n", IndexMap(inner=2))])
    with pytest.raises(ValueError, match="index map"):
        group_norms({"t": torch.ones(5)}, g)
    with pytest.raises(ValueError, match="cannot keep"):
        topk_keep(torch.ones(3), 4)
    with pytest.raises(ValueError, match="not finite"):
        topk_keep(torch.tensor([1.0, float("nan")]), 1)


def test_slot_maps_sum_every_index_a_channel_owns():
    """A channel owning several indices (a conv-group, a shuffled channel) is one norm, zeroed as a whole."""
    rng = np.random.default_rng(3)
    w = torch.tensor(rng.standard_normal((6, 2)), dtype=torch.float64)
    slots = SlotMap((1, 0, 1, -1, 2, 0))  # index 3 belongs to another group
    group = Group("g", "n", "Conv", 3, [Member("w", 0, Role.SOURCE, "n", slots)])
    norms = group_norms({"w": w}, group)
    rows = w.pow(2).sum(1)
    assert torch.allclose(norms, torch.stack([rows[[1, 5]].sum(), rows[[0, 2]].sum(), rows[4]]).sqrt())
    z, keep = project_groups({"w": w}, [(group, 1)])
    kept = int(torch.argmax(norms))
    assert keep["g"].tolist() == [c == kept for c in range(3)]
    owned = [i for i, s in enumerate(slots.slots) if s == kept] + [3]
    assert torch.equal(z["w"][owned], w[owned]) and not z["w"][[i for i in range(6) if i not in owned]].any()
