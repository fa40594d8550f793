"""Per-group pruning sensitivity of a dense model, measured with ONNX Runtime on masked copies.

For each probed group and each keep fraction ``f``, the group alone keeps its ``round(f·C)`` channels of
largest L2 norm (over all its SOURCE slices, as the magnitude projection ranks them; at least one per
cover set), every other group keeps everything, and the masked model (:func:`~onnxprune.graph.edit.
mask_model`) runs on a small data sample. The sensitivity is the loss increase over the dense model:

* with labels and a 2-D first output (a classifier): mean cross-entropy of the logits;
* otherwise: the squared error of the first output relative to the dense model's (``‖y − y0‖² / ‖y0‖²``,
  0 for the dense model).

No training, no torch: one ORT session per (group, fraction).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import onnx

from ..data.arrays import Inputs
from ..plan import Group, Member, PruningPlan
from ..runtime.sessions import make_session, run_batched
from .edit import mask_model
from .layerops import weight_readers
from .protos import tensor_array


@dataclass(frozen=True)
class ProbeResult:
    """``increase[g][f]``: loss increase when group ``g`` alone keeps the fraction ``f`` of its channels."""

    base_loss: float
    loss: str  # 'cross-entropy' or 'relative squared error'
    increase: dict[str, dict[float, float]]
    samples: int
    seconds: float


IMPORTANCES = ("source", "group")
"""How one-shot magnitude pruning ranks a group's channels (see :func:`channel_norms`)."""


# the per-channel scale (input 1) of the normalizations: with the layer weights, what group importance reads
NORM_SCALES = frozenset(
    {"BatchNormalization", "InstanceNormalization", "LayerNormalization", "GroupNormalization"}
)


def ranked_members(model: onnx.ModelProto, group: Group, importance: str = "source") -> list[Member]:
    """The members whose slices rank ``group``'s channels.

    * 'source': its SOURCE members — the slices the projection constrains (filters, biases, an unfolded
      BatchNorm's scale and shift), so the one-shot prune is the projection of the untrained weights;
    * 'group': every *weight* slice of the channel in any role — the producer's filters, the consumers'
      input-channel slices ``W[:, c]`` (Conv, Gemm, MatMul weights) and a normalization's scale — and no
      constants (biases, shifts, BatchNorm statistics): Torch-Pruning's ``GroupMagnitudeImportance``,
      which ranks by the same sum of squares."""
    if importance not in IMPORTANCES:
        raise ValueError(f"unknown importance {importance!r} (known: {', '.join(IMPORTANCES)})")
    if importance == "source":
        return group.sources
    weights = set(weight_readers(model))
    weights |= {
        (n.name, n.input[1]) for n in model.graph.node if n.op_type in NORM_SCALES and len(n.input) > 1
    }
    return [m for m in group.members if (m.node, m.initializer) in weights]


def channel_norms(
    model: onnx.ModelProto, group: Group, chunk_bytes: int = 64 * 2**20, importance: str = "source"
) -> np.ndarray:
    """L2 norm of each channel of ``group`` over the slices of :func:`ranked_members`:
    ``n_c = sqrt(Σ_m ‖slice_m(c)‖²)`` — with 'source' the norm the projection ranks by.

    Reads each member as a view and squares it in float64 blocks of about ``chunk_bytes`` along the
    member's axis, so a large weight is never copied whole."""
    inits = {t.name: t for t in model.graph.initializer}
    sq = np.zeros(group.channels, dtype=np.float64)
    for m in ranked_members(model, group, importance):
        a = np.moveaxis(tensor_array(inits[m.initializer]), m.axis, 0)
        row = max(1, a[0].size * 8) if len(a) else 1
        step = max(1, chunk_bytes // row)
        per = np.empty(len(a), dtype=np.float64)  # squared sum of each position along the axis
        for start in range(0, len(a), step):
            block = a[start : start + step].astype(np.float64).reshape(min(step, len(a) - start), -1)
            per[start : start + step] = np.einsum("ij,ij->i", block, block)
        for c in range(group.channels):
            sq[c] += float(per[m.index_map.indices([c])].sum())
    return np.sqrt(sq)


def magnitude_mask(norms: np.ndarray, keep: int, cover_sets: Iterable[Sequence[int]] = ()) -> np.ndarray:
    """Keep the ``keep`` channels of largest norm (ties: lower index), plus the largest of any cover set
    that would otherwise lose all its channels."""
    order = np.argsort(-norms, kind="stable")
    mask = np.zeros(len(norms), dtype=bool)
    mask[order[: max(1, keep)]] = True
    for cover in cover_sets:
        idx = list(cover)
        if not mask[idx].any():
            mask[idx[int(np.argmax(norms[idx]))]] = True
    return mask


def _loss(out: np.ndarray, dense: np.ndarray, y: np.ndarray | None) -> float:
    if y is not None and out.ndim == 2:
        z = out.astype(np.float64)
        z -= z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return float(-logp[np.arange(len(y)), y].mean())
    ref = dense.astype(np.float64)
    return float(np.sum((out - ref) ** 2) / max(float(np.sum(ref**2)), 1e-30))


def probe(
    model: onnx.ModelProto,
    plan: PruningPlan,
    groups: Sequence[str],
    x: Inputs,
    y: np.ndarray | None,
    fractions: Sequence[float] = (0.75, 0.5, 0.25),
    threads: int | None = None,
    progress: Callable[[int, int, str, dict[float, float]], None] | None = None,
) -> ProbeResult:
    """Sensitivity of each of ``groups`` (names) at each keep fraction, on inputs ``x`` (labels ``y``).

    ``progress(i, n, group, row)`` is called after each group."""
    start = time.perf_counter()
    labels = None if y is None else np.asarray(y, dtype=np.int64)
    dense = run_batched(make_session(model, threads=threads), x)[0]
    use_labels = labels if dense.ndim == 2 else None
    base = _loss(dense, dense, use_labels)
    increase: dict[str, dict[float, float]] = {}
    for i, name in enumerate(groups):
        g = plan.group(name)
        norms = channel_norms(model, g)
        floor = max(1, len(g.cover_sets))
        row: dict[float, float] = {}
        for f in fractions:
            keep = max(floor, min(g.channels, round(f * g.channels)))
            mask = magnitude_mask(norms, keep, g.cover_sets)
            if mask.all():
                row[f] = 0.0
                continue
            masked = mask_model(model, plan, {name: mask})
            out = run_batched(make_session(masked, threads=threads), x)[0]
            row[f] = _loss(out, dense, use_labels) - base
        increase[name] = row
        if progress is not None:
            progress(i + 1, len(groups), name, row)
    n = len(labels) if labels is not None else len(dense)
    return ProbeResult(
        base,
        "cross-entropy" if use_labels is not None else "relative squared error",
        increase,
        n,
        time.perf_counter() - start,
    )


__all__ = ["IMPORTANCES", "ProbeResult", "channel_norms", "magnitude_mask", "probe", "ranked_members"]
