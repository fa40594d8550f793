"""Element projections (irregular top-k, N:M) are exact Euclidean projections: checked by enumeration."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from onnxprune.graph.elements import NM
from onnxprune.train.elements import nm_mask, project_elements, topk_mask


def _values(draw: st.DrawFn, shape: tuple[int, ...]) -> torch.Tensor:
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if draw(st.booleans()):  # small integers: many exact ties
        a = rng.integers(-2, 3, size=shape).astype(np.float64)
    else:
        a = rng.standard_normal(shape)
    return torch.from_numpy(a)


@st.composite
def tensor_and_k(draw: st.DrawFn) -> tuple[torch.Tensor, int]:
    shape = tuple(draw(st.lists(st.integers(1, 3), min_size=1, max_size=3).filter(lambda s: np.prod(s) <= 9)))
    t = _values(draw, shape)
    return t, draw(st.integers(0, t.numel()))


@st.composite
def tensor_nm(draw: st.DrawFn) -> tuple[torch.Tensor, int, int, int]:
    m = draw(st.integers(2, 4))
    n = draw(st.integers(1, m - 1))
    ndim = draw(st.integers(1, 3))
    axis = draw(st.integers(0, ndim - 1))
    shape = [draw(st.integers(1, 2)) for _ in range(ndim)]
    shape[axis] = m * draw(st.integers(1, 2))
    return _values(draw, tuple(shape)), n, m, axis


def best_support_cost(t: torch.Tensor, k: int) -> float:
    """min over all supports of size k of ‖T − T⊙1_S‖² (brute force)."""
    sq = t.reshape(-1).pow(2).tolist()
    total = sum(sq)
    return min(total - sum(sq[i] for i in s) for s in itertools.combinations(range(len(sq)), k))


@settings(max_examples=150, deadline=None)
@given(tensor_and_k())
def test_topk_is_the_best_support(case: tuple[torch.Tensor, int]) -> None:
    t, k = case
    mask = topk_mask(t, k)
    assert int(mask.sum()) == k
    z = t.masked_fill(~mask, 0.0)
    assert float((t - z).pow(2).sum()) == pytest.approx(best_support_cost(t, k), abs=1e-12)
    # idempotent: projecting the projection changes nothing (a zero can only be kept when |z| ties)
    again = topk_mask(z, k)
    assert torch.equal(z.masked_fill(~again, 0.0), z)


@settings(max_examples=150, deadline=None)
@given(tensor_nm())
def test_nm_is_per_block_sorting_and_norm_optimal(case: tuple[torch.Tensor, int, int, int]) -> None:
    t, n, m, axis = case
    mask = nm_mask(t, n, m, axis)
    moved_t = t.movedim(axis, -1).reshape(-1, m)
    moved_mask = mask.movedim(axis, -1).reshape(-1, m)
    for block, keep in zip(moved_t, moved_mask, strict=True):
        assert int(keep.sum()) == n
        # the block keeps the n largest |t|, ties to the lower position (stable sort)
        order = sorted(range(m), key=lambda i: (-abs(float(block[i])), i))
        assert sorted(order[:n]) == torch.nonzero(keep).flatten().tolist()
        kept = block.masked_fill(~keep, 0.0)
        assert float((block - kept).pow(2).sum()) == pytest.approx(best_support_cost(block, n), abs=1e-12)
    z = t.masked_fill(~mask, 0.0)
    assert torch.equal(z.masked_fill(~nm_mask(z, n, m, axis), 0.0), z)


def test_ties_keep_the_lower_index() -> None:
    t = torch.tensor([1.0, -2.0, 2.0, 1.0])
    assert topk_mask(t, 2).tolist() == [False, True, True, False]
    assert topk_mask(t, 3).tolist() == [True, True, True, False]
    assert nm_mask(torch.ones(2, 4), 2, 4, 1).tolist() == [[True, True, False, False]] * 2


def test_project_elements_uses_the_torch_axis() -> None:
    """An ONNX-layout axis is mapped through axis_of (a transposed Gemm weight in torch)."""
    c = NM("w", "fc", "Gemm", (4, 2), axis=0, n=1, m=2)
    t = torch.tensor([[1.0, 5.0], [2.0, 4.0], [3.0, 0.5], [0.1, 0.2]]).T  # torch layout (2, 4): axis 1
    z, masks = project_elements({"w": t}, {"w": c}, axis_of=lambda name, ax: 1 - ax)
    assert masks["w"].tolist() == [[False, True, True, False], [True, False, True, False]]
    assert torch.equal(z["w"], t * masks["w"])


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="cannot keep"):
        topk_mask(torch.ones(3), 4)
    with pytest.raises(ValueError, match="not a multiple"):
        nm_mask(torch.ones(2, 6), 2, 4, 1)
    with pytest.raises(ValueError, match="not finite"):
        topk_mask(torch.tensor([1.0, float("nan")]), 1)
