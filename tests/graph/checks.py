"""Shared checks for the coupling tests: normalize, analyze, mask, prune, and compare."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx

from onnxprune.graph.analysis import analyze
from onnxprune.graph.edit import mask_model, prune_model
from onnxprune.graph.inputs import Batch, input_dtypes
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
    shape: tuple[int, ...] | Mapping[str, tuple[int, ...]],
    seed: int = 0,
    masks: Masks | None = None,
    ratio: float = 0.5,
    real: Batch | None = None,
) -> Pruned:
    """Prune ``model`` with ``masks`` (default: random, respecting the plan's cover sets); the pruned model
    must pass the full ONNX check. Returns everything for the caller's assertions.

    ``shape`` is the first input's shape, or a mapping input name -> shape for every input (then each
    input gets its own dtype, and non-float inputs take their values from ``real``, zeros without)."""
    model = normalize(model).model
    plan = analyze(model, shape)
    if masks is None:
        masks = random_masks(plan, seed, ratio)
    masks = dict(masks)
    masked = mask_model(model, plan, masks)
    pruned = prune_model(masked, plan, masks)
    onnx.checker.check_model(pruned, full_check=True)
    inputs: Sequence[Batch] = (
        verification_inputs(shape, seed, real, dtypes=input_dtypes(model))
        if isinstance(shape, Mapping)
        else verification_inputs(shape, seed, real)
    )
    err = compare_models(masked, pruned, inputs).max_rel_error
    return Pruned(model, plan, masks, masked, pruned, err)
