"""MAC budget (``--target-macs F``): per-group keep counts whose model keeps ≈ F of the original MACs.

Algorithm:

1. **MAC model** — :func:`onnxprune.graph.macmodel.mac_model`: total MACs as an exact function of the kept
   counts (constant + linear + bilinear terms: a group scales its producers' output MACs and its consumers'
   input MACs).
2. **Sensitivity probe** — :func:`onnxprune.graph.probe.probe`: for each selectable group (prunable, not
   excluded) and keep fractions 0.75/0.5/0.25/0.1, the loss increase of the dense model on a small sample
   (default 512) when that group alone is magnitude-pruned (masked, ONNX Runtime, no training).
3. **Curve** per group: piecewise linear in the keep fraction through (1, 0) and the probed points,
   extended linearly from the last two points down to fraction 0, and made non-increasing in the fraction
   (a smaller width never costs less), so every step has a cost ≥ 0.
4. **Greedy allocation** (:func:`allocate`): start at full width; the candidate widths of a group are
   its counts that ``--align`` allows (:func:`onnxprune.config.alignment.aligned_keep`) down to its minimum
   width: ``ceil(0.1·C)`` (the smallest probed fraction: widths are chosen where the curve was measured),
   at least 1 and one channel per cover set. Down: repeatedly narrow the group whose next smaller width
   adds the least sensitivity per MAC saved (ties: the larger saving) until the MAC model is at or below
   ``F`` of the total. Fill: while a group's next larger width still fits under ``F``, widen the one
   that removes the most sensitivity per MAC added. The last state above ``F`` is taken instead when it
   is nearer.

``F`` below what every group at its minimum width reaches is a :class:`SpecError` naming that fraction.
The result feeds training exactly like the keep counts of a uniform ``--sparsity`` rule.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from ..config.alignment import aligned_keep
from ..config.sparsity import SparsitySpec, check_target, group_width
from ..data.arrays import ArrayData
from ..errors import SpecError
from ..graph.macmodel import MacModel, mac_model
from ..graph.macs import ModelCost
from ..graph.probe import ProbeResult, probe
from ..plan import PruningPlan

log = logging.getLogger("onnxprune")

PROBE_FRACTIONS = (0.75, 0.5, 0.25, 0.1)
# no width below the probed range: the curve is measured, not guessed
MIN_KEEP = min(PROBE_FRACTIONS)
REPAIR_TOLERANCE = 0.01  # relative miss of the MAC target above which allocate re-tries (see there)
PROBE_SAMPLES = 512


def curve(points: Mapping[float, float], fraction: float) -> float:
    """Sensitivity at keep ``fraction`` from probed ``{fraction: increase}`` (see the module docstring)."""
    pts = sorted({1.0: 0.0, **{float(f): max(0.0, float(v)) for f, v in points.items()}}.items())
    fs = np.array([p[0] for p in pts])
    vs = np.maximum.accumulate(np.array([p[1] for p in pts])[::-1])[::-1]  # non-increasing in f
    if fraction >= fs[0] or len(fs) == 1:
        return float(np.interp(fraction, fs, vs))
    slope = (vs[1] - vs[0]) / (fs[1] - fs[0]) if fs[1] > fs[0] else 0.0
    return float(vs[0] + min(slope, 0.0) * (fraction - fs[0]))


def min_width(channels: int, cover_sets: int) -> int:
    """The smallest width the budget gives a group of ``channels`` (see the module docstring)."""
    return min(channels, max(1, cover_sets, math.ceil(MIN_KEEP * channels - 1e-9)))


def candidates(channels: int, floor: int, width: int, align: int) -> list[int]:
    """Widths a group may take, descending: every count from ``channels`` to ``floor``, aligned."""
    counts = {aligned_keep(k, channels, width, align, minimum=floor) for k in range(floor, channels + 1)}
    return sorted(counts | {channels}, reverse=True)


def allocate(
    model: MacModel,
    widths: Mapping[str, Sequence[int]],
    sensitivity: Mapping[str, Mapping[float, float]],
    target: float,
) -> dict[str, int]:
    """Greedy keep counts (``widths[g]``: candidate counts of group ``g``, descending, first = full) whose
    :meth:`MacModel.fraction` is ≈ ``target``; a SpecError when even the smallest widths stay above it.

    Down phase: move the group whose next smaller width costs the least sensitivity per MAC saved, until
    at or below the target. Fill phase: while some group's next larger width still fits under the target,
    take the one that buys back the most sensitivity per MAC added. Last, the state just above the target
    wins when it is nearer. When that misses the target by more than 1 % (coarse groups), each group in
    turn is set one step wider and frozen while the others are re-allocated; the nearest result wins.
    """
    check_reachable(model, widths, target)
    goal = target * model.total
    step = _greedy(model, widths, sensitivity, {g: 0 for g in widths}, goal, frozenset())
    if abs(model.macs(_keep(widths, step)) - goal) > REPAIR_TOLERANCE * goal:
        # coarse groups (a tied stem, few channels) can overshoot: for each group, one step wider and
        # the others re-allocated; the nearest result wins (then the least total sensitivity)
        tries = [step]
        for g in widths:
            if step[g] > 0:
                start = {**step, g: step[g] - 1}
                tries.append(_greedy(model, widths, sensitivity, start, goal, frozenset({g})))

        def score(st: dict[str, int]) -> tuple[float, float]:
            keep = _keep(widths, st)
            spent = sum(curve(sensitivity.get(g, {}), k / model.channels[g]) for g, k in keep.items())
            return abs(model.macs(keep) - goal), spent

        step = min(tries, key=score)
    return _keep(widths, step)


def check_reachable(model: MacModel, widths: Mapping[str, Sequence[int]], target: float) -> float:
    """The smallest MAC fraction ``widths`` allow; a SpecError naming it when ``target`` is below it."""
    floor = model.fraction({g: w[-1] for g, w in widths.items()})
    if target < floor - 1e-9:
        raise SpecError(
            f"--target-macs {target:g} is not reachable: the smallest achievable MAC fraction is {floor:.4f} "
            "(every selectable group at its minimum width)"
        )
    return floor


def _greedy(
    model: MacModel,
    widths: Mapping[str, Sequence[int]],
    sensitivity: Mapping[str, Mapping[float, float]],
    step: dict[str, int],
    goal: float,
    frozen: frozenset[str],
) -> dict[str, int]:
    """Down, fill and nearest (see :func:`allocate`) from ``step``, never moving the ``frozen`` groups."""
    step = dict(step)
    movable = {g: w for g, w in widths.items() if g not in frozen}
    current = model.macs(_keep(widths, step))
    above = (dict(step), current)
    while current > goal:
        move = _best_move(model, widths, movable, sensitivity, step, current, +1, None)
        if move is None:
            break
        above = (dict(step), current)
        step[move] += 1
        current = model.macs(_keep(widths, step))
    while True:
        move = _best_move(model, widths, movable, sensitivity, step, current, -1, goal)
        if move is None:
            break
        step[move] -= 1
        current = model.macs(_keep(widths, step))
    if current <= goal < above[1] and above[1] - goal < goal - current:
        return above[0]
    return step


def _keep(widths: Mapping[str, Sequence[int]], step: Mapping[str, int]) -> dict[str, int]:
    return {g: w[step[g]] for g, w in widths.items()}


def _best_move(
    model: MacModel,
    widths: Mapping[str, Sequence[int]],
    movable: Mapping[str, Sequence[int]],
    sensitivity: Mapping[str, Mapping[float, float]],
    step: Mapping[str, int],
    current: float,
    direction: int,
    cap: float | None,
) -> str | None:
    """The group to move one candidate narrower (``direction`` +1: least sensitivity added per MAC saved;
    ties, the larger saving) or wider (-1: most sensitivity removed per MAC added, staying <= ``cap``)."""
    keep = _keep(widths, step)
    best: tuple[float, float, str] | None = None
    for g, w in movable.items():
        nxt = step[g] + direction
        if not 0 <= nxt < len(w):
            continue
        trial = model.macs({**keep, g: w[nxt]})
        delta = abs(current - trial)
        if delta <= 0 or (cap is not None and trial > cap):
            continue
        points, channels = sensitivity.get(g, {}), model.channels[g]
        cost = abs(curve(points, w[nxt] / channels) - curve(points, keep[g] / channels))
        key = (cost / delta, -delta, g) if direction > 0 else (-cost / delta, -delta, g)
        if best is None or key < best:
            best = key
    return None if best is None else best[2]


@dataclass(frozen=True)
class BudgetResult:
    """What ``--target-macs`` chose, for the report."""

    target: float
    predicted: float  # MAC fraction of the MAC model at the chosen counts
    smallest: float  # the fraction every group at its minimum width reaches
    keep: dict[str, int]
    channels: dict[str, int]
    probe: ProbeResult
    allocation_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "target_macs": self.target,
            "predicted_macs": self.predicted,
            "smallest_macs": self.smallest,
            "probe": {
                "loss": self.probe.loss,
                "base_loss": self.probe.base_loss,
                "samples": self.probe.samples,
                "seconds": self.probe.seconds,
                "fractions": list(PROBE_FRACTIONS),
            },
            "allocation_seconds": self.allocation_seconds,
            "groups": [
                {
                    "name": g,
                    "channels": self.channels[g],
                    "kept": k,
                    "ratio": 1.0 - k / self.channels[g],
                    "sensitivity": {f"{f:g}": v for f, v in self.probe.increase.get(g, {}).items()},
                }
                for g, k in self.keep.items()
            ],
        }


def budget_keep_counts(
    model: onnx.ModelProto,
    plan: PruningPlan,
    cost: ModelCost,
    spec: SparsitySpec,
    target: float,
    data: ArrayData,
    samples: int = PROBE_SAMPLES,
    seed: int = 0,
    threads: int | None = None,
) -> tuple[dict[str, int], BudgetResult]:
    """Keep counts of every selectable group of ``plan`` (prunable, not excluded by ``spec``) meeting
    ``target``; ``spec.align`` aligns them. ``data``: the probe draws ``samples`` of it (seeded)."""
    target = check_target(target)
    mm = mac_model(model, plan, cost)
    selectable = [g for g in plan.prunable if not spec.excluded(g)]
    widths = {
        g.name: candidates(g.channels, min_width(g.channels, len(g.cover_sets)), group_width(g), spec.align)
        for g in selectable
    }
    smallest = check_reachable(mm, widths, target)  # before the probe: a bad target fails fast
    n = len(data)
    rng = np.random.default_rng(seed)
    index = np.sort(rng.choice(n, min(samples, n), replace=False))
    sample = data.take(index)

    def progress(i: int, total: int, name: str, row: dict[float, float]) -> None:
        values = "  ".join(f"keep {f:g}: {v:+.4f}" for f, v in row.items())
        log.info("probe %d/%d %s: %s", i, total, name, values)

    probed = probe(
        model,
        plan,
        [g.name for g in selectable if len(widths[g.name]) > 1],
        sample.x,
        sample.y,
        PROBE_FRACTIONS,
        threads=threads,
        progress=progress,
    )
    start = time.perf_counter()
    keep = allocate(mm, widths, probed.increase, target)
    seconds = time.perf_counter() - start
    result = BudgetResult(
        target,
        mm.fraction(keep),
        smallest,
        keep,
        {g.name: g.channels for g in selectable},
        probed,
        seconds,
    )
    log.info(
        "MAC budget: target %.3f, predicted %.4f (probe %.1fs on %d samples)",
        target,
        result.predicted,
        probed.seconds,
        probed.samples,
    )
    return keep, result


__all__ = [
    "BudgetResult",
    "allocate",
    "budget_keep_counts",
    "candidates",
    "check_reachable",
    "curve",
    "min_width",
]
