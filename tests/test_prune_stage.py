"""The torch-free stage (pipeline.prune): plan -> magnitude masks -> surgery -> verify, without training."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import numpy_helper

import onnxprune
from onnxprune.config.settings import DataOptions, TrainOptions
from onnxprune.errors import SpecError
from onnxprune.graph.probe import channel_norms, ranked_members
from onnxprune.pipeline.loading import load, read_data
from onnxprune.pipeline.planning import analyze_model
from onnxprune.pipeline.prune import prune_stage
from onnxprune.pipeline.resolve import Given, Outputs, resolve
from onnxprune.runtime.timing import PhaseClock
from tests.builders import vgg_like


def _stage(sparsity: str, importance: str | None = None) -> tuple[object, object]:
    given = Given(
        sparsity=sparsity, data=DataOptions(data="random"), train=TrainOptions(importance=importance)
    )
    config = resolve(vgg_like(), None, given, Outputs())
    clock = PhaseClock()
    loaded = load(config, clock)
    samples = read_data(config, loaded, clock)
    planned, exported = prune_stage(config, loaded, samples, analyze_model(loaded, samples, clock), clock)
    return (loaded, planned, exported), clock


def test_magnitude_masks_keep_the_strongest_channels_and_the_pruned_model_verifies() -> None:
    (loaded, planned, exported), clock = _stage("filter:0.5")
    assert exported.verification.passed and {"analyze", "export", "verify"} <= set(clock.phases)
    assert planned.keep and exported.masked is not None
    for name, k in planned.keep.items():
        keep = exported.masks[name]
        norms = channel_norms(loaded.base, planned.plan.group(name), importance="group")  # the default
        assert keep.sum() == k and norms[keep].min() >= norms[~keep].max()
    assert len(exported.pruned.graph.initializer) == len(loaded.base.graph.initializer)
    assert sum(int(np.prod(t.dims)) for t in exported.pruned.graph.initializer) < sum(
        int(np.prod(t.dims)) for t in loaded.base.graph.initializer
    )


def test_group_importance_adds_every_consumer_weight_slice_and_no_statistics() -> None:
    """n_c² (group) = ‖filter c‖² + BN scale_c² + Σ ‖consumer slice of c‖², the consumers being the next
    Conv's input channels W[:, c] and, after Flatten, the Gemm's 4 features of c (2x2 pixels); biases, BN
    shift, mean and var never rank."""
    model = vgg_like()
    plan = onnxprune.inspect(model).plan
    w = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer}
    layout = {  # group -> its producer weight, BN scale, and channel c's consumer weight entries (vgg_like)
        "conv_out3": ("w1", "scale5", lambda c: w["w13"][:, c]),
        "conv_out15": ("w13", "scale17", lambda c: w["w27"][:, c]),
        "conv_out29": ("w27", None, lambda c: w["fc37"][:, 4 * c : 4 * c + 4]),  # transB=1: (units, features)
        "gemm_out39": ("fc37", None, lambda c: w["fc43"][c]),  # transB=0: (features, units)
    }
    for name, (producer, scale, consumer) in layout.items():
        g = plan.group(name)
        expected = [
            np.sum(w[producer][c] ** 2) + (w[scale][c] ** 2 if scale else 0.0) + np.sum(consumer(c) ** 2)
            for c in range(g.channels)
        ]
        np.testing.assert_allclose(channel_norms(model, g, importance="group") ** 2, expected, rtol=1e-12)
        ranked = {m.initializer for m in ranked_members(model, g, "group")}
        assert not ranked & {"b2", "shift6", "mean7", "var8", "b14", "shift18", "mean19", "var20", "b28"}


def test_the_preview_keeps_the_channels_of_largest_group_importance() -> None:
    (loaded, planned, exported), _ = _stage("filter:0.5", importance="group")
    (_, _, by_source), _ = _stage("filter:0.5", importance="source")
    assert exported.verification.passed
    for name, k in planned.keep.items():
        keep = exported.masks[name]
        norms = channel_norms(loaded.base, planned.plan.group(name), importance="group")
        assert keep.sum() == k and norms[keep].min() >= norms[~keep].max()
    assert any((exported.masks[n] != by_source.masks[n]).any() for n in planned.keep)  # the rankings differ


def test_the_settings_offer_the_importances_the_graph_side_knows() -> None:
    from onnxprune.config import settings
    from onnxprune.graph import probe

    assert settings.IMPORTANCES == probe.IMPORTANCES  # kept twice: settings import nothing of graph


def test_an_unknown_importance_is_a_one_line_error() -> None:
    with pytest.raises(SpecError, match="importance must be one of source, group"):
        _stage("filter:0.5", importance="taylor")


def test_element_sparsity_needs_training() -> None:
    with pytest.raises(SpecError, match="needs training"):
        _stage("irregular:0.5")
