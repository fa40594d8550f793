"""Property: an update of the pruned model carries back into the dense model exactly.

For P = S(D) (surgery) and any update P -> P' of the initializers a retraining may change,
D' = scatter_update(D, P, P') satisfies S(D') = P' and mask(D') computes what P' computes — on the random
coupled CNNs of test_random_graphs (residual Adds, concats, depthwise, grouped, SE gates, channel shuffles,
and removed Sigmoid channels folded into biases, created where the consumer has none).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onnxprune.errors import UnsupportedModelError
from onnxprune.graph.analysis import analyze
from onnxprune.graph.edit import mask_model, plan_surgery, prune_model, replace_initializers
from onnxprune.graph.load import normalize
from onnxprune.graph.unprune import float_initializers, round_trip_error, scatter_update
from onnxprune.graph.verify import compare_models, verification_inputs
from tests.builders import GraphBuilder
from tests.graph.test_random_graphs import SHAPE, random_cnns
from tests.graph.test_surgery import random_masks


def updated(before: dict[str, np.ndarray], fixed: set[str], seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        n: a if n in fixed else (a + 0.1 * rng.standard_normal(a.shape)).astype(a.dtype)
        for n, a in before.items()
    }


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=random_cnns(), seed=st.integers(0, 1000))
def test_an_update_of_the_pruned_model_carries_back(model: onnx.ModelProto, seed: int) -> None:
    dense = normalize(model).model
    plan = analyze(dense, SHAPE)
    masks = random_masks(plan, seed)
    pruned = prune_model(dense, plan, masks)
    before = float_initializers(pruned)
    fixed = plan_surgery(dense, plan, masks).created_names
    after = updated(before, fixed, seed)

    back = scatter_update(dense, before, after, plan_surgery(dense, plan, masks))

    again = float_initializers(prune_model(back, plan, masks))
    assert again.keys() == after.keys()
    for name, want in after.items():
        np.testing.assert_allclose(again[name], want, rtol=1e-6, atol=1e-6, err_msg=name)
    x = list(verification_inputs(SHAPE, seed, None))
    retrained = replace_initializers(pruned, after)
    assert compare_models(mask_model(back, plan, masks), retrained, x).max_rel_error <= 1e-5
    assert round_trip_error(dense, plan, masks, set(before), seed) is None


def folding_net(bias: bool = False) -> tuple[onnx.ModelProto, object, dict[str, np.ndarray]]:
    """conv -> Sigmoid -> unpadded 1x1 conv: a removed channel is the constant 0.5, which surgery folds
    into the consumer's bias (created when it has none)."""
    b = GraphBuilder((1, 3, 6, 6), seed=3)
    x = b.unary("Sigmoid", b.conv("input", 4))
    y = b.conv(x, 5, k=1, bias=bias)
    dense = normalize(b.build([b.gemm(b.flatten(y), 2)])).model
    plan = analyze(dense, (1, 3, 6, 6))
    group = next(g for g in plan.prunable if g.channels == 4)
    keep = np.array([True, False, True, True])
    masks = {g.name: keep if g is group else np.ones(g.channels, dtype=bool) for g in plan.groups}
    return dense, plan, masks


def test_a_created_bias_stays_fixed_and_refuses_an_update() -> None:
    dense, plan, masks = folding_net()
    pruned = prune_model(dense, plan, masks)
    before = float_initializers(pruned)
    (created,) = plan_surgery(dense, plan, masks).created_names
    assert created in before and created not in {t.name for t in dense.graph.initializer}
    after = dict(before)
    after[created] = before[created] + 1.0
    with pytest.raises(UnsupportedModelError, match=f"retrained '{created}' has no initializer in the dense"):
        scatter_update(dense, before, after, plan_surgery(dense, plan, masks))
    # everything else carries back, the folded constant included
    assert round_trip_error(dense, plan, masks, set(before), 0) is None


def test_a_folded_bias_carries_back_without_its_constant() -> None:
    """D'[K] = D[K] + (P' − P), not P': the pruned bias holds the folded constant, the dense one does not."""
    dense, plan, masks = folding_net(bias=True)
    assert not plan_surgery(dense, plan, masks).created_names
    pruned = prune_model(dense, plan, masks)
    before = float_initializers(pruned)
    after = updated(before, set(), 1)
    back = scatter_update(dense, before, after, plan_surgery(dense, plan, masks))
    again = float_initializers(prune_model(back, plan, masks))
    for name, want in after.items():
        np.testing.assert_allclose(again[name], want, rtol=1e-6, atol=1e-6, err_msg=name)
    x = list(verification_inputs((1, 3, 6, 6), 0, None))
    retrained = replace_initializers(pruned, after)
    assert compare_models(mask_model(back, plan, masks), retrained, x).max_rel_error <= 1e-5


def test_a_shape_that_is_not_the_cut_is_refused() -> None:
    dense, plan, masks = folding_net()
    before = float_initializers(prune_model(dense, plan, masks))
    name = next(n for n, a in before.items() if a.ndim == 4)
    after = dict(before)
    after[name] = np.zeros((1, *before[name].shape[1:]), dtype=before[name].dtype)
    with pytest.raises(UnsupportedModelError, match="changed shape"):
        scatter_update(dense, before, after, plan_surgery(dense, plan, masks))
