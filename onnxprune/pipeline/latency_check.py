"""The latency budget's choice checked on the target itself, and re-aimed when the prediction missed.

The latency model (:mod:`onnxprune.runtime.latency`: layers timed alone plus a remainder measured at full
width) can err at the widths it chose: the runtime lays the pruned model out differently (NCHWc reorders
appear or go with the alignment of the widths), the remainder shrinks with the channels, and a table read
from the cache was timed under another load. So the structure chosen — the model pruned to those kept
counts, any channels (the latency depends on the widths only) — is built and timed against the dense
model, interleaved, on the target (:func:`~onnxprune.runtime.latency.model.measure_models`).

When the measured latency misses the budget by more than :data:`TOLERANCE` either way (slower than asked,
or so much faster that accuracy is given away), the budget the allocation aims at is scaled by the miss
and the allocation solved again — the prediction is taken to err by the same factor near its last point::

    aim_0 = B,    aim_{r+1} = aim_r · B_r / M_r

(``B_r`` the budget in round r — the given milliseconds, or the dense model timed in that round divided
by the target speedup — ``M_r`` the pruned model measured then), at most :data:`ROUNDS` measurements. The
most valuable structure that measured within the budget (``M ≤ B·(1 + TOLERANCE)``) wins; if none did,
the fastest one measured, and the report says so. Every round is in the report.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import onnx

from ..graph.edit import prune_model
from ..graph.inputs import ShapeArg
from ..graph.probe import channel_norms, magnitude_mask
from ..plan import PruningPlan
from ..runtime.latency import LatencyModel
from ..runtime.latency.model import at_batch, measure_models

log = logging.getLogger("onnxprune")

ROUNDS = 3
TOLERANCE = 0.03  # a measured latency within 3 % of the budget is on it: the timer's own spread
REPEATS = 30

Keep = dict[str, int]


@dataclass(frozen=True)
class Check:
    """One round: the budget aimed at, the prediction there, and both models measured."""

    round: int
    aim_ms: float
    predicted_ms: float
    dense_ms: float
    budget_ms: float
    measured_ms: float
    worth: float

    @property
    def fits(self) -> bool:
        return self.measured_ms <= self.budget_ms * (1 + TOLERANCE)

    @property
    def on_target(self) -> bool:
        return abs(self.measured_ms / self.budget_ms - 1) <= TOLERANCE

    def to_dict(self) -> dict[str, float | int | bool]:
        return {
            **asdict(self),
            "measured_speedup": self.dense_ms / self.measured_ms,
            "predicted_error": self.predicted_ms / self.measured_ms - 1,
            "fits": self.fits,
        }


def structure(model: onnx.ModelProto, plan: PruningPlan, keep: Mapping[str, int]) -> onnx.ModelProto:
    """``model`` pruned to ``keep`` channels per group (the largest-norm ones: any would do for timing)."""
    masks = {
        g.name: magnitude_mask(channel_norms(model, g), keep[g.name], g.cover_sets)
        if g.name in keep
        else np.ones(g.channels, dtype=bool)
        for g in plan.groups
    }
    return prune_model(model, plan, masks)


def check_and_reaim(
    model: onnx.ModelProto,
    plan: PruningPlan,
    lm: LatencyModel,
    input_shape: ShapeArg,
    budget_of: Callable[[float], float],
    allocate: Callable[[float], Keep],
    worth: Callable[[Keep], float],
    first: Keep,
    smallest_ms: float,
    rounds: int = ROUNDS,
    repeats: int = REPEATS,
) -> tuple[Keep, list[Check], int]:
    """The kept counts to use, the rounds measured and which of them the counts are (see the module
    docstring). ``budget_of(dense_ms)``
    is the budget given the dense model's latency, ``allocate(aim_ms)`` the allocation at a budget,
    ``worth(keep)`` the importance it keeps; ``first`` is the allocation at the budget itself."""
    shape = at_batch(input_shape, lm.target.batch)
    keep, aim = dict(first), budget_of(lm.measured_ms)
    tried: list[tuple[Keep, Check]] = []
    for r in range(rounds):
        dense_ms, measured_ms = measure_models(
            [model, structure(model, plan, keep)], shape, lm.target, repeats
        )
        budget = budget_of(dense_ms)
        check = Check(r, aim, lm.predict(keep), dense_ms, budget, measured_ms, worth(keep))
        tried.append((keep, check))
        log.info(
            "latency check %d on %s: aimed %.3f ms, predicted %.3f ms, measured %.3f ms for a budget of "
            "%.3f ms (dense %.3f ms: %.2fx)",
            r, lm.target, aim, check.predicted_ms, measured_ms, budget, dense_ms, dense_ms / measured_ms,
        )  # fmt: skip
        if check.on_target or (not check.fits and aim <= smallest_ms):
            break
        aim = max(smallest_ms, aim * budget / measured_ms)
        new = allocate(aim)
        if any(new == k for k, _ in tried):
            break
        keep = new
    best = _best([c for _, c in tried])
    return dict(tried[best][0]), [c for _, c in tried], best


def _best(checks: Sequence[Check]) -> int:
    """The most valuable structure that measured within its budget, else the fastest measured."""
    fitting = [i for i, c in enumerate(checks) if c.fits]
    if fitting:
        return max(fitting, key=lambda i: (checks[i].worth, -checks[i].measured_ms))
    return min(range(len(checks)), key=lambda i: checks[i].measured_ms / checks[i].budget_ms)


__all__ = ["REPEATS", "ROUNDS", "TOLERANCE", "Check", "check_and_reaim", "structure"]
