"""Latency budget (``--target-speedup X`` / ``--target-latency MS`` with ``--on PROVIDER:BATCH``): per-group
kept counts that keep the most importance within a latency budget on the target.

The formulation is HALP's (Shen et al., "Structural Pruning via Latency-Saliency Knapsack", NeurIPS
2022), implemented from the paper:

1. **Latency table** — :mod:`onnxprune.runtime.latency`: each prunable layer timed alone on the target
   at the candidate widths (aligned counts from ``ceil(0.1·C)`` to ``C``), cached; the whole model is
   the layers plus a measured remainder ``R``.
2. **Importance** — the sensitivity probe ``--target-macs`` uses (:mod:`onnxprune.graph.probe`,
   :func:`.budget.curve`): keeping ``k`` of group ``g``'s ``C`` channels is worth ``−curve_g(k/C)``, minus
   the loss increase of that group alone at that width.
3. **Knapsack** — every group takes one candidate width; maximize ``Σ_g v_g(k_g)`` subject to
   ``R + Σ_l T_l(len_in_l, len_out_l) ≤ budget``. A layer couples two groups (its input and its output
   width); as in HALP, layer ``l``'s latency is charged to its output group with its input width fixed at
   the current solution (a layer no group's output narrows is charged to its input group), which makes
   the problem a multiple-choice knapsack (:func:`.knapsack.solve_mckp`, exact). It is solved from full
   widths and re-solved with the input widths of the last solution until the solution repeats (at most
   :data:`ITERATIONS` times); the most valuable solution whose true prediction fits wins. A width that
   measures no faster than a wider candidate while keeping less importance is never kept (a dominated
   choice), so a step in the latency is always taken at its widest point.
4. **Repair** — if no solution's true prediction fits, groups are narrowed greedily (least importance
   lost per millisecond saved) until it does; then widened greedily (most importance per millisecond
   added) while it still fits; then a short local search on the true prediction (:func:`_exchange`:
   one group narrower, the others re-widened) keeps any exchange worth more.

The budget is ``target_latency``, or the dense model's measured latency divided by ``target_speedup``; a
budget below what every group at its narrowest width reaches is a :class:`SpecError` naming the best
achievable speedup.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from ..config.settings import LatencySettings
from ..config.sparsity import SparsitySpec, group_width
from ..data.arrays import ArrayData
from ..errors import SpecError
from ..graph.inputs import ShapeArg
from ..graph.probe import ProbeResult, probe
from ..plan import PruningPlan
from ..runtime.latency import LatencyCache, LatencyModel, build_latency_model, group_widths, parse_target
from .budget import PROBE_FRACTIONS, PROBE_SAMPLES, curve
from .knapsack import solve_mckp
from .latency_check import Check, check_and_reaim

log = logging.getLogger("onnxprune")

ITERATIONS = 8
EXCHANGE_ROUNDS = 4
POINTS = 8  # candidate widths per group in the table


Keep = dict[str, int]


def owners(lm: LatencyModel, groups: Sequence[str]) -> dict[str, str | None]:
    """Layer key -> the group its latency is charged to (see the module docstring), None: constant."""
    chosen = set(groups)
    out: dict[str, str | None] = {}
    for layer in lm.layers:
        outs = [g for g in layer.shrink_out if g in chosen]
        ins = [g for g in layer.shrink_in if g in chosen]
        out[layer.key] = outs[0] if len(outs) == 1 else ins[0] if len(ins) == 1 and not outs else None
    return out


def charged(
    lm: LatencyModel, widths: Mapping[str, Sequence[int]], owner: Mapping[str, str | None], current: Keep
) -> tuple[dict[str, list[float]], float]:
    """Per group, the latency charged to it at each of its widths (others at ``current``), and the
    constant rest: the remainder plus the layers charged to no group."""
    costs = {g: [0.0] * len(w) for g, w in widths.items()}
    constant = lm.remainder_ms
    for layer in lm.layers:
        g = owner[layer.key]
        if g is None:
            constant += lm.layer_ms(layer, *layer.lengths(current, lm.channels))
            continue
        for j, k in enumerate(widths[g]):
            costs[g][j] += lm.layer_ms(layer, *layer.lengths({**current, g: k}, lm.channels))
    return costs, constant


def allocate_latency(
    lm: LatencyModel,
    widths: Mapping[str, Sequence[int]],
    values: Mapping[str, Sequence[float]],
    budget_ms: float,
) -> Keep:
    """Kept count per group of ``widths`` (ascending candidates; ``values[g][j]``: the importance kept
    at ``widths[g][j]``) whose predicted latency fits ``budget_ms`` (see the module docstring)."""
    groups = list(widths)
    owner = owners(lm, groups)

    def worth(keep: Keep) -> float:
        return sum(values[g][list(widths[g]).index(k)] for g, k in keep.items())

    current: Keep = {g: widths[g][-1] for g in groups}
    best: Keep | None = None
    for _ in range(ITERATIONS):
        costs, constant = charged(lm, widths, owner, current)
        picks = solve_mckp(
            [list(zip(costs[g], values[g], strict=True)) for g in groups], budget_ms - constant
        )
        if picks is None:
            break
        new = {g: widths[g][j] for g, j in zip(groups, picks, strict=True)}
        if lm.predict(new) <= budget_ms and (best is None or worth(new) > worth(best)):
            best = new
        if new == current:
            break
        current = new
    keep = best if best is not None else _narrow(lm, widths, values, current, budget_ms)
    keep = _exchange(lm, widths, values, _widen(lm, widths, values, keep, budget_ms), budget_ms)
    # the plain greedy from the narrowest widths, where the charging's fixed input widths lead it astray
    greedy = _widen(lm, widths, values, {g: w[0] for g, w in widths.items()}, budget_ms)
    better = lm.predict(greedy) <= budget_ms and _worth(widths, values, greedy) > _worth(widths, values, keep)
    return greedy if better else keep


def _step(
    lm: LatencyModel,
    widths: Mapping[str, Sequence[int]],
    values: Mapping[str, Sequence[float]],
    keep: Keep,
    direction: int,
) -> list[tuple[float, str, Keep, float]]:
    """Every one-step move of one group (``direction`` -1 narrower, +1 wider): (score, group, keep, ms)."""
    out = []
    base = lm.predict(keep)
    for g, w in widths.items():
        j = list(w).index(keep[g]) + direction
        if not 0 <= j < len(w):
            continue
        trial = {**keep, g: w[j]}
        ms = lm.predict(trial)
        gained = values[g][j] - values[g][j - direction]  # < 0 narrowing, > 0 widening (or 0)
        delta = ms - base
        if direction < 0:
            score = -gained / -delta if delta < 0 else float("inf")  # importance lost per ms saved
        else:
            score = -float("inf") if delta <= 0 else -gained / delta  # most importance per ms added first
        out.append((score, g, trial, ms))
    return sorted(out, key=lambda m: (m[0], m[1]))


def _narrow(lm: LatencyModel, widths: Any, values: Any, keep: Keep, budget_ms: float) -> Keep:
    """Narrow until the prediction fits: each time the move of one group to any narrower width that
    loses the least importance per millisecond saved (any, not only the next: a step of the latency
    may span several candidates, where one step saves nothing)."""
    while (base := lm.predict(keep)) > budget_ms:
        moves = []
        for g, w in widths.items():
            j = list(w).index(keep[g])
            for i in range(j):
                trial = {**keep, g: w[i]}
                saved = base - lm.predict(trial)
                if saved > 0:
                    moves.append(((values[g][j] - values[g][i]) / saved, g, i, trial))
        if not moves:
            break
        keep = min(moves, key=lambda m: m[:3])[3]
    return keep


def _widen(
    lm: LatencyModel, widths: Any, values: Any, keep: Keep, budget_ms: float, frozen: str | None = None
) -> Keep:
    while True:
        moves = [m for m in _step(lm, widths, values, keep, +1) if m[3] <= budget_ms and m[1] != frozen]
        if not moves:
            return keep
        keep = moves[0][2]


def _worth(widths: Mapping[str, Sequence[int]], values: Mapping[str, Sequence[float]], keep: Keep) -> float:
    return sum(values[g][list(widths[g]).index(k)] for g, k in keep.items())


def _exchange(lm: LatencyModel, widths: Any, values: Any, keep: Keep, budget_ms: float) -> Keep:
    """Local search over the true (coupled) prediction: one group to a narrower width, then greedy
    widening of the others; where no such move is worth more, the same with a group it shares a layer
    with one step narrower too. The best move is kept, at most :data:`EXCHANGE_ROUNDS` times. It finds
    what the knapsack's charging misses: a group whose narrowing speeds up mostly its consumers' layers,
    or frees enough for another group's wider step only together with its neighbour (a layer's cost is
    bilinear in its input and output widths)."""
    neighbours = _coupled(lm, widths)
    for _ in range(EXCHANGE_ROUNDS):
        base = _worth(widths, values, keep)
        better = None
        for pairs in (False, True):
            for g, start in _narrowings(widths, keep, neighbours, pairs):
                trial = _widen(lm, widths, values, start, budget_ms, frozen=g)
                gain = _worth(widths, values, trial) - base
                fits = lm.predict(trial) <= budget_ms
                if gain > 1e-12 and fits and (better is None or gain > better[0]):
                    better = (gain, trial)
            if better is not None:
                break
        if better is None:
            return keep
        keep = better[1]
    return keep


def _narrowings(
    widths: Mapping[str, Sequence[int]], keep: Keep, neighbours: Mapping[str, set[str]], pairs: bool
) -> Iterator[tuple[str, Keep]]:
    """The starts of :func:`_exchange`'s moves, with the group then frozen: each group at each narrower
    width, alone, or (``pairs``) with each group it shares a layer with one step narrower too."""
    for g, w in widths.items():
        for i in range(list(w).index(keep[g])):
            if not pairs:
                yield g, {**keep, g: w[i]}
                continue
            for h in neighbours[g]:
                j = list(widths[h]).index(keep[h])
                if j > 0:
                    yield g, {**keep, g: w[i], h: widths[h][j - 1]}


def _coupled(lm: LatencyModel, widths: Mapping[str, Sequence[int]]) -> dict[str, set[str]]:
    """Group -> the other groups of ``widths`` that narrow a layer it narrows."""
    out: dict[str, set[str]] = {g: set() for g in widths}
    for layer in lm.layers:
        touched = [g for g in layer.groups if g in out]
        for g in touched:
            out[g].update(h for h in touched if h != g)
    return out


@dataclass(frozen=True)
class LatencyBudgetResult:
    """What the latency budget chose, for the report."""

    target: str
    measured_ms: float  # the dense model while building the table
    budget_ms: float
    predicted_ms: float
    smallest_ms: float
    keep: dict[str, int]
    channels: dict[str, int]
    table: dict[str, Any]  # LatencyModel.to_dict at the chosen counts
    probe: ProbeResult
    seconds: float
    checks: list[dict[str, Any]] = field(default_factory=list)  # latency_check.Check.to_dict per round
    checked: dict[str, Any] | None = None  # the round of the kept counts chosen

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "dense_ms": self.measured_ms,
            "budget_ms": self.budget_ms,
            "target_speedup": self.measured_ms / self.budget_ms,
            "predicted_ms": self.predicted_ms,
            "predicted_speedup": self.measured_ms / self.predicted_ms if self.predicted_ms > 0 else None,
            "best_speedup": self.measured_ms / self.smallest_ms if self.smallest_ms > 0 else None,
            "allocation_seconds": self.seconds,
            "groups": [
                {"name": g, "channels": self.channels[g], "kept": k, "ratio": 1.0 - k / self.channels[g]}
                for g, k in self.keep.items()
            ],
            "layers": self.table["layers"],
            "remainder_ms": self.table["remainder_ms"],
            "table_seconds": self.table["table_seconds"],
            "table_measured_entries": self.table["measured_entries"],
            "checks": self.checks,
            "checked": self.checked,
        }


def budget_ms_of(settings: LatencySettings, dense_ms: float) -> float:
    if settings.target_latency is not None:
        return float(settings.target_latency)
    assert settings.target_speedup is not None
    return dense_ms / float(settings.target_speedup)


def latency_keep_counts(
    model: onnx.ModelProto,
    plan: PruningPlan,
    spec: SparsitySpec,
    settings: LatencySettings,
    input_shape: ShapeArg,
    data: ArrayData,
    seed: int = 0,
) -> tuple[dict[str, int], LatencyBudgetResult]:
    """Keep counts of every selectable group (prunable, not excluded by ``spec``; ``spec.align`` aligns
    the candidates) within the latency budget of ``settings`` (see the module docstring)."""
    target = parse_target(str(settings.on), settings.latency_threads)
    selectable = [g for g in plan.prunable if not spec.excluded(g)]
    widths = {g.name: group_widths(g, spec.align, POINTS, group_width(g)) for g in selectable}
    cache = LatencyCache.open(target, settings.latency_cache)
    lm = build_latency_model(model, plan, input_shape, target, widths, cache)
    budget_ms = budget_ms_of(settings, lm.measured_ms)
    smallest = lm.predict({g: w[0] for g, w in widths.items()})
    if budget_ms < smallest:
        raise SpecError(
            f"latency target {budget_ms:.3f} ms on {target} is not reachable: every group at its narrowest "
            f"width predicts {smallest:.3f} ms, the best achievable speedup is "
            f"{lm.measured_ms / smallest:.2f}x (dense {lm.measured_ms:.3f} ms)"
        )
    rng = np.random.default_rng(seed)
    sample = data.take(np.sort(rng.choice(len(data), min(PROBE_SAMPLES, len(data)), replace=False)))
    movable = [g.name for g in selectable if len(widths[g.name]) > 1]
    probed = probe(model, plan, movable, sample.x, sample.y, PROBE_FRACTIONS)
    values = {
        g.name: [-curve(probed.increase.get(g.name, {}), k / g.channels) for k in widths[g.name]]
        for g in selectable
    }
    start = time.perf_counter()
    keep = allocate_latency(lm, widths, values, budget_ms)
    seconds = time.perf_counter() - start
    checks: list[Check] = []
    chosen = -1
    if settings.latency_checks > 0:
        keep, checks, chosen = check_and_reaim(
            model, plan, lm, input_shape,
            budget_of=lambda dense_ms: budget_ms_of(settings, dense_ms),
            allocate=lambda aim_ms: allocate_latency(lm, widths, values, aim_ms),
            worth=lambda k: _worth(widths, values, k),
            first=keep, smallest_ms=smallest, rounds=settings.latency_checks,
        )  # fmt: skip
    predicted = lm.predict(keep)
    log.info(
        "latency budget on %s: %.3f ms (dense %.3f ms), predicted %.3f ms (%.2fx)",
        target, budget_ms, lm.measured_ms, predicted, lm.measured_ms / predicted if predicted else 0.0,
    )  # fmt: skip
    channels = {g.name: g.channels for g in selectable}
    result = LatencyBudgetResult(
        str(target), lm.measured_ms, budget_ms, predicted, smallest, keep, channels, lm.to_dict(keep),
        probed, seconds, [c.to_dict() for c in checks], checks[chosen].to_dict() if checks else None,
    )  # fmt: skip
    return keep, result


__all__ = [
    "ITERATIONS",
    "LatencyBudgetResult",
    "allocate_latency",
    "budget_ms_of",
    "charged",
    "latency_keep_counts",
    "owners",
]
