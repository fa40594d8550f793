"""Channel labels carried by tensors during analysis, and the grid algebra the handlers share.

Every prunable channel a source node creates (a Conv filter, a Gemm unit) is an *element*, an integer id.
A tensor that carries elements has a :class:`Channels`: over some of its axes, which element each index
holds (-1 where none), and the value that index takes in the *masked* model once its element is removed
(0 for a zeroed filter, 0.5 after a Sigmoid, NaN when it is not one constant). Handlers map the labels of a
node's inputs to those of its outputs and say which elements must be equal (a residual Add *ties* them),
which must stay (a *stop*), and which initializer slices go with them (members).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Channels:
    """``ids[i...]``: the element at the indices ``i`` of ``axes`` (sorted) of a tensor; -1 for none.

    ``ids`` and ``values`` have the tensor's dims on ``axes``; the labels are the same along every
    other axis.
    """

    axes: tuple[int, ...]
    ids: np.ndarray
    values: np.ndarray

    @staticmethod
    def fresh(axis: int, ids: np.ndarray) -> Channels:
        return Channels((axis,), np.asarray(ids, dtype=np.int64), np.zeros(len(ids)))

    @staticmethod
    def of(axes: Sequence[int], ids: np.ndarray, values: np.ndarray) -> Channels | None:
        """Labels over ``axes`` in any order (sorted here); None when nothing is tracked."""
        ids = np.asarray(ids, dtype=np.int64)
        if not (ids >= 0).any():
            return None
        order = sorted(range(len(axes)), key=lambda i: axes[i])
        return Channels(
            tuple(axes[i] for i in order),
            np.ascontiguousarray(ids.transpose(order)),
            np.ascontiguousarray(np.asarray(values, dtype=np.float64).transpose(order)),
        )

    def elements(self) -> np.ndarray:
        return np.unique(self.ids[self.ids >= 0])

    def tracked_values(self) -> np.ndarray:
        return self.values[self.ids >= 0]

    def all_zero(self) -> bool:
        """Every removed element is exactly zero here (nothing to fold)."""
        return bool(np.all(self.tracked_values() == 0.0))


def grid(ch: Channels | None, shape: Shape, axes: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, values)`` of ``ch`` over ``axes`` (a superset of ``ch.axes``) of a tensor of ``shape``,
    repeated along the axes ``ch`` does not label."""
    dims = tuple(shape[a] for a in axes)
    if ch is None:
        return np.full(dims, -1, dtype=np.int64), np.zeros(dims)
    missing = set(ch.axes) - set(axes)
    if missing:
        raise ValueError(f"axes {sorted(missing)} are labelled but not requested")
    view = tuple(shape[a] if a in ch.axes else 1 for a in axes)
    return (
        np.broadcast_to(ch.ids.reshape(view), dims).copy(),
        np.broadcast_to(ch.values.reshape(view), dims).copy(),
    )


def broadcast(
    inputs: Sequence[Channels | None], in_shapes: Sequence[Shape], out_shape: Shape
) -> tuple[tuple[int, ...], list[np.ndarray], list[np.ndarray]]:
    """Numpy-broadcast the labels of several inputs to the output: ``(axes, ids per input, values)``.

    ``axes`` (output axes) is the union of every input's labelled axes; each grid has the output dims there.
    """
    rank = len(out_shape)
    shifted = [
        tuple(a + rank - len(s) for a in ch.axes) if ch is not None else ()
        for ch, s in zip(inputs, in_shapes, strict=True)
    ]
    axes = tuple(sorted({a for sh in shifted for a in sh}))
    dims = tuple(out_shape[a] for a in axes)
    ids, values = [], []
    for ch, s, sh in zip(inputs, in_shapes, shifted, strict=True):
        if ch is None:
            ids.append(np.full(dims, -1, dtype=np.int64))
            values.append(np.zeros(dims))
            continue
        view = tuple(s[a - rank + len(s)] if a in sh else 1 for a in axes)
        ids.append(np.broadcast_to(ch.ids.reshape(view), dims).copy())
        values.append(np.broadcast_to(ch.values.reshape(view), dims).copy())
    return axes, ids, values


@dataclass
class Collapsed:
    """Labels reduced to fewer axes: each kept index must hold one element across the dropped axes."""

    ids: np.ndarray
    values: np.ndarray
    ties: list[tuple[np.ndarray, np.ndarray]]
    mixed: np.ndarray  # elements that share an index with untracked values: they must stay


def collapse(ch: Channels, shape: Shape, keep: Sequence[int]) -> Collapsed:
    """Labels over ``keep`` only. Along the dropped axes the elements of one kept index are tied; an index
    that mixes tracked and untracked values cannot lose its element. The value is kept when it is the same
    along the dropped axes, else NaN."""
    axes = tuple(sorted(set(ch.axes) | set(keep)))
    ids, values = grid(ch, shape, axes)
    keep_pos = [axes.index(a) for a in keep]
    drop_pos = [i for i in range(len(axes)) if i not in keep_pos]
    kdims = tuple(ids.shape[i] for i in keep_pos)
    flat_ids = ids.transpose(keep_pos + drop_pos).reshape(math.prod(kdims), -1)
    flat_vals = values.transpose(keep_pos + drop_pos).reshape(math.prod(kdims), -1)
    tracked = flat_ids >= 0
    full = tracked.all(axis=1)
    none = ~tracked.any(axis=1)
    mixed_rows = ~(full | none)
    ties = []
    for j in range(1, flat_ids.shape[1]):
        ties.append((flat_ids[full, 0], flat_ids[full, j]))
    out_ids = np.where(full, flat_ids[:, 0], -1)
    same = np.all(flat_vals == flat_vals[:, :1], axis=1)
    out_vals = np.where(same, flat_vals[:, 0], np.nan)
    mixed = flat_ids[mixed_rows][flat_ids[mixed_rows] >= 0]
    return Collapsed(out_ids.reshape(kdims), out_vals.reshape(kdims), ties, np.unique(mixed))


def normalize_axis(axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        raise ValueError(f"axis {axis} out of range for rank {rank}")
    return axis % rank
