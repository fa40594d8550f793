"""Shared checks for the coupling tests: normalize, analyze, mask, prune, and compare."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from onnxprune.graph.analysis import analyze
from onnxprune.graph.edit import mask_model, prune_model
from onnxprune.graph.load import normalize
from onnxprune.graph.verify import compare_models, verification_inputs
from onnxprune.plan import Masks, PruningPlan
from tests.graph.test_surgery import random_masks, weight_shapes


@dataclass
class Pruned:
    model: onnx.ModelProto  # normalized
    plan: PruningPlan
    masks: dict[str, np.ndarray]
    masked: onnx.ModelProto
    pruned: onnx.ModelProto
    max_rel_error: float

    def group_of(self, node: str):
        return next(g for g in self.plan.groups if node in g.source_nodes)

    def shrunk(self) -> bool:
        """Every removed channel made the pruned model's weights smaller, member by member."""
        before, after = weight_shapes(self.model), weight_shapes(self.pruned)
        for g in self.plan.prunable:
            removed = np.flatnonzero(~self.masks.get(g.name, np.ones(g.channels, dtype=bool)))
            for m in g.members:
                gone = len(m.index_map.indices(removed))
                if after[m.initializer][m.axis] > before[m.initializer][m.axis] - gone:
                    return False
        return sum(map(np.prod, after.values())) < sum(map(np.prod, before.values()))


def prune_check(
    model: onnx.ModelProto,
    shape: tuple[int, ...],
    seed: int = 0,
    masks: Masks | None = None,
    ratio: float = 0.5,
) -> Pruned:
    """Prune ``model`` with ``masks`` (default: random, respecting the plan's cover sets); the pruned model
    must pass the full ONNX check. Returns everything for the caller's assertions."""
    model = normalize(model).model
    plan = analyze(model, shape)
    if masks is None:
        masks = random_masks(plan, seed, ratio)
    masks = dict(masks)
    masked = mask_model(model, plan, masks)
    pruned = prune_model(masked, plan, masks)
    onnx.checker.check_model(pruned, full_check=True)
    err = compare_models(masked, pruned, verification_inputs(shape, seed)).max_rel_error
    return Pruned(model, plan, masks, masked, pruned, err)
