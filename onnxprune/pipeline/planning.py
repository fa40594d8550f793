"""Stage 4 of ``compress``: the plan — which groups lose how many channels, which weights which elements.

ONNX side, no torch. The analysis (:func:`onnxprune.graph.analysis.analyze`) finds the groups; the spec's
rules give each selected group its kept count (:func:`~onnxprune.config.sparsity.keep_counts`) and each
selected weight its element constraint, or a MAC budget chooses the counts (:mod:`.budget`); groups a
``channel`` rule prunes turn channel-wise (:func:`~onnxprune.config.sparsity.training_plan`). A group whose
source tensors the torch import cannot reach stays whole, with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Set
from dataclasses import dataclass, replace

from ..config.sparsity import (
    element_constraints,
    group_width,
    keep_counts,
    training_plan,
    unmatched_rules,
)
from ..graph.analysis import analyze
from ..graph.elements import ElementConstraint
from ..graph.macs import count_costs
from ..graph.weights import weight_targets
from ..plan import PruningPlan
from ..runtime.timing import PhaseClock
from .budget import BudgetResult, budget_keep_counts
from .latency_budget import LatencyBudgetResult, latency_keep_counts
from .loading import Loaded, Samples
from .resolve import Config

log = logging.getLogger("onnxprune")


@dataclass(frozen=True)
class Planned:
    """What training and surgery act on: the plan (channel-wise groups turned so), kept channels per
    pruned group, element constraints per weight initializer, and the MAC budget's choice if any."""

    plan: PruningPlan
    keep: dict[str, int]
    elements: dict[str, ElementConstraint]
    budget: BudgetResult | None = None
    unaligned: tuple[str, ...] = ()  # pruned groups the step cannot align (fewer channels than it)
    latency: LatencyBudgetResult | None = None  # --target-speedup / --target-latency: the choice

    @property
    def shape_weights(self) -> list[str]:
        """The shape-pruned weights (written dense or lowered, :mod:`onnxprune.runtime.forms`)."""
        return [name for name, c in self.elements.items() if c.COLUMNWISE]


def analyze_model(loaded: Loaded, samples: Samples, clock: PhaseClock) -> PruningPlan:
    """The pruning groups of the model at its resolved input shapes."""
    with clock.phase("analyze"):
        return analyze(loaded.base, samples.inputs.shape)


def plan(
    config: Config,
    loaded: Loaded,
    samples: Samples,
    analysis: PruningPlan,
    bound: Set[str] | None,
    clock: PhaseClock,
) -> Planned:
    """The plan of the run (see the module docstring); ``bound``: the initializers the torch import can
    train (None: no import, every group as analyzed)."""
    analysis = keep_unbound(analysis, bound)
    base, spec = loaded.base, config.spec
    keep = keep_counts(analysis, spec)
    targets = weight_targets(base)
    elements = element_constraints(spec, targets, analysis, keep)
    for rule in unmatched_rules(analysis, spec, targets):
        what = "Conv/Gemm weight" if rule.elementwise else "prunable group"
        log.warning("sparsity rule %s selects no %s", rule, what)
    budget = None
    if config.target_macs is not None:
        with clock.phase("budget"):
            cost = count_costs(base, samples.inputs.shape)
            train, seed = samples.splits.train, config.run.seed
            keep, budget = budget_keep_counts(
                base, analysis, cost, spec, config.target_macs, train, seed=seed
            )
    latency = None
    if config.latency.targeted:
        with clock.phase("latency budget"):
            train, seed = samples.splits.train, config.run.seed
            keep, latency = latency_keep_counts(
                base, analysis, spec, config.latency, samples.inputs.shape, train, seed=seed
            )
    unaligned = unaligned_groups(analysis, keep, spec.align)
    log.info("align %d: %s", spec.align, config.alignment.reason)
    if unaligned:  # info, not a warning: tiny groups are expected; the report lists each one
        log.info("align %d: %d pruned groups too small to align: %s", spec.align, len(unaligned), unaligned)
    result = training_plan(analysis, spec, keep)  # groups a channel rule prunes: by their consumer's W[:, c]
    log.info(
        "plan: %d groups, %d prunable, %d channel-wise",
        len(result.groups),
        len(result.prunable),
        sum(g.kind == "channel" for g in result.groups),
    )
    return Planned(result, keep, elements, budget, tuple(unaligned), latency)


def unaligned_groups(plan: PruningPlan, keep: dict[str, int], step: int) -> list[str]:
    """One note per pruned group whose kept filters (count x indices per channel) are not a multiple of
    ``step``: only a group too small for any aligned count (fewer filters than the step, or no multiple of
    it at or above its minimum width) — :func:`~onnxprune.config.alignment.aligned_keep` aligns the rest."""
    if step <= 1:
        return []
    notes = []
    for g in plan.prunable:
        k = keep.get(g.name, g.channels)
        if k < g.channels and (k * group_width(g)) % step:
            notes.append(
                f"group {g.name!r} keeps {k} of {g.channels} channels, unaligned: no multiple of {step} fits "
                f"its {g.channels * group_width(g)} filters"
            )
    return notes


def keep_unbound(plan: PruningPlan, bound: Set[str] | None) -> PruningPlan:
    """``plan`` with every group whose SOURCE tensors are not all ``bound`` kept whole, with the reason."""
    if bound is None:
        return plan
    groups = []
    for g in plan.groups:
        missing = next((m for m in g.sources if m.initializer not in bound), None) if g.prunable else None
        if missing is not None:
            what = f"{missing.initializer!r} (node {missing.node!r})"
            g = replace(g, reason=f"the torch import does not expose {what} to training")
        groups.append(g)
    return PruningPlan(groups)


__all__ = ["Planned", "analyze_model", "keep_unbound", "plan", "unaligned_groups"]
