"""`--admm-on shrunk` (pipeline.shrinking): ADMM on a model one-shot pruned part of the way."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

import onnxprune
from onnxprune.config.settings import TrainSettings
from onnxprune.graph.analysis import analyze
from onnxprune.graph.edit import mask_model, plan_surgery, prune_model
from onnxprune.graph.probe import channel_norms
from onnxprune.graph.unprune import float_initializers
from onnxprune.graph.verify import compare_models
from onnxprune.pipeline import TrainOptions
from onnxprune.pipeline.prune import magnitude_masks
from onnxprune.pipeline.shrinking import carry_back, compose_masks, matching_keep, shrunk_counts
from onnxprune.plan import PruningPlan, keep_count
from tests.builders import vgg_like, write_labeled_npz


def _plan(model: onnx.ModelProto) -> PruningPlan:
    return onnxprune.inspect(model).plan


def test_shrunk_counts_are_width_times_keep_fraction_to_the_exponent() -> None:
    plan = _plan(vgg_like())
    keep = {"conv_out3": 2, "conv_out15": 6, "conv_out29": 1}  # of 8, 6, 5 channels
    assert shrunk_counts(plan, keep, 0.5) == {"conv_out3": 4, "conv_out15": 6, "conv_out29": 2}
    assert shrunk_counts(plan, keep, 0.7) == {"conv_out3": 3, "conv_out15": 6, "conv_out29": 2}  # 3.0, 1.6
    assert shrunk_counts(plan, keep, 1.0) == keep


def test_the_shrunk_plan_matches_by_name_width_and_tensors() -> None:
    plan = _plan(vgg_like())  # conv_out3: 8 channels, conv_out15: 6
    shrunk_plan = plan  # a first cut that removed nothing
    counts = {"conv_out3": 8, "conv_out15": 6, "gone": 1}
    keep = {"conv_out3": 2, "conv_out15": 3, "gone": 1}  # "gone": cut to its target, nothing left to match
    assert matching_keep(shrunk_plan, plan, keep, counts) == {"conv_out3": 2, "conv_out15": 3}
    assert matching_keep(shrunk_plan, plan, keep, counts | {"conv_out3": 7}) is None  # another width than k₁
    assert matching_keep(shrunk_plan, plan, keep | {"missing": 1}, counts | {"missing": 2}) is None
    other = _plan(vgg_like())
    g = other.group("conv_out15")
    g.members = [m for m in g.members if m.initializer != "b14"]  # the same name, other tensors
    assert matching_keep(other, plan, keep, counts) is None


def test_composed_masks_keep_the_second_cut_inside_the_first() -> None:
    plan = _plan(vgg_like())
    first = {g.name: np.ones(g.channels, dtype=bool) for g in plan.groups}
    first["conv_out3"] = np.array([0, 1, 1, 0, 1, 0, 1, 1], dtype=bool)  # kept 1, 2, 4, 6, 7
    second = {"conv_out3": np.array([1, 0, 0, 1, 1], dtype=bool)}  # of those: 1, 6, 7
    out = compose_masks(plan, first, second)
    assert np.flatnonzero(out["conv_out3"]).tolist() == [1, 6, 7]
    assert all(out[g.name].all() for g in plan.groups if g.name != "conv_out3")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_carried_back_model_prunes_to_the_trained_shrunk_model(seed: int) -> None:
    """prune(D', composed) ≡ prune(S', second) and mask(D', composed) ≡ mask(S', second) on ORT, for a
    random update S' of the shrunk model's float weights and random second masks (property test)."""
    rng = np.random.default_rng(seed)
    dense = vgg_like(seed=seed)
    plan = _plan(dense)
    keep = {g.name: keep_count(g.channels, 0.7) for g in plan.prunable}
    first = magnitude_masks(dense, plan, shrunk_counts(plan, keep, 0.5), "group")
    shrunk = prune_model(dense, plan, first)
    shrunk_plan = analyze(shrunk, {"input": [1, 3, 8, 8]})
    after = {
        n: a + rng.normal(0, 0.1, a.shape).astype(a.dtype) for n, a in float_initializers(shrunk).items()
    }
    trained = onnxprune.graph.edit.replace_initializers(shrunk, after)
    second = {}
    for name, k in keep.items():
        mask = np.zeros(shrunk_plan.group(name).channels, dtype=bool)
        mask[rng.choice(mask.size, k, replace=False)] = True
        second[name] = mask
    model, composed = carry_back(dense, plan, first, plan_surgery(dense, plan, first), shrunk, after, second)
    assert {n: int(m.sum()) for n, m in composed.items() if n in keep} == keep
    x = [rng.random((4, 3, 8, 8)).astype(np.float32)]
    pruned = compare_models(prune_model(trained, shrunk_plan, second), prune_model(model, plan, composed), x)
    masked = compare_models(mask_model(trained, shrunk_plan, second), mask_model(model, plan, composed), x)
    assert pruned.max_rel_error <= 1e-5 and masked.max_rel_error <= 1e-5


@pytest.fixture(scope="module")
def labeled_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_labeled_npz(tmp_path_factory.mktemp("d") / "d.npz", samples=192, channels=3)


QUICK = TrainOptions(admm_epochs=1, finetune_epochs=1, batch_size=32, round_iters=2)


@pytest.mark.torch
def test_admm_on_the_shrunk_model_keeps_its_targets_inside_the_first_cut(labeled_npz: Path) -> None:
    model = vgg_like()
    result = onnxprune.compress(
        model,
        "filter:0.7",
        str(labeled_npz),
        train=QUICK.merged(TrainOptions(admm_on="shrunk")),
        bench_batches=(),
        quiet=True,
    )
    r = result.report
    assert r.verification.passed and r.config["retrain_on"] == "pruned"
    assert r.config["admm_on"].startswith("shrunk (") and r.history["admm"] and r.history["finetune"]
    for g in result.plan.prunable:
        k = keep_count(g.channels, 0.7)
        kept = result.masks[g.name]
        assert kept.sum() == k
        if k < g.channels:  # inside the first cut: the k₁ channels of largest group magnitude
            k1 = shrunk_counts(result.plan, {g.name: k}, TrainSettings.shrink_exponent)[g.name]
            norms = channel_norms(model, g, importance="group")
            assert set(np.flatnonzero(kept)) <= set(np.argsort(-norms, kind="stable")[:k1].tolist())


@pytest.mark.torch
def test_a_run_that_cannot_shrink_says_why_and_trains_dense(labeled_npz: Path) -> None:
    result = onnxprune.compress(
        vgg_like(),
        "filter:0.5",
        str(labeled_npz),
        train=QUICK.merged(TrainOptions(admm_on="shrunk", retrain_on="masked")),
        bench_batches=(),
        quiet=True,
    )
    assert result.report.config["admm_on"] == "dense (--retrain-on masked)"
    assert result.report.verification.passed
